"""Readings of curves: the numbers the paper reads off its figures, each with a 95% interval.

A curve here is a matrix ``values[point, sample]``: one row per grid point (a ``t_start``,
an ``n``, an ``r``), one column per sample. A *read* function turns the mean curve into one
number; :func:`bootstrap` re-reads it on curves whose samples were drawn with replacement
(the same draw for every curve of a reading, since all curves share their samples), and
reports the read value with the 2.5% and 97.5% quantiles of the re-reads.

Readings that leave the grid are not numbers: ``inf`` means "beyond the top of the grid"
(printed ``>= top``) and ``-inf`` "never on the grid". The interval uses quantiles that are
always one of the re-read values (no interpolation), so it stays on the grid.

How each reading renders the paper's words:

* :func:`crossing`: "SSIM >= 0.8 from ``t_start`` ~60 on" = scanning the grid in the
  direction time runs, the first point from which the mean stays at or above the threshold
  for the rest of the scan.
* :func:`run_limit`: "no more than ~7 steps" = the largest ``n`` such that every ``n' <= n``
  on the grid keeps the mean at or above the threshold.
* :func:`dip`: the phase 2 dip of Fig. 4 = the deepest valley of the (smoothed) mean curve
  (a fall followed by a rise); the highest point before it ends phase 1, its bottom ends phase 2.
* :func:`x0_accurate_step`: "the x0 estimate at t = 18 is accurate" = the crossing of the
  estimate's mean SSIM to the output, on ``t = K .. 1``.
* :func:`rise_start`: Fig. 16's "sharp rise in PSNR around t in [15, 18]" = the first ``t``
  from which the one-step PSNR gain of ``x_t`` stays above ``factor`` times its median gain.

Resamples keep every class's count (:func:`resample`): the book's samples are ten seeds per
class, so the interval covers the noise of the design it was drawn from. The verdicts that
judge these intervals against the paper's claims live in :mod:`unetdyn.paper.verdicts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "Reading",
    "bootstrap",
    "bootstrap_samples",
    "crossing",
    "run_limit",
    "dip",
    "valley_contrast",
    "x0_accurate_step",
    "rise_start",
    "resample",
    "curve_matrix",
    "mean_ci",
]

N_BOOT = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Reading:
    """A number read off curves, with its bootstrap interval.

    Attributes:
        value: the reading on all samples (``inf``: beyond the grid's ``top``; ``-inf``: never).
        lo, hi: the 95% interval (same conventions).
        top: the grid's last point, for printing a censored value.
        beyond: how ``inf`` prints (``{top}`` is filled in): ``">= {top}"`` when the grid's last
            point still passes (a limit), ``"> {top}"`` when it fails (a crossing not yet reached).
        digits: decimals to print.
        samples: how many samples the curves had.
    """

    value: float
    lo: float
    hi: float
    top: float | None = None
    digits: int = 0
    samples: int = 0
    beyond: str = ">= {top}"

    def fmt(self, v: float) -> str:
        if v == np.inf:
            return self.beyond.format(top=f"{self.top:.{self.digits}f}") if self.top is not None else "beyond the grid"
        if v == -np.inf:
            return "never"
        return f"{v:.{self.digits}f}"

    @property
    def censored(self) -> bool:
        return bool(np.isinf(self.value))

    def __str__(self) -> str:
        return f"{self.fmt(self.value)} [{self.fmt(self.lo)}, {self.fmt(self.hi)}]"


def bootstrap(
    read: Callable[..., float],
    *curves: np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = 0,
    top: float | None = None,
    digits: int = 0,
    beyond: str = ">= {top}",
    strata: Sequence[int] | None = None,
) -> Reading:
    """Read ``read(*mean_curves)`` and its 95% bootstrap interval over samples.

    Args:
        read: mean curves (one per array, samples averaged out) -> a number.
        curves: arrays whose last axis is the samples (the same samples in each).
        n_boot: resamples.
        seed: the resampling seed (the interval is reproducible).
        strata: the class of each sample; resamples draw within each class (None: one class).

    Example:
        >>> rng = np.random.default_rng(1)
        >>> r = bootstrap(lambda m: float(m[0]), rng.normal(0.5, 0.1, size=(1, 400)), digits=2)
        >>> r.lo < 0.5 < r.hi
        True
    """
    arrays = [np.asarray(c, dtype=np.float64) for c in curves]
    n = arrays[0].shape[-1]
    if any(a.shape[-1] != n for a in arrays):
        raise ValueError("every curve of a reading needs the same samples (last axis)")
    if n < 2:
        raise ValueError(f"a bootstrap needs at least 2 samples, got {n}")
    value = float(read(*[np.nanmean(a, axis=-1) for a in arrays]))
    idx = resample(_strata(strata, n), n_boot, np.random.default_rng(seed))
    reads = np.array([read(*[np.nanmean(a[..., i], axis=-1) for a in arrays]) for i in idx])
    return Reading(value, *interval(reads), top, digits, n, beyond)


def resample(strata: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap indices ``[n_boot, N]`` drawn with replacement within each stratum (each class
    keeps its count in every resample, as in the design: the samples are class-balanced). With
    one stratum the draws are those of ``rng.integers(0, N, (n_boot, N))``.

    Example:
        >>> idx = resample(np.array([0, 0, 1, 1, 1]), 4, np.random.default_rng(0))
        >>> bool((idx[:, :2] < 2).all() and (idx[:, 2:] >= 2).all())
        True
    """
    strata = np.asarray(strata)
    idx = np.empty((n_boot, len(strata)), dtype=np.int64)
    for s in np.unique(strata):
        where = np.flatnonzero(strata == s)
        idx[:, where] = where[rng.integers(0, len(where), size=(n_boot, len(where)))]
    return idx


def _strata(strata: Sequence[int] | None, n: int) -> np.ndarray:
    if strata is None:
        return np.zeros(n, dtype=np.int64)
    st = np.asarray(strata)
    if st.shape != (n,):
        raise ValueError(f"strata has {st.size} entries for {n} samples")
    return st


def bootstrap_samples(stat: Callable[[np.ndarray], float], values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0,
                      digits: int = 3, strata: Sequence[int] | None = None) -> Reading:
    """A statistic of the samples themselves (a spread, a share), with its 95% bootstrap interval.

    Example:
        >>> r = bootstrap_samples(np.median, np.arange(100.0))
        >>> r.lo < 49.5 < r.hi
        True
    """
    v = np.asarray(values, dtype=float)
    idx = resample(_strata(strata, len(v)), n_boot, np.random.default_rng(seed))
    reads = np.array([stat(v[i]) for i in idx])
    return Reading(float(stat(v)), *interval(reads), digits=digits, samples=len(v))


def interval(reads: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval, always at re-read values (no interpolation, so it stays on the grid)."""
    alpha = (1 - LEVEL) / 2
    return float(np.quantile(reads, alpha, method="lower")), float(np.quantile(reads, 1 - alpha, method="higher"))


# -- read functions (mean curve -> number) ------------------------------------------------------


def crossing(xs: Sequence[float], mean: np.ndarray, threshold: float, descending: bool = True) -> float:
    """The first ``x`` (scanning ``xs`` high to low, or low to high) from which ``mean`` stays >= ``threshold``.

    A curve that touches the threshold and falls below it again does not count there. When
    the last point of the scan is below the threshold the crossing lies beyond the grid:
    ``-inf`` scanning down (it would come at a lower ``x``), ``inf`` scanning up.

    Example:
        >>> crossing([100, 90, 80, 70], np.array([0.9, 0.7, 0.85, 0.95]), 0.8)
        80.0
        >>> crossing([0, 5, 10], np.array([0.6, 0.85, 0.9]), 0.8, descending=False)
        5.0
    """
    xs = np.asarray(xs, dtype=float)
    order = np.argsort(-xs if descending else xs, kind="stable")
    m = np.asarray(mean, dtype=float)[order]
    below = np.flatnonzero(~(m >= threshold))
    start = 0 if below.size == 0 else int(below[-1]) + 1
    if start >= len(m):
        return -np.inf if descending else np.inf
    return float(xs[order][start])


def run_limit(ns: Sequence[float], mean: np.ndarray, threshold: float) -> float:
    """The largest ``n`` such that the mean is >= ``threshold`` at every grid ``n' <= n``.

    ``inf`` when the whole grid passes (the limit lies beyond it), ``-inf`` when even the
    smallest ``n`` fails.

    Example:
        >>> run_limit([1, 3, 5, 7], np.array([0.9, 0.85, 0.7, 0.82]), 0.8)
        3.0
        >>> run_limit([1, 3], np.array([0.9, 0.85]), 0.8)
        inf
    """
    ns = np.asarray(ns, dtype=float)
    order = np.argsort(ns, kind="stable")
    m = np.asarray(mean, dtype=float)[order]
    fail = np.flatnonzero(~(m >= threshold))
    if fail.size == 0:
        return np.inf
    return -np.inf if fail[0] == 0 else float(ns[order][fail[0] - 1])


def _smooth(m: np.ndarray, window: int) -> np.ndarray:
    return pd.Series(m).rolling(window, center=True, min_periods=1).mean().to_numpy() if window > 1 else m


def dip(xs: Sequence[float], mean: np.ndarray, smooth: int = 1) -> tuple[float, float, float]:
    """The deepest dip of the mean curve in the direction time runs (``xs`` high to low).

    A dip is a fall followed by a rise: at each point, the depth is how far the curve lies
    below the lower of its highest point before and its highest point after (the water a
    valley would hold). Returns ``(x_peak, x_bottom, depth)``: the highest point before the
    deepest bottom, the bottom, and the depth; ``(-inf, -inf, 0)`` when the curve has no
    dip. On the skip-steps curve of Fig. 4 the peak ends phase 1 and the bottom ends phase 2.
    A fall at the end of the grid that never recovers is not a dip.

    Example:
        >>> peak, bottom, depth = dip([100, 80, 60, 40, 20], np.array([0.2, 0.9, 0.8, 0.7, 1.0]))
        >>> peak, bottom, round(depth, 3)
        (80.0, 40.0, 0.2)
        >>> dip([100, 80, 60], np.array([0.2, 0.9, 0.5]))   # falls, never recovers
        (-inf, -inf, 0.0)
    """
    xs = np.asarray(xs, dtype=float)
    order = np.argsort(-xs, kind="stable")
    m = _smooth(np.asarray(mean, dtype=float)[order], smooth)
    x = xs[order]
    before = np.maximum.accumulate(m)
    after = np.maximum.accumulate(m[::-1])[::-1]
    depth = np.minimum(before, after) - m
    j = int(np.argmax(depth))
    if not depth[j] > 0:
        return -np.inf, -np.inf, 0.0
    i = int(np.argmax(m[: j + 1]))
    return float(x[i]), float(x[j]), float(depth[j])


def valley_contrast(xs: Sequence[float], mean: np.ndarray, x_peak: float, x_bottom: float, x_after: float) -> float:
    """``min(mean at x_peak, mean at x_after) - mean at x_bottom``: the depth of a dip whose
    three points were found on other samples. Unlike a depth searched for on the same samples
    it can be negative, so an interval of it can rule the dip out.

    Example:
        >>> round(valley_contrast([100, 80, 60, 40, 20], np.array([0.2, 0.9, 0.8, 0.7, 1.0]), 80, 40, 20), 3)
        0.2
        >>> round(valley_contrast([100, 80, 60], np.array([0.2, 0.5, 0.9]), 100, 80, 60), 3)
        -0.3
    """
    xs = np.asarray(xs, dtype=float)
    m = np.asarray(mean, dtype=float)
    at = {float(x): i for i, x in enumerate(xs)}
    return float(min(m[at[x_peak]], m[at[x_after]]) - m[at[x_bottom]])


def x0_accurate_step(mean_by_t: np.ndarray, threshold: float) -> float:
    """The first ``t`` (from pure noise on) from which the x0 estimate's mean SSIM stays >= ``threshold``.

    ``mean_by_t[t]`` for ``t = 0..K`` (row 0, the output itself, is ignored).

    Example:
        >>> x0_accurate_step(np.array([1.0, 0.99, 0.95, 0.85, 0.6, 0.3]), 0.8)
        3.0
    """
    m = np.asarray(mean_by_t, dtype=float)
    return crossing(np.arange(1, len(m)), m[1:], threshold)


def rise_start(mean_by_t: np.ndarray, factor: float = 2.0) -> float:
    """Where the PSNR of ``x_t`` starts rising sharply: the first ``t`` from which the one-step
    gain ``PSNR(x_{t-1}) - PSNR(x_t)`` stays above ``factor`` times its median over all steps.

    ``mean_by_t[t]`` for ``t = 0..K``; row 0 (``x_0`` itself, infinite PSNR) is ignored, so
    the last gain is that of step ``t = 2 -> 1``, read at ``t = 2``.

    Example:
        >>> psnr = np.array([np.inf, 40, 30, 24, 21, 20, 19.5, 19])   # t = 0..7
        >>> rise_start(psnr, factor=2.0)   # gains 10, 6, 3, 1, .5, .5 at t = 2..7; median 2
        3.0
    """
    m = np.asarray(mean_by_t, dtype=float)[1:]  # t = 1..K
    gain = m[:-1] - m[1:]  # index i: step t = i + 2 -> i + 1
    ts = np.arange(2, len(m) + 1)
    return crossing(ts, gain, factor * float(np.median(gain)))


# -- tables -> curves ---------------------------------------------------------------------------


def curve_matrix(table: pd.DataFrame, x: str, metric: str = "ssim") -> tuple[np.ndarray, np.ndarray]:
    """``(xs, values[point, sample])`` from a sweep table with one schedule per ``x`` value.

    Infinite PSNR (an output identical to the original) becomes NaN: a mean over samples skips it.
    """
    wide = table.pivot(index=x, columns="sample", values=metric).sort_index()
    vals = wide.to_numpy(dtype=float, copy=True)
    vals[np.isinf(vals)] = np.nan
    return wide.index.to_numpy(dtype=float), vals


def mean_ci(values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0,
            strata: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per point, the 95% bootstrap interval of the mean over samples (``values[point, sample]``)."""
    v = np.asarray(values, dtype=float)
    idx = resample(_strata(strata, v.shape[-1]), n_boot, np.random.default_rng(seed))
    means = np.stack([np.nanmean(v[..., i], axis=-1) for i in idx])
    alpha = (1 - LEVEL) / 2
    return np.nanquantile(means, alpha, axis=0), np.nanquantile(means, 1 - alpha, axis=0)
