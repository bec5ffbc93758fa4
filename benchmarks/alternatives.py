"""GLIDE's cost of every speed-up method of chapter 7: FLOPs, and seconds per sample.

Cost does not depend on the weights, so GLIDE's architecture with random weights gives it,
without the checkpoint: FLOPs (the text encoded once, and every step as GLIDE's notebook
does) and seconds per sample summed from timed per-call forwards. Prints a table and stores
it in the result store (``data/cache``), keyed by the architecture and these parameters, for
chapter 7. Quality needs the checkpoint: ``benchmarks/fair_comparison.py --model glide
--weights base.pt`` runs the fair comparison on it (faithfulness only: no quality classifier
knows GLIDE's prompts).

    python benchmarks/alternatives.py --random-weights --repeats 2   # chapter 7's GLIDE costs
"""

from __future__ import annotations

import argparse
import datetime
import platform

import pandas as pd
import torch

from unetdyn.backends import load_unet
from unetdyn.paper.alternatives import benchmark_key, glide_costs, methods
from unetdyn.paper.cache import Cache, model_id
from unetdyn.paths import CACHE_DIR


def params_of(args) -> dict:
    """The parameters that identify a run's results in the store (chapter 7 asks by the same)."""
    return {"random_weights": True, "repeats": args.repeats, "quick": args.quick}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--random-weights", action="store_true", required=True,
                    help="GLIDE's architecture with random weights (required: this benchmark measures cost only)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per distinct forward (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="a few methods (a smoke run)")
    ap.add_argument("--cache-dir", default=None, help="the result store (default data/cache)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats={args.repeats} must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    unet = load_unet("glide", None, args.device, random_weights=True)
    ms = methods()
    if args.quick:
        keep = {"full", "paper shortcut", "ancestral K=80", "DDIM K=80", "dual depth nb=8 switch=90",
                "DeepCache nb=12 k=3", "guidance truncated last 20"}
        ms = [m for m in ms if m.name in keep]
    cache = Cache(args.cache_dir or CACHE_DIR)
    # cost does not depend on the weights: the record is keyed by the architecture
    key = benchmark_key("alternatives", "glide-architecture", params_of(args))
    meta = {"model": "glide", "model_id": model_id(unet), "random_weights": True, "device": str(unet.device),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "date": datetime.date.today().isoformat(),
            "repeats": args.repeats, "kind": "cost", "timing_batch": 1}
    table = glide_costs(unet, ms, repeats=args.repeats)
    cache.put_record(key, {"meta": meta, "rows": table.to_dict("records")})
    table["TFLOP"], table["TFLOP text every step"] = table.flops / 1e12, table.flops_text_every_step / 1e12
    cols = ["method", "unet_calls", "TFLOP", "TFLOP text every step", "flop_saving", "sec_per_sample", "speedup"]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(f"glide (random weights), {meta['device']}, {meta['threads']} threads, torch {meta['torch']}")
        print(table[cols].to_string(index=False))
    print(f"stored in {cache.path(key)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
