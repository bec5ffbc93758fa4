"""The book's image galleries: grids of sample images, and the long ones folded.

A gallery shows its most telling grid and puts the rest under a closed ``<details>`` (PNG data
URIs: the book is built offline), so a chapter stays short while every image stays one click
away. :mod:`unetdyn.paper.plots` re-exports these under the figures' names.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from unetdyn.interventions import DropBlocks
from unetdyn.paper.canvas import WIDTH_IN, subplots, to_png

__all__ = ["image_rows", "sample_prompts", "show_folded", "fig19", "fig20", "fig21"]


def image_rows(rows: Sequence[np.ndarray], row_labels: Sequence[str], col_labels: Sequence[str] | None = None,
               title: str | None = None, size: float = 1.1, frames: np.ndarray | None = None):
    """A grid of uint8 images ``[N, H, W, C]`` per row, labelled; ``frames[i, j]`` draws a green frame."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    size = min(size, (WIDTH_IN - 1.2) / n_cols)  # 1.2 in for the row labels; the grid fits the column
    fig, axes = subplots(n_rows, n_cols, figsize=(size * n_cols + 1.2, size * n_rows + 0.4), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            framed = frames is not None and j < frames.shape[1] and bool(frames[i, j])
            for s in ax.spines.values():
                s.set_visible(framed)
                s.set_color("#2ca02c")
                s.set_linewidth(2.5)
            if j < len(row):
                ax.imshow(row[j], interpolation="nearest")
            if j == 0:
                ax.set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=8)
            if i == 0 and col_labels is not None and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()) if title else None)
    if title:  # placed after the layout, in the strip it left free above the grid
        fig.suptitle(title, fontsize=10, y=1 - 0.05 / fig.get_figheight(), va="top")
    return fig


def sample_prompts(table: pd.DataFrame) -> list[str]:
    """The prompt of each sample, in sample order."""
    return list(table.drop_duplicates("sample").sort_values("sample").prompt)


def show_folded(shown, folded: Sequence, summary: str) -> None:
    """Display the figure ``shown``, then the figures ``folded`` under a closed ``<details>`` headed
    ``summary``, as PNG data URIs (the book is built offline); each figure is closed once shown."""
    from IPython.display import display

    display(shown)
    plt.close(shown)
    if not folded:
        return
    imgs = []
    for fig in folded:
        data = base64.b64encode(to_png(fig)).decode()
        imgs.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(fig.get_suptitle())}">')
        plt.close(fig)
    display({"text/html": f"<details><summary>{html.escape(summary)}</summary>{''.join(imgs)}</details>",
             "text/plain": summary}, raw=True)


# -- chapter 3 ---------------------------------------------------------------------------------------


def fig19(r, image_t_starts: Sequence[int], samples: int = 4, threshold: float = 0.8):
    """One grid per sample (nb down, t_start across; framed: SSIM >= threshold): the first shown, the rest folded."""
    t = r.result.table
    prompts = sample_prompts(t)
    grids = []
    for k in range(samples):
        rows = [[r.baseline["x0"][k]] + [r.result.image(DropBlocks(ts, r.n, nb))[k] for ts in image_t_starts] for nb in r.nbs]
        frames = np.array([[False] + [t[(t.nb == nb) & (t.t_start == ts) & (t["sample"] == k)].ssim.iloc[0] >= threshold
                                      for ts in image_t_starts] for nb in r.nbs])
        grids.append(image_rows(rows, [f"nb={nb}" for nb in r.nbs], ["original"] + [f"t={ts}" for ts in image_t_starts],
                                title=f"sample {k}: {prompts[k]}", frames=frames))
    show_folded(grids[0], grids[1:], f"the same grid for samples 1 to {samples - 1}")


# -- chapters 4 and 5 -------------------------------------------------------------------------------


def _spread(values: Sequence, k: int) -> list:
    """At most ``k`` of ``values``, evenly spread, the first and the last among them.

    Example:
        >>> _spread(list(range(26)), 6), _spread([1, 2], 6)
        ([0, 5, 10, 15, 20, 25], [1, 2])
    """
    if len(values) <= k:
        return list(values)
    return [values[i] for i in sorted({round(j * (len(values) - 1) / (k - 1)) for j in range(k)})]


def _image_series(r, x: str, setting: str, iv_of, labels_of, shown: int = 6):
    """Shown: the originals and, per nb, the outputs at the ``x`` with the lowest mean SSIM (the
    clearest change); folded: one grid per nb, the outputs at ``shown`` values of ``x``."""
    t = r.result.table
    original = r.baseline["x0"][: r.result.images[next(iter(r.result.images))].shape[0]]
    grids, worst, labels = [], [original], ["original"]
    for nb, ts in r.settings[setting].items():
        part = t[(t.nb == nb) & (t.setting == setting)]
        values = _spread(sorted(part[x].unique()), shown)
        rows = [r.result.images[iv_of(nb, ts, v)] for v in values]
        grids.append(image_rows([original, *rows], ["original"] + [labels_of(v) for v in values],
                                title=f"nb = {nb}, t_start = {ts} ({setting})"))
        lowest = values[int(np.argmin(part.groupby(x).ssim.mean().loc[values].to_numpy()))]
        worst.append(rows[values.index(lowest)])
        labels.append(f"nb={nb}, {labels_of(lowest)}")
    overview = image_rows(worst, labels, title=f"{setting}: each nb at its lowest mean SSIM to the original")
    show_folded(overview, grids, f"each nb at up to {shown} values of {x} ({setting})")


def fig20(r, setting: str = "paper t_start", shown: int = 6):
    """Outputs as n grows: per nb the clearest change, then (folded) ``shown`` values of the n grid, evenly spread."""
    _image_series(r, "n", setting, lambda nb, ts, n: (DropBlocks(ts, int(n), nb),), lambda n: f"n={n}", shown)


def fig21(r, setting: str = "paper t_start", shown: int = 6):
    """Outputs as r grows: per nb the clearest change, then (folded) ``shown`` values of the r grid, evenly spread."""
    def iv(nb, ts, rr):
        return (DropBlocks(ts, r.n, nb), DropBlocks(ts - r.n - int(rr), r.n, nb))

    _image_series(r, "r", setting, iv, lambda rr: f"r={rr}", shown)
