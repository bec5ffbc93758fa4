"""FLOPs the paper's interventions save on other Unets' architectures (random weights, counted on the meta device).

For each architecture (the built-in model, GLIDE's base model where glide-text2im is installed,
Stable Diffusion 1.5's Unet and DDPM's 32x32 Unet) prints the FLOPs saved per guided call by
removing the bottom nb decoder blocks, and the paper's shortcut's saving per sample, and
stores one record per architecture in the result store, where the book's appendix "On other
Unets" reads them.

    python benchmarks/other_unets.py [--archs builtin,glide,sd15,ddpm32]
"""

from __future__ import annotations

import argparse

from unetdyn.paper.alternatives import benchmark_key
from unetdyn.paper.architectures import ARCHITECTURES, architecture_costs
from unetdyn.paper.cache import Cache
from unetdyn.paths import CACHE_DIR


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default=",".join(ARCHITECTURES), help="comma-separated architectures")
    ap.add_argument("--schedule", default="paper-shortcut")
    args = ap.parse_args()
    cache = Cache(CACHE_DIR)
    for name in args.archs.split(","):
        try:
            rec = architecture_costs(name, args.schedule)
        except ImportError as exc:
            print(f"{name}: skipped ({str(exc).splitlines()[0]})")
            continue
        cache.put_record(benchmark_key("other_unets", name, {"schedule": args.schedule}), rec, {"what": "benchmark other_unets"})
        sc = rec["shortcut"]
        print(f"\n{name}: {rec['what']}; {rec['decoder_blocks']} decoder blocks; {rec['rows_per_call']} rows per call")
        print("  nb     " + " ".join(f"{r['nb']:>5d}" for r in rec["per_nb"]))
        print("  saved  " + " ".join(f"{100 * r['saved']:>4.1f}%" for r in rec["per_nb"]))
        print(f"  {args.schedule}: {100 * sc['saving']:.1f}% of {sc['full_flops_per_sample'] / 1e12:.2f} TFLOP per sample "
              f"({sc['unet_calls']} Unet calls, {sc['truncated_calls']} truncated; decode {sc['decode_flops_per_sample'] / 1e9:.0f} GFLOP)")


if __name__ == "__main__":
    main()
