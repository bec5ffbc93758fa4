"""The family side by side (chapter 10): each member's block-usage map, and the key readings'
spread across members beside their intervals within one model."""

from __future__ import annotations

import numpy as np

from unetdyn.paper.canvas import WIDTH_IN, subplots
from unetdyn.paper.claims import CLAIMS
from unetdyn.paper.plots.common import RUN, SECOND, change_map, share_map

__all__ = ["members_losses", "members_usage", "members_spread"]


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
    ax.axvline(10_000, color="grey", ls=":", lw=1)  # the shipped configuration's length
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
    model), side by side: where the points scatter more than the intervals are wide, the model matters."""
    t = r.spread
    if t.empty:
        return None
    claims = list(dict.fromkeys(t.claim))
    cols = min(2, len(claims))
    rows = -(-len(claims) // cols)
    fig, axes = subplots(rows, cols, figsize=(WIDTH_IN, 2.5 * rows), squeeze=False, layout="constrained")
    models = list(r.members)
    for ax, cid in zip(axes.flat, claims):
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
        paper = CLAIMS[cid].paper  # the paper's value (dotted) or range (shaded)
        if isinstance(paper, tuple):
            ax.axhspan(*paper, color="grey", alpha=0.15, lw=0)
        elif isinstance(paper, (int, float)):
            ax.axhline(paper, color="grey", ls=":", lw=1)
        ax.set_xticks(range(len(models)), [m.replace("builtin:", "") for m in models])
        ax.set_xlim(-0.5, len(models) - 0.5)
        ax.set_title(CLAIMS[cid].short, fontsize=9)
    for ax in axes.flat[len(claims):]:
        ax.axis("off")
    return fig
