"""Quality against where and how long an intervention acts (chapters 1 to 5): SSIM and PSNR
curves over t_start, n and r, and the block-usage heatmaps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import MaxNLocator

from unetdyn.paper.canvas import WIDTH_IN, subplots
from unetdyn.paper.plots.common import THRESHOLD_COLOR, band, change_map, panels, share_map

__all__ = ["fig4", "figs15_17", "fig18", "fig7", "fig8", "block_usage", "fig9", "fig10"]


def _mark_phases(ax, bounds: tuple[float, float], x_max: float) -> None:
    """Shade the three phases along a t axis (time runs from right to left); none when there is no dip."""
    b1, b2 = bounds
    if not (np.isfinite(b1) and np.isfinite(b2)):
        return
    for (lo, hi), name, col in zip([(b1, x_max), (b2, b1), (0, b2)], ("phase 1", "phase 2", "phase 3"),
                                   ("#fde0dd", "#e0ecf4", "#e5f5e0")):
        ax.axvspan(lo, hi, color=col, alpha=0.6, lw=0, zorder=0)
        ax.text((lo + hi) / 2, 1.01, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)


def fig4(r):
    fig, axes = subplots(1, 2, figsize=(WIDTH_IN, 3.4), layout="constrained")
    for ax, metric, name in zip(axes, ("ssim", "psnr"), ("SSIM", "PSNR (dB)")):
        _mark_phases(ax, r.phase_bounds, r.spec.steps)
        band(ax, r.fig4.table, "t_start", metric, k=1, label="jump adds the stride's variance")
        if r.fig4_eq4 is not None:
            band(ax, r.fig4_eq4.table, "t_start", metric, k=0, label="jump adds the one-step sigma_t (Eq. 4)", ci=False)
        ax.set(xlabel="t_start", ylabel=f"{name} of w'_0 to x_0", xlim=(0, r.spec.steps))
    if r.fig4_eq4 is not None:
        fig.legend(handles=axes[0].get_lines(), fontsize=8, loc="outside lower center", ncol=2)
    fig.suptitle("sampling runs from right to left (t_start = 100 first)", fontsize=9)
    return fig


def figs15_17(r, x0_threshold: float):
    steps = r.spec.steps
    fig, axes = subplots(1, 3, figsize=(WIDTH_IN, 3.0))
    axes[0].plot(np.arange(1, steps + 1), r.betas, ".-", ms=3)
    axes[0].axvline(r.noise_pickup, color=THRESHOLD_COLOR, ls=":", lw=1)
    axes[0].set(yscale="log", xlabel="t", ylabel="beta of step t", title="Fig. 15: respaced\nbeta schedule")
    psnr = np.where(np.isinf(r.baseline["psnr_xt"]), np.nan, r.baseline["psnr_xt"])
    for ax, vals, title, ylab, mark in (
        (axes[1], psnr, "Fig. 16: PSNR\nof x_t to x_0", "PSNR (dB)", r.rise.value),
        (axes[2], r.baseline["ssim_x0hat"], "Fig. 17: SSIM of the\nx0 estimate to x_0", "SSIM", r.x0_step.value),
    ):
        t = np.arange(1, steps + 1)
        m, s = np.nanmean(vals[1:], axis=1), np.nanstd(vals[1:], axis=1)
        ax.plot(t, m)
        ax.fill_between(t, m - 2 * s, m + 2 * s, alpha=0.2)
        if np.isfinite(mark):
            ax.axvline(mark, color=THRESHOLD_COLOR, ls=":", lw=1)
        ax.set(xlabel="t", ylabel=ylab, title=title)
    axes[2].axhline(x0_threshold, color=THRESHOLD_COLOR, ls="--", lw=1)
    for ax in axes:
        ax.tick_params(labelsize=8)
        ax.title.set_fontsize(9)
    fig.tight_layout()
    return fig


def fig18(r, threshold: float = 0.8):
    fig, ax = subplots(figsize=(7, 3.6))
    for nn, part in r.fig18.table.groupby("n"):
        band(ax, part, "t_start", label=f"n={nn}", ci=False)
    ax.axhline(threshold, color=THRESHOLD_COLOR, ls="--", lw=1)
    ax.set(xlabel="t_start", ylabel="SSIM of w'_0 to x_0", xlim=(0, r.spec.steps))
    ax.legend(fontsize=8)
    return fig


def fig7(r):
    fig, axes = subplots(1, 2, figsize=(WIDTH_IN, 3.2))
    for ax, metric in zip(axes, ("psnr", "ssim")):
        band(ax, r.skips.table, "t_start", metric, label=f"top {r.ns} skips zeroed (s'_0)")
        band(ax, r.blocks.table, "t_start", metric, label=f"bottom {r.nb} blocks removed (b'_0)")
        ax.set(xlabel="t_start", ylabel=metric.upper(), xlim=(0, r.spec.steps))
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig8(r, threshold: float = 0.8):
    cols = 3
    rows = int(np.ceil(len(r.nbs) / cols))
    fig, axes = subplots(rows, cols, figsize=(WIDTH_IN, 2.4 * rows), squeeze=False, sharey=True)
    for ax, nb in zip(axes.flat, r.nbs):
        band(ax, r.result.table[r.result.table.nb == nb], "t_start", k=2)
        ax.axhline(threshold, color=THRESHOLD_COLOR, ls="--", lw=1)
        c = r.crossings[nb]
        if np.isfinite(c.value):
            ax.axvline(c.value, color="gray", ls=":", lw=1)
            if np.isfinite(c.lo) and np.isfinite(c.hi):
                ax.axvspan(c.lo, c.hi, color="gray", alpha=0.12, lw=0)
        ax.set(xlabel="t_start", ylabel="SSIM", xlim=(0, r.spec.steps), ylim=(0, 1.05))
        ax.set_title(f"nb = {nb}: from t_start {c}", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(r.nbs):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def block_usage(r, threshold: float = 0.8):
    """What the bottom decoder blocks do at each step, as heatmaps (t increasing to the right;
    sampling runs from right to left): (a) the final output's loss, 1 - mean SSIM to x0, with the
    bottom nb blocks removed for n steps from t_start (Fig. 8's curves, the threshold as a contour);
    (b) the relative change of the step's x0 estimate at x_t when they are removed from that one
    call. Darker is a larger effect in both. (c) the share of the energy each decoder block receives at
    x_t that comes from below rather than from its skips: what removing the blocks beneath it zeroes."""
    fig, (a, b, c) = subplots(3, 1, figsize=(WIDTH_IN, 9.4), layout="constrained")
    mean = r.result.table.groupby(["nb", "t_start"]).ssim.mean().unstack("t_start")
    mean = mean.loc[list(r.nbs)]
    loss = np.clip(1 - mean.to_numpy(), 1e-4, 1)
    ts, nbs = mean.columns.to_numpy(), np.arange(len(mean.index))
    im = a.pcolormesh(ts, nbs, loss, norm=LogNorm(1e-3, 1), cmap="magma_r", shading="nearest")
    if loss.max() > 1 - threshold:
        a.contour(ts, nbs, loss, levels=[1 - threshold], colors="deepskyblue", linewidths=1.5)
    a.set_yticks(nbs, [str(nb) for nb in mean.index])
    a.set(xlabel="t_start", ylabel="bottom nb removed",
          title=f"(a) the output: 1 - mean SSIM to x0, removed for n = {r.n} steps (blue: SSIM {threshold:g})")
    fig.colorbar(im, ax=a, label="1 - SSIM")
    u = r.usage
    if u is not None:
        change_map(b, u)
        b.set_title(f"(b) the step's x0 estimate: relative change, removed from that one call ({u.samples} samples)")
        share_map(c, u.steps, u.share)
        c.set_title(f"(c) decoder j's input: the share of its energy from below, not from its skips "
                    f"({u.samples} samples)")
    else:
        b.axis("off")
        c.axis("off")
    for ax in (a, b, c):
        ax.set_xlim(0, r.spec.steps + 1)
        ax.title.set_fontsize(9)
    return fig


def _per_nb(r, x: str, lines, xlabel: str):
    nbs = sorted({nb for s in r.settings.values() for nb in s})
    fig, axes = panels(len(nbs), 2.9)
    for ax, nb in zip(axes, nbs):
        for which, part in r.result.table[r.result.table.nb == nb].groupby("setting"):
            band(ax, part, x, k=2, label=f"{which} = {r.settings[which][nb]}", marker="o")
        lines(ax, nb)
        ax.set(title=f"nb = {nb}", xlabel=xlabel, ylabel="SSIM", ylim=(0, 1.05))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # n and r count steps
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig9(r, threshold: float = 0.8):
    return _per_nb(r, "n", lambda ax, nb: ax.axhline(threshold, color=THRESHOLD_COLOR, ls="--", lw=1), "n (steps intervened)")


def fig10(r, thresholds: Sequence[float] = (0.8, 0.75)):
    def lines(ax, nb):
        for th, style in zip(thresholds, ("--", ":")):
            ax.axhline(th, color=THRESHOLD_COLOR, ls=style, lw=1)

    return _per_nb(r, "r", lines, f"r (relaxation steps), n = {r.n}")
