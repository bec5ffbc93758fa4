"""What an intervention saves against what it costs in quality (chapters 6 to 9): time and
FLOPs saved, speed-up against quality per family of methods, the search's path, throughput,
other architectures and the DDIM diagnosis."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import PercentFormatter

from unetdyn.paper.alternatives import FAMILIES
from unetdyn.paper.alternatives import pareto as front_of
from unetdyn.paper.canvas import WIDTH_IN, subplots
from unetdyn.paper.fair_readings import AXIS_NAMES, QUALITY_NAMES
from unetdyn.paper.plots.common import RUN, THRESHOLD_COLOR
from unetdyn.paper.search import METRICS

__all__ = ["time_saved", "family_colors", "pareto", "equal_cost", "efficiency", "other_unets", "search_path",
           "beyond_pareto", "ddim_diagnosis"]


def time_saved(r):
    t = r.timings.iloc[1:]
    fig, ax = subplots(figsize=(7, 0.6 + 0.45 * len(t)))
    y = np.arange(len(t))
    ax.barh(y, 100 * t.saved, xerr=[100 * (t.saved - t.saved_low), 100 * (t.saved_high - t.saved)], color=RUN,
            label="wall-clock (median, range over rounds)")
    flops = [100 * r.costs["FLOPs saved"][n] for n in t.schedule]
    ax.scatter(flops, y, color=THRESHOLD_COLOR, zorder=5, label="FLOPs")
    ax.set_yticks(y, list(t.schedule))
    ax.invert_yaxis()
    ax.set_xlabel("% saved against the full sampler")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def family_colors() -> dict[str, tuple]:
    """One colour per family of chapter 7, the same in every figure."""
    import seaborn as sns  # optional: it comes with the book extra, and only this palette uses it

    return dict(zip(FAMILIES, sns.color_palette("tab10", len(FAMILIES))))


def pareto(r):
    """Speed-up (wall-clock and FLOPs) against SSIM to the full output, per family, with the Pareto front."""
    t = r.table.assign(flop_speedup=1 / (1 - r.table.flop_saving))
    families = [f for f in FAMILIES if f in set(t.family)]
    palette = family_colors()
    fig, axes = subplots(1, 2, figsize=(WIDTH_IN, 4.6), sharex=True, layout="constrained")
    for ax, y, label in ((axes[0], "speedup", "wall-clock speed-up (x)"), (axes[1], "flop_speedup", "FLOP speed-up (x)")):
        for fam in families:
            d = t[t.family == fam].sort_values("strength")
            if fam == "paper shortcut":
                variants = [m for m in d.method if m != "paper shortcut"]
                markers = {"paper shortcut": "*", **dict(zip(variants, "PXDsv^<>"))}
                for _, row in d.iterrows():
                    main = row.method == "paper shortcut"
                    ax.scatter(row.ssim_mean, row[y], marker=markers[row.method], s=260 if main else 90, color=palette[fam],
                               edgecolor="k", zorder=5, label=row.method)
                continue
            ax.plot(d.ssim_mean, d[y], "-o", color=palette[fam], label=fam, ms=5)
        front = front_of(t, "ssim_mean", y)
        ax.step(front.ssim_mean, front[y], where="post", color="k", lw=0.8, alpha=0.6)
        ax.axhline(1, color="gray", lw=0.5)
        ax.axvline(0.795, color="gray", ls=":", lw=0.8)
        ax.set(ylabel=label)
    fig.supxlabel("mean SSIM to the full 100-step output (dotted: the paper's SSIM 0.795)", fontsize=10)
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, ncol=3, loc="outside upper center", markerscale=0.7)
    return fig


def equal_cost(r):
    """Each family's curve of quality against speed-up (FLOPs, wall-clock), with 95% intervals, and the shortcut."""
    t = r.table
    families = [f for f in FAMILIES if f in set(t.family) and f not in ("full", "paper shortcut")]
    palette = family_colors()
    sc = t[t.method == "paper shortcut"].iloc[0]
    qualities = [q for q in ("ssim", "agreement", "frechet") if q in t.columns]  # without a classifier: SSIM only
    fig, axes = subplots(2, len(qualities), figsize=(WIDTH_IN * max(len(qualities), 2) / 3, 6.8), sharex="row",
                         layout="constrained", squeeze=False)
    for row, axis in enumerate(("flop_speedup", "speedup")):
        for col, q in enumerate(qualities):
            ax = axes[row, col]
            for fam in families:
                d = t[t.family == fam].sort_values(axis)
                x, y = d[axis].astype(float), d[q].astype(float)
                ax.plot(x, y, "-o", ms=4, color=palette[fam], label=fam)
                ax.fill_between(x, d[f"{q}_lo"].astype(float), d[f"{q}_hi"].astype(float), color=palette[fam], alpha=0.15)
            ax.vlines(sc[axis], sc[f"{q}_lo"], sc[f"{q}_hi"], color="k", lw=1.5, zorder=5)
            ax.plot(sc[axis], sc[q], "*", ms=16, color="k", zorder=6, label="paper shortcut")
            ax.axvline(sc[axis], color="gray", ls=":", lw=0.8)
            ax.set_xlabel(f"{AXIS_NAMES[axis]} speed-up (x)", fontsize=9)
            ax.set_ylabel(QUALITY_NAMES[q], fontsize=9)
            ax.tick_params(labelsize=8)
            if q == "agreement":
                ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    fig.legend(*axes[0, 0].get_legend_handles_labels(), fontsize=8, ncol=3, loc="outside lower center")
    fig.suptitle(f"{r.fair.samples} samples per method; bands and bars: 95% intervals;\n"
                 "dotted: the shortcut's speed-up." + (" Fréchet distance: lower is better." if r.fair.classified else ""),
                 fontsize=9)
    return fig


def efficiency(r):
    th = pd.DataFrame(r.efficiency["throughput"])
    fig, ax = subplots(figsize=(6, 3.2))
    ax.plot(th.batch, th.sample_steps_per_s, "-o")
    ax.set(xscale="log", xlabel="samples per batch (x2 rows with guidance)", ylabel="guided sample-steps / s")
    ax2 = ax.twinx()
    ax2.plot(th.batch, 100 * th.fraction_of_peak, "--", color="gray")
    ax2.set_ylabel("% of matmul peak", color="gray")
    fig.tight_layout()
    return fig


def other_unets(r):
    """FLOPs saved per guided call against the bottom decoder blocks removed, one line per architecture."""
    fig, axes = subplots(1, 2, figsize=(WIDTH_IN, 3.4), sharey=True)
    for arch, d in r.per_nb.groupby("arch", sort=False):
        for ax, x in zip(axes, ("nb", "share")):
            ax.plot(d[x], 100 * d.saved, marker="o", ms=3, label=arch)
    axes[0].set(xlabel="bottom decoder blocks removed (nb)", ylabel="FLOPs saved per call (%)")
    axes[1].set(xlabel="nb as a share of the decoder blocks")
    for nb in (6, 8):  # the paper's shortcut removes these
        axes[0].axvline(nb, color="0.8", lw=0.8, zorder=0)
    axes[0].legend(frameon=False, fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def search_path(r):
    """Each candidate move alone (FLOPs saved against SSIM on the search samples) and the accepted path."""
    res = r.search
    fig, ax = subplots(figsize=(WIDTH_IN, 4.0))
    kinds = {}
    for t in res.singles:
        (slot, iv), = t.state.items()
        kinds.setdefault(iv.kind + (" (cache)" if getattr(iv, "fill", "") == "cache" else ""), []).append(t)
    for kind, ts in kinds.items():
        ax.scatter([t.value for t in ts], [100 * t.saving for t in ts], s=18, alpha=0.7, label=f"{kind} alone")
    ax.plot([t.value for t in res.path], [100 * t.saving for t in res.path], "-o", color="k", ms=4, label="accepted, in order")
    ax.axvline(res.budget.threshold, color=THRESHOLD_COLOR, ls=":", label=f"budget {res.budget}")
    ax.set(xlabel=f"{METRICS.get(res.budget.metric, res.budget.metric)} to the full output (search samples)",
           ylabel="FLOPs saved (%)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def beyond_pareto(r, alternatives=None):
    """FLOP and wall-clock speed-up against held-out mean SSIM: the compared schedules over chapter 7's methods."""
    fig, axes = subplots(1, 2, figsize=(WIDTH_IN, 4.2), sharex=True, layout="constrained")
    tv = r.timings.set_index("schedule")
    for ax, y in ((axes[0], "speedup"), (axes[1], "flop_speedup")):
        if alternatives is not None:
            t = alternatives.table.assign(flop_speedup=1 / (1 - alternatives.table.flop_saving))
            n = alternatives.fair.samples
            ax.scatter(t.ssim_mean, t[y], color="0.7", s=18, label=f"chapter 7's methods ({n} samples)")
        for name, marker in zip(r.parts, ("*", "P", "D", "s", "X", "^")):
            x = r.ssim[name]["all held-out samples"]
            yv = tv.speedup[name] if y == "speedup" else r.costs["FLOP speed-up"][name]
            ax.errorbar(x.value, yv, xerr=[[x.value - x.lo], [x.hi - x.value]], fmt=marker, ms=15, mec="k", zorder=5, label=name)
        ax.axhline(1, color="gray", lw=0.5)
        ax.axvline(0.8, color=THRESHOLD_COLOR, ls=":", lw=0.8)
        ax.set(ylabel="wall-clock speed-up (x)" if y == "speedup" else "FLOP speed-up (x)")
    fig.supxlabel("mean SSIM to the full output (held-out samples; chapter 7: its own)", fontsize=10)
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, ncol=3, markerscale=0.5, loc="outside upper center")
    return fig


def ddim_diagnosis(r):
    """Class agreement and saturated pixels against the guidance scale, per sampler (chapter 7's DDIM question)."""
    t = r.ddim
    fig, axes = subplots(1, 2, figsize=(WIDTH_IN, 3.4))
    for (sampler, k), d in t.groupby(["sampler", "steps"], sort=False):
        label = f"{'DDIM' if sampler == 'ddim' else 'ancestral'} K={k}"
        line = axes[0].plot(d.guidance, 100 * d.agreement, "-o", ms=4, label=label)[0]
        axes[0].fill_between(d.guidance, 100 * d.agreement_lo, 100 * d.agreement_hi, color=line.get_color(), alpha=0.2, lw=0)
        axes[1].plot(d.guidance, 100 * d.saturated, "-o", ms=4, color=line.get_color(), label=label)
    axes[0].set(xlabel="guidance scale", ylabel="class agreement (%)", title="the classifier sees\nthe prompted class")
    axes[1].set(xlabel="guidance scale", ylabel="saturated pixels (%)", title="|x| >= 0.98")
    axes[0].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
