"""What runs where, drawn from the package's own structures: the paper's diagrams (Figs. 1
and 2) and the step-by-step timelines of schedules (Fig. 11, chapter 8)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.patches import Patch, Rectangle

from unetdyn.interventions import Schedule, SkipSteps
from unetdyn.paper.canvas import WIDTH_IN, subplots
from unetdyn.paper.plots.common import FOURTH, IDLE, RUN, SECOND, THIRD, THRESHOLD_COLOR
from unetdyn.unet import encoder_blocks_needed

__all__ = ["fig1", "fig2", "fig11", "timelines"]


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
        ax.add_patch(Rectangle((1.5, 0), 1, 0.7, color=FOURTH if not drop else IDLE))
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


def fig11(r, names: Sequence[str]):
    steps = r.spec.steps
    colors = {0: RUN, 6: SECOND, 8: THIRD}
    fig, ax = subplots(figsize=(WIDTH_IN, 1.2 + 0.5 * len(names)))
    seen = set()
    for row, name in enumerate(names):
        ran = {s.t: s for s in r.parts[name].compile(steps, 16, 16)}
        for t in range(steps, 0, -1):
            s = ran.get(t)
            seen.add(None if s is None else s.drop_blocks if s.drop_blocks in colors else "other")
            ax.bar(t, 0.8, bottom=-row, width=0.9, color="lightgray" if s is None else colors.get(s.drop_blocks, FOURTH))
    ax.set_xlim(steps + 1, 0)
    ax.set_yticks([-k + 0.4 for k in range(len(names))], list(names))
    ax.set_xlabel("t (sampling runs from left to right)")
    legend = {0: Patch(color=RUN, label="full Unet"), 6: Patch(color=SECOND, label="nb = 6 removed"),
              8: Patch(color=THIRD, label="nb = 8 removed"), "other": Patch(color=FOURTH, label="other nb removed"),
              None: Patch(color="lightgray", label="not run")}
    ax.legend(handles=[h for k, h in legend.items() if k in seen], ncol=3, fontsize=8, loc="lower center",
              bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def timelines(schedules: dict, steps: int, n_blocks: int, n_skips: int):
    """One row per schedule, one bar per step t = K .. 1: what the Unet runs there.

    Colour: the full Unet, or the bottom nb decoder blocks removed (darker = more; hatched:
    reused from the cache); a pale bar: guidance's unconditional branch dropped; no bar: the
    step is not run (a jump passes over it, or the early stop came before it).
    """
    cmap = plt.get_cmap("OrRd")
    fig, ax = subplots(figsize=(WIDTH_IN, 1.6 + 0.45 * len(schedules)))
    for row, s in enumerate(schedules.values()):
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
