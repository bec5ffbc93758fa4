"""Single samples and their spread: image rows of originals against intervened outputs and
histograms of per-sample SSIM (chapters 1, 2, 6 and 8)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

from unetdyn.interventions import DropBlocks, SkipSteps, ZeroSkips
from unetdyn.paper.canvas import subplots
from unetdyn.paper.galleries import image_rows, sample_prompts
from unetdyn.paper.plots.common import RUN, SECOND, THRESHOLD_COLOR, panels

__all__ = ["fig3", "figs5_6", "fig12", "fig13", "fig22", "held_out_histograms", "found_pairs"]


def fig3(r, image_t_starts: Sequence[int]):
    prompts = sample_prompts(r.fig4.table)
    k = r.fig4.images[next(iter(r.fig4.images))].shape[0]
    rows = [r.baseline["x0"][:k]] + [r.fig4.image(SkipSteps(t_start=t, n=r.n)) for t in image_t_starts]
    return image_rows(rows, ["original"] + [f"t_start={t}" for t in image_t_starts], list(prompts[:k]))


def figs5_6(r, image_t_starts: Sequence[int]):
    prompts = sample_prompts(r.skips.table)
    k = r.skips.images[next(iter(r.skips.images))].shape[0]
    labels = ["original"] + [f"t_start={t}" for t in image_t_starts]
    for res, iv, title in ((r.skips, lambda t: ZeroSkips(t, r.n, r.ns), f"Fig. 5: top {r.ns} skips zeroed for {r.n} steps"),
                           (r.blocks, lambda t: DropBlocks(t, r.n, r.nb), f"Fig. 6: bottom {r.nb} blocks removed for {r.n} steps")):
        image_rows([r.baseline["x0"][:k]] + [res.image(iv(t)) for t in image_t_starts], labels, list(prompts[:k]), title=title)


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


def held_out_histograms(r, threshold: float = 0.8):
    """SSIM to the full output on the held-out samples, per compared schedule."""
    names = list(r.parts)
    fig, axes = panels(len(names), 2.8)
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
