"""Readings of curves on synthetic data with known answers, and their intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from unetdyn.paper import readings as rd
from unetdyn.paper.readings import Reading, bootstrap, resample

T = np.arange(100, 0, -5, dtype=float)  # a t_start grid, high to low


def noisy(mean: np.ndarray, sd: float, n: int = 100, seed: int = 0) -> np.ndarray:
    return mean[:, None] + np.random.default_rng(seed).normal(0, sd, size=(len(mean), n))


def test_crossing_is_where_the_curve_stays_above():
    m = np.where(T > 60, 0.5, 0.9)
    assert rd.crossing(T, m, 0.8) == 60
    m2 = m.copy()
    m2[T == 90] = 0.85  # touches early, falls back: does not count there
    assert rd.crossing(T, m2, 0.8) == 60
    assert rd.crossing(T, np.full(len(T), 0.9), 0.8) == 100  # from the first point on
    assert rd.crossing(T, np.full(len(T), 0.5), 0.8) == -np.inf  # never on the grid
    assert rd.crossing([0, 5, 10], np.array([0.5, 0.6, 0.7]), 0.8, descending=False) == np.inf  # beyond the top


def test_crossing_interval_covers_the_truth_under_noise():
    true = np.where(T > 60, 0.5, 0.95)
    r = bootstrap(lambda m: rd.crossing(T, m, 0.8), noisy(true, 0.1))
    assert r.lo <= 60 <= r.hi and r.value == 60
    # a curve that sits at the threshold for a long stretch gives a wide, honest interval
    flat = np.where(T > 60, 0.5, 0.8)
    wide = bootstrap(lambda m: rd.crossing(T, m, 0.8), noisy(flat, 0.1))
    assert wide.hi - wide.lo >= 20


def test_run_limit_and_its_censoring():
    ns = np.arange(1, 16)
    assert rd.run_limit(ns, np.where(ns <= 7, 0.9, 0.6), 0.8) == 7
    assert rd.run_limit(ns, np.full(15, 0.9), 0.8) == np.inf
    assert rd.run_limit(ns, np.full(15, 0.5), 0.8) == -np.inf
    r = Reading(np.inf, 9, np.inf, top=15)
    assert str(r) == ">= 15 [9, >= 15]"


def test_dip_finds_a_valley_and_nothing_else():
    rise = np.linspace(0.2, 1.0, len(T))  # monotone: no dip
    assert rd.dip(T, rise) == (-np.inf, -np.inf, 0.0)
    valley = rise.copy()
    valley[(T <= 55) & (T >= 45)] -= 0.3
    peak, bottom, depth = rd.dip(T, valley)
    assert peak == 60 and bottom in (55, 50, 45) and depth > 0.25
    end_fall = rise.copy()
    end_fall[-1] = 0.1  # falls at the end of the grid and never recovers: not a dip
    assert rd.dip(T, end_fall)[2] == 0.0


def test_x0_accurate_step_and_rise_start():
    t = np.arange(0, 101)
    ssim = np.where(t <= 20, 0.9, 0.5)
    assert rd.x0_accurate_step(ssim, 0.8) == 20
    psnr = np.r_[np.inf, 40 - 2 * np.arange(1, 17), 7.95 - 0.05 * np.arange(84)]  # t = 0, 1..16, 17..100
    # the step t -> t - 1 gains 2 dB for t <= 16 and 0.05 dB before: the sharp rise starts at t = 16
    assert rd.rise_start(psnr, factor=2.0) == 16


def test_paired_curves_share_their_resamples():
    a = noisy(np.full(5, 0.7), 0.2)
    r = bootstrap(lambda x, y: float(np.mean(x - y)), a, a.copy(), digits=3)
    assert r.value == r.lo == r.hi == 0.0


def test_resamples_keep_every_class_count():
    strata = np.repeat(np.arange(5), 4)[np.random.default_rng(0).permutation(20)]
    idx = resample(strata, 50, np.random.default_rng(1))
    for row in idx:
        assert sorted(strata[row]) == sorted(strata)  # each class keeps its 4 samples
    # with one stratum the draws are the plain bootstrap's
    plain = np.random.default_rng(2).integers(0, 20, size=(50, 20))
    assert (resample(np.zeros(20, int), 50, np.random.default_rng(2)) == plain).all()


def test_stratified_interval_removes_the_spread_between_classes():
    # two classes far apart, equal counts: a plain bootstrap mixes their shares, a stratified one does not
    v = np.r_[np.full(50, 0.2), np.full(50, 0.9)][None, :] + np.random.default_rng(3).normal(0, 0.01, (1, 100))
    plain = bootstrap(lambda m: float(m[0]), v, digits=3)
    strat = bootstrap(lambda m: float(m[0]), v, digits=3, strata=np.repeat([0, 1], 50))
    assert strat.hi - strat.lo < (plain.hi - plain.lo) / 5
    assert plain.value == strat.value
    with pytest.raises(ValueError, match="strata has 3 entries for 100 samples"):
        bootstrap(lambda m: float(m[0]), v, strata=[0, 1, 2])


def test_curve_matrix_orders_points_and_drops_infinite_psnr():
    table = pd.DataFrame({"t_start": [10, 10, 20, 20], "sample": [0, 1, 0, 1], "psnr": [np.inf, 30.0, 20.0, 21.0]})
    xs, vals = rd.curve_matrix(table, "t_start", "psnr")
    assert list(xs) == [10, 20] and np.isnan(vals[0, 0]) and vals[1, 1] == 21.0
