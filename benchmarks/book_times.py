"""How long the book takes: regenerating its results, and building it from the store.

    python benchmarks/book_times.py regenerate                          # every chapter at its notebook's defaults (the paper's resolution)
    python benchmarks/book_times.py regenerate --device cuda --batch-size 1024
    python benchmarks/book_times.py regenerate --only 03_nb_sweep --cache-dir /tmp/empty   # one chapter from an empty store
    python benchmarks/book_times.py regenerate --params book/params.yaml   # the values the book is built with
    python benchmarks/book_times.py regenerate --executor ray --address auto   # on a Ray cluster: a worker per GPU
    python benchmarks/book_times.py steps                               # guided sample-steps each chapter needs
    python benchmarks/book_times.py steps --member-grids --model builtin:seed1   # what a member will cost
    python benchmarks/book_times.py regenerate --member-grids --model builtin:seed1   # chapter 10's runs of one member
    python benchmarks/book_times.py build                               # `unetdyn book` from the committed store

``regenerate`` calls each chapter's function (what its notebook calls) with the notebook's
defaults, overridden by ``--params``, computing whatever the store lacks and storing each
result as soon as it is computed: an interrupted run keeps its work, and a rerun continues.
Chapters run in book order, so later ones reuse what earlier ones stored (04-06 read the
Fig. 8 curves of 03). Chapter 6's timings are measurements of the machine and are taken only
with ``--timings`` (the book's are taken on the CPU it describes). Chapter 7 reads the
benchmark scripts' records (``fair_comparison.py``, ``ddim_diagnosis.py``,
``sampler_efficiency.py``, and GLIDE's costs from ``alternatives.py``) and computes nothing.
With ``--member-grids``, chapter 3's block-usage maps come first: minutes of a member's hours.

Prints a table (seconds and new store entries per chapter) and stores it in the result store
as a benchmark record, so the book can cite how long its results took and where.

``steps`` reads each chapter from the store (computing nothing) and counts the guided
sample-steps its results cost: per schedule, the Unet calls from its first intervened step
on (the sampler resumes the rest from the baseline) times the samples, plus one baseline
trajectory; and their FLOPs, each call counted with its surgery by :class:`unetdyn.cost.CallCost`
on the model's architecture (random weights on the meta device: FLOPs depend on shapes only).
A chapter the store lacks for ``--model`` (a member not yet run, or not yet trained) is
estimated from the shipped model's runs of it (``builtin``; the committed store holds all of
them on the member grids): its schedules, compiled and FLOP-counted on the member's own
architecture (read from its weights, or from its training checkpoint while it has none).
Chapters 1-3 run the same schedules on every model, so their sample-steps are exact; 4-6
choose schedules from the model's readings, so theirs are builtin's, an estimate. Every row
says whether it was counted or estimated. Hours are the sample-steps over ``--rate`` (guided
sample-steps per second of builtin; default 180, measured on one 2-core CPU at batch 16; the
machines' speed varies, and ``--measure-rate`` times builtin here first, a few seconds),
times the FLOP ratio of a guided sample-step of the model to one of builtin's; a truncated
step counts as a whole one there. The block-usage map of chapter 3 is not counted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unetdyn.backends import load_unet
from unetdyn.cost import CallCost, timed
from unetdyn.interventions import Schedule, preset
from unetdyn.paper import chapters
from unetdyn.paper.alternatives import benchmark_key
from unetdyn.paper.book import load_params, make_book
from unetdyn.paper.cache import Cache, CacheMiss
from unetdyn.paper.chapters import SweepParams
from unetdyn.paper.chapters.ch06_shortcut import shortcut_parts
from unetdyn.paper.chapters.ch10_is_it_the_model import GRIDS
from unetdyn.paper.sweeps import SweepSpec, default_samples
from unetdyn.paths import CACHE_DIR, REPO_ROOT, is_builtin, member_dir
from unetdyn.sampler import RunOptions, SamplerConfig, sample

# the chapters that sample (7 and 9 read benchmark records; 8's search has its own command)
SAMPLING = [name for name, mod in chapters.CHAPTERS.items() if issubclass(mod.Params, SweepParams) and name != "08_beyond"]
# the chapters whose schedules are fixed by their parameters (4-6 choose theirs from the model's readings)
SAME_SCHEDULES = ("01_phases", "02_skip_vs_deconv", "03_nb_sweep")
REFERENCE = "builtin"  # `steps` estimates from its runs: the committed store holds all of them on the member grids
RATE = 180.0  # guided sample-steps/s of REFERENCE on the 2-core CPU, batch 16, fp32 (README: 176-189)


def chapter_params(name: str, params_file: str | None, model: str | None = None, member_grids: bool = False,
                   **more) -> SweepParams:
    """The chapter's defaults, then the parameters file's ``all`` and its entry for ``name`` (None: book/params.yaml),
    then (``member_grids``) the grid chapter 10 runs every member at, then ``--model``, checked as the book checks
    them; then ``more`` (how to run)."""
    overrides = {**(GRIDS.get(name, {}) if member_grids else {}), **({"model": model} if model is not None else {})}
    return chapters.params(name, load_params(params_file, [name], overrides, override_source="--")[name], **more)


def regenerate(p: SweepParams, timings: bool) -> None:
    """Compute what chapter ``p`` needs and the store lacks."""
    if isinstance(p, chapters.ch06_shortcut.Params) and not timings:
        opened = p.open()
        parts, _, _ = shortcut_parts(p, opened)
        sweep = opened.sweep
        sweep.run(list(parts.values()), images=list(range(p.n_samples)))
        return
    chapters.run(p)


@contextlib.contextmanager
def _recording_reads():
    """Record the store keys read while the block runs (the patch ends with the block)."""
    keys: list[str] = []
    original = Cache.get

    def get(self, key, expect=None):
        keys.append(key)
        return original(self, key, expect)

    Cache.get = get
    try:
        yield keys
    finally:
        Cache.get = original


@dataclass(frozen=True)
class Arch:
    """A model's architecture for counting: a :class:`CallCost` on a random-weights Unet on the meta device
    (None where the architecture is unknown), where the architecture comes from (or why it is unknown), and
    whether the store can hold the model's results (they are keyed by its weights' checksum)."""

    model: str
    cost: CallCost | None
    source: str
    has_weights: bool

    @property
    def step_flops(self) -> float:
        """FLOPs of one guided sample-step of the full Unet (two rows with guidance)."""
        return self.cost.flops(0, 0, 2 if self.cost.unet.conditional else 1)


def architecture(model: str, weights: str | None = None) -> Arch:
    """``model``'s architecture: from its weights' config, else (a member still training) from its training
    checkpoint's config, else unknown, saying why."""
    from unetdyn.backends.builtin import BuiltinUnet
    from unetdyn.builtin_model.checkpoint import CKPT_NAME, checkpoint_metadata
    from unetdyn.builtin_model.config import TrainConfig

    try:
        return Arch(model, CallCost(load_unet(model, weights, device="meta", random_weights=True)),
                    "its weights' config", True)
    except (ValueError, ImportError, OSError, RuntimeError) as e:  # no weights, no backend, unreadable weights
        why = " ".join(str(e).split())
    ckpt = member_dir(model) / "train" / CKPT_NAME if is_builtin(model) and weights is None else None
    if ckpt is None or not ckpt.exists():
        return Arch(model, None, f"unknown ({why}; no training checkpoint either)", False)
    meta = checkpoint_metadata(ckpt.parent)
    cfg = TrainConfig.from_dict(json.loads(meta["train_config"]))
    where = ckpt.relative_to(REPO_ROOT) if ckpt.is_relative_to(REPO_ROOT) else ckpt
    return Arch(model, CallCost(BuiltinUnet(cfg.model).to("meta").eval()),
                f"its training checkpoint's config ({where}, step {meta.get('step')} of {cfg.steps}; no weights yet, "
                "so none of its results are in the store)", False)


def chapter_runs(name: str, params_file: str | None, root: Path, model: str,
                 member_grids: bool = False) -> tuple[SweepSpec, list[tuple[Schedule, int]]]:
    """The spec of chapter ``name`` and the schedules it reads from the store, each with its samples, the baseline
    first; a CacheMiss where the store lacks one."""
    p = chapter_params(name, params_file, model, member_grids, compute=False, progress=False, cache_dir=str(root))
    with _recording_reads() as keys:
        chapters.run(p)
    cache, seen, runs = Cache(root, read_only=True), set(), [(preset("full"), p.n_samples)]
    for key in keys:
        path = cache.path(key)
        if key in seen or not path.exists():
            continue
        seen.add(key)
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
        sched = meta["info"].get("schedule")
        if sched is not None and "ssim" in meta["layout"]:  # not the baseline, images, timings
            runs.append((Schedule.from_dict(sched), meta["layout"]["ssim"][0]))
    return p.spec, runs


def count(spec: SweepSpec, runs: list[tuple[Schedule, int]], cost: CallCost) -> tuple[int, float]:
    """Guided sample-steps and FLOPs of ``runs`` on ``cost``'s Unet: per schedule, its Unet calls from its first
    intervened step on (the sampler resumes the rest from the baseline) times its samples."""
    unet = cost.unet
    blocks, skips, guided = len(unet.skips_popped), sum(unet.skips_pushed), spec.guidance != 1.0 and unet.conditional
    steps, flops = 0, 0.0
    for s, n in runs:
        first = s.first_step()
        for st in s.compile(spec.steps, blocks, skips):
            if first is None or st.t <= first:
                steps += n
                flops += n * cost.flops(st.zero_skips, st.drop_blocks, 2 if st.guided and guided else 1)
    return steps, flops


def sample_steps(name: str, params_file: str | None, root: Path, arch: Arch, reference: Arch,
                 member_grids: bool = False) -> dict:
    """The guided sample-steps and FLOPs chapter ``name`` costs on ``arch``'s model: counted from the store entries
    it reads, or, where the store lacks them, estimated from ``reference``'s entries (``flops`` None where
    ``arch``'s architecture is unknown; ``sample_steps`` None where ``reference``'s are missing too)."""
    row = {"chapter": name, "estimated_from": None}
    missing = "no weights, so none of its results"
    if arch.has_weights:
        try:
            spec, runs = chapter_runs(name, params_file, root, arch.model, member_grids)
            steps, flops = count(spec, runs, arch.cost)
            return {**row, "schedules": len(runs) - 1, "sample_steps": steps, "flops": flops,
                    "source": "counted from the store"}
        except CacheMiss as e:
            missing = str(e)
    if reference.model == arch.model:
        return {**row, "schedules": None, "sample_steps": None, "flops": None, "source": f"not in the store: {missing}"}
    try:
        spec, runs = chapter_runs(name, params_file, root, reference.model, member_grids)
    except CacheMiss as e:
        return {**row, "schedules": None, "sample_steps": None, "flops": None,
                "source": f"not in the store for {arch.model} nor for {reference.model} ({e}): cannot be estimated"}
    steps, _ = count(spec, runs, reference.cost)
    flops = count(spec, runs, arch.cost)[1] if arch.cost is not None else None
    how = ("the same schedules on every model" if name in SAME_SCHEDULES
           else f"schedules chosen from {reference.model}'s readings")
    row.update(schedules=len(runs) - 1, sample_steps=steps, flops=flops, estimated_from=reference.model,
               source=f"ESTIMATE from {reference.model}'s runs ({how})")
    if arch.has_weights:  # those of the reference's schedules the store already holds for the model
        sweep = chapter_params(name, params_file, arch.model, member_grids, compute=False, progress=False,
                               cache_dir=str(root)).sweep()
        stored = lambda key: sweep.cache.path(key).exists()  # noqa: E731
        base = stored(sweep.key("baseline"))
        have = [(s, n) for s, n in runs[1:]
                if stored(sweep.key("metrics", {"interventions": s.to_dict()["interventions"]}))]
        row.update(stored_steps=count(spec, (runs[:1] if base else []) + have, reference.cost)[0], stored_baseline=base,
                   stored_schedules=len(have))
        row["source"] += f"; stored for {arch.model}: {'the baseline, ' if base else ''}{len(have)} of the schedules"
    return row


def measure_rate(model: str = REFERENCE, samples: int = 16, steps: int = 20) -> float:
    """Guided sample-steps per second of ``model`` on this machine, now: ``samples`` samples of ``steps``
    respaced steps in one batch (as ``regenerate`` runs them on a CPU), after a warm-up."""
    unet = load_unet(model)
    prompts, seeds = default_samples(unet, model, samples)
    warm, run = (RunOptions(SamplerConfig(steps=k), batch_size=samples, progress=False) for k in (2, steps))
    sample(unet, prompts, seeds, "full", warm)
    return samples * steps / timed(unet, lambda: sample(unet, prompts, seeds, "full", run))


def print_steps(rows: list[dict], arch: Arch, reference: Arch, rate: float, rate_given: bool | str) -> None:
    """The table of :func:`sample_steps` rows, a total, and hours at ``rate`` (of ``reference``), scaled by FLOPs;
    ``rate_given``: whether ``--rate`` gave it, or where it was measured."""
    shown = lambda a: f"architecture from {a.source}" if a.cost is not None else f"architecture {a.source}"  # noqa: E731
    print(f"{arch.model}: {shown(arch)}")
    if reference.model != arch.model:
        print(f"{reference.model} (the reference estimates come from): {shown(reference)}")
    if arch.cost is not None:
        ratio = reference.step_flops / arch.step_flops
        per_s = rate * ratio
        why = (rate_given if isinstance(rate_given, str) else "given with --rate" if rate_given
               else f"{reference.model} on a 2-core CPU at batch 16, measured; the README gives 176-189, and "
                    "slower machines; --measure-rate times it here")
        scaled = "" if arch.model == reference.model else (
            f" x {reference.step_flops / 1e9:.3f} / {arch.step_flops / 1e9:.3f} GFLOP per guided step"
            f" ({reference.model} / {arch.model}) = {per_s:.1f}")
        print(f"rate: {rate:.4g} guided sample-steps/s ({why}){scaled}")
    else:
        per_s = None
        print(f"GFLOP and hours cannot be estimated without {arch.model}'s architecture")
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    print(f"{'chapter':<20} {'schedules':>9} {'guided sample-steps':>20} {'GFLOP':>12} {'hours':>7}  source")
    for r in rows:
        hours = None if per_s is None or r["sample_steps"] is None else r["sample_steps"] / per_s / 3600
        gflop = None if r["flops"] is None else r["flops"] / 1e9
        print(f"{r['chapter']:<20} {fmt(r['schedules'], 'd'):>9} {fmt(r['sample_steps'], ',d'):>20} "
              f"{fmt(gflop, ',.0f'):>12} {fmt(hours, '.2f'):>7}  {r['source']}")
    done = [r for r in rows if r["sample_steps"] is not None]
    total, n_est = sum(r["sample_steps"] for r in done), sum(r["estimated_from"] is not None for r in done)
    flops = None if any(r["flops"] is None for r in done) else sum(r["flops"] for r in done)
    hours = None if per_s is None else total / per_s / 3600
    what = f"{n_est} of {len(done)} chapters estimated" if n_est else "all counted"
    lacking = f"; {len(rows) - len(done)} not estimable, left out" if len(done) < len(rows) else ""
    print(f"{'total':<20} {'':>9} {total:>20,d} {fmt(None if flops is None else flops / 1e9, ',.0f'):>12} "
          f"{fmt(hours, '.2f'):>7}  {what}{lacking} (each chapter counts its own baseline)")
    est = [r for r in done if r["estimated_from"] is not None]
    part = [r for r in est if r.get("stored_steps")]  # the estimated chapters' runs the store already holds
    if est and (part or len(est) < len(done)):
        left = sum(r["sample_steps"] - r.get("stored_steps", 0) for r in est)
        hours = f" ({left / per_s / 3600:.2f} h)" if per_s else ""
        have = [f"{len(done) - len(est)} chapters counted"] if len(est) < len(done) else []
        if part:
            have.append(f"of those estimated, the baseline of {sum(r['stored_baseline'] for r in part)} (one trajectory "
                        f"where they share their samples) and {sum(r['stored_schedules'] for r in part)} of their "
                        f"{sum(r['schedules'] for r in part)} schedules")
        print(f"left to run for {arch.model}: {left:,d} guided sample-steps{hours}; already in the store: "
              f"{'; '.join(have)}")


def _entries(root: Path) -> int:
    return sum(1 for _ in root.glob("*/*.npz")) if root.exists() else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["regenerate", "steps", "build"])
    ap.add_argument("--only", nargs="+", default=None, choices=SAMPLING, help="regenerate, steps: these chapters")
    ap.add_argument("--params", default=None, help="parameters YAML over the notebooks' defaults (build: default book/params.yaml)")
    ap.add_argument("--model", default=None, help="every chapter's model (e.g. builtin:len12k, a member of the family)")
    ap.add_argument("--member-grids", action="store_true",
                    help="the coarser grids chapter 10 runs every member of the family at (its GRIDS)")
    ap.add_argument("--cache-dir", default=None, help="regenerate: the result store (default data/cache)")
    ap.add_argument("--device", default=None, help="regenerate: cpu (default) or cuda")
    ap.add_argument("--batch-size", type=int, default=16, help="regenerate: samples per Unet call (16 suits a 2-core CPU)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="regenerate: the sampler's precision (bf16 results are stored under keys of their own; "
                         "they move the readings of small interventions, see benchmarks/precision_check.py)")
    ap.add_argument("--executor", default="local", choices=["local", "ray"],
                    help="regenerate: compute in this process (local) or on Ray workers, one per GPU or CPU (ray)")
    ap.add_argument("--address", default=None,
                    help="regenerate --executor ray: the Ray cluster (e.g. auto, or ray://HOST:10001; default: a local Ray)")
    ap.add_argument("--rate", type=float, default=None,
                    help=f"steps: guided sample-steps per second of {REFERENCE} (default {RATE:g}, measured on the 2-core "
                         "CPU at batch 16); another model's rate is scaled by its FLOPs per guided step")
    ap.add_argument("--measure-rate", action="store_true",
                    help=f"steps: time {REFERENCE} on this machine first (a few seconds) and use its rate")
    ap.add_argument("--timings", action="store_true", help="regenerate: also take chapter 6's timings (on this machine)")
    ap.add_argument("--no-record", action="store_true", help="regenerate: do not store the table as a benchmark record")
    args = ap.parse_args(argv)
    if args.batch_size < 1:
        ap.error(f"--batch-size {args.batch_size} must be >= 1")
    if args.rate is not None and not args.rate > 0:
        ap.error(f"--rate {args.rate}: must be > 0")
    if args.measure_rate and (args.rate is not None or args.mode != "steps"):
        ap.error("--measure-rate: with steps only, and not with --rate")
    if args.address is not None and args.executor != "ray":
        ap.error(f"--address {args.address}: applies to --executor ray only")

    rows = []
    if args.mode == "steps":
        root = Path(args.cache_dir) if args.cache_dir else CACHE_DIR
        arch, reference = architecture(args.model or REFERENCE), architecture(REFERENCE)
        rows = [sample_steps(name, args.params, root, arch, reference, args.member_grids) for name in args.only or SAMPLING]
        rate, given = args.rate or RATE, args.rate is not None
        if args.measure_rate:
            rate = measure_rate()
            given = f"{REFERENCE} measured here just now: 16 samples, 20 steps, torch threads: {torch.get_num_threads()}"
        print_steps(rows, arch, reference, rate, given)
        return 0
    if args.mode == "build":
        t0 = time.perf_counter()
        make_book(args.params, log=lambda *_: None)
        rows.append({"chapter": "all (read the store, execute, build)", "seconds": time.perf_counter() - t0, "new entries": 0})
    else:
        root = Path(args.cache_dir) if args.cache_dir else CACHE_DIR
        runtime = {"device": args.device, "batch_size": args.batch_size, "progress": True, "cache_dir": str(root),
                   "precision": args.precision, "compute": True}
        if args.executor == "ray":  # each chapter's sweeps compute on the cluster; this process writes the store
            runtime.update({"executor": "ray", "address": args.address})
        if args.member_grids and "03_nb_sweep" in (args.only or SAMPLING):
            # chapter 3's block-usage maps first: minutes, where the member's schedules take hours, and chapter 10
            # shows a member's maps as soon as they are in the store
            print("03_nb_sweep: the block-usage maps first ...", flush=True)
            before, t0 = _entries(root), time.perf_counter()
            chapters.ch03_nb_sweep.usage(chapter_params("03_nb_sweep", args.params, args.model, True, **runtime))
            rows.append({"chapter": "03_nb_sweep (usage maps)", "seconds": time.perf_counter() - t0,
                         "new entries": _entries(root) - before})
            print(f"{'03 usage maps':<20} {rows[-1]['seconds']:8.1f} s  {rows[-1]['new entries']:5d} new entries",
                  flush=True)
        for name in args.only or SAMPLING:
            p = chapter_params(name, args.params, args.model, args.member_grids, **runtime)
            before, t0 = _entries(root), time.perf_counter()
            print(f"{name}: {p.n_samples} samples ...", flush=True)
            regenerate(p, args.timings)
            rows.append({"chapter": name, "seconds": time.perf_counter() - t0, "new entries": _entries(root) - before,
                         "n_samples": p.n_samples})
            print(f"{name:<20} {rows[-1]['seconds']:8.1f} s  {rows[-1]['new entries']:5d} new entries", flush=True)
    total = sum(r["seconds"] for r in rows)
    print(f"{'total':<20} {total:8.1f} s")

    if args.mode == "regenerate" and not args.no_record:
        dev = torch.device(args.device or "cpu")
        local = args.executor == "local"
        meta = {
            "device": (torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine())
            if local else "Ray workers",
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "batch_size": args.batch_size, "precision": args.precision, "params": args.params,
            "date": datetime.date.today().isoformat(),
            "tf32": False if dev.type == "cuda" else None,
        }
        which = {"only": args.only, "params": args.params, "device": dev.type}
        if not local:  # the workers' (host, device, threads), as the last chapter's pool had them
            from unetdyn.paper.executors import live_workers

            meta["workers"] = [list(w) for w in live_workers()]
            which.update({"executor": "ray", "address": args.address})
        if args.precision != "fp32":
            which["precision"] = args.precision
        key = benchmark_key("book_times", "regenerate", which)
        Cache(root).put_record(key, {"meta": meta, "rows": rows, "total_seconds": total}, {"what": "benchmark book_times"})
        print(f"stored the table under {key[:12]} in {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
