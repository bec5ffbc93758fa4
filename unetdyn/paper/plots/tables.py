"""The book's tables of methods and costs (chapter 7), as styled pandas tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from unetdyn.paper.fair_readings import ADVANTAGE_FORMAT, QUALITY_NAMES

__all__ = ["methods_table", "equal_cost_table", "glide_table"]


def _ci(v: float, lo: float, hi: float, fmt: str) -> str:
    return f"{v:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]" if np.isfinite(v) else "identical"


SMALL_TABLE = [{"selector": "td, th", "props": [("font-size", "0.8em"), ("padding", "2px 6px")]}]


def methods_table(r):
    """Every method: cost, and each kind of quality measured, with their 95% intervals (distribution quality
    only where a quality classifier read the outputs)."""
    t = r.table
    own = t.family == "DDIM"  # every other method's own family is the ancestral sampler: the same as "SSIM to full"
    out = pd.DataFrame({
        "method": t.method,
        "FLOPs": [f"{x:.2f}x" for x in t.flop_speedup],
        "wall-clock (range over rounds)": [f"{x:.2f}x ({lo:.2f}-{hi:.2f})" for x, lo, hi in
                                           zip(t.speedup, t.speedup_low, t.speedup_high)],
        "SSIM to full": [_ci(*v, ".3f") for v in zip(t.ssim, t.ssim_lo, t.ssim_hi)],
        "SSIM p5": [_ci(*v, ".3f") for v in zip(t.ssim_p5, t.ssim_p5_lo, t.ssim_p5_hi)],
        "PSNR to full (dB)": [_ci(*v, ".1f") for v in zip(t.psnr, t.psnr_lo, t.psnr_hi)],
        "SSIM to its own family's full": [_ci(*v, ".3f") if o else "=" for *v, o in
                                          zip(t.ssim_own, t.ssim_own_lo, t.ssim_own_hi, own)],
    })
    if r.fair.classified:
        out["class agreement"] = [_ci(*v, ".1%") for v in zip(t.agreement, t.agreement_lo, t.agreement_hi)]
        out["Fréchet distance"] = [_ci(*v, ".2f") for v in zip(t.frechet, t.frechet_lo, t.frechet_hi)]
    return out.style.hide(axis="index").set_table_styles(SMALL_TABLE)


def equal_cost_table(r, axis: str):
    """Each family read at the shortcut's speed-up on ``axis``: its advantage over the shortcut [95%] and the verdict."""
    e = r.equal_cost[axis]
    rows = []
    for fam, d in e.groupby("family", sort=False):
        row = {"family": fam}
        for q in d.itertuples():
            f = ADVANTAGE_FORMAT[q.quality]
            row[QUALITY_NAMES[q.quality]] = (f"{_ci(q.advantage, q.adv_lo, q.adv_hi, f)}: {q.verdict}" if q.reached
                                             else f"outside its range ({q.slowest:.2f}x..{q.fastest:.2f}x)")
        row["read between"] = d.read_between.iloc[0] or "-"
        rows.append(row)
    return pd.DataFrame(rows).style.hide(axis="index").set_table_styles(SMALL_TABLE)


def glide_table(r):
    """GLIDE's costs per method, with readable headers (the method names carry the family)."""
    g = pd.DataFrame(r.glide["rows"])
    g["TFLOP"], g["TFLOP, text each step"] = g.flops / 1e12, g.flops_text_every_step / 1e12
    g = g.rename(columns={"unet_calls": "Unet calls", "flop_saving": "FLOPs saved", "sec_per_sample": "s / sample",
                          "speedup": "speed-up"})
    return g[["method", "Unet calls", "TFLOP", "TFLOP, text each step", "FLOPs saved", "s / sample", "speed-up"]] \
        .style.format({"TFLOP": "{:.2f}", "TFLOP, text each step": "{:.2f}", "FLOPs saved": "{:.1%}",
                       "s / sample": "{:.1f}", "speed-up": "{:.2f}x"}, na_rep="-").hide(axis="index")
