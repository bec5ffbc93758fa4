"""Chapter 9, ``09_other_unets`` (appendix, "On other Unets"): FLOP savings on other
architectures, read from ``benchmarks/other_unets.py``'s records."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from unetdyn.paper.alternatives import load_benchmark
from unetdyn.paper.cache import Cache, CacheMiss
from unetdyn.paper.chapters.common import param
from unetdyn.paths import CACHE_DIR

__all__ = ["Params", "OtherUnets", "run"]


@dataclass(frozen=True)
class Params:
    """Chapter 9's parameters."""

    archs: tuple[str, ...] = param(("builtin", "glide", "sd15", "ddpm32"), "benchmarks/other_unets.py --archs")
    schedule: str = param("paper-shortcut", "the schedule whose saving is counted")
    cache_dir: str | None = param(None, "None: data/cache, the committed result store")


@dataclass(frozen=True)
class OtherUnets:
    """Appendix: FLOP savings on other architectures, read from the benchmark's records.

    Attributes:
        per_nb: one row per (architecture, nb): ``arch, nb, share, saved`` (``share``: nb as a
            fraction of the architecture's decoder blocks).
        shortcut: one row per architecture: its blocks, calls and the schedule's saving per sample.
        missing: architectures with no record, and the command that makes one.
    """

    per_nb: pd.DataFrame
    shortcut: pd.DataFrame
    missing: tuple[str, ...]


def run(p: Params = Params()) -> OtherUnets:
    """The records of ``p.archs``; an architecture with none is listed in ``missing``."""
    cache = Cache(p.cache_dir or CACHE_DIR, read_only=True)
    per_nb, short, missing = [], [], []
    for name in p.archs:
        try:
            rec = load_benchmark(cache, "other_unets", name, {"schedule": p.schedule})
        except CacheMiss as exc:
            missing.append(f"{name}: {exc}")
            continue
        n = rec["decoder_blocks"]
        per_nb += [{"arch": name, "nb": r["nb"], "share": r["nb"] / n, "saved": r["saved"]} for r in rec["per_nb"]]
        sc = rec["shortcut"]
        short.append({
            "architecture": rec["what"],
            "decoder blocks": n,
            "rows per call": rec["rows_per_call"],
            "TFLOP per sample (full)": sc["full_flops_per_sample"] / 1e12,
            "Unet calls": sc["unet_calls"],
            "truncated": sc["truncated_calls"],
            "VAE decode share": sc["decode_flops_per_sample"] / sc["full_flops_per_sample"],
            f"{p.schedule} saves": sc["saving"],
        })
    return OtherUnets(per_nb=pd.DataFrame(per_nb), shortcut=pd.DataFrame(short), missing=tuple(missing))
