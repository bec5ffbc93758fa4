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
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tqdm import tqdm

from unetdyn.cost import forward_flops, timed
from unetdyn.paper.sweeps import default_samples, drop_blocks_family
from unetdyn.backends import load_unet
from unetdyn.paths import CACHE_DIR
from unetdyn.paper.alternatives import benchmark_key
from unetdyn.paper.cache import Cache, model_id
from unetdyn.interventions import preset
from unetdyn.sampler import SamplerConfig, Stats, sample, trajectory
from unetdyn.unet import Surgery, encoder_blocks_needed


def blocks_per_call(unet, nb: int) -> int:
    """Block evaluations of one call with the bottom ``nb`` decoder blocks removed."""
    return encoder_blocks_needed(unet, nb) + (nb == 0) + len(unet.skips_popped) - nb


def sweep_counts(unet, nbs, t_starts, n: int, samples: int, batch_size: int) -> dict:
    prompts, seeds = default_samples(unet, "builtin", samples)
    config = SamplerConfig()
    K = config.steps
    n_blocks, n_skips = len(unet.skips_popped), sum(unet.skips_pushed)
    scheds = [s for nb in nbs for s in drop_blocks_family(t_starts, n, nb)[0]]
    base = trajectory(unet, prompts, seeds, config, batch_size, progress=False)
    run = Stats()
    for i in range(0, len(scheds), 8):  # as Sweep.run does: 8 schedules per batched run
        run.add(sample(unet, prompts, seeds, scheds[i : i + 8], config, baseline=base, batch_size=batch_size,
                       progress=False).stats)
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
        sample(unet, prompts, seeds, preset("full"), config, batch_size=b, progress=False)  # warm-up
        times = [timed(unet, lambda: sample(unet, prompts, seeds, preset("full"), config, batch_size=b, progress=False))
                 for _ in range(repeats)]
        rate = b * steps / statistics.median(times)
        out.append({"batch": b, "sample_steps_per_s": rate, "gflop_per_s": rate * 2 * step_flops / 1e9})
    return out


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
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    unet = load_unet("builtin")

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
