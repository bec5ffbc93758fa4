"""Why does DDIM lose class agreement on the built-in model? Class agreement and saturation against guidance.

Samples the book's first ``--samples`` samples with the ancestral sampler (K=100) and DDIM
(eta = 0, K=100 and K=50) at several guidance scales; prints, per run, the share of outputs
the quality classifier sees as the prompted class (95% bootstrap interval), the share of
saturated pixels, and DDIM K=50's SSIM to DDIM K=100. Stores the table in the result store,
where chapter 7's section "The DDIM question" reads it.

    python benchmarks/ddim_diagnosis.py [--samples 50] [--guidances 1,2,3,5]
"""

from __future__ import annotations

import argparse

import pandas as pd

from unetdyn.backends import load_unet
from unetdyn.builtin_model.classifier import class_judge
from unetdyn.paper.alternatives import benchmark_key, ddim_diagnosis
from unetdyn.paper.cache import Cache, model_id
from unetdyn.paper.sweeps import default_samples
from unetdyn.paths import CACHE_DIR


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--guidances", default="1,2,3,5")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    if args.samples < 2:
        ap.error(f"--samples={args.samples} must be >= 2")
    guidances = [float(g) for g in args.guidances.split(",")]
    unet = load_unet("builtin", device=args.device)
    prompts, seeds = default_samples(unet, "builtin", args.samples)
    table = ddim_diagnosis(unet, prompts, seeds, class_judge(prompts), guidances, batch_size=args.batch_size)
    cache = Cache(CACHE_DIR)
    key = benchmark_key("ddim", model_id(unet), {"samples": args.samples, "guidances": args.guidances})
    cache.put_record(key, {"rows": table.to_dict("records")})
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))
    print(f"stored in {cache.path(key)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
