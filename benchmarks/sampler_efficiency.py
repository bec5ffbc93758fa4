"""How efficient is the sampler itself?

Prints tables and stores them in the result store (``data/cache``), keyed by the model and
these parameters:

1. For the book's Fig. 8 sweep (nb = 2..12, n = 5, t_start on the 03_nb_sweep grid): the Unet
   block evaluations the sampler actually runs (counted by the sampler while it runs the
   sweep on a few samples, resumed from the baseline and batched) against a naive run of
   every configuration from scratch, per sample.
2. Throughput (guided sample-steps per second) of the full sampler against batch size, and
   the FLOP rate it reaches as a fraction of this CPU's measured float32 matrix-product peak.

    python benchmarks/sampler_efficiency.py [--threads 2] [--batches 1,4,8,16,24,32,64,128,256]

``--compare`` instead measures the sampler before and after its speed-ups, in one run:

    python benchmarks/sampler_efficiency.py --compare [--threads 2] [--batches 16,64] [--repeats 3]

The "before" path is the sampler and built-in model source of ``--before`` (a git revision,
default the last one without the speed-ups), loaded from git beside the current ones and given
the same weights. Workloads: Fig. 8-like (a 16-sample baseline trajectory, then six
drop-blocks schedules, nb = 2..12 for 5 steps from 60% of K, resumed from it; K = ``--k``,
20 by default: the batch shapes, and so the rate, do not depend on K), and 16 or 1008 samples
of the full schedule (16 or 1008 jobs). Each round runs every (workload, path, precision,
batch) once, interleaved, so a shared machine's drift hits all alike; the table gives medians
of guided sample-steps per second and their share of the float32 ceiling: the matmul peak
(measured in the same run) divided by the FLOPs of one guided full sample-step. It also checks
that the fp32 outputs of both paths are the same bits.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch
from tqdm import tqdm

from unetdyn.backends import load_unet
from unetdyn.cost import forward_flops, timed
from unetdyn.interventions import preset
from unetdyn.paper.alternatives import benchmark_key
from unetdyn.paper.cache import Cache, model_id
from unetdyn.paper.families import drop_blocks_family
from unetdyn.paper.sweeps import default_samples
from unetdyn.paths import CACHE_DIR
from unetdyn.sampler import RunOptions, SamplerConfig, Stats, sample, trajectory
from unetdyn.unet import Surgery, encoder_blocks_needed

BEFORE = "1e0ccc32382393c6ff1ad74ca801e22347fac306"  # the sampler and model without the speed-ups


def blocks_per_call(unet, nb: int) -> int:
    """Block evaluations of one call with the bottom ``nb`` decoder blocks removed."""
    return encoder_blocks_needed(unet, nb) + (nb == 0) + len(unet.skips_popped) - nb


def sweep_counts(unet, nbs, t_starts, n: int, samples: int, batch_size: int) -> dict:
    prompts, seeds = default_samples(unet, "builtin", samples)
    config = SamplerConfig()
    K = config.steps
    n_blocks, n_skips = len(unet.skips_popped), sum(unet.skips_pushed)
    scheds = [s for nb in nbs for s in drop_blocks_family(t_starts, n, nb)[0]]
    base = trajectory(unet, prompts, seeds, run=RunOptions(config, batch_size=batch_size, progress=False))
    run = Stats()
    for i in range(0, len(scheds), 8):  # as Sweep.run does: 8 schedules per batched run
        run.add(sample(unet, prompts, seeds, scheds[i : i + 8],
                       RunOptions(config, baseline=base, batch_size=batch_size, progress=False)).stats)
    full_call = blocks_per_call(unet, 0)
    actual = K * full_call + (run.encoder_blocks + run.middle_blocks + run.decoder_blocks) / samples
    naive = K * full_call + sum(
        blocks_per_call(unet, st.drop_blocks) for s in scheds for st in s.compile(K, n_blocks, n_skips)
    )
    return {
        "configurations": len(scheds),
        "samples_run": samples,
        "block_evals_per_sample_actual": actual,
        "block_evals_per_sample_naive": naive,
        "ratio": naive / actual,
        "unet_calls_per_sample_actual": K + run.unet_calls / samples,
        "unet_calls_per_sample_naive": K + sum(len(s.compile(K, n_blocks, n_skips)) for s in scheds),
    }


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """Median float32 GFLOP/s of a ``size`` square matrix product on this machine."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(times) / 1e9


def throughput(unet, batches, steps: int, repeats: int) -> list[dict]:
    config = SamplerConfig(steps=steps)  # respaced: `steps` guided calls per sample
    step_flops = forward_flops(unet, Surgery(), 2) / 2
    out = []
    for b in tqdm(batches, desc="batch sizes"):
        prompts, seeds = default_samples(unet, "builtin", b)
        sample(unet, prompts, seeds, preset("full"), RunOptions(config, batch_size=b, progress=False))  # warm-up
        times = [timed(unet, lambda p=prompts, s=seeds, b=b: sample(unet, p, s, preset("full"),
                                                                  RunOptions(config, batch_size=b, progress=False)))
                 for _ in range(repeats)]
        rate = b * steps / statistics.median(times)
        out.append({"batch": b, "sample_steps_per_s": rate, "gflop_per_s": rate * 2 * step_flops / 1e9})
    return out


def _module_from_git(rev: str, path: str, name: str) -> types.ModuleType:
    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "-C", str(root), "show", f"{rev}:{path}"], check=True, capture_output=True,
                         text=True).stdout
    mod = types.ModuleType(name)
    mod.__file__ = f"{rev[:8]}:{path}"
    sys.modules[name] = mod  # dataclasses look their module up there
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod


def before_path(unet, rev: str):
    """(sample, trajectory, unet) as of revision ``rev``: its sampler, its model class with ``unet``'s weights."""
    old_sampler = _module_from_git(rev, "unetdyn/sampler.py", "sampler_before")
    old_builtin = _module_from_git(rev, "unetdyn/backends/builtin.py", "builtin_before")
    old = old_builtin.BuiltinUnet(unet.config)
    old.load_state_dict(unet.state_dict())
    old.weights_sha256 = unet.weights_sha256
    return old_sampler.sample, old_sampler.trajectory, old.eval()


def fig8_like(sample_fn, trajectory_fn, unet, k: int, batch: int, **kw):
    """The Fig. 8-like workload; returns (guided sample-steps run, the schedules' images)."""
    prompts, seeds = default_samples(unet, "builtin", 16)
    config = SamplerConfig(steps=k)
    t_start = max(5, round(0.6 * k))
    scheds = [drop_blocks_family([t_start], 5, nb)[0][0] for nb in (2, 4, 6, 8, 10, 12)]
    base = trajectory_fn(unet, prompts, seeds, config, batch, False, **kw)
    res = sample_fn(unet, prompts, seeds, scheds, config, baseline=base, batch_size=batch, progress=False, **kw)
    return len(seeds) * k + res.stats.unet_calls, res.images


def full_jobs(sample_fn, trajectory_fn, unet, n: int, k: int, batch: int, **kw):
    """``n`` samples of the full schedule: ``n`` jobs."""
    prompts, seeds = default_samples(unet, "builtin", n)
    res = sample_fn(unet, prompts, seeds, "full", SamplerConfig(steps=k), batch_size=batch, progress=False, **kw)
    return res.stats.unet_calls, res.images


def compare(unet, args) -> dict:
    old_sample, old_trajectory, old_unet = before_path(unet, args.before)
    paths = {"before": (old_sample, old_trajectory, old_unet, {}),
             "fp32": (sample, trajectory, unet, {}),
             "bf16": (sample, trajectory, unet, {"precision": "bf16"})}
    batches = [int(b) for b in args.batches.split(",")]
    cases = [("fig8", p, b) for b in batches for p in paths]
    cases += [(f"jobs{n}", p, batches[0]) for n in (16, 1008) for p in paths]
    steps = {"fig8": args.k, "jobs16": 10, "jobs1008": 1}

    def run(case):
        work, path, batch = case
        fn_s, fn_t, net, kw = paths[path]
        if work == "fig8":
            return fig8_like(fn_s, fn_t, net, args.k, batch, **kw)
        return full_jobs(fn_s, fn_t, net, int(work[4:]), steps[work], batch, **kw)

    outputs = {c: run(c)[1] for c in cases}  # warm-up, and the outputs to compare
    same = all(torch.equal(outputs[(w, "before", b)], outputs[(w, "fp32", b)]) for w, p, b in cases if p == "fp32")
    times: dict[tuple, list] = {c: [] for c in cases}
    peaks = []
    for _ in tqdm(range(args.repeats), desc="rounds"):
        peaks.append(matmul_peak())
        for c in cases:
            t0 = time.perf_counter()
            n, _ = run(c)
            times[c].append((n, time.perf_counter() - t0))
    peak = statistics.median(peaks)
    ceiling = peak * 1e9 / forward_flops(unet, Surgery(), 2)
    rows = []
    for (work, path, batch), ts in times.items():
        rate = statistics.median(n / dt for n, dt in ts)
        rows.append({"workload": work, "path": path, "batch": batch, "sample_steps_per_s": rate,
                     "of_ceiling": rate / ceiling})
    return {"peak_gflop_per_s": peak, "ceiling_sample_steps_per_s": ceiling, "fp32_bits_identical": same,
            "k": args.k, "rows": rows}


def print_compare(rec: dict) -> None:
    print(f"float32 matmul peak {rec['peak_gflop_per_s']:.0f} GFLOP/s ({torch.get_num_threads()} threads): ceiling "
          f"{rec['ceiling_sample_steps_per_s']:.0f} guided sample-steps/s; fp32 outputs of before and after "
          f"{'identical' if rec['fp32_bits_identical'] else 'DIFFER'}")
    names = {"fig8": f"Fig. 8-like (K={rec['k']})", "jobs16": "16 jobs (full, K=10)",
             "jobs1008": "1008 jobs (full, K=1)"}
    rows = rec["rows"]
    print(f"{'workload':<24} {'batch':>5} {'before':>15} {'after, fp32':>15} {'after, bf16':>15} {'bf16/before':>11}")
    for work in dict.fromkeys(r["workload"] for r in rows):
        for batch in dict.fromkeys(r["batch"] for r in rows if r["workload"] == work):
            by = {r["path"]: r for r in rows if r["workload"] == work and r["batch"] == batch}
            cells = [f"{by[p]['sample_steps_per_s']:6.1f} ({100 * by[p]['of_ceiling']:3.0f}%)"
                     for p in ("before", "fp32", "bf16")]
            ratio = by["bf16"]["sample_steps_per_s"] / by["before"]["sample_steps_per_s"]
            print(f"{names[work]:<24} {batch:>5} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15} {ratio:>10.2f}x")
    print("guided sample-steps/s (median), in brackets the share of the fp32 ceiling")


def params_of(args) -> dict:
    """The parameters that identify a run's results in the store (chapter 7 asks by the same)."""
    return {"batches": args.batches, "steps": args.steps, "repeats": args.repeats, "sweep_samples": args.sweep_samples,
            "t_stride": args.t_stride}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batches", default="1,4,8,16,24,32,64,128,256")
    ap.add_argument("--steps", type=int, default=10, help="sampling steps per timed run (default 10)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sweep-samples", type=int, default=2, help="samples the Fig. 8 sweep is run on (default 2)")
    ap.add_argument("--t-stride", type=int, default=10, help="t_start grid of the Fig. 8 sweep (default 10)")
    ap.add_argument("--cache-dir", default=None, help="the result store (default data/cache)")
    ap.add_argument("--compare", action="store_true", help="measure before/after the speed-ups (see above)")
    ap.add_argument("--before", default=BEFORE, help="--compare: the git revision of the 'before' path")
    ap.add_argument("--k", type=int, default=20, help="--compare: sampling steps K of the Fig. 8-like workload")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    unet = load_unet("builtin")
    if args.compare:
        if args.batches == ap.get_default("batches"):
            args.batches = "16,64"
        rec = compare(unet, args)
        print_compare(rec)
        cache = Cache(args.cache_dir or CACHE_DIR)
        params = {"compare": True, "before": args.before, "batches": args.batches, "k": args.k, "repeats": args.repeats,
                  "threads": torch.get_num_threads()}
        key = benchmark_key("efficiency", model_id(unet), params)
        cache.put_record(key, {"threads": torch.get_num_threads(), "torch": torch.__version__, **rec})
        print(f"stored in {cache.path(key)}")
        return 0

    grid = list(range(100, 4, -args.t_stride))  # 03_nb_sweep's grid: range(steps, n - 1, -t_stride)
    counts = sweep_counts(unet, [2, 4, 6, 8, 10, 12], grid, 5, args.sweep_samples, batch_size=16)
    print(f"Fig. 8 sweep: {counts['configurations']} configurations (nb 2..12, n=5, t_start {grid[0]}..{grid[-1]})")
    print(f"  block evaluations per sample: {counts['block_evals_per_sample_actual']:.0f} run, "
          f"{counts['block_evals_per_sample_naive']:.0f} naive ({counts['ratio']:.1f}x fewer)")
    print(f"  Unet calls per sample: {counts['unet_calls_per_sample_actual']:.0f} run, "
          f"{counts['unet_calls_per_sample_naive']:.0f} naive")

    peak = matmul_peak()
    rows = throughput(unet, [int(b) for b in args.batches.split(",")], args.steps, args.repeats)
    print(f"\nfloat32 matmul peak (2048^2, {torch.get_num_threads()} threads): {peak:.1f} GFLOP/s")
    print(f"{'batch':>6} {'sample-steps/s':>15} {'GFLOP/s':>9} {'of peak':>8}")
    for r in rows:
        r["fraction_of_peak"] = r["gflop_per_s"] / peak
        print(f"{r['batch']:>6} {r['sample_steps_per_s']:>15.1f} {r['gflop_per_s']:>9.1f} {100 * r['fraction_of_peak']:>7.1f}%")

    cache = Cache(args.cache_dir or CACHE_DIR)
    key = benchmark_key("efficiency", model_id(unet), params_of(args))
    cache.put_record(key, {"threads": torch.get_num_threads(), "torch": torch.__version__, "sweep": counts,
                           "matmul_gflop_per_s": peak, "throughput": rows})
    print(f"stored in {cache.path(key)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
