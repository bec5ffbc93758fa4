"""What every figure shares: the colours, the mean +- k sd band, a row-major grid of panels."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm

from unetdyn.paper import readings as rd
from unetdyn.paper.canvas import WIDTH_IN, subplots

__all__ = ["RUN", "IDLE", "SECOND", "THIRD", "FOURTH", "THRESHOLD_COLOR", "band", "panels", "share_map"]

# the colours every figure shares: a block or step that runs, one that does not, a second, third
# and fourth series beside the first, and a threshold or reference line
RUN, IDLE, SECOND, THIRD, FOURTH, THRESHOLD_COLOR = "#4c72b0", "#dddddd", "#dd8452", "#c44e52", "#8172b3", "crimson"


def band(ax, table: pd.DataFrame, x: str, metric: str = "ssim", k: float = 1.0, label: str | None = None,
         color=None, marker: str = "", ci: bool = True):
    """Mean of ``metric`` over samples against ``x``, a ``mean +- k sd`` band and the 95% interval of the mean."""
    xs, vals = rd.curve_matrix(table, x, metric)
    mean, sd = np.nanmean(vals, axis=1), np.nanstd(vals, axis=1, ddof=1) if vals.shape[1] > 1 else np.zeros(len(xs))
    line = ax.plot(xs, mean, marker=marker, ms=3, label=label, color=color)[0]
    top = 1.0 if metric.startswith("ssim") else np.inf  # SSIM cannot exceed 1; the band stops there
    ax.fill_between(xs, mean - k * sd, np.minimum(mean + k * sd, top), color=line.get_color(), alpha=0.15, lw=0)
    if ci and vals.shape[1] > 1:
        lo, hi = rd.mean_ci(vals)
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.35, lw=0)
    return line


def panels(n: int, height: float):
    """``n`` panels sharing their y axis, two to a row across the column; the spare one hidden."""
    cols = min(2, n)
    rows = -(-n // cols)
    fig, axes = subplots(rows, cols, figsize=(WIDTH_IN, height * rows), sharey=True, squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def change_map(ax, usage, tick_every: int = 2):
    """``usage.floored()[i, s]`` (the x0 estimate's relative change with the bottom ``usage.nbs[i]`` blocks
    removed from the call at ``t = usage.steps[s]``) as a log heatmap, t increasing to the right, with its
    colour bar; darker is a larger effect."""
    steps = np.asarray(usage.steps)
    order = np.argsort(steps)
    rows = np.arange(len(usage.nbs))
    im = ax.pcolormesh(steps[order], rows, usage.floored()[:, order], norm=LogNorm(1e-4, 1), cmap="magma_r",
                       shading="nearest")
    first = 0 if tick_every <= 2 else 1
    ax.set_yticks(rows[first::tick_every], [str(nb) for nb in usage.nbs][first::tick_every])
    ax.set(xlabel="t", ylabel="bottom nb removed")
    ax.figure.colorbar(im, ax=ax, label="||change|| / ||x0||")
    return im


def share_map(ax, steps, share):
    """``share[j, s]`` (decoder ``j``'s input from below, at ``t = steps[s]``) as a heatmap, t increasing to the
    right, with its colour bar; darker is more from below."""
    steps = np.asarray(steps)
    order = np.argsort(steps)
    rows = np.arange(len(share))
    im = ax.pcolormesh(steps[order], rows, np.asarray(share)[:, order], vmin=0, vmax=1, cmap="magma_r",
                       shading="nearest")
    ax.set_yticks(rows[::2], [str(j) for j in rows[::2]])
    ax.set(xlabel="t", ylabel="decoder j (0: bottom)")
    ax.figure.colorbar(im, ax=ax, label="share from below")
    return im
