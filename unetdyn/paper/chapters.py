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
    "SweepSpec",
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
    "NLimit",
    "n_limit",
    "Relaxation",
    "relaxation",
    "Shortcut",
    "shortcut_parts",
    "shortcut",
    "Alternatives",
    "alternatives",
    "OtherUnets",
    "other_unets",
    "Beyond",
    "beyond",
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


def over_rounds(value: float, low: float, high: float, fmt: str, unit: str = "") -> str:
    """A timing median with its range over rounds (not a confidence interval)."""
    return f"{value:{fmt}}{unit} (range over rounds {low:{fmt}}{unit} to {high:{fmt}}{unit})"


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
    below: dict[int, Reading]
    noise_pickup: float
    findings: tuple[Finding, ...]
    fig4_eq4: SweepResult | None = field(default=None, repr=False)  # the jumps with Eq. 4's one-step sigma_t

    @property
    def phase_bounds(self) -> tuple[float, float]:
        """Where phases 1/2 and 2/3 meet; ``(-inf, -inf)`` unless held-out samples confirm the dip."""
        if not self.dip["depth (held out)"].lo > 0:
            return -np.inf, -np.inf
        return self.dip["peak"].value, self.dip["bottom"].value

    def dip_text(self) -> str:
        """Where the deepest dip of the skip-steps curve lies, in words, with its intervals."""
        p, b, depth = self.dip["peak"], self.dip["bottom"], self.dip["depth (held out)"]
        if not p.censored:
            where = f"starts at $t_{{start}}$ = {p} and bottoms out at {b} (95% intervals in brackets)"
        elif p.hi == -np.inf:
            where = "is not there: neither all samples nor any bootstrap resample show one"
        else:
            where = (f"is not there on all samples; some bootstrap resamples show one, starting at "
                     f"$t_{{start}} \\le$ {p.fmt(p.hi)} (the 95% interval runs from none to there)")
        return (f"Coming from pure noise the curve's deepest dip {where}. Measured on held-out samples (found on the "
                f"first half, measured on the second) the dip is {depth} deep: an interval that contains 0 means the "
                "dip may be noise.")


def phases(
    spec: SweepSpec = SweepSpec(),
    *,
    n: int = 5,
    t_stride: int = 5,
    n_values: Sequence[int] = (2, 5, 6, 10),
    t_stride_fig18: int = 5,
    image_t_starts: Sequence[int] = (95, 75, 50, 20),
    image_samples: int = IMAGE_SAMPLES,
    x0_threshold: float = THRESHOLD,
    rise_factor: float = 2.0,
    smooth: int = 1,
    eq4_variance: bool = True,
    compute: bool = False,
    **runtime,
) -> Phases:
    """Chapter 1. ``smooth`` is the moving-average window (grid points) of the dip reading; ``n_values``
    are jump lengths (Eq. 4's n): 6 and 2 are the paper's n = 5 and n = 1 in its Fig. 1b counting.
    ``eq4_variance`` also runs Fig. 4's jumps adding the one-step sigma_t (Eq. 4 read literally)."""
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
    fig4_eq4 = None
    if eq4_variance:
        s, lab = skip_steps_family(grid, n, variance="one-step")
        fig4_eq4 = sweep.run(s, labels=lab, images=_images(sweep, image_samples))

    xs, vals = rd.curve_matrix(fig4.table, "t_start")
    dip = {
        "peak": bootstrap(lambda m: rd.dip(xs, m, smooth)[0], vals, top=float(xs.max())),
        "bottom": bootstrap(lambda m: rd.dip(xs, m, smooth)[1], vals, top=float(xs.max())),
    }
    # Is the dip real? Its depth on the same samples is biased up (noise alone makes valleys),
    # so find its peak, bottom and recovery on the first half of the samples and measure the
    # contrast at those points on the other half (negative: no dip there).
    half = vals.shape[1] // 2
    first = np.nanmean(vals[:, :half], axis=1)
    p, b, _ = rd.dip(xs, first, smooth)
    if np.isfinite(p):
        later = xs < b
        a = float(xs[later][np.argmax(first[later])])
        dip["depth (held out)"] = bootstrap(lambda m: rd.valley_contrast(xs, m, p, b, a), vals[:, half:], digits=3)
    else:
        dip["depth (held out)"] = Reading(0.0, 0.0, 0.0, digits=3, samples=vals.shape[1] - half)
    ssim_hat = base["ssim_x0hat"]
    x0_step = bootstrap(lambda m: rd.x0_accurate_step(m, x0_threshold), ssim_hat)
    t25 = min(25, spec.steps)
    x0_at_25 = bootstrap(lambda m: m[t25], ssim_hat, digits=3)
    psnr = np.where(np.isinf(base["psnr_xt"]), np.nan, base["psnr_xt"])
    psnr[0] = np.inf  # row 0 is x_0 itself; the readings ignore it
    rise = bootstrap(lambda m: rd.rise_start(m, rise_factor), psnr)
    below = {}  # share of outputs below the threshold on Fig. 18's grid, per jump length
    for jump in sorted(set(fig18.table.n)):
        _, v = rd.curve_matrix(fig18.table[fig18.table.n == jump], "t_start")
        below[jump] = bootstrap(lambda m: float(np.mean(m)), (v < THRESHOLD).astype(float), digits=2)
    betas = NoiseSchedule(spec.steps, sweep.unet.diffusion).betas
    # scanning up from t = 1: the first t from which beta stays above twice its median (marked in Fig. 15)
    noise_pickup = rd.crossing(np.arange(1, spec.steps + 1), np.asarray(betas), 2 * float(np.median(betas)), descending=False)
    b = np.asarray(betas)
    k85 = min(85, spec.steps)

    findings = (
        Finding("phase 1 / 2 boundary (t_start)", "marked by eye in Fig. 4, no number", str(dip["peak"]), "-", "fig-4"),
        Finding("phase 2 / 3 boundary (t_start)", "marked by eye in Fig. 4, no number", str(dip["bottom"]), "-", "fig-4"),
        finding("phase 2 dip of SSIM (held-out contrast)", "a dip (SSIM and PSNR decrease)", dip["depth (held out)"], (1e-12, np.inf), "fig-4"),
        Finding("noise pick-up of the beta schedule (Fig. 15)", "t > 85",
                f"GLIDE's own schedule (cosine, respaced to {spec.steps} steps): beta grows {b[k85 - 1] / b[k85 // 2 - 1]:.1f}x "
                f"from t = {k85 // 2} to {k85}, then {b[-1] / b[k85 - 1]:.0f}x from t = {k85} to {spec.steps}; above twice its "
                f"median from t = {noise_pickup:.0f}", "-", "figs-15-17"),
        finding(f"sharp PSNR rise of x_t (gain > {rise_factor:g}x median) from t", "t in [15, 18]", rise, (15, 18), "figs-15-17"),
        finding(f"x0 estimate accurate (mean SSIM >= {x0_threshold:g}) from t", "t = 18 (captions: 17)", x0_step, (17, 18), "figs-15-17"),
        finding("mean SSIM of the x0 estimate at t = 25", "keeps the global structure (>= 0.8)", x0_at_25, (THRESHOLD, 1.0), "figs-15-17"),
    )
    # "n steps removed": Eq. 4 jumps from t to t - n; Fig. 1b counts a jump to t - 3 as two steps
    # removed, i.e. a jump of n + 1. Both readings of n = 5 (and Fig. 1b's n = 1) where measured.
    for n_paper, jump, counting in ((5, 5, "Eq. 4: a jump of 5"), (5, 6, "Fig. 1b: a jump of 6"), (1, 2, "Fig. 1b: a jump of 2")):
        if jump in below:
            claim = f"share of outputs below SSIM 0.8, n = {n_paper} ({counting}; Fig. 18)"
            findings += (finding(claim, "most (> 0.5)" if n_paper == 5 else "not stated", below[jump],
                                 (0.5 + 1e-12, 1.0) if n_paper == 5 else None, "fig-18"),)
    if fig4_eq4 is not None:
        _, v1 = rd.curve_matrix(fig4_eq4.table, "t_start")
        change = bootstrap(lambda m: float(np.mean(m)), v1 - vals, digits=3)  # paired: same samples, same t_start
        findings += (finding(f"mean SSIM change over Fig. 4's grid when the jump adds the one-step sigma_t (Eq. 4 read "
                             "literally) instead of the stride's", "Eq. 4 (no comparison)", change, None, "fig-4"),)
    return Phases(spec, n, base, fig4, fig18, np.asarray(betas), dip, x0_step, x0_at_25, rise, below,
                  float(noise_pickup), findings, fig4_eq4)


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


# -- chapter 2: skip connections or deconvolution blocks? ------------------------------------


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


def _window_mean(xs: np.ndarray, keep: np.ndarray):
    return lambda m: float(np.nanmean(m[keep]))


def skip_vs_blocks(
    spec: SweepSpec = SweepSpec(),
    *,
    n: int = 5,
    ns: int = 2,
    nb: int = 2,
    t_stride: int = 5,
    image_t_starts: Sequence[int] = (95, 75, 50, 20),
    image_samples: int = IMAGE_SAMPLES,
    late: int = 50,
    early: int = 75,
    compute: bool = False,
    **runtime,
) -> SkipVsBlocks:
    """Chapter 2. ``late``/``early``: the ``t_start`` windows read as after phase 1 (<= late) and in it (> early)."""
    sweep = _sweep(spec, compute, runtime)
    base = sweep.baseline()
    grid = t_grid(spec.steps, t_stride, n, image_t_starts)
    s, lab = zero_skips_family(grid, n, ns)
    skips = sweep.run(s, labels=lab, images=_images(sweep, image_samples))
    s, lab = drop_blocks_family(grid, n, nb)
    blocks = sweep.run(s, labels=lab, images=_images(sweep, image_samples))

    xs, s_psnr = rd.curve_matrix(skips.table, "t_start", "psnr")
    _, b_psnr = rd.curve_matrix(blocks.table, "t_start", "psnr")
    _, s_ssim = rd.curve_matrix(skips.table, "t_start", "ssim")
    _, b_ssim = rd.curve_matrix(blocks.table, "t_start", "ssim")
    lt, er = xs <= late, xs > early
    r = {
        "psnr skips - blocks, late": bootstrap(lambda a, b: float(np.nanmean(a[lt] - b[lt])), s_psnr, b_psnr, digits=1),
        "ssim blocks - skips, late": bootstrap(lambda a, b: float(np.nanmean(a[lt] - b[lt])), b_ssim, s_ssim, digits=3),
        "ssim blocks, early": bootstrap(_window_mean(xs, er), b_ssim, digits=3),
        "ssim skips, early": bootstrap(_window_mean(xs, er), s_ssim, digits=3),
    }
    findings = (
        finding(f"PSNR of skips minus blocks, t_start <= {late} (dB)", "skips notably lower (< 0)",
                r["psnr skips - blocks, late"], (-np.inf, -1e-12), "fig-7"),
        finding(f"SSIM of blocks minus skips, t_start <= {late}", "blocks redundant, skips not (> 0)",
                r["ssim blocks - skips, late"], (1e-12, np.inf), "fig-7"),
        finding(f"mean SSIM, bottom {nb} blocks removed, t_start > {early}", "semantic changes (< 0.8)",
                r["ssim blocks, early"], (-1.0, THRESHOLD), "fig-7"),
        finding(f"mean SSIM, top {ns} skips zeroed, t_start > {early}", "semantic changes (< 0.8)",
                r["ssim skips, early"], (-1.0, THRESHOLD), "fig-7"),
    )
    return SkipVsBlocks(spec, n, ns, nb, base, skips, blocks, r, findings)


# -- chapter 4: how many steps can blocks be removed for? -----------------------------------

PAPER_T_STARTS = {2: 70, 4: 65, 6: 65, 8: 60}  # Figs. 9, 10 and 20, 21: where each nb becomes redundant


def _settings(spec, paper_t_starts, own, fig8_n, fig8_t_stride, threshold, compute, runtime) -> dict[str, dict[int, int]]:
    """The t_starts a chapter runs at: the paper's, and (``own``) where this model's Fig. 8 curves cross."""
    settings = {"paper t_start": {int(k): int(v) for k, v in paper_t_starts.items()}}
    if own:
        cross = fig8_crossings(spec, list(settings["paper t_start"]), fig8_n, fig8_t_stride, threshold, compute, **runtime)
        settings["own t_start"] = {nb: int(r.value) for nb, r in cross.items() if np.isfinite(r.value)}
    return settings


@dataclass(frozen=True)
class NLimit:
    """Chapter 4: the bottom ``nb`` blocks removed for ``n = 1, 2, ...`` steps from a fixed ``t_start`` (Figs. 9, 20)."""

    spec: SweepSpec
    settings: dict[str, dict[int, int]]
    baseline: dict[str, np.ndarray] = field(repr=False)
    result: SweepResult = field(repr=False)
    limits: dict[tuple[str, int], Reading]
    findings: tuple[Finding, ...]


def n_limit(
    spec: SweepSpec = SweepSpec(),
    *,
    paper_t_starts: dict = PAPER_T_STARTS,
    own_t_starts: bool = True,
    n_values: Sequence[int] = tuple(range(1, 16)),
    fig8_n: int = 5,
    fig8_t_stride: int = 5,
    threshold: float = THRESHOLD,
    image_samples: int = IMAGE_SAMPLES,
    compute: bool = False,
    **runtime,
) -> NLimit:
    """Chapter 4. A limit at the top of the ``n`` grid prints as ``>= max(n_values)``."""
    settings = _settings(spec, paper_t_starts, own_t_starts, fig8_n, fig8_t_stride, threshold, compute, runtime)
    sweep = _sweep(spec, compute, runtime)
    base = sweep.baseline()
    parts, limits = [], {}
    for which, t_starts in settings.items():
        for nb, t in t_starts.items():
            s, lab = drop_blocks_family([t], n_values, nb)
            res = sweep.run(s, labels=[{**d, "setting": which} for d in lab], images=_images(sweep, image_samples))
            parts.append(res)
            xs, vals = rd.curve_matrix(res.table, "n")
            limits[(which, nb)] = bootstrap(lambda m: rd.run_limit(xs, m, threshold), vals, top=float(xs.max()))
    findings = tuple(
        finding(f"nb = {nb}, t_start = {settings[which][nb]} ({which}): largest n keeping SSIM >= {threshold:g}",
                "7 (Figs. 9, 20)", r, 7, "fig-9")
        for (which, nb), r in sorted(limits.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    )
    return NLimit(spec, settings, base, SweepResult.concat(parts), limits, findings)


# -- chapter 5: cut, relax, cut ---------------------------------------------------------------

PAPER_RELAX = {0.8: (15, 20), 0.75: (10, 12)}  # "r in [15, 20]" keeps SSIM >= 0.8; "r in [10, 12]" 0.75


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


def relaxation(
    spec: SweepSpec = SweepSpec(),
    *,
    paper_t_starts: dict = PAPER_T_STARTS,
    own_t_starts: bool = True,
    n: int = 7,
    relax: Sequence[int] = tuple(range(0, 26)),
    thresholds: Sequence[float] = (0.8, 0.75),
    fig8_n: int = 5,
    fig8_t_stride: int = 5,
    image_samples: int = IMAGE_SAMPLES,
    compute: bool = False,
    **runtime,
) -> Relaxation:
    """Chapter 5. The relaxation needed is the smallest ``r`` from which the mean stays above the threshold."""
    settings = _settings(spec, paper_t_starts, own_t_starts, fig8_n, fig8_t_stride, THRESHOLD, compute, runtime)
    sweep = _sweep(spec, compute, runtime)
    base = sweep.baseline()
    parts, needed = [], {}
    for which, t_starts in settings.items():
        for nb, t in t_starts.items():
            s, lab = cut_relax_cut_family(t, nb, n, relax)
            if not s:
                continue
            res = sweep.run(s, labels=[{**d, "setting": which} for d in lab], images=_images(sweep, image_samples))
            parts.append(res)
            xs, vals = rd.curve_matrix(res.table, "r")
            for th in thresholds:
                needed[(which, nb, th)] = bootstrap(lambda m, th=th: rd.crossing(xs, m, th, descending=False), vals,
                                                    top=float(xs.max()), beyond="> {top}")
    findings = tuple(
        finding(f"SSIM >= {th:g} after relaxing r steps: nb = {nb}, t_start = {settings[which][nb]} ({which})",
                f"r in [{PAPER_RELAX[th][0]}, {PAPER_RELAX[th][1]}]" if th in PAPER_RELAX else "-", r,
                PAPER_RELAX.get(th), "fig-10")
        for (which, nb, th), r in sorted(needed.items(), key=lambda kv: (-kv[0][2], kv[0][1], kv[0][0]))
    )
    return Relaxation(spec, n, settings, base, SweepResult.concat(parts) if parts else SweepResult(pd.DataFrame()),
                      needed, findings)


# -- chapter 6: the shortcut --------------------------------------------------------------------

# Readings of the paper's Fig. 11 text that the preset resolves one way (see interventions.py):
# the literal "ten relaxation steps" (nb = 8 at t = 59..58, so 57..48 relax), and the captions'
# early stop at t = 17 instead of the text's 18.
SHORTCUT_VARIANTS = {
    "ten relaxation steps": Schedule((DropBlocks(65, 5, 6), DropBlocks(59, 2, 8), DropBlocks(47, 7, 8),
                                      DropBlocks(31, 7, 8), EarlyStop(18))),
    "early stop at t = 17": Schedule((DropBlocks(65, 5, 6), DropBlocks(60, 2, 8), DropBlocks(47, 7, 8),
                                      DropBlocks(31, 7, 8), EarlyStop(17))),
}


@dataclass(frozen=True)
class Shortcut:
    """Chapter 6: the paper's shortcut (Figs. 11-13, 22), its parts, readings of its text, and the
    same pattern moved to this model's own thresholds."""

    spec: SweepSpec
    parts: dict[str, Schedule]
    baseline: dict[str, np.ndarray] = field(repr=False)
    result: SweepResult = field(repr=False)
    ssim: dict[str, Reading]
    mad: Reading
    in_band: Reading
    timings: pd.DataFrame
    costs: pd.DataFrame
    reach: dict[int, Reading]
    stop: Reading | None
    findings: tuple[Finding, ...]

    def per_sample(self, part: str = "shortcut") -> pd.DataFrame:
        t = self.result.table
        return t[t.schedule == part].reset_index(drop=True)


def shortcut_parts(
    spec: SweepSpec,
    schedule: str = "paper-shortcut",
    variants: bool = True,
    adapt: bool = True,
    fig8_t_stride: int = 5,
    threshold: float = THRESHOLD,
    x0_threshold: float = THRESHOLD,
    compute: bool = False,
    base: dict[str, np.ndarray] | None = None,
    **runtime,
) -> tuple[dict[str, Schedule], dict[int, Reading], Reading | None]:
    """Chapter 6's schedules by name (the shortcut, its two halves, the other readings of the
    text, the shortcut adapted to this model), with the crossings and the early-stop step the
    adapted one rests on."""
    main = load_schedule(schedule)
    stop = [iv for iv in main.interventions if isinstance(iv, EarlyStop)]
    parts = {
        "shortcut": main,
        "Unet interventions only": Schedule(tuple(iv for iv in main.interventions if not isinstance(iv, EarlyStop))),
        "early stop only": Schedule(tuple(stop)),
    }
    if variants and schedule == "paper-shortcut":
        parts.update(SHORTCUT_VARIANTS)
    reach, stop_r = {}, None
    if adapt:
        if base is None:
            base = _sweep(spec, compute, runtime).baseline()
        reach = fig8_crossings(spec, [6, 8], 5, fig8_t_stride, threshold, compute, **runtime)
        stop_r = bootstrap(lambda m: rd.x0_accurate_step(m, x0_threshold), base["ssim_x0hat"])
        t_at = {nb: (int(r.value) if np.isfinite(r.value) else None) for nb, r in reach.items()}
        stop_t = int(stop_r.value) if np.isfinite(stop_r.value) else None
        parts["adapted shortcut"] = adapted_shortcut(t_at, stop_t)
    return {k: Schedule(v.interventions, name=k) for k, v in parts.items() if v.interventions}, reach, stop_r


def shortcut(
    spec: SweepSpec = SweepSpec(),
    *,
    schedule: str = "paper-shortcut",
    variants: bool = True,
    adapt: bool = True,
    fig8_t_stride: int = 5,
    threshold: float = THRESHOLD,
    x0_threshold: float = THRESHOLD,
    timing_samples: int = 8,
    timing_repeats: int = 3,
    retime: bool = False,
    compute: bool = False,
    **runtime,
) -> Shortcut:
    """Chapter 6. ``adapt`` places the pattern at this model's Fig. 8 crossings (same spec, stride
    ``fig8_t_stride``) and stops where the x0 estimate is accurate by chapter 1's criterion."""
    from unetdyn.cost import schedule_cost

    sweep = _sweep(spec, compute, runtime)
    base = sweep.baseline()
    parts, reach, stop_r = shortcut_parts(spec, schedule, variants, adapt, fig8_t_stride, threshold, x0_threshold,
                                          compute, base=base, **runtime)
    res = sweep.run(list(parts.values()), images=list(range(spec.n_samples)))

    def vals(name: str) -> np.ndarray:
        return res.table[res.table.schedule == name].ssim.to_numpy()[None, :]

    ssim = {name: bootstrap(lambda m: float(m[0]), vals(name), digits=3) for name in parts}
    main_vals = vals("shortcut")
    mad = rd.bootstrap_samples(lambda v: float(np.mean(np.abs(v - v.mean()))), main_vals[0], digits=3)
    in_band = rd.bootstrap_samples(lambda v: float(np.mean((v >= 0.7) & (v <= 0.9))), main_vals[0], digits=2)

    timed_names = ["shortcut", "Unet interventions only", "early stop only"] + (["adapted shortcut"] if "adapted shortcut" in parts else [])
    timings = sweep.timing([Schedule((), name="full"), *[parts[k] for k in timed_names]], timing_samples, timing_repeats,
                           refresh=retime)
    full_s = timings.seconds.iloc[0]
    timings = timings.assign(saved=1 - timings.seconds / full_s, saved_low=1 - timings.high / full_s,
                             saved_high=1 - timings.low / full_s)
    costs = pd.DataFrame([
        {"schedule": name, "Unet calls": c.unet_calls, "truncated calls": c.truncated_calls, "FLOPs saved": c.saving}
        for name, c in ((n, schedule_cost(sweep.unet, parts[n], sweep.config)) for n in parts)
    ]).set_index("schedule")
    sv = timings.set_index("schedule")
    es = costs.loc["early stop only"] if "early stop only" in costs.index else None
    findings = [
        finding("mean SSIM of the shortcut to the original (Fig. 13)", "0.795", ssim["shortcut"], 0.795, "fig-13"),
        finding("mean absolute deviation of that SSIM", "0.044", mad, 0.044, "fig-13"),
        finding("share of samples with SSIM in [0.7, 0.9] (Fig. 13)", "most (> 0.5)", in_band, (0.5 + 1e-12, 1.0), "fig-13"),
        Finding("time saved by the shortcut (median, range over rounds)", "~27%",
                f"{over_rounds(sv.saved['shortcut'], sv.saved_low['shortcut'], sv.saved_high['shortcut'], '.1%')}; "
                f"FLOPs {costs['FLOPs saved']['shortcut']:.1%}", "-", "time-saved"),
    ]
    if es is not None:
        findings.append(Finding(
            "saved by the early stop alone", "~22% (of the time)",
            f"{es['FLOPs saved']:.1%} of FLOPs ({spec.steps - int(es['Unet calls'])} of {spec.steps} calls); time "
            f"{over_rounds(sv.saved['early stop only'], sv.saved_low['early stop only'], sv.saved_high['early stop only'], '.1%')}",
            "differs" if es["FLOPs saved"] < 0.22 - 0.01 else "-", "time-saved"))
    for name in SHORTCUT_VARIANTS:
        if name in ssim:
            findings.append(finding(f"mean SSIM, reading '{name}'", "0.795", ssim[name], 0.795, "readings"))
    if adapt:
        findings.append(Finding("t_start where nb = 6 / nb = 8 keep SSIM 0.8 (Fig. 8, this model)", "65 / 60",
                                f"{reach[6]} / {reach[8]}", "-", "fig-11"))
        if "adapted shortcut" in ssim:
            findings.append(Finding("mean SSIM of the shortcut adapted to this model (Fig. 11); FLOPs saved", "-",
                                    f"{ssim['adapted shortcut']}; {costs['FLOPs saved']['adapted shortcut']:.1%}", "-",
                                    "fig-11"))
    return Shortcut(spec, parts, base, res, ssim, mad, in_band, timings, costs, reach, stop_r, tuple(findings))



# -- chapter 7: is the shortcut worth it? ------------------------------------------------------


@dataclass(frozen=True)
class Alternatives:
    """Chapter 7: the fair comparison and the benchmarks' records, read from the result store.

    Attributes:
        meta: how the timings were measured (machine, threads, date) and the samples.
        table: one row per method (see :class:`~unetdyn.paper.fair.Fair`; plus ``flop_saving``,
            ``ssim_mean``, ``psnr_mean`` for the plots).
        fair: the readings with their bootstrap replicates (None for a model without a quality
            classifier: then ``table`` is ``benchmarks/alternatives.py``'s SSIM-only record).
        equal_cost: cost axis (``flop_speedup``, ``speedup``) -> each family read at the
            shortcut's speed-up (:func:`~unetdyn.paper.fair.equal_cost`).
        verdict: the sentence computed from those intervals.
    """

    meta: dict
    table: pd.DataFrame
    fair: Any
    equal_cost: dict[str, pd.DataFrame]
    verdict: str
    glide: dict | None
    efficiency: dict | None
    findings: tuple[Finding, ...]
    ddim: pd.DataFrame | None = None  # benchmarks/ddim_diagnosis.py: agreement and saturation against guidance
    ddim_fair: str = ""  # DDIM against its own full output and the ancestral sampler, from the fair comparison

    def measured_on(self) -> str:
        m = self.meta
        return (f"Measured on the **{m['model']}** model: {m.get('samples')} samples per method for quality, "
                f"{m.get('timing_samples')} per timed run, {m.get('threads', '?')} threads, {m.get('date', '?')}.")

    def efficiency_text(self) -> str:
        s, e = self.efficiency["sweep"], self.efficiency
        grid = f" (nb = 2..12, n = 5, t_start every {e['params']['t_stride']} steps)"
        return (f"Fig. 8 sweep, {s['configurations']} configurations{grid}: **{s['block_evals_per_sample_actual']:.0f}** block "
                f"evaluations per sample run against {s['block_evals_per_sample_naive']:.0f} naive (**{s['ratio']:.1f}x** "
                f"fewer). Matrix-product peak: {e['matmul_gflop_per_s']:.0f} GFLOP/s on {e['threads']} threads.")


def alternatives(
    model: str = "builtin",
    weights: str | None = None,
    *,
    samples: int = 1000,
    chunk: int = 100,
    timing_samples: int = 8,
    repeats: int = 3,
    batch_size: int = 16,
    glide_repeats: int = 2,
    efficiency: dict | None = None,
    ddim: dict | None = None,
    cache_dir=None,
) -> Alternatives:
    """Chapter 7. ``samples``/``chunk``: the fair comparison's samples per method and per stored entry;
    ``timing_samples``/``repeats``/``batch_size``: its timing record's parameters (all as
    ``benchmarks/fair_comparison.py`` ran them; for another model, ``benchmarks/alternatives.py``'s).
    ``efficiency``, ``ddim``: the sampler-efficiency and DDIM-diagnosis benchmarks' parameters
    (None: their defaults)."""
    from unetdyn.backends import load_unet
    from unetdyn.cost import CallCost
    from unetdyn.paper import fair as fr
    from unetdyn.paper.alternatives import load_benchmark, methods
    from unetdyn.paper.cache import Cache, CacheMiss, model_id
    from unetdyn.paper.sweeps import default_samples
    from unetdyn.paths import CACHE_DIR

    cache = Cache(cache_dir or CACHE_DIR, read_only=True)
    unet = load_unet(model, weights)
    mid = model_id(unet)
    timing = {"timing_samples": timing_samples, "repeats": repeats, "batch_size": batch_size}
    if model == "builtin":
        ms = methods()
        rec = load_benchmark(cache, "fair", mid, timing)
        secs = dict(zip(rec["methods"], rec["seconds"]))  # per method, seconds per sample in each round
        if missing := [m.name for m in ms if m.name not in secs]:
            raise CacheMiss(f"the timing record has no {', '.join(missing)}: run `python benchmarks/fair_comparison.py "
                            f"--timing-only --timing-samples {timing_samples} --repeats {repeats}`")
        prompts, seeds = default_samples(unet, model, samples)
        classify, cid, real_a, real_b, real_labels, frechet = fr.shape_classifier(samples)
        outs = fr.outcomes(unet, ms, prompts, seeds, cache, classify, cid, chunk=chunk, batch_size=batch_size, progress=False)
        costs = CallCost(unet, prompts[0])
        fair = fr.summarize(outs, ms, {m.name: costs.flops_per_sample(m.schedule, m.config) for m in ms}, secs,
                            real_a, real_b, frechet, strata=[unet.class_index(p) for p in prompts], real_strata=real_labels)
        table = fair.table.assign(flop_saving=1 - 1 / fair.table.flop_speedup, ssim_mean=fair.table.ssim,
                                  psnr_mean=fair.table.psnr)
        eq = {axis: fr.equal_cost(fair, axis) for axis in ("flop_speedup", "speedup")}
        text = fr.verdict_text(fair, eq)
        ddim_sentence = fr.ddim_text(fair)
        meta = {**rec["meta"], "model": model, "samples": samples, "timing_samples": timing_samples}
    else:  # no quality classifier: SSIM to the full output only, as benchmarks/alternatives.py measured it
        rec = load_benchmark(cache, "alternatives", mid, {"samples": samples, "timing_samples": timing_samples,
                                                          "repeats": repeats, "batch_size": batch_size, "quick": False})
        table, fair, eq, meta, ddim_sentence = pd.DataFrame(rec["rows"]), None, {}, rec["meta"], ""
        text = (f"On {samples} samples per method, SSIM to the full output only: the equal-cost readings need a quality "
                "classifier, which only the built-in model has.")

    def optional(name, model_key, params):
        try:
            return load_benchmark(cache, name, model_key, params)
        except CacheMiss:
            return None

    glide = optional("alternatives", "glide-architecture", {"random_weights": True, "repeats": glide_repeats, "quick": False})
    eff_params = efficiency or {"batches": "1,4,8,16,24,32,64,128,256", "steps": 10, "repeats": 3, "sweep_samples": 2,
                                "t_stride": 10}
    eff = optional("efficiency", mid, eff_params)
    eff = {**eff, "params": eff_params} if eff is not None else None
    dd = optional("ddim", mid, ddim or {"samples": 50, "guidances": "1,2,3,5"})
    sc = table[table.method == "paper shortcut"]
    findings: tuple[Finding, ...] = ()
    if len(sc):
        s = sc.iloc[0]
        findings = (Finding("time saved by the shortcut (wall-clock)", "~27%",
                            f"{1 - 1 / s.speedup:.1%} ({meta.get('timing_samples')} samples per timed run)", "-", "verdict"),)
        if fair is not None:
            findings += (finding("mean SSIM of the shortcut to the full output", "0.795",
                                 Reading(s.ssim, s.ssim_lo, s.ssim_hi, digits=3, samples=fair.samples), 0.795, "verdict"),)
    return Alternatives(meta, table, fair, eq, text, glide, eff, findings, pd.DataFrame(dd["rows"]) if dd else None,
                        ddim_sentence)


@dataclass(frozen=True)
class OtherUnets:
    """Appendix: FLOP savings on other architectures, read from the benchmark's records.

    Attributes:
        per_nb: one row per (architecture, nb): ``arch, nb, share, saved`` (``share``: nb as a
            fraction of the architecture's decoder blocks).
        shortcut: one row per architecture: its blocks, calls and the schedule's saving per sample.
        missing: architectures with no record, and the command that makes one.
    """

    per_nb: pd.DataFrame
    shortcut: pd.DataFrame
    missing: tuple[str, ...]


def other_unets(archs: Sequence[str] = ("builtin", "glide", "sd15", "ddpm32"), schedule: str = "paper-shortcut",
                cache_dir=None) -> OtherUnets:
    """The appendix "On other Unets": ``benchmarks/other_unets.py``'s records for ``archs``."""
    from unetdyn.paper.alternatives import load_benchmark
    from unetdyn.paper.cache import Cache, CacheMiss
    from unetdyn.paths import CACHE_DIR

    cache = Cache(cache_dir or CACHE_DIR, read_only=True)
    per_nb, short, missing = [], [], []
    for name in archs:
        try:
            rec = load_benchmark(cache, "other_unets", name, {"schedule": schedule})
        except CacheMiss as exc:
            missing.append(f"{name}: {exc}")
            continue
        n = rec["decoder_blocks"]
        per_nb += [{"arch": name, "nb": r["nb"], "share": r["nb"] / n, "saved": r["saved"]} for r in rec["per_nb"]]
        sc = rec["shortcut"]
        short.append({
            "architecture": rec["what"],
            "decoder blocks": n,
            "rows per call": rec["rows_per_call"],
            "TFLOP per sample (full)": sc["full_flops_per_sample"] / 1e12,
            "Unet calls": sc["unet_calls"],
            "truncated": sc["truncated_calls"],
            "VAE decode share": sc["decode_flops_per_sample"] / sc["full_flops_per_sample"],
            f"{schedule} saves": sc["saving"],
        })
    return OtherUnets(pd.DataFrame(per_nb), pd.DataFrame(short), tuple(missing))


# -- chapter 8: beyond the paper, a schedule search --------------------------------------------


@dataclass(frozen=True)
class Beyond:
    """Chapter 8: the searched schedule beside the paper's shortcut, reported on held-out samples.

    Attributes:
        search: the search's result on its own samples (:class:`~unetdyn.paper.search.SearchResult`).
        search_samples: (prompts, seeds) the search measured on.
        parts: the compared schedules by name (the paper's shortcut, the found one, references).
        result: their per-sample SSIM/PSNR on the book's samples (held out from the search).
        held_out_classes: the classes the search never saw.
        ssim: per schedule, its mean SSIM on all held-out samples and on the held-out classes.
        costs: FLOPs per schedule on this model; ``architectures``: the FLOP saving on other
            architectures (random weights), where they could be counted.
        timings: wall-clock of each schedule against the full sampler, one run.
    """

    spec: SweepSpec
    search: Any
    search_samples: tuple[list, list]
    parts: dict[str, Schedule]
    base: dict[str, np.ndarray]
    result: SweepResult
    held_out_classes: tuple[str, ...]
    ssim: dict[str, dict[str, Reading]]
    costs: pd.DataFrame
    architectures: pd.DataFrame
    timings: pd.DataFrame
    findings: tuple[Finding, ...]
    blocks: tuple[int, int] = (16, 16)  # the Unet's decoder blocks and skips (for drawing timelines)
    alternatives: Alternatives | None = None  # chapter 7's table where the store has it
    others: dict[str, Any] = field(default_factory=dict)  # part name -> the search under another budget

    @property
    def found(self) -> dict[str, Schedule]:
        """The found schedules by part name: ``found`` (the chapter's budget) and one per other budget."""
        return {name: self.parts[name] for name in ("found", *self.others)}

    def description(self) -> str:
        """What the search did and found, in words."""
        from unetdyn.paper.search import METRICS

        best = self.search.best
        kinds = sorted({iv.kind.replace("_", " ") for iv in best.schedule.interventions})
        start = lambda iv: getattr(iv, "t_start", getattr(iv, "t", 0))  # noqa: E731
        in_time = Schedule(tuple(sorted(best.schedule.interventions, key=start, reverse=True)))
        return (f"The search measured {self.search.trials} schedules and kept {len(self.search.path) - 1} moves on its "
                f"path (a later move can replace an earlier one in the same window or ladder). The schedule it found "
                f"uses {', '.join(kinds) or 'nothing'}, in the order of sampling: `{in_time.describe()}`. On its own "
                f"search samples it "
                f"saves {best.saving:.1%} of the FLOPs ({1 / (1 - best.saving):.2f}x) at "
                f"{METRICS.get(self.search.budget.metric, self.search.budget.metric)} {best.value:.3f}.")

    GOALS = {"flops": 2.0, "wall": 1.8, "ssim": 0.8}  # the chapter's goals: speed-ups and held-out mean SSIM

    def goals_text(self) -> str:
        """The chapter's goals, each met or missed, read from the held-out interval and the measured costs."""
        from unetdyn.paper.search import METRICS

        g, tv = self.GOALS, self.timings.set_index("schedule")

        def against(name: str) -> str:
            flops, wall, m = self.costs["FLOP speed-up"][name], tv.speedup[name], self.ssim[name]["all held-out samples"]
            where = _side(m, g["ssim"])
            return (f"FLOP speed-up {flops:.2f}x ({'met' if flops >= g['flops'] else 'missed'}), wall-clock speed-up "
                    f"{wall:.2f}x ({'met' if wall >= g['wall'] else 'missed'}), held-out mean SSIM {m} "
                    f"({'met' if m.value >= g['ssim'] else 'missed'}; its 95% interval lies {where} {g['ssim']:g})")

        text = (f"The goals: FLOP speed-up >= {g['flops']:g}x, wall-clock >= {g['wall']:g}x (median of the timing rounds) "
                f"and mean SSIM >= {g['ssim']:g} on the samples the search never saw.")
        for name, res in {"found": self.search, **self.others}.items():
            text += (f"\n\n- **{name}** (budget {res.budget}, {METRICS.get(res.budget.metric, res.budget.metric)} "
                     f"{res.best.value:.3f} on the search samples): {against(name)}.")
        return text

    def table(self) -> pd.DataFrame:
        """Per compared schedule: its held-out SSIM readings and its FLOP saving."""
        return pd.DataFrame([
            {"schedule": name, **{k: str(v) if v is not None else "-" for k, v in rs.items()},
             "FLOPs saved": f"{self.costs['FLOPs saved'][name]:.1%}", "FLOP speed-up": f"{self.costs['FLOP speed-up'][name]:.2f}x"}
            for name, rs in self.ssim.items()
        ])


def _side(r: Reading, threshold: float) -> str:
    """Where a reading's 95% interval lies against a threshold: ``above``, ``below`` or ``around``."""
    return "above" if r.lo >= threshold else "below" if r.hi < threshold else "around"


def _architecture_savings(parts: dict[str, Schedule], cache_dir, compute: bool) -> pd.DataFrame:
    """FLOPs saved by each schedule on GLIDE's, SD 1.5's and DDPM's architectures (random weights, meta
    device), stored; an architecture that cannot be built here (glide-text2im missing) is left out."""
    from unetdyn.cost import schedule_cost
    from unetdyn.paper.architectures import ARCHITECTURES, load_architecture
    from unetdyn.paper.cache import SCHEMA_VERSION, Cache, CacheMiss, content_key
    from unetdyn.paths import CACHE_DIR

    cache = Cache(cache_dir or CACHE_DIR, read_only=not compute)
    key = content_key({"v": SCHEMA_VERSION, "what": "architecture savings",
                       "schedules": {k: s.to_dict()["interventions"] for k, s in parts.items()}})
    rec = cache.get_record(key)
    if rec is None:
        if not compute:
            raise CacheMiss("the schedules' FLOP savings on other architectures are not stored: run `unetdyn figure 08_beyond`")
        rows = []
        for arch in ("glide", "sd15", "ddpm32"):
            try:
                unet = load_architecture(arch)
            except ImportError:
                continue
            for name, s in parts.items():
                rows.append({"architecture": ARCHITECTURES[arch][0], "schedule": name, "saving": schedule_cost(unet, s).saving})
        rec = {"rows": rows}
        cache.put_record(key, rec, {"what": "architecture savings"})
    table = pd.DataFrame(rec["rows"])
    return table.pivot(index="architecture", columns="schedule", values="saving") if len(table) else table


def beyond(
    spec: SweepSpec = SweepSpec(),
    *,
    budget: str = "ssim_lcb>=0.8",
    per_class: int = 4,
    window: int = 10,
    references: Sequence[str] = ("paper-shortcut",),
    deepcache: tuple[int, int] | None = (12, 2),
    timing_samples: int = 16,
    timing_repeats: int = 3,
    image_samples: int = 10,
    alternatives_samples: int = 1000,
    other_budgets: Sequence[str] = ("ssim>=0.8",),
    compute: bool = False,
    cache_dir=None,
    **runtime,
) -> Beyond:
    """Chapter 8: the schedule search (on its own samples) and the found schedule on the book's
    samples, which the search never saw (other seeds; half of them other classes). ``references``:
    presets to compare with; ``deepcache``: (nb, refresh interval) of a DeepCache-style schedule
    to compare with (None: none); ``alternatives_samples``: chapter 7's samples per method, whose
    methods are drawn beside the found schedule where the store has them; ``other_budgets``: budgets
    searched too, whose found schedules are compared beside it (``found, METRIC at least THRESHOLD``)."""
    from unetdyn.cost import schedule_cost
    from unetdyn.interventions import preset
    from unetdyn.paper.alternatives import deepcache as deepcache_schedule
    from unetdyn.paper.search import Budget, candidate_moves, open_search_sweep, sweep_search

    runtime = {**runtime, "cache_dir": cache_dir}
    b = Budget.parse(budget)
    ssweep = open_search_sweep(spec.model, spec.weights, per_class, spec.steps, spec.guidance, compute=compute,
                               device=runtime.get("device"), cache_dir=cache_dir,
                               batch_size=runtime.get("batch_size", 16), progress=runtime.get("progress", True))
    moves = candidate_moves(spec.steps, len(ssweep.unet.skips_popped), window=window)
    res = sweep_search(ssweep, b, moves, progress=runtime.get("progress", True))
    others = {}
    for text in other_budgets:
        ob = Budget.parse(text)
        others[f"found, {ob.metric} at least {ob.threshold:g}"] = sweep_search(ssweep, ob, moves,
                                                                               progress=runtime.get("progress", True))
    parts = {name: Schedule(preset(name).interventions, name=name) for name in references}
    if deepcache is not None:
        dc = deepcache_schedule(spec.steps, *deepcache)
        parts[dc.name] = dc
    parts["found"] = Schedule(res.best.schedule.interventions, name="found")
    for name, other in others.items():
        parts[name] = Schedule(other.best.schedule.interventions, name=name)

    sweep = _sweep(spec, compute, runtime)
    base = sweep.baseline()
    result = sweep.run(list(parts.values()), images=list(range(min(image_samples, spec.n_samples))))
    search_classes = set(ssweep.prompts)
    held_out_classes = tuple(sorted({p for p in sweep.prompts if p not in search_classes}, key=sweep.prompts.index))
    ssim: dict[str, dict[str, Reading]] = {}
    for name in parts:
        t = result.table[result.table.schedule == name]
        v = t.ssim.to_numpy()
        other = t[t.prompt.isin(held_out_classes)].ssim.to_numpy()
        ssim[name] = {
            "all held-out samples": bootstrap(lambda m: float(m[0]), v[None, :], digits=3),
            "held-out classes": bootstrap(lambda m: float(m[0]), other[None, :], digits=3) if len(other) > 1 else None,
            "5th percentile": rd.bootstrap_samples(lambda x: float(np.percentile(x, 5)), v, digits=3),
        }
    costs = pd.DataFrame([
        {"schedule": name, "Unet calls": c.unet_calls, "FLOPs saved": c.saving, "FLOP speed-up": 1 / (1 - c.saving)}
        for name, c in ((n, schedule_cost(sweep.unet, s, sweep.config)) for n, s in parts.items())
    ]).set_index("schedule")
    timings = sweep.timing([Schedule((), name="full"), *parts.values()], timing_samples, timing_repeats)
    full_s = timings.seconds.iloc[0]
    timings = timings.assign(speedup=full_s / timings.seconds, speedup_low=full_s / timings.high, speedup_high=full_s / timings.low)
    archs = _architecture_savings(parts, cache_dir, compute)

    found, paper = ssim["found"], ssim.get("paper-shortcut")
    tv = timings.set_index("schedule")
    g = Beyond.GOALS

    def held_out(name: str) -> str:
        m = ssim[name]["all held-out samples"]
        return f"{m} (interval {_side(m, g['ssim'])} {g['ssim']:g})"

    findings = [
        Finding("FLOP speed-up of the found schedule (this model)", f"1.3x (the paper's shortcut); goal >= {g['flops']:g}x",
                f"{costs['FLOP speed-up']['found']:.2f}x ({costs['FLOPs saved']['found']:.1%} saved)", "-", "found"),
        Finding("wall-clock speed-up of the found schedule (median, range over rounds)", f"goal >= {g['wall']:g}x",
                over_rounds(tv.speedup["found"], tv.speedup_low["found"], tv.speedup_high["found"], ".2f", "x"), "-", "timing"),
        Finding(f"held-out mean SSIM of the found schedule (budget {b} on the search samples)", f"goal >= {g['ssim']:g}",
                held_out("found"), "-", "held-out"),
    ]
    if found["held-out classes"] is not None:
        findings.append(Finding("mean SSIM on the classes the search never saw", f"goal >= {g['ssim']:g}",
                                str(found["held-out classes"]), "-", "held-out"))
    for name, other in others.items():
        findings.append(Finding(f"held-out mean SSIM of the schedule found under {other.budget}; its FLOP speed-up",
                                f"goal >= {g['ssim']:g}", f"{held_out(name)}; {costs['FLOP speed-up'][name]:.2f}x", "-",
                                "held-out"))
    if paper is not None:
        findings.append(finding("mean SSIM of the paper's shortcut on the same samples", "0.795",
                                paper["all held-out samples"], 0.795, "held-out"))
    from unetdyn.paper.cache import CacheMiss

    try:
        alt = alternatives(spec.model, spec.weights, samples=alternatives_samples, cache_dir=cache_dir)
    except CacheMiss:  # chapter 7's benchmark record is not in this store
        alt = None
    return Beyond(spec, res, (ssweep.prompts, ssweep.seeds), parts, base, result, held_out_classes, ssim, costs, archs,
                  timings, tuple(findings), (len(sweep.unet.skips_popped), sum(sweep.unet.skips_pushed)), alt, others)
