"""The paper's experiments as families of schedules: one schedule per point of a curve, with the
labels (``t_start``, ``n``, ``nb``, ``r``) that place it on the curve.

A family is ``(schedules, labels)``; :meth:`unetdyn.paper.sweeps.Sweep.run` takes both.
"""

from __future__ import annotations

from collections.abc import Sequence

from unetdyn.interventions import DropBlocks, EarlyStop, Schedule, SkipSteps, ZeroSkips

__all__ = ["skip_steps_family", "zero_skips_family", "drop_blocks_family", "cut_relax_cut_family", "adapted_shortcut"]


def skip_steps_family(t_starts: Sequence[int], n: int, variance: str = "jump") -> tuple[list[Schedule], list[dict]]:
    """Time-step removal (Figs. 3, 4, 18): jump from each ``t_start`` to ``t_start - n``
    (``variance``: see :class:`~unetdyn.interventions.SkipSteps`)."""
    tag = "" if variance == "jump" else f" {variance}"
    scheds = [Schedule((SkipSteps(t_start=t, n=n, variance=variance),), name=f"skip n={n} t={t}{tag}") for t in t_starts]
    return scheds, [{"t_start": t, "n": n} for t in t_starts]


def zero_skips_family(t_starts: Sequence[int], n: int, ns: int) -> tuple[list[Schedule], list[dict]]:
    """Top-skip removal (Figs. 5, 7): ``ns`` skips zeroed for steps ``t_start .. t_start-n+1``."""
    scheds = [Schedule((ZeroSkips(t_start=t, n=n, ns=ns),), name=f"ns={ns} n={n} t={t}") for t in t_starts]
    return scheds, [{"t_start": t, "n": n, "ns": ns} for t in t_starts]


def drop_blocks_family(
    t_starts: Sequence[int], ns_steps: Sequence[int] | int, nb: int, fill: str = "zeros"
) -> tuple[list[Schedule], list[dict]]:
    """Bottom-block removal (Figs. 6-9): every (t_start, n) pair with ``nb`` decoder blocks removed."""
    n_list = [ns_steps] if isinstance(ns_steps, int) else list(ns_steps)
    scheds, labels = [], []
    for t in t_starts:
        for n in n_list:
            if n > t:
                continue
            scheds.append(Schedule((DropBlocks(t_start=t, n=n, nb=nb, fill=fill),), name=f"nb={nb} n={n} t={t} {fill}"))
            labels.append({"t_start": t, "n": n, "nb": nb})
    return scheds, labels


def cut_relax_cut_family(t_start: int, nb: int, n: int, relax: Sequence[int]) -> tuple[list[Schedule], list[dict]]:
    """Cut-relax-cut (Figs. 10, 21): cut ``n`` steps, relax ``r``, cut ``n`` again."""
    scheds, labels = [], []
    for r in relax:
        second = t_start - n - r
        if second - n + 1 < 1:
            continue
        ivs = (DropBlocks(t_start=t_start, n=n, nb=nb), DropBlocks(t_start=second, n=n, nb=nb))
        scheds.append(Schedule(ivs, name=f"nb={nb} n={n} t={t_start} r={r}"))
        labels.append({"t_start": t_start, "n": n, "nb": nb, "r": r})
    return scheds, labels


def adapted_shortcut(reach: dict[int, int | None], stop_t: int | None, name: str = "adapted shortcut") -> Schedule:
    """The paper's Fig. 11 pattern placed at a model's own thresholds.

    The paper removes nb = 6 blocks for 5 steps from where Fig. 8 says that keeps SSIM 0.8
    (t = 65), then nb = 8 for 2 steps (from t = 60, where nb = 8 does), relaxes 11 steps, cuts
    nb = 8 for 7, relaxes 9, cuts 7 again, and stops early where the x0 estimate is accurate.
    Here the same pattern starts at ``reach[6]`` and ``reach[8]`` (e.g. from
    :func:`unetdyn.paper.chapters.fig8_crossings`) and stops at ``stop_t``; a cut is dropped when its threshold was
    never reached or when it would run into the early stop.

    Example (the paper's thresholds give the paper's schedule):
        >>> from unetdyn.interventions import preset
        >>> adapted_shortcut({6: 65, 8: 60}, 18).interventions == preset("paper-shortcut").interventions
        True
    """
    t6, t8 = reach.get(6), reach.get(8)
    floor = stop_t or 0
    ivs: list = []

    def cut(t_start: int, n: int, nb: int) -> None:
        if t_start - n + 1 > floor:
            ivs.append(DropBlocks(t_start=t_start, n=n, nb=nb))

    if t6 is not None:
        cut(t6, 5, 6)
    if t8 is not None:
        a = min(t6 - 5, t8) if t6 is not None else t8
        for start, n in ((a, 2), (a - 13, 7), (a - 29, 7)):  # relax 11 after the first, 9 after the second
            cut(start, n, 8)
    if stop_t is not None:
        ivs.append(EarlyStop(t=stop_t))
    return Schedule(tuple(ivs), name=name)
