"""Chapter 5, ``05_relaxation``: cut ``n`` steps, relax ``r``, cut ``n`` again (Figs. 10, 21)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from unetdyn.paper import readings as rd
from unetdyn.paper.chapters.ch04_n_limit import PAPER_T_STARTS, each_setting, settings
from unetdyn.paper.chapters.common import IMAGE_SAMPLES, THRESHOLD, SweepParams, image_samples, param, run_family
from unetdyn.paper.families import cut_relax_cut_family
from unetdyn.paper.readings import Reading, bootstrap
from unetdyn.paper.sweeps import SweepResult, SweepSpec
from unetdyn.paper.verdicts import Finding, finding, note

__all__ = ["Params", "Relaxation", "run", "PAPER_RELAX"]

PAPER_RELAX = {0.8: (15, 20), 0.75: (10, 12)}  # "r in [15, 20]" keeps SSIM >= 0.8; "r in [10, 12]" 0.75
CLAIMS = {0.8: "relax-0.8", 0.75: "relax-0.75"}


@dataclass(frozen=True)
class Params(SweepParams):
    """Chapter 5's parameters."""

    paper_t_starts: dict[int, int] = param(PAPER_T_STARTS, "nb: t_start, where the paper removes each nb")
    own_t_starts: bool = param(True, "also run where this model's Fig. 8 curves cross 0.8 (the same sweep as "
                                     "chapter 3)")
    n: int = param(7, "steps of each cut")
    relax: tuple[int, ...] = param(tuple(range(0, 26)), "every r, so that the paper's ranges r in [15, 20] and "
                                                        "[10, 12] can be read")
    thresholds: tuple[float, ...] = param((0.8, 0.75), "SSIM thresholds read")
    fig8_n: int = param(5, "chapter 3's n")
    fig8_t_stride: int = param(5, "chapter 3's grid")
    image_samples: int = param(IMAGE_SAMPLES, "samples whose images are kept")


@dataclass(frozen=True)
class Relaxation:
    """Chapter 5: cut ``n`` steps, relax ``r``, cut ``n`` again (Figs. 10, 21)."""

    spec: SweepSpec
    n: int
    settings: dict[str, dict[int, int]]
    baseline: dict[str, np.ndarray] = field(repr=False)
    result: SweepResult = field(repr=False)
    needed: dict[tuple[str, int, float], Reading]
    findings: tuple[Finding, ...]


def run(p: Params = Params()) -> Relaxation:
    """Chapter 5. The paper's claim is that relaxing ``r`` in its range suffices (the lowest mean SSIM
    over those ``r`` stays above the threshold); the smallest ``r`` from which the mean stays above
    it is a stricter reading, shown beside it."""
    opened = p.open()
    sweep, base, st = opened
    found = settings(opened, p.paper_t_starts, p.own_t_starts, p.fig8_n, p.fig8_t_stride, THRESHOLD)
    parts, needed, findings = [], {}, []
    for which, nb, t, own in each_setting(found):
        family = cut_relax_cut_family(t, nb, p.n, p.relax)
        if not family[0]:
            continue
        res = run_family(sweep, family, image_samples(sweep, p.image_samples), setting=which)
        parts.append(res)
        xs, vals = rd.curve_matrix(res.table, "r")
        where = f"nb = {nb}, t_start = {t} ({which})"
        for th in p.thresholds:
            needed[(which, nb, th)] = bootstrap(lambda m, th=th, xs=xs: rd.crossing(xs, m, th, descending=False), vals,
                                                top=float(xs.max()), beyond="> {top}", strata=st)
            if th in CLAIMS and th in PAPER_RELAX:  # the paper's claim: these r suffice
                a, b = PAPER_RELAX[th]
                in_range = (xs >= a) & (xs <= b)
                if in_range.any():
                    low = bootstrap(lambda m, w=in_range: float(np.min(m[w])), vals, digits=3, strata=st)
                    findings.append(finding(CLAIMS[th], f"{where}: lowest mean SSIM over r in [{a}, {b}] on the grid",
                                            low, "fig-10", own=own))
            findings.append(note("relax-smallest", f"{where}: smallest r from which SSIM stays >= {th:g}",
                                 str(needed[(which, nb, th)]), "fig-10",
                                 why=f"the paper: r in [{PAPER_RELAX[th][0]}, {PAPER_RELAX[th][1]}]" if th in PAPER_RELAX else ""))
    order = {cid: i for i, cid in enumerate(["relax-0.8", "relax-0.75", "relax-smallest"])}
    findings.sort(key=lambda f: (order[f.claim], not f.own))
    return Relaxation(spec=p.spec, n=p.n, settings=found, baseline=base,
                      result=SweepResult.concat(parts) if parts else SweepResult(pd.DataFrame()), needed=needed,
                      findings=tuple(findings))
