"""Chapter 4, ``04_n_limit``: how many steps can blocks be removed for? The bottom ``nb``
blocks removed for ``n = 1, 2, ...`` steps from a fixed ``t_start`` (Figs. 9, 20).

Chapters 4 and 5 run at two kinds of setting: the paper's ``t_start`` per ``nb``, and where
this model's Fig. 8 curves cross the threshold (:func:`settings`, :func:`each_setting`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from unetdyn.paper import readings as rd
from unetdyn.paper.chapters.ch03_nb_sweep import fig8_crossings
from unetdyn.paper.chapters.common import (
    CROSSING_THRESHOLDS,
    IMAGE_SAMPLES,
    THRESHOLD,
    Opened,
    SweepParams,
    image_samples,
    param,
    run_family,
)
from unetdyn.paper.families import drop_blocks_family
from unetdyn.paper.readings import Reading, bootstrap
from unetdyn.paper.sweeps import SweepResult, SweepSpec
from unetdyn.paper.verdicts import Finding, Sensitivity, finding, sensitivity

__all__ = ["Params", "NLimit", "run", "PAPER_T_STARTS", "OWN_SETTING", "settings", "each_setting"]

PAPER_T_STARTS = {2: 70, 4: 65, 6: 65, 8: 60}  # Figs. 9, 10 and 20, 21: where each nb becomes redundant
# the claims' own setting in chapters 4 and 5: the one the paper's shortcut builds on (nb = 8 from t = 60)
OWN_SETTING = ("paper t_start", 8, 60)


def settings(opened: Opened, paper_t_starts: Mapping[int, int], own: bool, fig8_n: int, fig8_t_stride: int,
             threshold: float) -> dict[str, dict[int, int]]:
    """The t_starts a chapter runs at, per ``nb``: the paper's, and (``own``) where this model's Fig. 8 curves cross."""
    found = {"paper t_start": {int(k): int(v) for k, v in paper_t_starts.items()}}
    if own:
        cross = fig8_crossings(opened, list(found["paper t_start"]), fig8_n, fig8_t_stride, threshold)
        found["own t_start"] = {nb: int(r.value) for nb, r in cross.items() if np.isfinite(r.value)}
    return found


def each_setting(found: dict[str, dict[int, int]]) -> Iterator[tuple[str, int, int, bool]]:
    """``(which, nb, t_start, own)`` for every setting; ``own``: the claims' own setting."""
    for which, t_starts in found.items():
        for nb, t in t_starts.items():
            yield which, nb, t, (which, nb, t) == OWN_SETTING


@dataclass(frozen=True)
class Params(SweepParams):
    """Chapter 4's parameters."""

    paper_t_starts: dict[int, int] = param(PAPER_T_STARTS, "nb: t_start, where the paper removes each nb")
    own_t_starts: bool = param(True, "also run where this model's Fig. 8 curves cross the threshold (the same sweep "
                                     "as chapter 3)")
    n_values: tuple[int, ...] = param(tuple(range(1, 16)), "steps the blocks are removed for, one point each")
    fig8_n: int = param(5, "chapter 3's n")
    fig8_t_stride: int = param(5, "chapter 3's grid")
    threshold: float = param(THRESHOLD, "the paper's SSIM threshold")
    image_samples: int = param(IMAGE_SAMPLES, "samples whose images are kept")


@dataclass(frozen=True)
class NLimit:
    """Chapter 4: the bottom ``nb`` blocks removed for ``n = 1, 2, ...`` steps from a fixed ``t_start`` (Figs. 9, 20)."""

    spec: SweepSpec
    settings: dict[str, dict[int, int]]
    baseline: dict[str, np.ndarray] = field(repr=False)
    result: SweepResult = field(repr=False)
    limits: dict[tuple[str, int], Reading]
    findings: tuple[Finding, ...]
    sensitivities: tuple[Sensitivity, ...] = ()


def run(p: Params = Params()) -> NLimit:
    """Chapter 4. A limit at the top of the ``n`` grid prints as ``>= max(n_values)``."""
    opened = p.open()
    sweep, base, st = opened
    found = settings(opened, p.paper_t_starts, p.own_t_starts, p.fig8_n, p.fig8_t_stride, p.threshold)
    parts, limits, findings, sens = [], {}, [], []
    for which, nb, t, own in each_setting(found):
        res = run_family(sweep, drop_blocks_family([t], p.n_values, nb), image_samples(sweep, p.image_samples),
                         setting=which)
        parts.append(res)
        xs, vals = rd.curve_matrix(res.table, "n")
        limit_at = lambda th, xs=xs, vals=vals: bootstrap(lambda m: rd.run_limit(xs, m, th), vals,  # noqa: E731
                                                          top=float(xs.max()), strata=st)
        limits[(which, nb)] = limit_at(p.threshold)
        if own:
            sens.append(sensitivity("n-limit", "threshold", CROSSING_THRESHOLDS, p.threshold, limit_at))
    for (which, nb), r in sorted(limits.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        own = (which, nb, found[which][nb]) == OWN_SETTING
        findings.append(finding("n-limit", f"nb = {nb}, t_start = {found[which][nb]} ({which}), threshold {p.threshold:g}",
                                r, "fig-9", own=own, context=sens[:1] if own else ()))
    return NLimit(spec=p.spec, settings=found, baseline=base, result=SweepResult.concat(parts), limits=limits,
                  findings=tuple(findings), sensitivities=tuple(sens))
