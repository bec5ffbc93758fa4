"""Per-step cost of the truncated forward (drop blocks) against the full forward.

Prints a table and writes JSON: wall-clock per guided step (median of repeats after
warm-up) and FLOPs counted under torch's FLOP counter, for nb = 0, 2, 4, 6, 8, 10, 12.

    python benchmarks/drop_blocks.py [--model builtin|glide] [--random-weights] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from unetdyn.backends import load_unet
from unetdyn.cost import CallCost


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin")
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8, help="samples per step (guidance doubles the rows)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--nbs", default="0,2,4,6,8,10,12")
    ap.add_argument("--json", default="benchmarks/results/drop_blocks.json")
    args = ap.parse_args(argv)

    unet = load_unet(args.model, device=args.device, random_weights=args.random_weights)
    timer = CallCost(unet, batch=args.batch, repeats=args.repeats)
    results = []
    for nb in (int(s) for s in args.nbs.split(",")):
        sec = timer.seconds(0, nb, 2) * args.batch  # one guided step of the whole batch
        flops = timer.flops(0, nb, 2) * args.batch
        results.append({"nb": nb, "seconds_per_step": sec, "gflop_per_step": flops / 1e9})
    full = results[0]
    print(f"{args.model} Unet, {args.device}, {args.batch} samples x 2 (guidance) per step, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'nb':>3} {'ms/step':>9} {'speed-up':>9} {'time saved':>11} {'GFLOP':>9} {'FLOP saved':>11}")
    for r in results:
        r["time_saving"] = 1 - r["seconds_per_step"] / full["seconds_per_step"]
        r["flop_saving"] = 1 - r["gflop_per_step"] / full["gflop_per_step"]
        print(f"{r['nb']:>3} {1e3 * r['seconds_per_step']:>9.1f} {full['seconds_per_step'] / r['seconds_per_step']:>8.2f}x "
              f"{100 * r['time_saving']:>10.1f}% {r['gflop_per_step']:>9.2f} {100 * r['flop_saving']:>10.1f}%")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "device": args.device, "batch": args.batch, "results": results}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
