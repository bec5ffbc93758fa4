"""How the sweeps scale on Ray: one chapter on 1 and 2 workers, and what the whole study costs on GPUs.

    python benchmarks/ray_scaling.py                                  # a local Ray: 1 and 2 CPU workers, then the cost table
    python benchmarks/ray_scaling.py --samples 16 --steps 50 --t-stride 5
    python benchmarks/ray_scaling.py --address auto --device cuda --workers 1 8   # a cluster's GPUs as workers
    python benchmarks/ray_scaling.py --cost-only --rate 50                # the cost table at 50 TFLOP/s per GPU

Measured: chapter 3's computation (the baseline and its metrics, the block-usage map, and the
Fig. 8 curves: nb = 2..12 bottom decoder blocks removed for n steps from every t_start of a
grid, all families in one :meth:`~unetdyn.paper.sweeps.Sweep.run_many`) at small parameters
on the built-in model, from an empty store each time: in this
process (one torch thread, the local executor), then on Ray with 1 worker and with 2, in one
run. Each Ray run starts its workers (the Unet loaded on each) before the clock starts. The
stores are compared entry by entry: on the CPU they hold the same bits.

Computed: the whole study's guided sample-steps (5.0 M: the README's table of
``book_times.py steps``) times the FLOPs of one guided sample-step of GLIDE's base model and of
Stable Diffusion 1.5, divided by a per-GPU float32 rate (TF32 off) times the GPUs, as if the
work split perfectly. The FLOPs are the package's own counts (:class:`~unetdyn.cost.CallCost`
on the meta device where the backend is installed; else the counts it recorded: 238.3 GFLOP per
unguided GLIDE call, 1606.5 GFLOP per guided SD 1.5 call). The rate is measured on a worker's
GPU where the workers have GPUs (a float32 matrix product, the full rate no Unet reaches), else
the H200's float32 peak from its data sheet, labelled as assumed.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import torch

from unetdyn.paper.families import drop_blocks_family
from unetdyn.paper.sweeps import SweepSpec, open_sweep

STUDY_STEPS = 5_036_500  # the README's table: 489,400 + 220,000 + 640,000 + 1,333,000 + 2,107,000 + 247,100
RECORDED_GFLOP = {"GLIDE base (64x64)": 2 * 238.3, "Stable Diffusion 1.5 (512x512)": 1606.5}  # per guided sample-step
ASSUMED_RATE = (67.0, "assumed: the H200's float32 peak (data sheet), no GPU among the workers")
GPUS = (1, 8, 64)


def chapter3(sweep, nbs, n: int, t_stride: int, images: int) -> tuple[float, float]:
    """What chapter 3 computes: the baseline, the block-usage map (each one unit, on one worker),
    then the Fig. 8 curves (spread over the workers); the seconds of both parts."""
    k = sweep.config.steps
    t0 = time.perf_counter()
    sweep.baseline()
    sweep.block_usage(range(1, len(sweep.unet.skips_popped) + 1), range(k, 0, -max(1, k // 5)), len(sweep.seeds))
    t1 = time.perf_counter()
    grid = list(range(k, n - 1, -t_stride))
    # the families in one call: their units are handed out together (one run per family would
    # leave workers idle at the end of each)
    sweep.run_many([drop_blocks_family(grid, n, nb) for nb in nbs], images=list(range(images)))
    return t1 - t0, time.perf_counter() - t1


def measure(args, executor: str, workers: int | None, root: Path) -> tuple[tuple[float, float], int, list]:
    """Seconds of chapter 3's two parts from an empty store at ``root``, its schedules, where its workers were."""
    spec = SweepSpec(n_samples=args.samples, steps=args.steps)
    sweep = open_sweep(spec, compute=True, cache_dir=root, batch_size=args.batch_size, progress=False,
                       executor=executor, address=args.address if executor == "ray" else None, workers=workers,
                       device=args.device if executor == "ray" else None)
    where = []
    if executor == "ray":
        from unetdyn.paper.executors import live_workers

        sweep.executor.actors()  # started, the Unet loaded on each, before the clock
        where = live_workers()
    secs = chapter3(sweep, args.nbs, args.n, args.t_stride, args.images)
    return secs, len(args.nbs) * len(range(args.steps, args.n - 1, -args.t_stride)), where


def _entries(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.glob("*/*.npz"))}


def scaling(args) -> float | None:
    """Part 1; returns the per-GPU float32 rate measured on a worker (None: no GPU among them)."""
    torch.set_num_threads(1)
    rows, stores = [], {}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        runs = ([("local", None)] if args.device in (None, "cpu") else []) + [("ray", w) for w in args.workers]
        for executor, workers in runs:
            name = "this process" if executor == "local" else f"Ray, {workers} worker(s)"
            root = Path(tmp) / name.replace(" ", "_").replace(",", "")
            secs, n_sched, where = measure(args, executor, workers, root)
            stores[name] = _entries(root)
            rows.append((name, secs, where))
            print(f"  {name}: {sum(secs):.1f} s", flush=True)
        rate = gpu_rate(args)
    load.append(os.getloadavg()[0])
    print(f"\nchapter 3 at {args.samples} samples, K = {args.steps}, nb = {', '.join(map(str, args.nbs))}, n = {args.n}, "
          f"t_start every {args.t_stride} steps: a baseline and a block-usage map (one unit each), then {n_sched} "
          f"schedules in units of up to 8 per nb (batch {args.batch_size}; CPU workers: 1 torch thread each); "
          f"{os.cpu_count()} CPUs here, load average {load[0]:.1f} before and {load[1]:.1f} after")
    ref = next((secs for name, secs, _ in rows if name.startswith("Ray, 1 ")), rows[0][1])
    print(f"{'run':<20} {'total s':>8} {'speed-up':>9} {'baseline+usage s':>17} {'schedules s':>12} {'speed-up':>9}  "
          "workers (host, device, threads)")
    for name, (one, spread), where in rows:
        print(f"{name:<20} {one + spread:8.1f} {sum(ref) / (one + spread):8.2f}x {one:17.1f} {spread:12.1f} "
              f"{ref[1] / spread:8.2f}x  {', '.join(f'{h} {d} {t}' for h, d, t in where) or '-'}")
    print("(speed-ups against Ray with 1 worker)")
    first = next(iter(stores.values()))
    same = all(s == first for s in stores.values())
    print(f"store entries: {len(first)} per run; {'the same bits in every run' if same else 'NOT the same bits in every run'}")
    return rate


def gpu_rate(args) -> float | None:
    """TFLOP/s of a float32 matrix product (TF32 off) on one worker's GPU, or None if it has none
    (the last run's workers, still running, measure it)."""
    from unetdyn.backends import load_unet
    from unetdyn.paper.executors import RayExecutor

    ex = RayExecutor(load_unet("builtin", device="cpu"), model="builtin", device=args.device, address=args.address,
                     workers=args.workers[-1])
    return ex.call(_matmul_rate, "measuring a worker's float32 rate")


def _matmul_rate(unet, size: int = 8192, repeats: int = 5) -> float | None:
    if unet.device.type != "cuda":
        return None
    from unetdyn.unet import exact_float32

    a = torch.randn(size, size, device=unet.device)
    b = torch.randn(size, size, device=unet.device)
    times = []
    with exact_float32(unet.device):
        for _ in range(repeats + 1):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            a @ b
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return 2 * size**3 / sorted(times[1:])[len(times[1:]) // 2] / 1e12


def flops_per_step(count: bool) -> dict[str, tuple[float, str]]:
    """GFLOP of one guided sample-step per model, and where the number comes from."""
    from unetdyn.backends import load_unet
    from unetdyn.cost import CallCost

    out = {}
    for name, (model, kw, prompt) in {
        "GLIDE base (64x64)": ("glide", {}, "a photo of a corgi"),
        "Stable Diffusion 1.5 (512x512)": ("diffusers", {"arch": "sd15"}, "a photo of a corgi"),
    }.items():
        gflop, source = RECORDED_GFLOP[name], "recorded count"
        if count:
            try:
                unet = load_unet(model, device="meta", random_weights=True, **kw)
                gflop, source = CallCost(unet, prompt).flops(0, 0, 2) / 1e9, "counted now (meta device)"
            except ImportError:
                source = f"recorded count ({model} backend not installed here)"
        out[name] = (gflop, source)
    return out


def cost_table(rate: float | None, args) -> None:
    rate_tflops, why = (rate, "measured on a worker's GPU (float32, TF32 off)") if rate else ASSUMED_RATE
    if args.rate:
        rate_tflops, why = args.rate, "given with --rate"
    print(f"\nthe whole study: {args.study_steps / 1e6:.2f} M guided sample-steps; per GPU {rate_tflops:.1f} TFLOP/s ({why}); "
          "perfect splitting assumed")
    head = " ".join(f"{f'{g} GPU' + ('s' if g > 1 else ''):>10}" for g in GPUS)
    print(f"{'Unet':<32} {'GFLOP/step':>10} {'EFLOP':>7} {head}  FLOPs")
    for name, (gflop, source) in flops_per_step(not args.no_count).items():
        total = args.study_steps * gflop * 1e9
        cells = " ".join(f"{_hours(total / (rate_tflops * 1e12 * g)):>10}" for g in GPUS)
        print(f"{name:<32} {gflop:10.1f} {total / 1e18:7.2f} {cells}  {source}")
    print("A chapter's sweep is one unit per 8 schedules (its chunk): more GPUs than a chapter has units sit idle; "
          "a real Unet reaches a fraction of the full float32 rate.")


def _hours(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 100 * 3600 else f"{seconds / 3600:.0f} h"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=8, help="samples of the sweep (default 8)")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps K (default 20)")
    ap.add_argument("--n", type=int, default=3, help="steps each schedule removes blocks for (default 3)")
    ap.add_argument("--t-stride", type=int, default=3, help="t_start every this many steps (default 3)")
    ap.add_argument("--nbs", type=int, nargs="+", default=[2, 4, 6, 8, 10, 12], help="decoder blocks removed, one curve each")
    ap.add_argument("--images", type=int, default=2, help="samples whose images are kept (default 2)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts to time (default 1 2)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None, help="the workers' device (default: cpu on a local Ray)")
    ap.add_argument("--address", default=None, help="a Ray cluster (e.g. auto); default: a local Ray")
    ap.add_argument("--cost-only", action="store_true", help="only the cost table")
    ap.add_argument("--rate", type=float, default=None, help="the cost table's per-GPU TFLOP/s (default: measured or assumed)")
    ap.add_argument("--no-count", action="store_true", help="the cost table from the recorded FLOP counts (no meta-device count)")
    ap.add_argument("--study-steps", type=int, default=STUDY_STEPS, help=f"guided sample-steps of the study (default {STUDY_STEPS:,})")
    args = ap.parse_args(argv)
    for name in ("samples", "steps", "n", "t_stride", "images", "batch_size", "study_steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be >= 1")
    if args.n > args.steps:
        ap.error(f"--n {args.n} is out of range 1..{args.steps} (--steps)")
    if args.images > args.samples:
        ap.error(f"--images {args.images} is out of range 1..{args.samples} (--samples)")
    if any(w < 1 for w in args.workers):
        ap.error(f"--workers {args.workers}: each must be >= 1")
    if args.rate is not None and not (math.isfinite(args.rate) and args.rate > 0):
        ap.error(f"--rate {args.rate} must be a positive number of TFLOP/s")
    rate = None
    if not args.cost_only:
        print("chapter 3 from an empty store:", flush=True)
        rate = scaling(args)
    cost_table(rate, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
