"""The family side by side (chapter 10): each member's block-usage map, and the key readings'
spread across members beside their intervals within one model."""

from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from unetdyn.paper.canvas import WIDTH_IN, subplots
from unetdyn.paper.claims import CLAIMS
from unetdyn.paper.plots.common import RUN, SECOND, change_map, share_map

__all__ = ["members_losses", "members_usage", "members_spread"]

# the verdict rule's regions, pale: the readings drawn over them stay readable
HOLDS, DIFFERS = "#e3f2df", "#f8e1e1"
# the y-axis of a claim's panel, by its unit (a key of the claims' margins)
UNITS = {"ssim": "SSIM", "ssim spread": "SSIM spread", "psnr": "PSNR gap (dB)", "t": "t_start", "n": "n (steps)",
         "r": "r (steps)", "share": "share of samples", "time saved": "share of cost saved", "count": "count"}


def members_losses(r, window: int = 200):
    """Each member's training loss per step (a running mean over ``window`` steps; the members still
    training up to their checkpoint): do the seeds train as the shipped model did?"""
    if not r.losses:
        return None
    fig, ax = subplots(1, 1, figsize=(WIDTH_IN, 2.6), layout="constrained")
    for i, (model, df) in enumerate(r.losses.items()):
        smooth = df.set_index("step")["loss"].rolling(window, min_periods=window // 4).mean()
        ax.plot(smooth.index, smooth.values, lw=1.2, label=f"{model} ({int(df.step.max()) + 1:,} steps)",
                color=RUN if model == "builtin" else f"C{i}")
    ax.axvline(10_000, color="grey", ls=":", lw=1)  # where the shipped model stopped (of 12,000 configured)
    ax.set(yscale="log", xlabel="training step", ylabel=f"loss (mean of {window} steps)")
    unkept = [m for m in r.members if m not in r.losses]
    ax.legend(fontsize=8, frameon=False, title=f"no losses kept: {', '.join(unkept)}" if unkept else None,
              title_fontsize=8)
    return fig


def members_usage(r):
    """Per member (a row each), chapter 3's maps (b) and (c): the relative change of each step's x0 estimate
    when the bottom nb blocks are removed from that one call, and the share of each decoder's input energy
    that comes from below. t increases to the right; darker is a larger effect, or more from below."""
    maps = {m: res.usage for m, res in r.members.items() if res.usage is not None}
    if not maps:
        return None
    models = list(r.members)  # a row per member: one whose maps are not in the store yet says so
    fig, axes = subplots(len(models), 2, figsize=(WIDTH_IN, 2.3 * len(models) + 0.4), squeeze=False,
                         layout="constrained")
    for (left, right), model in zip(axes, models):
        if model not in maps:
            for ax in (left, right):
                ax.set(title=model, xticks=[], yticks=[])
                ax.text(0.5, 0.5, "not in the store yet\n(chapter 3 on the member grids)", ha="center",
                        va="center", transform=ax.transAxes, fontsize=9, color="grey")
            continue
        u = maps[model]
        change_map(left, u, tick_every=4)
        left.set_title(f"{model}: x0 change")
        share_map(right, u.steps, u.share)
        right.set_title(f"{model}: input from below")
    for ax in axes.flat:
        ax.title.set_fontsize(9)
    return fig


def members_spread(r):
    """Per key claim, each member's reading at the claim's own setting with its 95% interval (within one
    model), side by side, over the verdict rule's regions: an interval wholly in the green one holds, wholly
    in the red one differs. Where the points scatter more than the intervals are wide, the model matters."""
    t = r.spread
    if t.empty:
        return None
    claims = list(dict.fromkeys(t.claim))
    cols = min(2, len(claims))
    rows = -(-len(claims) // cols)
    fig, axes = subplots(rows, cols, figsize=(WIDTH_IN, 2.5 * rows + 0.5), squeeze=False, layout="constrained")
    models = list(r.members)
    for ax, cid in zip(axes.flat, claims):
        c = CLAIMS[cid]
        part = t[t.claim == cid].set_index("model")
        for i, m in enumerate(models):
            if m not in part.index:  # no reading at the claim's setting on this member yet
                ax.text(i, 0.5, "not run", ha="center", va="center", transform=ax.get_xaxis_transform(),
                        fontsize=8, color="grey")
                continue
            row = part.loc[m]
            hi = row.hi if np.isfinite(row.hi) else row.value
            ax.errorbar([i], [row.value], yerr=[[row.value - row.lo], [hi - row.value]], fmt="o",
                        color=RUN if m == "builtin" else SECOND, capsize=3)
        if isinstance(c.paper, tuple):  # the paper's range (edges) or value (dotted)
            for edge in c.paper:
                ax.axhline(edge, color="grey", ls=":", lw=1)
        elif isinstance(c.paper, (int, float)):
            ax.axhline(c.paper, color="grey", ls=":", lw=1)
        _regions(ax, c)
        ax.set_xticks(range(len(models)), [m.replace("builtin:", "") for m in models])
        ax.set_xlim(-0.5, len(models) - 0.5)
        ax.set_ylabel(UNITS.get(c.unit, c.unit), fontsize=8)
        ax.set_title(c.short, fontsize=9)
    for ax in axes.flat[len(claims):]:
        ax.axis("off")
    handles = [Line2D([], [], color=RUN, marker="o", ls="", label="the shipped model"),
               Line2D([], [], color=SECOND, marker="o", ls="", label="other members"),
               Line2D([], [], color="grey", ls=":", lw=1, label="the paper's value"),
               Patch(color=HOLDS, label="holds (with the margin)"), Patch(color=DIFFERS, label="differs")]
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=8, frameon=False)
    return fig


def _regions(ax, c) -> None:
    """Shade where an interval holds (green) and where it differs (red) under claim ``c``'s verdict rule; the
    y-axis spans the readings and the finite edges of the region where the claim holds."""
    ax.autoscale_view()
    inner, outer = c.regions()
    ends = [e for e in inner if np.isfinite(e)]
    lo, hi = min(ax.get_ylim()[0], *ends), max(ax.get_ylim()[1], *ends)
    lo, hi = lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)
    ax.axhspan(max(inner[0], lo), min(inner[1], hi), color=HOLDS, lw=0, zorder=0)
    if outer[0] > lo:
        ax.axhspan(lo, outer[0], color=DIFFERS, lw=0, zorder=0)
    if outer[1] < hi:
        ax.axhspan(outer[1], hi, color=DIFFERS, lw=0, zorder=0)
    ax.set_ylim(lo, hi)
