"""Chapter 2, ``02_skip_vs_deconv``: the top ``ns`` skips zeroed against the bottom ``nb``
blocks removed, for ``n`` steps from each ``t_start`` (Figs. 5-7)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from unetdyn.paper import readings as rd
from unetdyn.paper.chapters.common import (
    EARLY_WINDOWS,
    IMAGE_SAMPLES,
    LATE_WINDOWS,
    SweepParams,
    image_samples,
    param,
    run_family,
    t_grid,
    window,
)
from unetdyn.paper.families import drop_blocks_family, zero_skips_family
from unetdyn.paper.readings import Reading, bootstrap
from unetdyn.paper.sweeps import SweepResult, SweepSpec
from unetdyn.paper.verdicts import Finding, Sensitivity, finding, sensitivity

__all__ = ["Params", "SkipVsBlocks", "run"]


@dataclass(frozen=True)
class Params(SweepParams):
    """Chapter 2's parameters."""

    n: int = param(5, "steps each intervention lasts")
    ns: int = param(2, "top skips zeroed")
    nb: int = param(2, "bottom decoder blocks removed")
    t_stride: int = param(5, "spacing of the t_start grid")
    image_t_starts: tuple[int, ...] = param((95, 75, 50, 20), "Figs. 5 and 6 rows")
    image_samples: int = param(IMAGE_SAMPLES, "samples whose images are kept")
    late: int = param(50, "ours: t_start up to this counts as after phase 1")
    early: int = param(75, "ours: t_start above this counts as in phase 1")


@dataclass(frozen=True)
class SkipVsBlocks:
    """Chapter 2: the top ``ns`` skips zeroed vs the bottom ``nb`` blocks removed, ``n`` steps (Figs. 5-7)."""

    spec: SweepSpec
    n: int
    ns: int
    nb: int
    baseline: dict[str, np.ndarray] = field(repr=False)
    skips: SweepResult = field(repr=False)
    blocks: SweepResult = field(repr=False)
    readings: dict[str, Reading]
    findings: tuple[Finding, ...]
    sensitivities: tuple[Sensitivity, ...] = ()


def run(p: Params = Params()) -> SkipVsBlocks:
    """Chapter 2. ``late`` and ``early`` are our choices: each reading is redone over a declared range of them."""
    sweep, base, st = p.open()
    grid = t_grid(p.steps, p.t_stride, p.n, p.image_t_starts)
    images = image_samples(sweep, p.image_samples)
    skips = run_family(sweep, zero_skips_family(grid, p.n, p.ns), images)
    blocks = run_family(sweep, drop_blocks_family(grid, p.n, p.nb), images)

    xs, s_psnr = rd.curve_matrix(skips.table, "t_start", "psnr")
    _, b_psnr = rd.curve_matrix(blocks.table, "t_start", "psnr")
    _, s_ssim = rd.curve_matrix(skips.table, "t_start", "ssim")
    _, b_ssim = rd.curve_matrix(blocks.table, "t_start", "ssim")
    reads = {
        "skips-cost-psnr": lambda lt: bootstrap(lambda a, b: window(xs <= lt)(a - b), s_psnr, b_psnr, digits=1, strata=st),
        "blocks-redundant-late": lambda lt: bootstrap(window(xs <= lt), b_ssim, digits=3, strata=st),
        "early-blocks-change": lambda e: bootstrap(window(xs > e), b_ssim, digits=3, strata=st),
        "early-skips-change": lambda e: bootstrap(window(xs > e), s_ssim, digits=3, strata=st),
    }
    windows = {"skips-cost-psnr": ("late", p.late, LATE_WINDOWS), "blocks-redundant-late": ("late", p.late, LATE_WINDOWS),
               "early-blocks-change": ("early", p.early, EARLY_WINDOWS),
               "early-skips-change": ("early", p.early, EARLY_WINDOWS)}
    r = {cid: reads[cid](windows[cid][1]) for cid in reads}
    sens = tuple(sensitivity(cid, par, vals, default, reads[cid]) for cid, (par, default, vals) in windows.items())
    what = {"skips-cost-psnr": f"t_start <= {p.late}: PSNR of top {p.ns} skips zeroed minus bottom {p.nb} blocks removed (dB)",
            "blocks-redundant-late": f"t_start <= {p.late}: bottom {p.nb} blocks removed",
            "early-blocks-change": f"t_start > {p.early}: bottom {p.nb} blocks removed",
            "early-skips-change": f"t_start > {p.early}: top {p.ns} skips zeroed"}
    findings = tuple(finding(cid, what[cid], r[cid], "fig-7", own=True, choices=[s_]) for cid, s_ in zip(r, sens))
    return SkipVsBlocks(spec=p.spec, n=p.n, ns=p.ns, nb=p.nb, baseline=base, skips=skips, blocks=blocks, readings=r,
                        findings=findings, sensitivities=sens)
