"""Sweeps are cached by content, survive corruption and interruption, and match the sampler."""

from __future__ import annotations

import numpy as np
import pytest

from unetdyn.interventions import DropBlocks, Schedule, SkipSteps
from unetdyn.metrics import compare
from unetdyn.paper.cache import CacheMiss
from unetdyn.paper.sweeps import Cache, Sweep, model_id
from unetdyn.sampler import RunOptions, SamplerConfig, sample

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
    res = sweep.run(SCHEDS, images=[0, 2])
    table = res.table
    assert list(table.columns) == ["schedule", "sample", "seed", "prompt", "ssim", "psnr"]
    assert len(table) == len(SCHEDS) * len(SEEDS)
    direct = sample(unet, PROMPTS, SEEDS, [Schedule(()), *SCHEDS], RunOptions(CFG, progress=False)).images
    m = compare(direct[0], direct[1:])
    # direct sampling batches the schedules differently: equal up to float rounding
    np.testing.assert_allclose(table.ssim.to_numpy().reshape(3, 3), m["ssim"], atol=1e-4)
    assert res.image(DropBlocks(t_start=6, n=2, nb=4)).shape == (2, 32, 32, 3)


def test_second_run_is_read_from_cache(unet, sweep, tmp_path):
    first = sweep.run(SCHEDS, images=[1])
    again = Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path), progress=False)
    second = again.run(SCHEDS)  # metrics without images: cached too
    assert again._base is None  # nothing was sampled
    assert first.table.equals(second.table)
    nb4 = SCHEDS[2].interventions
    assert np.array_equal(again.run(SCHEDS, images=[1]).images[nb4], first.images[nb4])
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
    with pytest.warns(UserWarning, match="is unusable"):
        assert Cache(tmp_path).get(key) is None
    with pytest.warns(UserWarning, match="is unusable"):
        second = Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path), progress=False).run(SCHEDS[:1])
    assert first.table.equals(second.table)
    assert Cache(tmp_path).get(key) is not None  # rewritten whole


def test_interrupted_sweep_keeps_what_it_finished(unet, tmp_path, monkeypatch):
    import unetdyn.paper.sweep_units as ex

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
    import unetdyn.paper.sweep_units as ex

    monkeypatch.setattr(ex, "sample", lambda *a, **k: pytest.fail("a cached timing was measured again"))
    again = Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path), progress=False).timing(scheds, samples=2, repeats=1)
    assert again.equals(first)
    with pytest.raises(ValueError, match="samples=4 must be in 1..3"):
        sweep.timing(scheds, samples=4)


def test_adapted_shortcut_follows_the_thresholds():
    from unetdyn.interventions import EarlyStop, preset
    from unetdyn.paper.families import adapted_shortcut

    assert adapted_shortcut({6: 65, 8: 60}, 18).interventions == preset("paper-shortcut").interventions
    later = adapted_shortcut({6: 80, 8: 70}, 40)  # the last cut (t = 41..35) would cross the stop at 40: dropped
    assert later.interventions == (DropBlocks(80, 5, 6), DropBlocks(70, 2, 8), DropBlocks(57, 7, 8), EarlyStop(40))
    assert adapted_shortcut({6: None, 8: None}, None).interventions == ()


def test_read_only_sweep_never_samples(unet, sweep, tmp_path, monkeypatch):
    sweep.run(SCHEDS[:1])
    import unetdyn.paper.sweep_units as ex

    monkeypatch.setattr(ex, "sample", lambda *a, **k: pytest.fail("a read-only sweep sampled"))
    ro = Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path, read_only=True), progress=False)
    assert ro.run(SCHEDS[:1]).table.equals(sweep.run(SCHEDS[:1]).table)
    with pytest.raises(CacheMiss, match="1 of 2 schedules are not in the result store, first 'skip_steps"):
        ro.run(SCHEDS[:2][::-1])
    with pytest.raises(CacheMiss, match="baseline"):
        ro.baseline()


def _entry_key(sweep, sched):
    return sweep.key("metrics", {"interventions": sched.to_dict()["interventions"]})


def test_an_entry_copied_over_another_key_is_not_used(unet, sweep, tmp_path):
    first = sweep.run(SCHEDS[:2])
    a, b = (Cache(tmp_path).path(_entry_key(sweep, s)) for s in SCHEDS[:2])
    b.write_bytes(a.read_bytes())  # schedule 0's valid entry now sits at schedule 1's key
    with pytest.warns(UserWarning, match="stored under another key"):
        again = Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path), progress=False).run(SCHEDS[:2])
    assert again.table.equals(first.table)
    assert Cache(tmp_path).get(_entry_key(sweep, SCHEDS[1])) is not None  # replaced


def test_a_wrong_shaped_entry_is_recomputed(unet, sweep, tmp_path):
    first = sweep.run(SCHEDS[:1])
    key = _entry_key(sweep, SCHEDS[0])
    Cache(tmp_path).put(key, {"ssim": np.zeros(2), "psnr": np.zeros(2)})  # 2 samples where the sweep has 3
    with pytest.warns(UserWarning, match="has shape"):
        again = Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path), progress=False).run(SCHEDS[:1])
    assert again.table.equals(first.table)
    Cache(tmp_path).put(key, {"ssim": np.zeros(3)})  # an array missing
    with pytest.warns(UserWarning, match="not the expected"):
        Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path), progress=False).run(SCHEDS[:1])


def test_keys_are_stable():
    """The committed result store is addressed by these keys: a change here orphans it."""
    from types import SimpleNamespace

    sw = Sweep(SimpleNamespace(weights_sha256="m"), ["circle"], [0], SamplerConfig(), progress=False)
    key = sw.key("metrics", {"interventions": Schedule((SkipSteps(t_start=60, n=5),)).to_dict()["interventions"]})
    assert key == "a5a2f019f5a3c2a2e373649028c84a689a5c9d82c9c25e0a35a8d729fc36f6f5"


def test_bf16_results_are_keyed_apart_and_fp32_keys_stay():
    from types import SimpleNamespace

    net = SimpleNamespace(weights_sha256="m")
    extra = {"interventions": Schedule((SkipSteps(t_start=60, n=5),)).to_dict()["interventions"]}
    fp32 = Sweep(net, ["circle"], [0], SamplerConfig(), progress=False, precision="fp32")
    bf16 = Sweep(net, ["circle"], [0], SamplerConfig(), progress=False, precision="bf16")
    assert fp32.key("metrics", extra) == "a5a2f019f5a3c2a2e373649028c84a689a5c9d82c9c25e0a35a8d729fc36f6f5"
    assert bf16.key("metrics", extra) != fp32.key("metrics", extra)
    assert bf16.key("baseline") != fp32.key("baseline")
    with pytest.raises(ValueError, match="precision='fp16' is not one of fp32, bf16"):
        Sweep(net, ["circle"], [0], SamplerConfig(), progress=False, precision="fp16")


def test_bf16_sweep_samples_in_bf16_and_never_reads_fp32_entries(unet, tmp_path, monkeypatch):
    Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path), progress=False).run(SCHEDS[:1])
    with pytest.raises(CacheMiss):  # the fp32 entries are there, but not for a bf16 sweep
        Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path, read_only=True), progress=False,
              precision="bf16").run(SCHEDS[:1])
    import unetdyn.paper.sweep_units as sweeps_mod

    seen = []
    real = sweeps_mod.sample

    def spy(*args, **kwargs):
        seen.append((args[4] if len(args) > 4 else kwargs["run"]).precision)
        return real(*args, **kwargs)

    monkeypatch.setattr(sweeps_mod, "sample", spy)
    res = Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path), progress=False, precision="bf16").run(SCHEDS[:1])
    assert seen and set(seen) == {"bf16"}
    assert len(res.table) == len(SEEDS)


def test_block_usage_is_computed_once_then_read(sweep, tmp_path, monkeypatch):
    import unetdyn.paper.sweep_units as sweeps_module

    first = sweep.block_usage((1, 4), (10, 5), samples=2)
    assert first["change"].shape == (2, 2) and np.all(first["change"] > 0)
    n_dec = len(sweep.unet.skips_popped)
    assert first["share"].shape == (n_dec, 2) and np.all((first["share"] > 0) & (first["share"] < 1))

    def no_compute(*a, **k):
        raise AssertionError("the stored block usage should have been read")

    monkeypatch.setattr(sweeps_module, "x0_change", no_compute)
    monkeypatch.setattr(sweeps_module, "below_share", no_compute)
    again = sweep.block_usage((1, 4), (10, 5), samples=2)
    for name in ("change", "share"):
        np.testing.assert_array_equal(again[name], first[name])
    read_only = Sweep(sweep.unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path, read_only=True), progress=False)
    with pytest.raises(CacheMiss, match="block usage on 3 samples"):
        read_only.block_usage((1, 4), (10, 5), samples=3)  # other samples: another result


def test_run_many_equals_one_run_per_family_to_the_bit(unet, tmp_path, monkeypatch):
    from unetdyn.paper.families import drop_blocks_family

    families = [drop_blocks_family([9, 7, 5], 2, nb) for nb in (2, 4)]
    families.append(([SCHEDS[2], Schedule(SCHEDS[0].interventions, name="again")], None))  # nb4@6 and skip@9 twice
    one = Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path / "one"), progress=False)
    each = [one.run(s, labels=lab, images=[1], chunk=2) for s, lab in families]
    many = Sweep(unet, PROMPTS, SEEDS, CFG, cache=Cache(tmp_path / "many"), progress=False)
    puts = []
    real = Cache.put
    monkeypatch.setattr(Cache, "put", lambda self, k, a, i=None: puts.append(k) or real(self, k, a, i))
    together = many.run_many([*families, (SCHEDS[:1], None)], images=[1], chunk=2)
    assert len(puts) == len(set(puts)) == 2 * 8  # eight schedules; skip@9 (in two families) computed and stored once
    for a, b in zip(each, together):
        assert a.table.equals(b.table)
    assert together[3].table.ssim.tolist() == together[2].table[lambda t: t.schedule == "again"].ssim.tolist()
    stored = {p.name: p.read_bytes() for p in sorted((tmp_path / "one").glob("*/*.npz"))}
    assert stored == {p.name: p.read_bytes() for p in sorted((tmp_path / "many").glob("*/*.npz"))}
