"""Do a chapter's readings survive the bf16 sampler? fp32 and bf16 results of one chapter, side by side.

    python benchmarks/book_times.py regenerate --only 02_skip_vs_deconv --precision bf16 --cache-dir /tmp/bf16
    python benchmarks/precision_check.py --bf16-cache-dir /tmp/bf16 [--only 02_skip_vs_deconv]

Reads the chapter twice from stores, computing nothing: the fp32 results from ``--cache-dir``
(default the committed ``data/cache``) and the bf16 results from ``--bf16-cache-dir`` (bf16
results have keys of their own, so both may live in one store). Prints, for every reading the
chapter makes, the fp32 value with its 95% bootstrap interval, the bf16 value and whether it
lies inside that interval; then every finding's verdict both ways; then, per curve, how many
of its points' bf16 mean lie inside the fp32 mean's 95% interval at that point.

bf16 changes each sample's picture (the ancestral sampler amplifies rounding, so the bf16 and
fp32 outputs of one seed are different draws); what this checks is that the *readings*, which
average SSIM/PSNR to a baseline computed the same way, do not move beyond their sampling error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from unetdyn.paper import chapters
from unetdyn.paper import readings as rd
from unetdyn.paper.readings import Reading
from unetdyn.paper.sweeps import SweepResult
from unetdyn.paths import CACHE_DIR

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_times import SAMPLING, chapter_params  # noqa: E402


def collect(result) -> tuple[dict[str, Reading], list, dict[str, SweepResult]]:
    """The readings (by name), findings and sweep results of a chapter's result object."""
    found: dict[str, Reading] = {}
    sweeps: dict[str, SweepResult] = {}
    findings: list = []
    for f in dataclasses.fields(result):
        v = getattr(result, f.name)
        if isinstance(v, Reading):
            found[f.name] = v
        elif isinstance(v, dict):
            for k, r in v.items():
                if isinstance(r, Reading):
                    found[f"{f.name}: {k}" if f.name != "readings" else str(k)] = r
        elif isinstance(v, SweepResult):
            sweeps[f.name] = v
        elif f.name == "findings":
            findings = list(v)
    return found, findings, sweeps


def inside(r32: Reading, value: float) -> bool:
    if np.isinf(value) or np.isinf(r32.lo) or np.isinf(r32.hi):
        return r32.lo <= value <= r32.hi
    half_step = 0.5 * 10.0**-r32.digits  # the interval as printed: ends rounded to the reading's digits
    return r32.lo - half_step <= value <= r32.hi + half_step


def curve_agreement(s32: SweepResult, s16: SweepResult, metric: str) -> tuple[int, int]:
    """Schedules (curve points) whose bf16 mean lies inside the fp32 mean's 95% interval."""
    def matrix(table):
        wide = table.pivot(index="schedule", columns="sample", values=metric).sort_index()
        vals = wide.to_numpy(dtype=float, copy=True)
        vals[np.isinf(vals)] = np.nan  # an output identical to its baseline: PSNR has no value
        return vals

    m32, m16 = matrix(s32.table), matrix(s16.table)
    lo, hi = rd.mean_ci(m32)
    mean16 = np.nanmean(m16, axis=1)
    return int(np.sum((mean16 >= lo) & (mean16 <= hi))), len(lo)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="02_skip_vs_deconv", choices=SAMPLING)
    ap.add_argument("--params", default=None, help="parameters YAML over the notebook's defaults")
    ap.add_argument("--cache-dir", default=None, help="the fp32 store (default data/cache)")
    ap.add_argument("--bf16-cache-dir", required=True, help="the store holding the bf16 run")
    args = ap.parse_args(argv)

    runs = {}
    for precision, root in (("fp32", args.cache_dir or CACHE_DIR), ("bf16", args.bf16_cache_dir)):
        p = chapter_params(args.only, args.params, compute=False, progress=False, cache_dir=str(root),
                           precision=precision)
        runs[precision] = collect(chapters.run(p))
    (r32, f32, s32), (r16, f16, s16) = runs["fp32"], runs["bf16"]

    print(f"{args.only}, {p.n_samples} samples: readings, fp32 [95% interval] vs bf16")
    width = max(map(len, r32)) + 2
    n_in = 0
    for name, a in r32.items():
        b = r16[name]
        ok = inside(a, b.value)
        n_in += ok
        print(f"  {name:<{width}} {str(a):>28}  {b.fmt(b.value):>10}  {'inside' if ok else 'OUTSIDE'}")
    print(f"  {n_in} of {len(r32)} bf16 readings inside the fp32 interval")

    if f32:
        print("\nfindings: verdict fp32 / bf16")
        same = 0
        for a, b in zip(f32, f16):
            same += a.verdict == b.verdict
            print(f"  {(a.claim + ': ' + a.setting)[:70]:<72} {a.verdict:>12} / {b.verdict:<12} (bf16 reads {b.ours})")
        print(f"  {same} of {len(f32)} verdicts the same")

    print("\ncurves: schedules whose bf16 mean lies inside the fp32 mean's 95% interval")
    for name, s in s32.items():
        for metric in ("ssim", "psnr"):
            k, n = curve_agreement(s, s16[name], metric)
            print(f"  {name:<10} {metric:<5} {k:3d} of {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
