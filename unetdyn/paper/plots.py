"""The book's figures, one function per figure of the paper, drawn from a chapter's result.

They only draw what a chapter function returned; nothing here samples or reads the cache.
Bands are the paper's (mean +- k sd over samples); the shaded inner band, where drawn, is
the 95% bootstrap interval of the mean. Every figure is sized for the book's content column
(:mod:`unetdyn.paper.canvas`).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator, PercentFormatter

from unetdyn.interventions import DropBlocks, Schedule, SkipSteps, ZeroSkips
from unetdyn.paper import readings as rd
from unetdyn.paper.canvas import WIDTH_IN, subplots
from unetdyn.paper.galleries import fig19, fig20, fig21, image_rows, sample_prompts

__all__ = [
    "band",
    "image_rows",
    "fig1",
    "fig2",
    "fig3",
    "fig4",
    "figs15_17",
    "fig18",
    "figs5_6",
    "fig7",
    "fig8",
    "block_usage",
    "fig19",
    "fig9",
    "fig20",
    "fig10",
    "fig21",
    "fig11",
    "fig12",
    "fig13",
    "fig22",
    "time_saved",
    "pareto",
    "methods_table",
    "glide_table",
    "efficiency",
    "other_unets",
    "timelines",
    "search_path",
    "held_out_histograms",
    "found_pairs",
    "beyond_pareto",
    "ddim_diagnosis",
]

# the colours every figure shares: a block or step that runs, one that does not, a second series
# beside the first, and a threshold or reference line
RUN, IDLE, SECOND, THRESHOLD_COLOR = "#4c72b0", "#dddddd", "#dd8452", "crimson"


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


def _mark_phases(ax, bounds: tuple[float, float], x_max: float) -> None:
    """Shade the three phases along a t axis (time runs from right to left); none when there is no dip."""
    b1, b2 = bounds
    if not (np.isfinite(b1) and np.isfinite(b2)):
        return
    for (lo, hi), name, col in zip([(b1, x_max), (b2, b1), (0, b2)], ("phase 1", "phase 2", "phase 3"),
                                   ("#fde0dd", "#e0ecf4", "#e5f5e0")):
        ax.axvspan(lo, hi, color=col, alpha=0.6, lw=0, zorder=0)
        ax.text((lo + hi) / 2, 1.01, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)


# -- the diagrams: Figs. 1 and 2, from the package's own structures ----------------------------


def fig1(steps: int = 10, schedule: Schedule | None = None):
    """Fig. 1: a regular inference (a) against one with time steps removed (b), drawn from a compiled schedule."""
    schedule = schedule or Schedule((SkipSteps(t_start=steps - 3, n=3),))
    fig, axes = subplots(2, 1, figsize=(WIDTH_IN, 2.4))
    for ax, sched, title in ((axes[0], Schedule(()), "(a) regular: every step runs"),
                             (axes[1], schedule, f"(b) {schedule.describe()}")):
        ran = {s.t: s for s in sched.compile(steps, 1, 1)}
        for t in range(steps, 0, -1):
            on = t in ran
            ax.add_patch(Rectangle((steps - t, 0), 0.8, 0.8, color=RUN if on else IDLE))
            ax.text(steps - t + 0.4, 0.4, f"x{t}", ha="center", va="center", fontsize=8, color="white" if on else "gray")
            if on:
                nxt = ran[t].next_t
                ax.annotate("", xy=(steps - nxt + 0.05, 0.9), xytext=(steps - t + 0.75, 0.9),
                            arrowprops=dict(arrowstyle="->", color="k", lw=0.8, connectionstyle="arc3,rad=-0.3"))
        ax.text(steps + 0.4, 0.4, "output", ha="left", va="center", fontsize=8)
        ax.set_xlim(-0.2, steps + 1.6)
        ax.set_ylim(-0.1, 1.4)
        ax.axis("off")
        ax.set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def fig2(unet, nb: int = 2, ns: int = 2):
    """Fig. 2: the Unet's blocks and skips (a), with the bottom ``nb`` decoder blocks removed (b) and the
    top ``ns`` skips zeroed (c); drawn from the backend's block structure (skips pushed and popped)."""
    from unetdyn.unet import encoder_blocks_needed

    n_enc, n_dec = len(unet.skips_pushed), len(unet.skips_popped)
    fig, axes = subplots(1, 3, figsize=(WIDTH_IN, 3.4), sharey=True, layout="constrained")
    for ax, (title, drop, zero) in zip(axes, (("(a) regular", 0, 0), (f"(b) nb = {nb} removed", nb, 0),
                                              (f"(c) ns = {ns} zeroed", 0, ns))):
        enc_run = encoder_blocks_needed(unet, drop) if drop else n_enc
        y_enc = {k: n_enc - k for k in range(n_enc)}  # encoder block k at height n_enc - k (top first)
        # decoder block j counts from the bottom; it consumes skips from the stack's top
        pushed = [k for k in range(n_enc) for _ in range(unet.skips_pushed[k])]
        top_skips = set(range(zero))
        for k in range(n_enc):
            ax.add_patch(Rectangle((0, y_enc[k]), 1, 0.7, color=RUN if k < enc_run else IDLE))
        ax.add_patch(Rectangle((1.5, 0), 1, 0.7, color="#8172b3" if not drop else IDLE))
        ax.text(2.0, 0.35, "mid", ha="center", va="center", fontsize=8, color="white")
        stack = list(range(len(pushed)))
        for j in range(n_dec):
            y = j + 1
            ran = j >= drop
            ax.add_patch(Rectangle((3, y), 1, 0.7, color=SECOND if ran else IDLE))
            for _ in range(unet.skips_popped[j]):
                s = stack.pop()
                k = pushed[s]
                zeroed = s in top_skips
                if ran:
                    ax.plot([1, 3], [y_enc[k] + 0.35, y + 0.35], color=THRESHOLD_COLOR if zeroed else "gray",
                            ls=":" if zeroed else "-", lw=1.2 if zeroed else 0.6)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-0.5, 4.5)
        ax.axis("off")
    fig.legend(handles=[Patch(color=RUN, label="encoder"), Patch(color=SECOND, label="decoder"),
                        Patch(color=IDLE, label="not run"), Patch(color=THRESHOLD_COLOR, label="skip zeroed")],
               fontsize=8, loc="outside lower center", ncol=4)
    return fig


# -- chapter 1 --------------------------------------------------------------------------------------


def fig3(r, image_t_starts: Sequence[int]):
    prompts = sample_prompts(r.fig4.table)
    k = r.fig4.images[next(iter(r.fig4.images))].shape[0]
    rows = [r.baseline["x0"][:k]] + [r.fig4.image(SkipSteps(t_start=t, n=r.n)) for t in image_t_starts]
    return image_rows(rows, ["original"] + [f"t_start={t}" for t in image_t_starts], list(prompts[:k]))


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


# -- chapter 2 --------------------------------------------------------------------------------------


def figs5_6(r, image_t_starts: Sequence[int]):
    prompts = sample_prompts(r.skips.table)
    k = r.skips.images[next(iter(r.skips.images))].shape[0]
    labels = ["original"] + [f"t_start={t}" for t in image_t_starts]
    for res, iv, title in ((r.skips, lambda t: ZeroSkips(t, r.n, r.ns), f"Fig. 5: top {r.ns} skips zeroed for {r.n} steps"),
                           (r.blocks, lambda t: DropBlocks(t, r.n, r.nb), f"Fig. 6: bottom {r.nb} blocks removed for {r.n} steps")):
        image_rows([r.baseline["x0"][:k]] + [res.image(iv(t)) for t in image_t_starts], labels, list(prompts[:k]), title=title)


def fig7(r):
    fig, axes = subplots(1, 2, figsize=(WIDTH_IN, 3.2))
    for ax, metric in zip(axes, ("psnr", "ssim")):
        band(ax, r.skips.table, "t_start", metric, label=f"top {r.ns} skips zeroed (s'_0)")
        band(ax, r.blocks.table, "t_start", metric, label=f"bottom {r.nb} blocks removed (b'_0)")
        ax.set(xlabel="t_start", ylabel=metric.upper(), xlim=(0, r.spec.steps))
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


# -- chapter 3 --------------------------------------------------------------------------------------


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
    call. Darker is a larger effect in both."""
    from matplotlib.colors import LogNorm

    fig, (a, b) = subplots(2, 1, figsize=(WIDTH_IN, 6.4), layout="constrained")
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
    steps = np.asarray(r.usage_steps)
    order = np.argsort(steps)
    change = np.clip(np.asarray(r.usage)[:, order], 1e-5, None)
    im = b.pcolormesh(steps[order], np.arange(len(r.usage_nbs)), change, norm=LogNorm(1e-4, 1), cmap="magma_r",
                      shading="nearest")
    b.set_yticks(np.arange(len(r.usage_nbs))[::2], [str(nb) for nb in r.usage_nbs][::2])
    b.set(xlabel="t", ylabel="bottom nb removed",
          title=f"(b) the step's x0 estimate: relative change, removed from that one call ({r.usage_samples} samples)")
    fig.colorbar(im, ax=b, label="||change of x0|| / ||x0||")
    for ax in (a, b):
        ax.set_xlim(0, r.spec.steps + 1)
        ax.title.set_fontsize(9)
    return fig


# -- chapters 4 and 5 -------------------------------------------------------------------------------


def _panels(n: int, height: float):
    """``n`` panels sharing their y axis, two to a row across the column; the spare one hidden."""
    cols = min(2, n)
    rows = -(-n // cols)
    fig, axes = subplots(rows, cols, figsize=(WIDTH_IN, height * rows), sharey=True, squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def _per_nb(r, x: str, lines, xlabel: str):
    nbs = sorted({nb for s in r.settings.values() for nb in s})
    fig, axes = _panels(len(nbs), 2.9)
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


# -- chapter 6 --------------------------------------------------------------------------------------


def fig11(r, names: Sequence[str]):
    steps = r.spec.steps
    colors = {0: RUN, 6: SECOND, 8: "#c44e52"}
    fig, ax = subplots(figsize=(WIDTH_IN, 1.2 + 0.5 * len(names)))
    seen = set()
    for row, name in enumerate(names):
        ran = {s.t: s for s in r.parts[name].compile(steps, 16, 16)}
        for t in range(steps, 0, -1):
            s = ran.get(t)
            seen.add(None if s is None else s.drop_blocks if s.drop_blocks in colors else "other")
            ax.bar(t, 0.8, bottom=-row, width=0.9, color="lightgray" if s is None else colors.get(s.drop_blocks, "#8172b3"))
    ax.set_xlim(steps + 1, 0)
    ax.set_yticks([-k + 0.4 for k in range(len(names))], list(names))
    ax.set_xlabel("t (sampling runs from left to right)")
    legend = {0: Patch(color=RUN, label="full Unet"), 6: Patch(color=SECOND, label="nb = 6 removed"),
              8: Patch(color="#c44e52", label="nb = 8 removed"), "other": Patch(color="#8172b3", label="other nb removed"),
              None: Patch(color="lightgray", label="not run")}
    ax.legend(handles=[h for k, h in legend.items() if k in seen], ncol=3, fontsize=8, loc="lower center",
              bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def fig12(r, pairs: int = 10, seed: int = 0):
    main = r.per_sample("shortcut")
    prompts = list(main.prompt)
    pick = sorted(np.random.default_rng(seed).choice(len(main), size=min(pairs, len(main)), replace=False))
    imgs = r.result.images[r.parts["shortcut"].interventions]
    return image_rows([r.baseline["x0"][pick], imgs[pick]], ["original", "shortcut"],
                      [f"{prompts[i]}\nSSIM {main.ssim[i]:.2f}" for i in pick])


def fig13(r):
    v = r.per_sample("shortcut").ssim
    fig, ax = subplots(figsize=(6, 3.2))
    ax.hist(v, bins=20, range=(min(0.5, v.min()), 1), color=RUN)
    m = r.ssim["shortcut"]
    ax.axvline(m.value, color=THRESHOLD_COLOR, label=f"mean {m}")
    ax.axvspan(m.value - r.mad.value, m.value + r.mad.value, color=THRESHOLD_COLOR, alpha=0.15, label=f"MAD {r.mad}")
    ax.set(xlabel="SSIM of shortcut to original", ylabel="samples")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    return fig


def fig22(r, k: int = 5):
    main = r.per_sample("shortcut")
    prompts = list(main.prompt)
    imgs = r.result.images[r.parts["shortcut"].interventions]
    order = main.ssim.sort_values().index.to_numpy()
    for title, idx in (("worst", order[:k]), ("best", order[::-1][:k])):
        image_rows([r.baseline["x0"][idx], imgs[idx]], ["original", "shortcut"],
                   [f"{prompts[i]}\nSSIM {main.ssim[i]:.2f}" for i in idx], title=title)


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


# -- chapter 7 --------------------------------------------------------------------------------------


def family_colors() -> dict[str, tuple]:
    """One colour per family of chapter 7, the same in every figure."""
    import seaborn as sns

    from unetdyn.paper.alternatives import FAMILIES

    return dict(zip(FAMILIES, sns.color_palette("tab10", len(FAMILIES))))


def pareto(r):
    """Speed-up (wall-clock and FLOPs) against SSIM to the full output, per family, with the Pareto front."""
    from unetdyn.paper.alternatives import FAMILIES
    from unetdyn.paper.alternatives import pareto as front_of

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
    from unetdyn.paper.alternatives import FAMILIES
    from unetdyn.paper.fair import AXIS_NAMES, QUALITY_NAMES

    t = r.table
    families = [f for f in FAMILIES if f in set(t.family) and f not in ("full", "paper shortcut")]
    palette = family_colors()
    sc = t[t.method == "paper shortcut"].iloc[0]
    qualities = ("ssim", "agreement", "frechet")
    fig, axes = subplots(2, 3, figsize=(WIDTH_IN, 6.8), sharex="row", layout="constrained")
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
                 "dotted: the shortcut's speed-up. Fréchet distance: lower is better.", fontsize=9)
    return fig


def _ci(v: float, lo: float, hi: float, fmt: str) -> str:
    return f"{v:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]" if np.isfinite(v) else "identical"


SMALL_TABLE = [{"selector": "td, th", "props": [("font-size", "0.8em"), ("padding", "2px 6px")]}]


def methods_table(r):
    """Every method: cost, both kinds of quality with their 95% intervals."""
    t = r.table
    if r.fair is None:
        cols = ["family", "method", "unet_calls", "flop_saving", "sec_per_sample", "speedup", "ssim_mean", "ssim_p5", "psnr_mean"]
        return t[cols].style.format({"flop_saving": "{:.1%}", "sec_per_sample": "{:.3f}", "speedup": "{:.2f}x",
                                     "ssim_mean": "{:.3f}", "ssim_p5": "{:.3f}", "psnr_mean": "{:.1f}"}).hide(axis="index")
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
        "class agreement": [_ci(*v, ".1%") for v in zip(t.agreement, t.agreement_lo, t.agreement_hi)],
        "Fréchet distance": [_ci(*v, ".2f") for v in zip(t.frechet, t.frechet_lo, t.frechet_hi)],
    })
    return out.style.hide(axis="index").set_table_styles(SMALL_TABLE)


def equal_cost_table(r, axis: str):
    """Each family read at the shortcut's speed-up on ``axis``: its advantage over the shortcut [95%] and the verdict."""
    from unetdyn.paper.fair import ADVANTAGE_FORMAT, QUALITY_NAMES

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


# -- chapter 8 --------------------------------------------------------------------------------------


def timelines(schedules: dict, steps: int, n_blocks: int, n_skips: int):
    """One row per schedule, one bar per step t = K .. 1: what the Unet runs there.

    Colour: the full Unet, or the bottom nb decoder blocks removed (darker = more; hatched:
    reused from the cache); a pale bar: guidance's unconditional branch dropped; no bar: the
    step is not run (a jump passes over it, or the early stop came before it).
    """
    cmap = plt.get_cmap("OrRd")
    fig, ax = subplots(figsize=(WIDTH_IN, 1.6 + 0.45 * len(schedules)))
    for row, (name, s) in enumerate(schedules.items()):
        for st in s.compile(steps, n_blocks, n_skips):
            color = RUN if not st.drop_blocks else cmap(0.35 + 0.6 * st.drop_blocks / n_blocks)
            ax.bar(st.t, 0.8, bottom=-row, width=0.9, color=color, alpha=1.0 if st.guided else 0.45,
                   hatch="////" if st.fill == "cache" and st.drop_blocks else None, edgecolor="white", lw=0)
            if st.stop:
                ax.plot([st.t - 0.6] * 2, [-row, -row + 0.8], color="k", lw=2)
    ax.set_xlim(steps + 1, 0)
    ax.set_yticks([-k + 0.4 for k in range(len(schedules))], list(schedules))
    ax.set_xlabel("t (sampling runs from left to right)")
    handles = [Patch(color=RUN, label="full Unet"), Patch(color=cmap(0.65), label="bottom nb blocks removed (darker: more)"),
               Patch(facecolor=cmap(0.65), hatch="////", edgecolor="white", label="... reused from the cache"),
               Patch(color=RUN, alpha=0.45, label="no unconditional branch"), Patch(color="white", label="gap: not run")]
    ax.legend(handles=handles, ncol=2, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.spines[["top", "right", "left"]].set_visible(False)
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
    from unetdyn.paper.search import METRICS

    ax.set(xlabel=f"{METRICS.get(res.budget.metric, res.budget.metric)} to the full output (search samples)",
           ylabel="FLOPs saved (%)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def held_out_histograms(r, threshold: float = 0.8):
    """SSIM to the full output on the held-out samples, per compared schedule."""
    names = list(r.parts)
    fig, axes = _panels(len(names), 2.8)
    for ax, name in zip(axes, names):
        t = r.result.table[r.result.table.schedule == name]
        held = t.prompt.isin(r.held_out_classes)
        bins = np.linspace(min(0.3, t.ssim.min()), 1, 25)
        ax.hist([t.ssim[~held], t.ssim[held]], bins=bins, stacked=True, color=[RUN, SECOND],
                label=["search classes (other seeds)", "classes the search never saw"])
        m = r.ssim[name]["all held-out samples"]
        ax.axvline(m.value, color="k", lw=1.2, label=f"mean {m}")
        ax.axvline(threshold, color=THRESHOLD_COLOR, ls=":", lw=1)
        ax.set(title=name, xlabel="SSIM to the full output")
    for ax in axes[::2]:  # the first of each row
        ax.set_ylabel("samples")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def found_pairs(r, name: str = "found", k: int = 10):
    """The first held-out samples: the full output above, the schedule's below, with their SSIM."""
    t = r.result.table[r.result.table.schedule == name].reset_index(drop=True)
    imgs = r.result.images[r.parts[name].interventions]
    k = min(k, len(imgs))
    return image_rows([r.base["x0"][:k], imgs[:k]], ["full", name], [f"{t.prompt[i]}\nSSIM {t.ssim[i]:.2f}" for i in range(k)])


def beyond_pareto(r, alternatives=None):
    """FLOP and wall-clock speed-up against held-out mean SSIM: the compared schedules over chapter 7's methods."""
    fig, axes = subplots(1, 2, figsize=(WIDTH_IN, 4.2), sharex=True, layout="constrained")
    tv = r.timings.set_index("schedule")
    for ax, y in ((axes[0], "speedup"), (axes[1], "flop_speedup")):
        if alternatives is not None:
            t = alternatives.table.assign(flop_speedup=1 / (1 - alternatives.table.flop_saving))
            n = alternatives.fair.samples if alternatives.fair is not None else alternatives.meta.get("samples")
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
