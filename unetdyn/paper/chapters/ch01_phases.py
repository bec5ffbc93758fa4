"""Chapter 1, ``01_phases``: skipping ``n`` steps from each ``t_start`` (Figs. 3, 4, 15-18)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from unetdyn.noise import NoiseSchedule
from unetdyn.paper import readings as rd
from unetdyn.paper.chapters.common import (
    EARLY_WINDOWS,
    IMAGE_SAMPLES,
    LATE_WINDOWS,
    RISE_FACTORS,
    THRESHOLD,
    X0_THRESHOLD,
    X0_THRESHOLDS,
    SweepParams,
    image_samples,
    param,
    run_family,
    t_grid,
    window,
)
from unetdyn.paper.claims import MARGINS
from unetdyn.paper.families import skip_steps_family
from unetdyn.paper.readings import Reading, bootstrap
from unetdyn.paper.sweeps import SweepResult, SweepSpec
from unetdyn.paper.verdicts import Finding, Sensitivity, finding, note, sensitivity

__all__ = ["Params", "Phases", "run"]


@dataclass(frozen=True)
class Params(SweepParams):
    """Chapter 1's parameters."""

    n: int = param(5, "steps removed: a jump from t_start to t_start - n (Eq. 4)")
    t_stride: int = param(5, "spacing of the t_start grid of Fig. 4")
    n_values: tuple[int, ...] = param((2, 5, 6, 10), "Fig. 18: jumps (Eq. 4's n); 6 and 2 are the paper's n of 5 "
                                                     "and 1 in its Fig. 1b counting")
    t_stride_fig18: int = param(5, "spacing of Fig. 18's t_start grid")
    image_t_starts: tuple[int, ...] = param((95, 75, 50, 20), "Fig. 3 rows")
    image_samples: int = param(IMAGE_SAMPLES, "samples whose images are kept")
    x0_threshold: float = param(X0_THRESHOLD, "ours (the paper gives none): mean SSIM at which the x0 estimate "
                                              "counts as accurate (Fig. 17)")
    rise_factor: float = param(2.0, "ours: Fig. 16's \"sharp rise\" is a one-step PSNR gain above this many times "
                                    "the median gain")
    early: int = param(75, "ours: t_start > early is \"early\" (phase 1) in the early-harms / late-benign reading")
    late: int = param(25, "ours: t_start up to this counts as late")
    smooth: int = param(1, "moving-average window (grid points) of the dip reading")
    eq4_variance: bool = param(True, "also run Fig. 4 with the jumps adding the one-step sigma_t (Eq. 4 read "
                                     "literally)")


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


def _held_out_depth(xs: np.ndarray, vals: np.ndarray, smooth: int, st: np.ndarray) -> Reading:
    """The dip's depth measured where the first half of the samples places it, on the second half.

    Its depth on the same samples is biased up (noise alone makes valleys), so its peak, bottom
    and recovery are found on the first half and the contrast at those points is measured on
    the other (negative: no dip there)."""
    half = vals.shape[1] // 2
    first = np.nanmean(vals[:, :half], axis=1)
    p, b, _ = rd.dip(xs, first, smooth)
    if not np.isfinite(p):
        return Reading(0.0, 0.0, 0.0, digits=3, samples=vals.shape[1] - half)
    later = xs < b
    a = float(xs[later][np.argmax(first[later])])
    return bootstrap(lambda m: rd.valley_contrast(xs, m, p, b, a), vals[:, half:], digits=3, strata=st[half:])


def run(p: Params = Params()) -> Phases:
    """Chapter 1. ``x0_threshold``, ``rise_factor``, ``early`` and ``late`` are our choices: each
    reading that rests on one is redone over a declared range of it."""
    sweep, base, st = p.open()
    grid = t_grid(p.steps, p.t_stride, p.n, p.image_t_starts)
    images = image_samples(sweep, p.image_samples)
    fig4 = run_family(sweep, skip_steps_family(grid, p.n), images)
    fig18 = SweepResult.concat(sweep.run_many([skip_steps_family(t_grid(p.steps, p.t_stride_fig18, nn), nn)
                                               for nn in p.n_values]))
    fig4_eq4 = run_family(sweep, skip_steps_family(grid, p.n, variance="one-step"), images) if p.eq4_variance else None

    boot = lambda *a, **k: bootstrap(*a, strata=st, **k)  # noqa: E731
    xs, vals = rd.curve_matrix(fig4.table, "t_start")
    dip = {
        "peak": boot(lambda m: rd.dip(xs, m, p.smooth)[0], vals, top=float(xs.max())),
        "bottom": boot(lambda m: rd.dip(xs, m, p.smooth)[1], vals, top=float(xs.max())),
        "depth (held out)": _held_out_depth(xs, vals, p.smooth, st),
    }

    def late_minus_early(e: float, lt: float) -> Reading:
        return boot(lambda m: window(xs <= lt)(m) - window(xs > e)(m), vals, digits=3)

    ssim_hat = base["ssim_x0hat"]
    x0_at = lambda th: boot(lambda m: rd.x0_accurate_step(m, th), ssim_hat)  # noqa: E731
    t25 = min(25, p.steps)
    x0_at_25 = boot(lambda m: m[t25], ssim_hat, digits=3)
    psnr = np.where(np.isinf(base["psnr_xt"]), np.nan, base["psnr_xt"])
    psnr[0] = np.inf  # row 0 is x_0 itself; the readings ignore it
    rise_at = lambda f: boot(lambda m: rd.rise_start(m, f), psnr)  # noqa: E731
    below, below_at = {}, {}  # share of outputs below the threshold on Fig. 18's grid, per jump length
    for jump in sorted(set(fig18.table.n)):
        ts, v = rd.curve_matrix(fig18.table[fig18.table.n == jump], "t_start")
        below[jump] = boot(lambda m: float(np.mean(m)), (v < THRESHOLD).astype(float), digits=2)
        below_at[jump] = (ts, (v < THRESHOLD).astype(float))
    bt = np.asarray(NoiseSchedule(p.steps, sweep.unet.diffusion).betas)
    # scanning up from t = 1: the first t from which beta stays above twice its median (marked in Fig. 15)
    noise_pickup = rd.crossing(np.arange(1, p.steps + 1), bt, 2 * float(np.median(bt)), descending=False)
    k85 = min(85, p.steps)

    sens = [
        sensitivity("x0-accurate", "x0_threshold", X0_THRESHOLDS, p.x0_threshold, x0_at),
        sensitivity("psnr-rise", "rise_factor", RISE_FACTORS, p.rise_factor, rise_at),
        sensitivity("early-harms-late-benign", "early", EARLY_WINDOWS, p.early, lambda e: late_minus_early(e, p.late)),
        sensitivity("early-harms-late-benign", "late", LATE_WINDOWS, p.late, lambda lt: late_minus_early(p.early, lt)),
    ]
    for jump, cid in ((5, "five-steps-pronounced"), (2, "one-step-benign")):
        if jump in below_at:  # the pooled share is a choice: per t_start as well
            ts, v = below_at[jump]
            sens.append(sensitivity(cid, f"t_start, one at a time, not pooled (a jump of {jump})", ts[np.argsort(ts)], np.nan,
                                    lambda t, ts=ts, v=v: bootstrap(lambda m: float(m[0]), v[ts == t], digits=2, strata=st)))
    by = {(s_.claim, s_.parameter): s_ for s_ in sens}
    chosen = lambda cid, *pars: [by[(cid, q)] for q in pars if (cid, q) in by]  # noqa: E731

    x0_step, rise = x0_at(p.x0_threshold), rise_at(p.rise_factor)
    findings = [
        finding("phase-dip", "held-out contrast", dip["depth (held out)"], "fig-4", own=True),
        note("phase-boundaries", "phase 1 / 2 boundary: the dip's peak (t_start)", str(dip["peak"]), "fig-4"),
        note("phase-boundaries", "phase 2 / 3 boundary: the dip's bottom (t_start)", str(dip["bottom"]), "fig-4"),
        finding("early-harms-late-benign", f"late minus early window: t_start <= {p.late} minus t_start > {p.early}",
                late_minus_early(p.early, p.late), "fig-4", own=True,
                choices=chosen("early-harms-late-benign", "early", "late")),
        note("beta-pickup", f"GLIDE's own schedule (cosine, respaced to {p.steps} steps)",
             f"beta grows {bt[k85 - 1] / bt[k85 // 2 - 1]:.1f}x from t = {k85 // 2} to {k85}, then {bt[-1] / bt[k85 - 1]:.0f}x "
             f"from t = {k85} to {p.steps}; above twice its median from t = {noise_pickup:.0f}", "figs-15-17",
             why="the built-in model samples with GLIDE's schedule: nothing to reproduce", own=True),
        finding("psnr-rise", f"rise_factor = {p.rise_factor:g} (ours)", rise, "figs-15-17", own=True,
                choices=chosen("psnr-rise", "rise_factor")),
        finding("x0-accurate", f"x0_threshold = {p.x0_threshold:g} (ours; the paper gives none)", x0_step, "figs-15-17",
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
                                    choices=chosen(cid, f"t_start, one at a time, not pooled (a jump of {jump})") if own else ()))
    if fig4_eq4 is not None:
        _, v1 = rd.curve_matrix(fig4_eq4.table, "t_start")
        change = boot(lambda m: float(np.mean(m)), v1 - vals, digits=3)  # paired: same samples, same t_start
        findings.append(note("eq4-variance", "Fig. 4's grid, one-step sigma_t minus the stride's", str(change), "fig-4",
                             own=True))
    return Phases(spec=p.spec, n=p.n, baseline=base, fig4=fig4, fig18=fig18, betas=bt, dip=dip, x0_step=x0_step,
                  x0_at_25=x0_at_25, rise=rise, below=below, noise_pickup=float(noise_pickup),
                  findings=tuple(findings), fig4_eq4=fig4_eq4, sensitivities=tuple(sens))
