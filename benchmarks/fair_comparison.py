"""Chapter 7's fair comparison: every method on many samples, both kinds of quality, and timings.

For each method of chapter 7 (`unetdyn.paper.alternatives.methods`) and each sample: SSIM/PSNR
to the full output and to its own family's full output, and, for the built-in model and its
family, whether the quality classifier sees the prompted class and the classifier's features
(for the Fréchet distance). Any other model (GLIDE with its checkpoint, a diffusers pipeline)
runs the same comparison without those two: no classifier knows its prompts. Samples are
computed in chunks of ``--chunk``; every (method, chunk) is stored in the result store as soon
as it is done, so an interrupted run continues where it stopped. Then every method is timed
(rounds of all methods, median per method), and the record is stored for chapter 7.

    python benchmarks/fair_comparison.py --samples 1000                # what chapter 7 shows
    python benchmarks/fair_comparison.py --samples 1000 --no-timing    # quality only
    python benchmarks/fair_comparison.py --timing-only                 # the timings only (on a quiet machine)
    python benchmarks/fair_comparison.py --samples 1000 --report       # the README's tables, from the stored samples
    python benchmarks/fair_comparison.py --samples 1000 --no-timing --executor ray --address auto   # chunks on a Ray cluster
    python benchmarks/fair_comparison.py --model glide --weights base.pt --samples 100 --device cuda   # GLIDE: faithfulness only
"""

from __future__ import annotations

import argparse
import datetime
import platform

import numpy as np
import pandas as pd
import torch

from unetdyn.backends import load_unet
from unetdyn.cost import CallCost
from unetdyn.paper.alternatives import benchmark_key, methods
from unetdyn.paper.cache import Cache, model_id
from unetdyn.paper.executors import make_executor
from unetdyn.paper.fair import classifier_for, outcomes, strata_of, time_methods, timing_params
from unetdyn.paper.fair_readings import equal_cost, summarize_stored
from unetdyn.paper.sweeps import default_samples
from unetdyn.paths import CACHE_DIR

README_METHODS = ("full", "paper shortcut", "shortcut: blocks only", "shortcut: early stop only", "ancestral K=70",
                  "ancestral K=80", "DDIM K=70", "DDIM K=100", "DeepCache nb=12 k=2", "dual depth nb=4 switch=90",
                  "guidance truncated last 40")


def report(samples: int, chunk: int, cache_dir=None, store: bool = True) -> str:
    """The README's chapter-7 tables in Markdown for the built-in model, read from the store (chapter 7's own
    readings); ``store``: store chapter 7's bootstrap summary where the store lacks it."""
    from unetdyn.paper.chapters import ch07_alternatives
    from unetdyn.paper.fair_readings import ADVANTAGE_FORMAT, AXIS_NAMES, in_short

    r = ch07_alternatives.run(ch07_alternatives.Params(samples=samples, chunk=chunk, cache_dir=cache_dir,
                                                       store_summary=store))
    t = r.table.set_index("method")
    out = [f"{samples} samples per method; the Fréchet distance between two real sets: {r.fair.frechet_real:.2f}.", "",
           "| method | FLOPs | wall-clock (range over rounds) | SSIM to full [95%] | SSIM to own family's full "
           "| class agreement [95%] | Fréchet distance [95%] |", "|---|---|---|---|---|---|---|"]
    for m in README_METHODS:
        s = t.loc[m]
        own = f"{s.ssim_own:.3f}" if s.family == "DDIM" else "="
        out.append(f"| {m} | {s.flop_speedup:.2f}x | {s.speedup:.2f}x ({s.speedup_low:.2f}-{s.speedup_high:.2f}) "
                   f"| {s.ssim:.3f} [{s.ssim_lo:.3f}, {s.ssim_hi:.3f}] | {own} "
                   f"| {s.agreement:.1%} [{s.agreement_lo:.1%}, {s.agreement_hi:.1%}] "
                   f"| {s.frechet:.2f} [{s.frechet_lo:.2f}, {s.frechet_hi:.2f}] |")
    for axis in ("speedup", "flop_speedup"):
        e = r.equal_cost[axis]
        out += ["", f"At the shortcut's {AXIS_NAMES[axis]} speed-up ({e['at'].iloc[0]:.2f}x), each family's advantage "
                "over it [95%]:", "", "| family | SSIM to full | class agreement | Fréchet distance |", "|---|---|---|---|"]
        for fam, d in e.groupby("family", sort=False):
            cells = [f"{q.advantage:{ADVANTAGE_FORMAT[q.quality]}} [{q.adv_lo:{ADVANTAGE_FORMAT[q.quality]}}, "
                     f"{q.adv_hi:{ADVANTAGE_FORMAT[q.quality]}}]: {q.verdict}" if q.reached
                     else f"outside its range ({q.slowest:.2f}x..{q.fastest:.2f}x)" for q in d.itertuples()]
            out.append(f"| {fam} | " + " | ".join(cells) + " |")
        out += ["", f"In short: {in_short(e)}"]
    return "\n".join(out + ["", r.ddim_fair])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin",
                    help="builtin (default), builtin:NAME (a member of its family), glide, or diffusers:REPO")
    ap.add_argument("--weights", default=None, help="the model's weights (default: its own; GLIDE: the checkpoint)")
    ap.add_argument("--device", default=None, help="cpu (default) or cuda")
    ap.add_argument("--samples", type=int, default=1000, help="samples per method (default 1000: 100 per class)")
    ap.add_argument("--chunk", type=int, default=100, help="samples per stored entry (default 100)")
    ap.add_argument("--timing-samples", type=int, default=8, help="samples per timed run (default 8)")
    ap.add_argument("--repeats", type=int, default=3, help="timing rounds after one warm-up (default 3)")
    ap.add_argument("--no-timing", action="store_true", help="compute the qualities only")
    ap.add_argument("--timing-only", action="store_true", help="measure and store the timings only")
    ap.add_argument("--report", action="store_true", help="print the README's tables from the store; samples are only read (a missing bootstrap summary is computed and stored)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--cache-dir", default=None, help="the result store (default data/cache)")
    ap.add_argument("--executor", default="local", choices=["local", "ray"],
                    help="compute the qualities in this process (local) or on Ray workers, a chunk of samples each (ray); "
                         "the timings are always taken here")
    ap.add_argument("--address", default=None,
                    help="--executor ray: the Ray cluster (e.g. auto, or ray://HOST:10001; default: a local Ray)")
    args = ap.parse_args(argv)
    for name in ("samples", "chunk", "timing_samples", "repeats", "batch_size"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be >= 1")
    if args.address is not None and args.executor != "ray":
        ap.error(f"--address {args.address}: applies to --executor ray only")
    if args.no_timing and args.timing_only:
        ap.error("--no-timing and --timing-only exclude each other")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.report:
        if args.model != "builtin":
            ap.error(f"--report prints the README's tables of the built-in model, not --model {args.model}")
        print(report(args.samples, args.chunk, args.cache_dir))
        return 0

    unet = load_unet(args.model, args.weights, args.device, fp16=False)  # keyed by the float32 weights chapter 7 loads
    ms = methods()
    cache = Cache(args.cache_dir or CACHE_DIR)
    prompts, seeds = default_samples(unet, args.model, args.samples)
    costs = CallCost(unet, prompts[0])
    flops = {m.name: costs.flops_per_sample(m.schedule, m.config) for m in ms}
    if args.no_timing:
        secs = {k: [v] for k, v in flops.items()}  # a stand-in so the table prints; the wall-clock columns repeat the FLOPs
    else:
        key = benchmark_key("fair", model_id(unet),
                            timing_params(args.timing_samples, args.repeats, args.batch_size, args.device))
        t = time_methods(unet, ms, prompts[: args.timing_samples], seeds[: args.timing_samples], args.repeats,
                         args.batch_size)
        dev = torch.device(args.device or "cpu")
        meta = {"host": platform.node(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                "cpu": platform.processor() or platform.machine(), "date": datetime.date.today().isoformat(),
                "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}
        cache.put_record(key, {"meta": meta, "methods": [m.name for m in ms], "seconds": t.tolist()})
        secs = {m.name: row for m, row in zip(ms, t)}
        print(f"timings stored in {cache.path(key)}")
        if args.timing_only:
            print(pd.DataFrame({"method": list(secs), "sec_per_sample": [np.median(v) for v in secs.values()],
                                "speedup (median over rounds)": [np.median(secs["full"] / v) for v in secs.values()]})
                  .to_string(index=False))
            return 0
    clf = classifier_for(args.model, args.samples)
    executor = make_executor(args.executor, unet, model=args.model, weights=args.weights, device=args.device,
                             address=args.address)
    outs = outcomes(unet, ms, prompts, seeds, cache, clf, chunk=args.chunk, batch_size=args.batch_size,
                    executor=executor, model=args.model, weights=args.weights)
    fair = summarize_stored(cache, outs, ms, flops, secs, clf, strata=strata_of(unet, prompts), store=True)
    cols = [c for c in ["method", "flop_speedup", "speedup", "ssim", "ssim_lo", "ssim_hi", "ssim_own", "agreement",
                        "agreement_lo", "agreement_hi", "frechet", "frechet_lo", "frechet_hi"] if c in fair.table]
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print(f"{fair.samples} samples per method" + (f"; Fréchet distance between two real sets: {fair.frechet_real:.3f}"
                                                      if fair.classified else "; no quality classifier: faithfulness only"))
        print(fair.table[cols].to_string(index=False))
        for axis in ("flop_speedup",) + (() if args.no_timing else ("speedup",)):
            print(equal_cost(fair, axis)[["family", "quality", "value", "lo", "hi", "advantage", "adv_lo", "adv_hi",
                                          "verdict"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
