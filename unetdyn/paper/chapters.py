"""One function per chapter of the book: its sweeps, its readings and its findings.

Each function takes the sweep spec (model and samples, shared by every chapter), the
chapter's own grid, and ``compute``: with ``compute=False`` (how the book is built) every
result must already be in the store, and a missing one raises
:class:`~unetdyn.paper.cache.CacheMiss`; with ``compute=True`` missing results are sampled
and stored as they finish. Each returns a frozen record: the curves, the images (keyed by
intervention records), the readings with their 95% intervals, and the findings, each
with the paper's value and a verdict computed from the interval.

Chapters that rest on another chapter's sweep call the same function with the same spec:
chapters 4 to 6 read the Fig. 8 crossings through :func:`fig8_crossings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from unetdyn.interventions import DropBlocks, EarlyStop, Schedule, SkipSteps, ZeroSkips, load_schedule
from unetdyn.noise import NoiseSchedule
from unetdyn.paper import readings as rd
from unetdyn.paper.readings import Reading, bootstrap, verdict
from unetdyn.paper.sweeps import (
    Sweep,
    SweepResult,
    SweepSpec,
    adapted_shortcut,
    cut_relax_cut_family,
    drop_blocks_family,
    open_sweep,
    skip_steps_family,
    zero_skips_family,
)

__all__ = [
    "IMAGE_SAMPLES",
    "Finding",
    "findings_table",
    "t_grid",
    "Phases",
    "phases",
    "SkipVsBlocks",
    "skip_vs_blocks",
    "BlockSweep",
    "block_sweep",
    "fig8_crossings",
]

IMAGE_SAMPLES = 6  # every sweep keeps the images of its first six samples (six classes)
THRESHOLD = 0.8  # the paper's SSIM threshold for "no visible change in global semantics"


@dataclass(frozen=True)
class Finding:
    """One of the paper's quantitative claims beside ours.

    Attributes:
        claim: what is compared.
        paper: the paper's words or number.
        ours: our reading (with its 95% interval) or value.
        verdict: ``agrees`` / ``differs`` / ``inconclusive`` (from the interval), or ``-``
            where the paper gives no number to compare with.
        section: the chapter section that shows it.
    """

    claim: str
    paper: str
    ours: str
    verdict: str
    section: str = ""


def finding(claim: str, paper_text: str, reading: Reading, paper: float | tuple[float, float] | None, section: str = "") -> Finding:
    """A :class:`Finding` whose verdict follows from ``reading``'s interval and the paper's value or range."""
    return Finding(claim, paper_text, str(reading), "-" if paper is None else verdict(reading, paper), section)


def findings_table(findings: Sequence[Finding]) -> pd.DataFrame:
    """The closing table of a chapter (full text, no truncation is applied here)."""
    return pd.DataFrame(
        [(f.claim, f.paper, f.ours, f.verdict) for f in findings],
        columns=["claim", "paper (GLIDE)", "ours [95% interval]", "verdict"],
    )


def t_grid(steps: int, stride: int, low: int = 1, extra: Sequence[int] = ()) -> list[int]:
    """``t_start`` values ``steps, steps - stride, ...`` down to ``low``, plus ``extra``, high to low."""
    if stride < 1:
        raise ValueError(f"t_stride={stride} must be >= 1")
    return sorted({t for t in range(steps, low - 1, -stride)} | {int(t) for t in extra if low <= t <= steps}, reverse=True)


def _sweep(spec: SweepSpec, compute: bool, runtime: dict[str, Any]) -> Sweep:
    return open_sweep(spec, compute=compute, **runtime)


def _images(sweep: Sweep, k: int = IMAGE_SAMPLES) -> list[int]:
    return list(range(min(k, len(sweep.seeds))))


# -- chapter 1: phases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Phases:
    """Chapter 1: skipping ``n`` steps from each ``t_start`` (Figs. 3, 4, 15-18)."""

    spec: SweepSpec
    n: int
    baseline: dict[str, np.ndarray] = field(repr=False)
    fig4: SweepResult = field(repr=False)
    fig18: SweepResult = field(repr=False)
    betas: np.ndarray = field(repr=False)
    dip: dict[str, Reading]
    x0_step: Reading
    x0_at_25: Reading
    rise: Reading
    below_at_n5: Reading
    noise_pickup: float
    findings: tuple[Finding, ...]

    @property
    def phase_bounds(self) -> tuple[float, float]:
        return self.dip["peak"].value, self.dip["bottom"].value


def phases(
    spec: SweepSpec = SweepSpec(),
    *,
    n: int = 5,
    t_stride: int = 5,
    n_values: Sequence[int] = (2, 5, 10),
    t_stride_fig18: int = 5,
    image_t_starts: Sequence[int] = (95, 75, 50, 20),
    image_samples: int = IMAGE_SAMPLES,
    x0_threshold: float = THRESHOLD,
    rise_factor: float = 2.0,
    smooth: int = 1,
    compute: bool = False,
    **runtime,
) -> Phases:
    """Chapter 1. ``smooth`` is the moving-average window (grid points) of the dip reading."""
    sweep = _sweep(spec, compute, runtime)
    base = sweep.baseline()
    grid = t_grid(spec.steps, t_stride, n, image_t_starts)
    s, lab = skip_steps_family(grid, n)
    fig4 = sweep.run(s, labels=lab, images=_images(sweep, image_samples))
    parts = []
    for nn in n_values:
        s, lab = skip_steps_family(t_grid(spec.steps, t_stride_fig18, nn), nn)
        parts.append(sweep.run(s, labels=lab))
    fig18 = SweepResult.concat(parts)

    xs, vals = rd.curve_matrix(fig4.table, "t_start")
    dip = {
        "peak": bootstrap(lambda m: rd.drawdown(xs, m, smooth)[0], vals, top=float(xs.max())),
        "bottom": bootstrap(lambda m: rd.drawdown(xs, m, smooth)[1], vals, top=float(xs.max())),
    }
    # Is the dip real? Find it on the first half of the samples, measure it on the other half.
    half = vals.shape[1] // 2
    p, b, _ = rd.drawdown(xs, np.nanmean(vals[:, :half], axis=1), smooth)
    ip, ib = int(np.flatnonzero(xs == p)[0]), int(np.flatnonzero(xs == b)[0])
    dip["depth (held out)"] = bootstrap(lambda m: m[ip] - m[ib], vals[:, half:], digits=3)
    ssim_hat = base["ssim_x0hat"]
    x0_step = bootstrap(lambda m: rd.x0_accurate_step(m, x0_threshold), ssim_hat)
    t25 = min(25, spec.steps)
    x0_at_25 = bootstrap(lambda m: m[t25], ssim_hat, digits=3)
    psnr = np.where(np.isinf(base["psnr_xt"]), np.nan, base["psnr_xt"])
    psnr[0] = np.inf  # row 0 is x_0 itself; the readings ignore it
    rise = bootstrap(lambda m: rd.rise_start(m, rise_factor), psnr)
    t5 = fig18.table[fig18.table.n == 5] if 5 in n_values else fig4.table
    _, v5 = rd.curve_matrix(t5, "t_start")
    below_at_n5 = bootstrap(lambda m: float(np.mean(m)), (v5 < THRESHOLD).astype(float), digits=2)
    betas = NoiseSchedule(spec.steps).betas
    noise_pickup = rd.crossing(np.arange(1, spec.steps + 1), np.asarray(betas), 2 * float(np.median(betas)))

    findings = (
        Finding("phase 1 / 2 boundary (t_start)", "marked by eye in Fig. 4, no number", str(dip["peak"]), "-", "fig-4"),
        Finding("phase 2 / 3 boundary (t_start)", "marked by eye in Fig. 4, no number", str(dip["bottom"]), "-", "fig-4"),
        finding("phase 2 dip of SSIM (held-out depth)", "a dip (SSIM and PSNR decrease)", dip["depth (held out)"], (1e-12, np.inf), "fig-4"),
        Finding("noise pick-up of the beta schedule (Fig. 15): beta > 2x its median from t", "t > 85",
                f"{noise_pickup:.0f} (exact: no samples involved)", "agrees" if 80 <= noise_pickup <= 90 else "differs", "figs-15-17"),
        finding(f"sharp PSNR rise of x_t (gain > {rise_factor:g}x median) from t", "t in [15, 18]", rise, (15, 18), "figs-15-17"),
        finding(f"x0 estimate accurate (mean SSIM >= {x0_threshold:g}) from t", "t = 18 (captions: 17)", x0_step, (17, 18), "figs-15-17"),
        finding("mean SSIM of the x0 estimate at t = 25", "keeps the global structure (>= 0.8)", x0_at_25, (THRESHOLD, 1.0), "figs-15-17"),
        finding("share of outputs below SSIM 0.8 at n = 5 (Fig. 18)", "most (> 0.5)", below_at_n5, (0.5 + 1e-12, 1.0), "fig-18"),
    )
    return Phases(spec, n, base, fig4, fig18, np.asarray(betas), dip, x0_step, x0_at_25, rise, below_at_n5,
                  float(noise_pickup), findings)


# -- chapter 3: which blocks become redundant, and when --------------------------------------


@dataclass(frozen=True)
class BlockSweep:
    """Chapter 3: the bottom ``nb`` decoder blocks removed for ``n`` steps from each ``t_start`` (Figs. 8, 19)."""

    spec: SweepSpec
    n: int
    nbs: tuple[int, ...]
    baseline: dict[str, np.ndarray] = field(repr=False)
    result: SweepResult = field(repr=False)
    crossings: dict[int, Reading]
    order_violations: Reading
    findings: tuple[Finding, ...]


def _fig8(sweep: Sweep, nbs: Sequence[int], n: int, t_stride: int, extra: Sequence[int] = (), images: int = 0) -> SweepResult:
    grid = t_grid(sweep.config.steps, t_stride, n, extra)
    parts = []
    for nb in nbs:
        s, lab = drop_blocks_family(grid, n, nb)
        parts.append(sweep.run(s, labels=lab, images=_images(sweep, images) if images else None))
    return SweepResult.concat(parts)


def _crossings(res: SweepResult, nbs: Sequence[int], threshold: float) -> tuple[dict[int, Reading], Reading]:
    mats = {}
    for nb in nbs:
        xs, mats[nb] = rd.curve_matrix(res.table[res.table.nb == nb], "t_start")
    top = float(xs.max())
    cross = {nb: bootstrap(lambda m: rd.crossing(xs, m, threshold), mats[nb], top=top) for nb in nbs}

    def violations(*ms) -> float:
        c = [rd.crossing(xs, m, threshold) for m in ms]
        return float(sum(b > a for a, b in zip(c, c[1:])))

    return cross, bootstrap(violations, *[mats[nb] for nb in nbs])


def fig8_crossings(
    spec: SweepSpec, nbs: Sequence[int], n: int = 5, t_stride: int = 5, threshold: float = THRESHOLD,
    compute: bool = False, **runtime,
) -> dict[int, Reading]:
    """Per ``nb``, the Fig. 8 ``t_start`` from which removing the blocks keeps mean SSIM >= ``threshold``."""
    sweep = _sweep(spec, compute, runtime)
    return _crossings(_fig8(sweep, nbs, n, t_stride), nbs, threshold)[0]


# The paper's Fig. 8 sentence, "nb = 2 achieves an SSIM of 0.8 sooner than nb = 4 (at
# t_start ~ 68), nb = 4 reaches the same threshold earlier than nb = 6 (at t_start ~ 65)",
# attaches each number to either block count; both readings are compared. "~" is read as
# +-3 steps.
FIG8_READINGS = {
    "68 -> nb = 2, 65 -> nb = 4 (as Fig. 9's t_starts 70 / 65 suggest)": {2: 68, 4: 65},
    "68 -> nb = 4, 65 -> nb = 6": {4: 68, 6: 65},
}
APPROX = 3


def block_sweep(
    spec: SweepSpec = SweepSpec(),
    *,
    n: int = 5,
    nbs: Sequence[int] = (2, 4, 6, 8, 10, 12),
    t_stride: int = 5,
    image_t_starts: Sequence[int] = (90, 70, 50, 30, 10),
    image_samples: int = IMAGE_SAMPLES,
    threshold: float = THRESHOLD,
    compute: bool = False,
    **runtime,
) -> BlockSweep:
    """Chapter 3."""
    sweep = _sweep(spec, compute, runtime)
    base = sweep.baseline()
    res = _fig8(sweep, nbs, n, t_stride, image_t_starts, image_samples)
    # the crossings are read on the regular grid only (the image t_starts may sit between)
    regular = set(t_grid(spec.steps, t_stride, n))
    cross, viol = _crossings(SweepResult(res.table[res.table.t_start.isin(regular)]), nbs, threshold)
    findings = []
    for which, claims in FIG8_READINGS.items():
        for nb, t in claims.items():
            if nb in cross:
                findings.append(finding(f"nb = {nb}: SSIM >= {threshold:g} from t_start (reading: {which})", f"~{t}",
                                        cross[nb], (t - APPROX, t + APPROX), "fig-8"))
    findings.append(finding("order violations: a larger nb reaching the threshold earlier", "0 (bottom-up redundancy)",
                            viol, 0, "fig-8"))
    return BlockSweep(spec, n, tuple(nbs), base, res, cross, viol, tuple(findings))
