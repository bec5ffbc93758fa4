"""The schedule search: budgets, composition of moves, and the search on a tiny random Unet."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from unetdyn.interventions import DropBlocks, DropGuidance, EarlyStop, Schedule, SkipSteps, load_schedule
from unetdyn.metrics import compare
from unetdyn.paper.cache import Cache
from unetdyn.paper.search import Budget, BudgetNotMet, candidate_moves, compose, sweep_search
from unetdyn.paper.sweeps import Sweep
from unetdyn.sampler import RunOptions, SamplerConfig, sample, trajectory

K = 12
CONFIG = SamplerConfig(steps=K)


@pytest.mark.parametrize("text,error", [("ssim>0.8", "METRIC>=VALUE"), ("fid>=3", "not one of"), ("ssim>=x", "not a number"),
                                        ("ssim>=nan", "finite")])
def test_a_bad_budget_names_its_fault(text, error):
    with pytest.raises(ValueError, match=error):
        Budget.parse(text)


def test_budget_metrics():
    ssim = np.array([0.5, 0.9, 1.0, 0.7])
    assert Budget.parse("ssim>=0.8").value(ssim) == pytest.approx(0.775)
    assert Budget.parse("ssim_p5>=0.6").value(ssim) == pytest.approx(np.percentile(ssim, 5))
    lcb = Budget.parse("ssim_lcb>=0.7").value(ssim)  # one-sided t bound, 3 degrees of freedom: t = 2.353
    assert lcb == pytest.approx(ssim.mean() - 2.3534 * ssim.std(ddof=1) / 2, abs=1e-4) and lcb < ssim.mean()
    assert Budget.parse("ssim_lcb>=0.7").value(np.full(5, 0.9)) == pytest.approx(0.9)  # no spread: the mean itself
    with pytest.raises(ValueError, match="at least 2 samples"):
        Budget.parse("ssim_lcb>=0.7").value(np.array([0.9]))
    assert Budget.parse("psnr>=20").value(ssim, np.array([10.0, np.inf, 30.0, 20.0])) == pytest.approx(40.0)


def test_composed_windows_avoid_the_steps_a_jump_or_the_stop_removes():
    state = {"window@12": SkipSteps(12, 3), "window@8": DropBlocks(8, 5, 8), "guidance": DropGuidance(6, 6),
             "stop": EarlyStop(3)}
    s = compose(state)
    steps = s.compile(K, 16, 16)  # raises if a window touched a removed step
    assert [st.t for st in steps] == [12, 9, 8, 7, 6, 5, 4, 3]
    assert [st.drop_blocks for st in steps] == [0, 0, 8, 8, 8, 8, 8, 0]
    assert [st.guided for st in steps] == [True, True, True, True, False, False, False, False]
    assert steps[-1].stop
    assert compose(state).name == s.name  # the name is the content's


def test_candidate_moves_fit_the_unet_and_the_steps():
    moves = candidate_moves(K, 16, window=4, nbs=(8, 20), stops=(2, 30), guidance=(4,))
    for m in moves:
        compose({m.slot: m.value}).compile(K, 16, 16)
    assert not any(isinstance(m.value, DropBlocks) and m.value.nb == 20 for m in moves)
    assert not any(isinstance(m.value, DropBlocks) and m.value.fill == "cache" and m.value.t_start == K for m in moves)
    assert [m.value.t for m in moves if m.slot == "stop"] == [2]


@pytest.fixture(scope="module")
def sweep(unet, tmp_path_factory):
    return Sweep(unet, ["circle", "star", "heart", "ring"], [1000, 1001, 1002, 1003], CONFIG,
                 Cache(tmp_path_factory.mktemp("store")), batch_size=16, progress=False)


def test_the_search_returns_a_schedule_that_meets_its_budget_on_its_own_samples(sweep, unet, tmp_path):
    budget = Budget.parse("ssim>=0.9")
    moves = candidate_moves(K, 16, window=4, stops=(2, 4), guidance=(4, 8))
    res = sweep_search(sweep, budget, moves, progress=False)
    best = res.best
    assert best.saving > 0 and best.value >= 0.9
    assert res.trials >= len(res.singles) + 1 and res.path[0].saving == 0
    assert all(a.saving < b.saving for a, b in zip(res.path, res.path[1:]))  # each accepted step saves more
    # measured again, from scratch, outside the search: the same quality
    base = trajectory(unet, sweep.prompts, sweep.seeds, run=RunOptions(CONFIG, progress=False))
    out = sample(unet, sweep.prompts, sweep.seeds, best.schedule, RunOptions(CONFIG, progress=False))
    assert budget.value(compare(base.x0, out.images[0])["ssim"]) == pytest.approx(best.value, abs=1e-4)
    # the found schedule round-trips through the YAML file `unetdyn search` writes
    path = tmp_path / "found.yaml"
    path.write_text(yaml.safe_dump(Schedule(best.schedule.interventions, name="found").to_dict()))
    assert load_schedule(str(path)).interventions == best.schedule.interventions
    # a replay from the read-only store measures nothing and finds the same schedule
    replay = Sweep(unet, sweep.prompts, sweep.seeds, CONFIG, Cache(sweep.cache.root, read_only=True), progress=False)
    assert sweep_search(replay, budget, moves, progress=False).best.schedule == best.schedule


def test_a_budget_it_cannot_meet_names_the_best_it_found(sweep):
    moves = candidate_moves(K, 16, window=4, stops=(2, 4), guidance=(4, 8))
    with pytest.raises(BudgetNotMet, match=r"saves >= 95% .* the best found saves \d"):
        sweep_search(sweep, Budget.parse("ssim>=0.9", min_saving=0.95), moves, progress=False)
    with pytest.raises(BudgetNotMet, match="not met even by the full sampler"):
        sweep_search(sweep, Budget.parse("ssim>=1.5"), moves, progress=False)


def test_the_searched_presets_are_the_schedules_chapter_8_found():
    from unetdyn.interventions import PRESETS
    from unetdyn.paper import chapters

    found = chapters.run(chapters.params("08_beyond", progress=False)).found  # read from the committed store
    for preset_name, part in (("searched", "found"), ("searched-mean", "found, ssim at least 0.8")):
        assert sorted(map(repr, PRESETS[preset_name].interventions)) == sorted(map(repr, found[part].interventions))
    # in sampling order, so that the file a user writes from them reads as the run goes
    for s in (PRESETS["searched"], PRESETS["searched-mean"]):
        starts = [iv.t_start for iv in s.interventions]
        assert starts == sorted(starts, reverse=True)
