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

from unetdyn.interventions import DropBlocks, EarlyStop, Schedule, load_schedule
from unetdyn.noise import NoiseSchedule
from unetdyn.paper import readings as rd
from unetdyn.paper.claims import MARGINS
from unetdyn.paths import is_builtin
from unetdyn.paper.readings import Reading, bootstrap
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
from unetdyn.paper.verdicts import Finding, Sensitivity, finding, note, sensitivity

__all__ = [
    "SweepSpec",
    "IMAGE_SAMPLES",
    "Finding",
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
THRESHOLD = 0.8  # the paper's SSIM threshold for "no visible change in global semantics" (Fig. 8)
# declared ranges over which the readings that rest on a choice of ours are redone
X0_THRESHOLDS = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
RISE_FACTORS = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
EARLY_WINDOWS = (60, 65, 70, 75, 80, 85, 90)
LATE_WINDOWS = (20, 25, 30, 40, 50, 60)
CROSSING_THRESHOLDS = (0.7, 0.75, 0.8, 0.85, 0.9)
X0_THRESHOLD = 0.8  # ours: the paper gives no threshold for "accurate"; we reuse its Fig. 8 threshold


def over_rounds(value: float, low: float, high: float, fmt: str, unit: str = "") -> str:
    """A timing median with its range over rounds (not a confidence interval)."""
    return f"{value:{fmt}}{unit} (range over rounds {low:{fmt}}{unit} to {high:{fmt}}{unit})"


def t_grid(steps: int, stride: int, low: int = 1, extra: Sequence[int] = ()) -> list[int]:
    """``t_start`` values ``steps, steps - stride, ...`` down to ``low``, plus ``extra``, high to low."""
    if stride < 1:
        raise ValueError(f"t_stride={stride} must be >= 1")
    return sorted({t for t in range(steps, low - 1, -stride)} | {int(t) for t in extra if low <= t <= steps}, reverse=True)


def _sweep(spec: SweepSpec, compute: bool, runtime: dict[str, Any]) -> Sweep:
    return open_sweep(spec, compute=compute, **runtime)


def strata(sweep: Sweep) -> np.ndarray:
    """The class of each of the sweep's samples: bootstrap resamples keep every class's count."""
    return np.unique(np.asarray(sweep.prompts, dtype=object).astype(str), return_inverse=True)[1]


def _window(xs: np.ndarray, keep: np.ndarray):
    """The mean of a mean curve over the grid points ``keep`` (NaN where the window is empty)."""
    return lambda m: float(np.nanmean(m[keep])) if keep.any() else np.nan


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
    sensitivities: tuple[Sensitivity, ...] = ()

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
        margin = MARGINS["ssim"][0]
        if depth.hi < margin:
            reading = (f"an interval wholly below the margin of {margin:g} SSIM: a dip that matters is absent, "
                       "not merely unproven")
        elif depth.lo >= margin:
            reading = f"an interval wholly above the margin of {margin:g} SSIM: a dip that matters"
        else:
            reading = f"an interval that reaches across the margin of {margin:g} SSIM: too wide to tell"
        return (f"Coming from pure noise the curve's deepest dip {where}. Measured on held-out samples (found on the "
                f"first half, measured on the second) the dip is {depth} deep: {reading}.")


def phases(
    spec: SweepSpec = SweepSpec(),
    *,
    n: int = 5,
    t_stride: int = 5,
    n_values: Sequence[int] = (2, 5, 6, 10),
    t_stride_fig18: int = 5,
    image_t_starts: Sequence[int] = (95, 75, 50, 20),
    image_samples: int = IMAGE_SAMPLES,
    x0_threshold: float = X0_THRESHOLD,
    rise_factor: float = 2.0,
    early: int = 75,
    late: int = 25,
    smooth: int = 1,
    eq4_variance: bool = True,
    compute: bool = False,
    **runtime,
) -> Phases:
    """Chapter 1. ``smooth`` is the moving-average window (grid points) of the dip reading; ``n_values``
    are jump lengths (Eq. 4's n): 6 and 2 are the paper's n = 5 and n = 1 in its Fig. 1b counting.
    ``eq4_variance`` also runs Fig. 4's jumps adding the one-step sigma_t (Eq. 4 read literally).
    ``early``/``late``: the t_start windows read as early (> early) and late (<= late); ``x0_threshold``,
    ``rise_factor``, ``early`` and ``late`` are our choices, and the chapter redoes each reading over a
    declared range of them."""
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

    st = strata(sweep)
    boot = lambda *a, **k: bootstrap(*a, strata=st, **k)  # noqa: E731
    xs, vals = rd.curve_matrix(fig4.table, "t_start")
    dip = {
        "peak": boot(lambda m: rd.dip(xs, m, smooth)[0], vals, top=float(xs.max())),
        "bottom": boot(lambda m: rd.dip(xs, m, smooth)[1], vals, top=float(xs.max())),
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
        dip["depth (held out)"] = bootstrap(lambda m: rd.valley_contrast(xs, m, p, b, a), vals[:, half:], digits=3,
                                            strata=st[half:])
    else:
        dip["depth (held out)"] = Reading(0.0, 0.0, 0.0, digits=3, samples=vals.shape[1] - half)

    def late_minus_early(e: float, lt: float) -> Reading:
        return boot(lambda m: _window(xs, xs <= lt)(m) - _window(xs, xs > e)(m), vals, digits=3)

    ssim_hat = base["ssim_x0hat"]
    x0_at = lambda th: boot(lambda m: rd.x0_accurate_step(m, th), ssim_hat)  # noqa: E731
    x0_step = x0_at(x0_threshold)
    t25 = min(25, spec.steps)
    x0_at_25 = boot(lambda m: m[t25], ssim_hat, digits=3)
    psnr = np.where(np.isinf(base["psnr_xt"]), np.nan, base["psnr_xt"])
    psnr[0] = np.inf  # row 0 is x_0 itself; the readings ignore it
    rise_at = lambda f: boot(lambda m: rd.rise_start(m, f), psnr)  # noqa: E731
    rise = rise_at(rise_factor)
    below, below_at = {}, {}  # share of outputs below the threshold on Fig. 18's grid, per jump length
    for jump in sorted(set(fig18.table.n)):
        ts, v = rd.curve_matrix(fig18.table[fig18.table.n == jump], "t_start")
        below[jump] = boot(lambda m: float(np.mean(m)), (v < THRESHOLD).astype(float), digits=2)
        below_at[jump] = (ts, (v < THRESHOLD).astype(float))
    betas = NoiseSchedule(spec.steps, sweep.unet.diffusion).betas
    # scanning up from t = 1: the first t from which beta stays above twice its median (marked in Fig. 15)
    noise_pickup = rd.crossing(np.arange(1, spec.steps + 1), np.asarray(betas), 2 * float(np.median(betas)), descending=False)
    bt = np.asarray(betas)
    k85 = min(85, spec.steps)

    sens = [
        sensitivity("x0-accurate", "x0_threshold", X0_THRESHOLDS, x0_threshold, x0_at),
        sensitivity("psnr-rise", "rise_factor", RISE_FACTORS, rise_factor, rise_at),
        sensitivity("early-harms-late-benign", "early", EARLY_WINDOWS, early, lambda e: late_minus_early(e, late)),
        sensitivity("early-harms-late-benign", "late", LATE_WINDOWS, late, lambda lt: late_minus_early(early, lt)),
    ]
    pooled = {5: ("five-steps-pronounced", "n = 5 (Eq. 4: a jump of 5)"), 2: ("one-step-benign", "n = 1 (Fig. 1b: a jump of 2)")}
    for jump, (cid, _) in pooled.items():
        if jump in below_at:  # the pooled share is a choice: per t_start as well
            ts, v = below_at[jump]
            order = np.argsort(ts)
            sens.append(sensitivity(cid, f"t_start, one at a time, not pooled (n = {jump})", ts[order], np.nan,
                                    lambda t, ts=ts, v=v: bootstrap(lambda m: float(m[0]), v[ts == t], digits=2, strata=st)))
    by = {(s_.claim, s_.parameter): s_ for s_ in sens}
    chosen = lambda cid, *pars: [by[(cid, p)] for p in pars if (cid, p) in by]  # noqa: E731

    findings = [
        finding("phase-dip", "held-out contrast", dip["depth (held out)"], "fig-4", own=True),
        note("phase-boundaries", "phase 1 / 2 boundary: the dip's peak (t_start)", str(dip["peak"]), "fig-4"),
        note("phase-boundaries", "phase 2 / 3 boundary: the dip's bottom (t_start)", str(dip["bottom"]), "fig-4"),
        finding("early-harms-late-benign", f"late minus early window: t_start <= {late} minus t_start > {early}",
                late_minus_early(early, late), "fig-4", own=True,
                choices=chosen("early-harms-late-benign", "early", "late")),
        note("beta-pickup", f"GLIDE's own schedule (cosine, respaced to {spec.steps} steps)",
             f"beta grows {bt[k85 - 1] / bt[k85 // 2 - 1]:.1f}x from t = {k85 // 2} to {k85}, then {bt[-1] / bt[k85 - 1]:.0f}x "
             f"from t = {k85} to {spec.steps}; above twice its median from t = {noise_pickup:.0f}", "figs-15-17",
             why="the built-in model samples with GLIDE's schedule: nothing to reproduce", own=True),
        finding("psnr-rise", f"rise_factor = {rise_factor:g} (ours)", rise, "figs-15-17", own=True,
                choices=chosen("psnr-rise", "rise_factor")),
        finding("x0-accurate", f"x0_threshold = {x0_threshold:g} (ours; the paper gives none)", x0_step, "figs-15-17",
                own=True, choices=chosen("x0-accurate", "x0_threshold")),
        finding("x0-at-25", f"t = {t25}", x0_at_25, "figs-15-17", own=True),
    ]
    # "n steps removed": Eq. 4 jumps from t to t - n; Fig. 1b counts a jump to t - 3 as two steps
    # removed, i.e. a jump of n + 1. Both readings of n = 5 (and Fig. 1b's n = 1) where measured.
    for jump, cid, setting, own in ((5, "five-steps-pronounced", "n = 5 (Eq. 4: a jump of 5)", True),
                                    (6, "five-steps-pronounced", "n = 5 (Fig. 1b: a jump of 6)", False),
                                    (2, "one-step-benign", "n = 1 (Fig. 1b: a jump of 2)", True)):
        if jump in below:
            findings.append(finding(cid, f"{setting}, pooled over t_start", below[jump], "fig-18", own=own,
                                    choices=chosen(cid, f"t_start, one at a time, not pooled (n = {jump})") if own else ()))
    if fig4_eq4 is not None:
        _, v1 = rd.curve_matrix(fig4_eq4.table, "t_start")
        change = boot(lambda m: float(np.mean(m)), v1 - vals, digits=3)  # paired: same samples, same t_start
        findings.append(note("eq4-variance", "Fig. 4's grid, one-step sigma_t minus the stride's", str(change), "fig-4",
                             own=True))
    return Phases(spec, n, base, fig4, fig18, np.asarray(betas), dip, x0_step, x0_at_25, rise, below,
                  float(noise_pickup), tuple(findings), fig4_eq4, tuple(sens))


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
    sensitivities: tuple[Sensitivity, ...] = ()
    usage_nbs: tuple[int, ...] = ()
    usage_steps: tuple[int, ...] = ()
    usage: np.ndarray | None = field(default=None, repr=False)  # [nb, t]: the x0 estimate's relative change
    usage_samples: int = 0

    def usage_text(self) -> str:
        """The block-usage heatmap in words: where each group of bottom blocks starts to matter."""
        if self.usage is None:
            return ""
        parts = []
        for i, nb in enumerate(self.usage_nbs):
            if nb in (1, 2, 4, 8, 12):
                row = self.usage[i]
                parts.append(f"the bottom {nb}, by {row.min():.1%} to {row.max():.1%} "
                             f"(most at t = {self.usage_steps[int(np.argmax(row))]})")
        return (f"Removing blocks from one call moves that step's x0 estimate (on the first {self.usage_samples} "
                "samples, at the steps shown): " + "; ".join(parts) + ".")


def _fig8(sweep: Sweep, nbs: Sequence[int], n: int, t_stride: int, extra: Sequence[int] = (), images: int = 0) -> SweepResult:
    grid = t_grid(sweep.config.steps, t_stride, n, extra)
    parts = []
    for nb in nbs:
        s, lab = drop_blocks_family(grid, n, nb)
        parts.append(sweep.run(s, labels=lab, images=_images(sweep, images) if images else None))
    return SweepResult.concat(parts)


def _crossings(res: SweepResult, nbs: Sequence[int], threshold: float, strata: np.ndarray | None = None,
               ) -> tuple[dict[int, Reading], Reading, int]:
    """Per nb, the crossing; the order violations between adjacent nb; and how many adjacent
    pairs tie at the grid's first t_start on all samples (such a pair cannot test the order)."""
    mats = {}
    for nb in nbs:
        xs, mats[nb] = rd.curve_matrix(res.table[res.table.nb == nb], "t_start")
    top = float(xs.max())
    cross = {nb: bootstrap(lambda m: rd.crossing(xs, m, threshold), mats[nb], top=top, strata=strata) for nb in nbs}

    def violations(*ms) -> float:
        c = [rd.crossing(xs, m, threshold) for m in ms]
        return float(sum(b > a for a, b in zip(c, c[1:])))

    c = [cross[nb].value for nb in nbs]
    ties = sum(a == b == top for a, b in zip(c, c[1:]))
    return cross, bootstrap(violations, *[mats[nb] for nb in nbs], strata=strata), ties


def fig8_crossings(
    spec: SweepSpec, nbs: Sequence[int], n: int = 5, t_stride: int = 5, threshold: float = THRESHOLD,
    compute: bool = False, **runtime,
) -> dict[int, Reading]:
    """Per ``nb``, the Fig. 8 ``t_start`` from which removing the blocks keeps mean SSIM >= ``threshold``."""
    sweep = _sweep(spec, compute, runtime)
    return _crossings(_fig8(sweep, nbs, n, t_stride), nbs, threshold, strata(sweep))[0]


# The paper's Fig. 8 sentence, "nb = 2 achieves an SSIM of 0.8 sooner than nb = 4 (at
# t_start ~ 68), nb = 4 reaches the same threshold earlier than nb = 6 (at t_start ~ 65)",
# attaches each number to either block count; both readings are compared, the first (as
# Fig. 9's t_starts 70 / 65 suggest) at nb = 2 being the claim's own setting.
FIG8_READINGS = {
    "68 -> nb = 2, 65 -> nb = 4": {2: 68, 4: 65},
    "68 -> nb = 4, 65 -> nb = 6": {4: 68, 6: 65},
}


def block_sweep(
    spec: SweepSpec = SweepSpec(),
    *,
    n: int = 5,
    nbs: Sequence[int] = (2, 4, 6, 8, 10, 12),
    t_stride: int = 5,
    image_t_starts: Sequence[int] = (90, 70, 50, 30, 10),
    image_samples: int = IMAGE_SAMPLES,
    threshold: float = THRESHOLD,
    usage_samples: int = 20,
    usage_stride: int = 2,
    compute: bool = False,
    **runtime,
) -> BlockSweep:
    """Chapter 3. ``usage_samples``, ``usage_stride``: the block-usage heatmap's samples (the
    first of the sweep's) and its step spacing."""
    sweep = _sweep(spec, compute, runtime)
    base = sweep.baseline()
    usage_nbs = tuple(range(1, len(sweep.unet.skips_popped) + 1))
    usage_steps = tuple(range(spec.steps, 0, -usage_stride))
    usage = sweep.block_usage(usage_nbs, usage_steps, usage_samples)["change"]
    res = _fig8(sweep, nbs, n, t_stride, image_t_starts, image_samples)
    # the crossings are read on the regular grid only (the image t_starts may sit between)
    regular = set(t_grid(spec.steps, t_stride, n))
    on_grid = SweepResult(res.table[res.table.t_start.isin(regular)])
    st = strata(sweep)
    cross, viol, ties = _crossings(on_grid, nbs, threshold, st)
    own_nb = next(iter(next(iter(FIG8_READINGS.values()))))
    sens = []
    if own_nb in nbs:
        sens.append(sensitivity("fig8-crossing", "threshold", CROSSING_THRESHOLDS, threshold,
                                lambda th: _crossings(on_grid, [own_nb], th, st)[0][own_nb]))
    findings = []
    for k, (which, claims) in enumerate(FIG8_READINGS.items()):
        for nb, t in claims.items():
            if nb in cross:
                own = k == 0 and nb == own_nb
                findings.append(finding("fig8-crossing", f"nb = {nb} (reading: {which}), threshold {threshold:g}",
                                        cross[nb], "fig-8", own=own, paper=t,
                                        context=sens[:1] if own else ()))
    pairs = max(len(nbs) - 1, 0)
    findings.append(finding("bottom-up-order", f"nb = {', '.join(map(str, nbs))}", viol, "fig-8", own=True,
                            untested=f"{ties} of {pairs} adjacent pairs tie at the grid's first t_start" if ties else ""))
    return BlockSweep(spec, n, tuple(nbs), base, res, cross, viol, tuple(findings), tuple(sens), usage_nbs, usage_steps,
                      usage, min(usage_samples, spec.n_samples))


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
    sensitivities: tuple[Sensitivity, ...] = ()


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
    """Chapter 2. ``late``/``early``: the ``t_start`` windows read as after phase 1 (<= late) and in it
    (> early); both are our choices, and each reading is redone over a declared range of them."""
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
    st = strata(sweep)
    reads = {
        "skips-cost-psnr": lambda lt: bootstrap(lambda a, b: _window(xs, xs <= lt)(a - b), s_psnr, b_psnr, digits=1, strata=st),
        "blocks-redundant-late": lambda lt: bootstrap(_window(xs, xs <= lt), b_ssim, digits=3, strata=st),
        "early-blocks-change": lambda e: bootstrap(_window(xs, xs > e), b_ssim, digits=3, strata=st),
        "early-skips-change": lambda e: bootstrap(_window(xs, xs > e), s_ssim, digits=3, strata=st),
    }
    windows = {"skips-cost-psnr": ("late", late, LATE_WINDOWS), "blocks-redundant-late": ("late", late, LATE_WINDOWS),
               "early-blocks-change": ("early", early, EARLY_WINDOWS), "early-skips-change": ("early", early, EARLY_WINDOWS)}
    r = {cid: reads[cid](windows[cid][1]) for cid in reads}
    sens = tuple(sensitivity(cid, par, vals, default, reads[cid]) for cid, (par, default, vals) in windows.items())
    what = {"skips-cost-psnr": f"t_start <= {late}: PSNR of top {ns} skips zeroed minus bottom {nb} blocks removed (dB)",
            "blocks-redundant-late": f"t_start <= {late}: bottom {nb} blocks removed",
            "early-blocks-change": f"t_start > {early}: bottom {nb} blocks removed",
            "early-skips-change": f"t_start > {early}: top {ns} skips zeroed"}
    findings = tuple(finding(cid, what[cid], r[cid], "fig-7", own=True, choices=[s_]) for cid, s_ in zip(r, sens))
    return SkipVsBlocks(spec, n, ns, nb, base, skips, blocks, r, findings, sens)


# -- chapter 4: how many steps can blocks be removed for? -----------------------------------

PAPER_T_STARTS = {2: 70, 4: 65, 6: 65, 8: 60}  # Figs. 9, 10 and 20, 21: where each nb becomes redundant
# the claims' own setting in chapters 4 and 5: the one the paper's shortcut builds on (nb = 8 from t = 60)
OWN_SETTING = ("paper t_start", 8, 60)


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
    sensitivities: tuple[Sensitivity, ...] = ()


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
    parts, limits, findings, sens = [], {}, [], []
    st = strata(sweep)
    for which, t_starts in settings.items():
        for nb, t in t_starts.items():
            s, lab = drop_blocks_family([t], n_values, nb)
            res = sweep.run(s, labels=[{**d, "setting": which} for d in lab], images=_images(sweep, image_samples))
            parts.append(res)
            xs, vals = rd.curve_matrix(res.table, "n")
            limit_at = lambda th, xs=xs, vals=vals: bootstrap(lambda m: rd.run_limit(xs, m, th), vals,  # noqa: E731
                                                              top=float(xs.max()), strata=st)
            limits[(which, nb)] = limit_at(threshold)
            own = (which, nb, t) == OWN_SETTING
            if own:
                sens.append(sensitivity("n-limit", "threshold", CROSSING_THRESHOLDS, threshold, limit_at))
    for (which, nb), r in sorted(limits.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        own = (which, nb, settings[which][nb]) == OWN_SETTING
        findings.append(finding("n-limit", f"nb = {nb}, t_start = {settings[which][nb]} ({which}), threshold {threshold:g}",
                                r, "fig-9", own=own, context=sens[:1] if own else ()))
    return NLimit(spec, settings, base, SweepResult.concat(parts), limits, tuple(findings), tuple(sens))


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
    """Chapter 5. The paper's claim is that relaxing ``r`` in its range suffices (the lowest mean SSIM
    over those ``r`` stays above the threshold); the smallest ``r`` from which the mean stays above
    it is a stricter reading, shown beside it."""
    settings = _settings(spec, paper_t_starts, own_t_starts, fig8_n, fig8_t_stride, THRESHOLD, compute, runtime)
    sweep = _sweep(spec, compute, runtime)
    base = sweep.baseline()
    parts, needed, findings = [], {}, []
    st = strata(sweep)
    claims = {0.8: "relax-0.8", 0.75: "relax-0.75"}
    for which, t_starts in settings.items():
        for nb, t in t_starts.items():
            s, lab = cut_relax_cut_family(t, nb, n, relax)
            if not s:
                continue
            res = sweep.run(s, labels=[{**d, "setting": which} for d in lab], images=_images(sweep, image_samples))
            parts.append(res)
            xs, vals = rd.curve_matrix(res.table, "r")
            where = f"nb = {nb}, t_start = {t} ({which})"
            own = (which, nb, t) == OWN_SETTING
            for th in thresholds:
                needed[(which, nb, th)] = bootstrap(lambda m, th=th: rd.crossing(xs, m, th, descending=False), vals,
                                                    top=float(xs.max()), beyond="> {top}", strata=st)
                if th in claims and th in PAPER_RELAX:  # the paper's claim: these r suffice
                    a, b = PAPER_RELAX[th]
                    window = (xs >= a) & (xs <= b)
                    if window.any():
                        low = bootstrap(lambda m, w=window: float(np.min(m[w])), vals, digits=3, strata=st)
                        findings.append(finding(claims[th], f"{where}: lowest mean SSIM over r in [{a}, {b}] on the grid",
                                                low, "fig-10", own=own))
                findings.append(note("relax-smallest", f"{where}: smallest r from which SSIM stays >= {th:g}",
                                     str(needed[(which, nb, th)]), "fig-10",
                                     why=f"the paper: r in [{PAPER_RELAX[th][0]}, {PAPER_RELAX[th][1]}]" if th in PAPER_RELAX else ""))
    order = {cid: i for i, cid in enumerate(["relax-0.8", "relax-0.75", "relax-smallest"])}
    findings.sort(key=lambda f: (order[f.claim], not f.own))
    return Relaxation(spec, n, settings, base, SweepResult.concat(parts) if parts else SweepResult(pd.DataFrame()),
                      needed, tuple(findings))


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
    x0_threshold: float = X0_THRESHOLD,
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
    x0_threshold: float = X0_THRESHOLD,
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
        return res.table[res.table.schedule == name].sort_values("sample").ssim.to_numpy()[None, :]

    st = strata(sweep)
    ssim = {name: bootstrap(lambda m: float(m[0]), vals(name), digits=3, strata=st) for name in parts}
    main_vals = vals("shortcut")
    mad = rd.bootstrap_samples(lambda v: float(np.mean(np.abs(v - v.mean()))), main_vals[0], digits=3, strata=st)
    in_band = rd.bootstrap_samples(lambda v: float(np.mean((v >= 0.7) & (v <= 0.9))), main_vals[0], digits=2, strata=st)

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
    samples = f"the book's {spec.n_samples} samples"
    sc = lambda k: (sv.saved_low[k], sv.saved_high[k],  # noqa: E731
                    over_rounds(sv.saved[k], sv.saved_low[k], sv.saved_high[k], ".1%"))
    flops = costs["FLOPs saved"]["shortcut"]
    findings = [
        finding("shortcut-ssim", samples, ssim["shortcut"], "fig-13"),
        finding("shortcut-mad", samples, mad, "fig-13", own=True),
        finding("shortcut-band", samples, in_band, "fig-13", own=True),
        finding("speedup", f"built-in model, wall-clock on this CPU, chapter 6's timing ({timing_samples} samples per run; "
                "the interval is the range over rounds)", sc("shortcut"), "time-saved"),
        finding("speedup", "built-in model, FLOPs", (flops, flops, f"{flops:.1%}"), "time-saved"),
    ]
    if es is not None:
        unet_only = costs["FLOPs saved"].get("Unet interventions only", np.nan)
        findings.append(note(
            "speedup-split", "built-in model: each part alone",
            f"Unet interventions {unet_only:.1%} and early stop {es['FLOPs saved']:.1%} of FLOPs; the early stop skips "
            f"{spec.steps - int(es['Unet calls'])} of {spec.steps} equal calls; time {sc('early stop only')[2]}", "time-saved",
            why="22% cannot come from skipping 17 of 100 equal steps (at most 17%); the paper "
                "says not how it measured the split", own=True))
    for name in SHORTCUT_VARIANTS:
        if name in ssim:
            findings.append(finding("shortcut-ssim", f"{samples}, reading '{name}'", ssim[name], "readings"))
    if adapt:
        stop_t = f"t = {stop_r.value:.0f}" if stop_r is not None and np.isfinite(stop_r.value) else "no stop"
        findings.append(note("adapted-shortcut", "this model's Fig. 8 crossings for nb = 6 / nb = 8 (the paper: 65 / 60)",
                             f"{reach[6]} / {reach[8]}", "fig-11", own=True))
        if "adapted shortcut" in ssim:
            findings.append(note(
                "adapted-shortcut", f"its mean SSIM and FLOPs saved, stopping at {stop_t} (x0_threshold = {x0_threshold:g})",
                f"{ssim['adapted shortcut']}; {costs['FLOPs saved']['adapted shortcut']:.1%}", "fig-11",
                why="its SSIM is bounded by the threshold that places its stop: stopping where the untouched run's x0 "
                    f"estimate first reaches a mean SSIM of x0_threshold = {x0_threshold:g} (ours) costs about "
                    f"{1 - x0_threshold:g} of SSIM by itself, and the block removals before it cost the rest"))
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
    store_summary: bool = False,
) -> Alternatives:
    """Chapter 7. ``samples``/``chunk``: the fair comparison's samples per method and per stored entry;
    ``timing_samples``/``repeats``/``batch_size``: its timing record's parameters (all as
    ``benchmarks/fair_comparison.py`` ran them; for another model, ``benchmarks/alternatives.py``'s).
    ``efficiency``, ``ddim``: the sampler-efficiency and DDIM-diagnosis benchmarks' parameters
    (None: their defaults). ``store_summary``: store the bootstrap summary it computes on a miss
    (``benchmarks/fair_comparison.py`` does; the book only reads)."""
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
    if is_builtin(model):
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
        fair = fr.summarize_stored(Cache(cache.root, read_only=not store_summary), outs, ms, {m.name: costs.flops_per_sample(m.schedule, m.config) for m in ms},
                                   secs, real_a, real_b, frechet, strata=[unet.class_index(p) for p in prompts],
                                   real_strata=real_labels, store=store_summary)
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
    findings: list[Finding] = []
    if glide is not None:  # FLOPs do not depend on the weights: GLIDE's architecture gives GLIDE's share
        g = {r["method"]: r for r in glide["rows"]}
        if "paper shortcut" in g and "full" in g:
            for col, what, own in (("flops_text_every_step", "text encoded every step as its notebook does", True),
                                   ("flops", "text encoded once", False)):
                v = 1 - g["paper shortcut"][col] / g["full"][col]
                findings.append(finding("speedup", f"GLIDE's architecture, FLOPs, {what}", (v, v, f"{v:.1%}"), "glide",
                                        own=own))
            v = 1 - 1 / g["paper shortcut"]["speedup"]
            findings.append(finding("speedup", "GLIDE's architecture, CPU seconds summed from timed calls", (v, v, f"{v:.1%}"),
                                    "glide"))
    if len(sc):
        s = sc.iloc[0]
        v = 1 - 1 / s.speedup
        lo, hi = (1 - 1 / s.speedup_low, 1 - 1 / s.speedup_high) if "speedup_low" in s else (v, v)
        findings.append(finding("speedup", f"built-in model, wall-clock on this CPU, chapter 7's timing "
                                           f"({meta.get('timing_samples')} samples per run; the interval is the range "
                                           "over rounds)",
                                (lo, hi, f"{v:.1%} (range over rounds {lo:.1%} to {hi:.1%})"), "verdict"))
        if fair is not None:
            findings.append(finding("shortcut-ssim", f"the fair comparison's samples ({fair.samples}, ten seeds per class "
                                                     "per 100; the first 100 are chapter 6's)",
                                    Reading(s.ssim, s.ssim_lo, s.ssim_hi, digits=3, samples=fair.samples), "verdict", own=True))
    return Alternatives(meta, table, fair, eq, text, glide, eff, tuple(findings), pd.DataFrame(dd["rows"]) if dd else None,
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
            mean_side = "met" if m.value >= g["ssim"] else "missed"
            held = {"above": "met", "below": "missed"}.get(
                where, f"imprecise: {mean_side} on the mean, {'missed' if mean_side == 'met' else 'met'} on part of its interval")
            return (f"FLOP speed-up {flops:.2f}x ({'met' if flops >= g['flops'] else 'missed'}), wall-clock speed-up "
                    f"{wall:.2f}x ({'met' if wall >= g['wall'] else 'missed'}), held-out mean SSIM {m} "
                    f"({held}; its 95% interval lies {where} {g['ssim']:g})")

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
        t = result.table[result.table.schedule == name].sort_values("sample")
        v, cls = t.ssim.to_numpy(), np.unique(t.prompt.astype(str), return_inverse=True)[1]
        held = t.prompt.isin(held_out_classes).to_numpy()
        ssim[name] = {
            "all held-out samples": bootstrap(lambda m: float(m[0]), v[None, :], digits=3, strata=cls),
            "held-out classes": (bootstrap(lambda m: float(m[0]), v[held][None, :], digits=3, strata=cls[held])
                                 if held.sum() > 1 else None),
            "5th percentile": rd.bootstrap_samples(lambda x: float(np.percentile(x, 5)), v, digits=3, strata=cls),
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

    goal = lambda k: f"goal >= {g[k]:g}"  # noqa: E731
    findings = [
        note("search-goals", f"FLOP speed-up of the found schedule ({goal('flops')}x; the paper's shortcut: 1.3x)",
             f"{costs['FLOP speed-up']['found']:.2f}x ({costs['FLOPs saved']['found']:.1%} saved)", "found", own=True),
        note("search-goals", f"wall-clock speed-up of the found schedule, median and range over rounds ({goal('wall')}x)",
             over_rounds(tv.speedup["found"], tv.speedup_low["found"], tv.speedup_high["found"], ".2f", "x"), "timing"),
        note("search-goals", f"held-out mean SSIM of the found schedule, budget {b} on the search samples ({goal('ssim')})",
             held_out("found"), "held-out"),
    ]
    if found["held-out classes"] is not None:
        findings.append(note("search-goals", f"mean SSIM on the classes the search never saw ({goal('ssim')})",
                             str(found["held-out classes"]), "held-out"))
    for name, other in others.items():
        findings.append(note("search-goals", f"held-out mean SSIM of the schedule found under {other.budget}; its FLOP "
                                             f"speed-up ({goal('ssim')})",
                             f"{held_out(name)}; {costs['FLOP speed-up'][name]:.2f}x", "held-out"))
    if paper is not None:
        findings.append(finding("shortcut-ssim", f"chapter 8's {spec.n_samples} samples (chapter 6's: the same seeds)",
                                paper["all held-out samples"], "held-out"))
    from unetdyn.paper.cache import CacheMiss

    try:
        alt = alternatives(spec.model, spec.weights, samples=alternatives_samples, cache_dir=cache_dir)
    except CacheMiss:  # chapter 7's benchmark record is not in this store
        alt = None
    return Beyond(spec, res, (ssweep.prompts, ssweep.seeds), parts, base, result, held_out_classes, ssim, costs, archs,
                  timings, tuple(findings), (len(sweep.unet.skips_popped), sum(sweep.unet.skips_pushed)), alt, others)
