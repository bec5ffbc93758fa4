"""Is the paper's shortcut worth it? Every speed-up method measured side by side.

Prints a table and stores it in the result store (``data/cache``), keyed by the model and
these parameters (rewritten after each method, so an interrupted run keeps what it finished):

- a model with weights: SSIM/PSNR of each method to the full 100-step output over
  ``--samples`` samples, FLOPs executed, and wall-clock per sample (median of ``--repeats``
  runs of ``--timing-samples`` samples after a warm-up). Chapter 7 shows this table for a
  model without the built-in model's quality classifier (GLIDE with its checkpoint); for the
  built-in model it shows the fair comparison of ``benchmarks/fair_comparison.py``;
- ``--model glide --random-weights``: GLIDE's FLOPs (text encoded once, and every step)
  and seconds per sample summed from timed per-call forwards (no quality: random weights).

    python benchmarks/alternatives.py --model glide --weights base.pt --samples 100 --repeats 3
    python benchmarks/alternatives.py --model glide --random-weights --repeats 2   # chapter 7's GLIDE costs
"""

from __future__ import annotations

import argparse
import datetime
import platform

import pandas as pd
import torch

from unetdyn.paper.alternatives import benchmark_key, glide_costs, measure, methods
from unetdyn.paper.cache import Cache
from unetdyn.paper.sweeps import default_samples, model_id
from unetdyn.paths import is_builtin
from unetdyn.backends import load_unet
from unetdyn.paths import CACHE_DIR

COLUMNS = ["method", "unet_calls", "flop_saving", "sec_per_sample", "speedup", "ssim_mean", "ssim_sd", "ssim_p5",
           "psnr_mean", "psnr_p5"]


def params_of(args) -> dict:
    """The parameters that identify a run's results in the store (chapter 7 asks by the same)."""
    if args.random_weights:
        return {"random_weights": True, "repeats": args.repeats, "quick": args.quick}
    return {"samples": args.samples, "timing_samples": args.timing_samples, "repeats": args.repeats,
            "batch_size": args.batch_size, "quick": args.quick}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin", choices=["builtin", "glide"])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--random-weights", action="store_true", help="glide: cost only, no checkpoint needed")
    ap.add_argument("--device", default=None)
    ap.add_argument("--samples", type=int, default=32, help="samples for SSIM/PSNR (default 32)")
    ap.add_argument("--timing-samples", type=int, default=8, help="samples per timed run (default 8)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per method after one warm-up (default 3)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="a few methods on few samples (a smoke run)")
    ap.add_argument("--cache-dir", default=None, help="the result store (default data/cache)")
    args = ap.parse_args(argv)
    for name in ("samples", "timing_samples", "batch_size"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be >= 1")
    if args.repeats < 0:
        ap.error(f"--repeats={args.repeats} must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)

    unet = load_unet(args.model, args.weights, args.device, random_weights=args.random_weights)
    ms = methods()
    if args.quick:
        keep = {"full", "paper shortcut", "ancestral K=80", "DDIM K=80", "dual depth nb=8 switch=90",
                "DeepCache nb=12 k=3", "guidance truncated last 20"}
        ms = [m for m in ms if m.name in keep]
    cache = Cache(args.cache_dir or CACHE_DIR)
    # cost does not depend on the weights: random-weight results are keyed by the architecture
    key = benchmark_key("alternatives", f"{args.model}-architecture" if args.random_weights else model_id(unet), params_of(args))
    meta = {
        "model": args.model,
        "model_id": model_id(unet),
        "random_weights": args.random_weights,
        "device": str(unet.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "date": datetime.date.today().isoformat(),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
    }
    rows: list[dict] = []

    def keep_row(row: dict) -> None:
        rows.append(row)
        cache.put_record(key, {"meta": meta, "rows": rows})

    if args.model == "glide" and args.random_weights:
        meta.update(kind="cost", timing_batch=1)
        table = glide_costs(unet, ms, repeats=args.repeats)
        cache.put_record(key, {"meta": meta, "rows": table.to_dict("records")})
        table["TFLOP"], table["TFLOP text every step"] = table.flops / 1e12, table.flops_text_every_step / 1e12
        cols = ["method", "unet_calls", "TFLOP", "TFLOP text every step", "flop_saving", "sec_per_sample", "speedup"]
    else:
        prompts, seeds = default_samples(unet, args.model, args.samples)
        meta.update(kind="measured", samples=args.samples, timing_samples=args.timing_samples)
        judge = None
        if is_builtin(args.model):
            from unetdyn.builtin_model.quality import class_judge

            judge = class_judge(prompts)
        table = measure(unet, ms, prompts, seeds, args.timing_samples, args.repeats, args.batch_size, on_row=keep_row,
                        judge=judge)
        cols = COLUMNS + (["agreement"] if judge else [])
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(f"{args.model}, {meta['device']}, {meta['threads']} threads, torch {meta['torch']}")
        print(table[cols].to_string(index=False))
    print(f"stored in {cache.path(key)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
