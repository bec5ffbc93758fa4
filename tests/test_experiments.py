"""Sweeps are cached by content, survive corruption and interruption, and match the sampler."""

from __future__ import annotations

import numpy as np
import pytest

from unetdyn.experiments import Cache, Sweep, model_id
from unetdyn.metrics import compare
from unetdyn.plan import DropBlocks, Schedule, SkipSteps
from unetdyn.sampler import SamplerConfig, sample

from .conftest import random_unet

CFG = SamplerConfig(steps=10)
PROMPTS, SEEDS = ["circle", "heart", "star"], [0, 1, 2]
SCHEDS = [Schedule((SkipSteps(t_start=t, n=3),), name=f"skip@{t}") for t in (9, 5)] + [
    Schedule((DropBlocks(t_start=6, n=2, nb=4),), name="nb4")
]


@pytest.fixture()
def sweep(unet, tmp_path):
    return Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path), progress=False)


def test_table_matches_direct_sampling(unet, sweep):
    table = sweep.run(SCHEDS, images=[0, 2])
    assert list(table.columns) == ["schedule", "sample", "seed", "prompt", "ssim", "psnr"]
    assert len(table) == len(SCHEDS) * len(SEEDS)
    direct = sample(unet, PROMPTS, SEEDS, [Schedule(()), *SCHEDS], CFG, progress=False).images
    m = compare(direct[0], direct[1:])
    # direct sampling batches the schedules differently: equal up to float rounding
    np.testing.assert_allclose(table.ssim.to_numpy().reshape(3, 3), m["ssim"], atol=1e-4)
    assert table.attrs["images"]["nb4"].shape == (2, 32, 32, 3)


def test_second_run_is_read_from_cache(unet, sweep, tmp_path):
    first = sweep.run(SCHEDS, images=[1])
    again = Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path), progress=False)
    second = again.run(SCHEDS)  # metrics without images: cached too
    assert again._base is None  # nothing was sampled
    assert first.equals(second)
    assert np.array_equal(again.run(SCHEDS, images=[1]).attrs["images"]["nb4"], first.attrs["images"]["nb4"])
    assert again._base is None


def test_key_depends_on_what_determines_a_result(unet, sweep):
    k = sweep.key("schedule", 1)
    assert k == Sweep(unet, PROMPTS, SEEDS, CFG, progress=False).key("schedule", 1)
    assert k != Sweep(unet, PROMPTS, [0, 1, 3], CFG, progress=False).key("schedule", 1)
    assert k != Sweep(unet, PROMPTS, SEEDS, SamplerConfig(steps=10, guidance=2.0), progress=False).key("schedule", 1)
    assert k != Sweep(random_unet(seed=1), PROMPTS, SEEDS, CFG, progress=False).key("schedule", 1)
    assert model_id(unet) == model_id(unet)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_entry_is_detected_and_recomputed(unet, sweep, tmp_path, damage):
    first = sweep.run(SCHEDS[:1])
    key = sweep.key("metrics", {"interventions": SCHEDS[0].to_dict()["interventions"]})
    path = Cache(tmp_path).path(key)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="is corrupt"):
        assert Cache(tmp_path).get(key) is None
    with pytest.warns(UserWarning, match="is corrupt"):
        second = Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path), progress=False).run(SCHEDS[:1])
    assert first.equals(second)
    assert Cache(tmp_path).get(key) is not None  # rewritten whole


def test_interrupted_sweep_keeps_what_it_finished(unet, tmp_path, monkeypatch):
    import unetdyn.experiments as ex

    calls = {"n": 0}
    real = ex.sample

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ex, "sample", flaky)
    sw = Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path), progress=False)
    with pytest.raises(KeyboardInterrupt):
        sw.run(SCHEDS, chunk=1)
    monkeypatch.setattr(ex, "sample", real)
    done = [Cache(tmp_path).get(sw.key("metrics", {"interventions": s.to_dict()["interventions"]})) for s in SCHEDS]
    assert done[0] is not None and done[1] is None


def test_baseline_metrics(sweep):
    b = sweep.baseline()
    assert b["x0"].shape == (3, 32, 32, 3) and b["x0"].dtype == np.uint8
    assert b["psnr_xt"].shape == (11, 3) and np.isinf(b["psnr_xt"][0]).all()
    assert b["ssim_x0hat"].shape == (11, 3) and (b["ssim_x0hat"][0] == 1).all()


def test_names_must_be_unique(sweep):
    with pytest.raises(ValueError, match="unique"):
        sweep.run([SCHEDS[0], SCHEDS[0]])


def test_timing_is_measured_once_then_read_from_cache(unet, sweep, tmp_path, monkeypatch):
    scheds = [Schedule((), name="full"), SCHEDS[2]]
    first = sweep.timing(scheds, samples=2, repeats=1)
    assert list(first.schedule) == ["full", "nb4"] and (first.seconds > 0).all()
    assert np.allclose(first.per_sample, first.seconds / 2)
    import unetdyn.experiments as ex

    monkeypatch.setattr(ex, "sample", lambda *a, **k: pytest.fail("a cached timing was measured again"))
    again = Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path), progress=False).timing(scheds, samples=2, repeats=1)
    assert again.equals(first)
    with pytest.raises(ValueError, match="samples=4 must be in 1..3"):
        sweep.timing(scheds, samples=4)


def test_adapted_shortcut_follows_the_thresholds():
    from unetdyn.experiments import adapted_shortcut, early_stop_t
    from unetdyn.plan import EarlyStop, preset

    assert adapted_shortcut({6: 65, 8: 60}, 18).interventions == preset("paper-shortcut").interventions
    later = adapted_shortcut({6: 80, 8: 70}, 40)  # the last cut (t = 41..35) would cross the stop at 40: dropped
    assert later.interventions == (DropBlocks(80, 5, 6), DropBlocks(70, 2, 8), DropBlocks(57, 7, 8), EarlyStop(40))
    assert adapted_shortcut({6: None, 8: None}, None).interventions == ()
    curve = np.array([[1.0, 1.0], [0.95, 0.97], [0.9, 0.8], [0.5, 0.6]])  # ssim_x0hat[t, sample], t = 0..3
    assert early_stop_t(curve, 0.85) == 2 and early_stop_t(curve, 0.99) is None
