"""The book's figure helpers: metric curves with bands, image rows, the paper-vs-ours table.

They only draw what a sweep returned; nothing here samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["band", "image_rows", "paper_vs_ours", "mark_phases"]


def band(ax, curve: pd.DataFrame, x: str, k: float = 1.0, label: str | None = None, color=None, marker: str = ""):
    """Plot ``mean`` with a ``mean +- k sd`` band (``curve`` from :func:`unetdyn.paper.sweeps.mean_sd`)."""
    c = curve.sort_values(x)
    line = ax.plot(c[x], c["mean"], marker=marker, ms=3, label=label, color=color)[0]
    ax.fill_between(c[x], c["mean"] - k * c["std"], c["mean"] + k * c["std"], color=line.get_color(), alpha=0.2, lw=0)
    return line


def mark_phases(ax, boundaries: Sequence[float], labels=("phase 1", "phase 2", "phase 3"), x_max: float = 100) -> None:
    """Shade the three phases along a t axis (t runs from right to left in time)."""
    b1, b2 = boundaries
    spans = [(b1, x_max), (b2, b1), (0, b2)]
    for (lo, hi), name, col in zip(spans, labels, ("#fde0dd", "#e0ecf4", "#e5f5e0")):
        ax.axvspan(lo, hi, color=col, alpha=0.6, lw=0, zorder=0)
        ax.text((lo + hi) / 2, 1.01, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)


def image_rows(
    rows: Sequence[np.ndarray],
    row_labels: Sequence[str],
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    size: float = 1.1,
):
    """A grid of uint8 images ``[N, H, W, C]`` per row, labelled; returns the figure."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols + 1.2, size * n_rows + 0.4), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(row):
                ax.imshow(row[j], interpolation="nearest")
            if j == 0:
                ax.set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=8)
            if i == 0 and col_labels is not None and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def paper_vs_ours(rows: Sequence[tuple[str, str, str, str]]) -> pd.DataFrame:
    """The closing table of a chapter: (quantity, paper, ours, agreement)."""
    return pd.DataFrame(list(rows), columns=["quantity", "paper (GLIDE)", "ours", "agreement"]).set_index("quantity")
