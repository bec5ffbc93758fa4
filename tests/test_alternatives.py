"""The speed-up methods compared with the shortcut: their schedules and measurements."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from unetdyn.cost import CallCost
from unetdyn.interventions import DropBlocks, EarlyStop, preset
from unetdyn.paper.alternatives import (
    deepcache,
    dual_depth,
    glide_costs,
    guidance_truncation,
    methods,
    pareto,
)
from unetdyn.sampler import RunOptions, SamplerConfig, trajectory

PROMPTS, SEEDS = ["circle", "star", "ring"], [0, 1, 2]
SMALL = {"K": 10, "fewer": (5,), "dual": ((4, 7),), "cache": ((4, 2),), "truncate": (3,)}  # one setting per family


def test_methods_cover_every_family_once_named():
    ms = methods()
    names = [m.name for m in ms]
    assert names[0] == "full" and len(set(names)) == len(names)
    assert {m.family for m in ms} == {"full", "paper shortcut", "fewer steps", "DDIM", "dual depth", "DeepCache",
                                      "guidance truncation"}
    parts = {m.name: m.schedule for m in ms if m.family == "paper shortcut"}
    joined = parts["shortcut: blocks only"].interventions + parts["shortcut: early stop only"].interventions
    assert joined == preset("paper-shortcut").interventions
    assert {m.config.steps for m in ms if m.family == "fewer steps"} == {50, 60, 70, 80, 90}
    assert all(m.config.method == "ddim" and m.config.eta == 0 for m in ms if m.family == "DDIM")
    assert "paper shortcut" not in {m.family for m in methods(K=20, fewer=(10,), dual=((4, 15),))}


def test_deepcache_refreshes_every_k_steps():
    steps = deepcache(10, nb=4, k=3).compile(10, 16, 16)
    full = [s.t for s in steps if not s.drop_blocks]
    cached = [s.t for s in steps if s.drop_blocks]
    assert full == [10, 7, 4, 1] and cached == [9, 8, 6, 5, 3, 2]
    assert all(s.fill == "cache" and s.drop_blocks == 4 for s in steps if s.drop_blocks)
    with pytest.raises(ValueError, match="k=1"):
        deepcache(10, 4, 1)


def test_dual_depth_and_guidance_truncation_windows():
    steps = dual_depth(10, nb=8, switch=6).compile(10, 16, 16)
    assert [s.t for s in steps if s.drop_blocks == 8] == [10, 9, 8, 7]
    with pytest.raises(ValueError, match="switch=10"):
        dual_depth(10, 8, 10)
    g = guidance_truncation(3).compile(10, 16, 16)
    assert [s.t for s in g if not s.guided] == [3, 2, 1]


def test_fewer_steps_start_from_the_same_noise(unet, one_thread):
    a = trajectory(unet, PROMPTS, SEEDS, run=RunOptions(SamplerConfig(steps=6), progress=False))
    b = trajectory(unet, PROMPTS, SEEDS, run=RunOptions(SamplerConfig(steps=4, method="ddim"), progress=False))
    assert torch.equal(a.xs[6], b.xs[4])


def test_each_methods_flops_against_the_full_sampler(unet):
    cc = CallCost(unet, "circle")
    ms = {m.name: m for m in methods(**SMALL)}
    full = cc.flops_per_sample(ms["full"].schedule, ms["full"].config)

    def saving(name: str) -> float:
        return 1 - cc.flops_per_sample(ms[name].schedule, ms[name].config) / full

    assert sum(cc.calls(ms["ancestral K=5"].schedule, ms["ancestral K=5"].config).values()) == 5
    assert saving("ancestral K=5") == pytest.approx(0.5, abs=0.01)  # the encoding is counted once
    assert 0.03 < saving("DeepCache nb=4 k=2") < 0.5  # 5 of 10 calls without the bottom 4 blocks
    assert saving("guidance truncated last 3") == pytest.approx(0.15, abs=0.01)  # 3 of 10 calls at half


def test_call_costs_sum_per_call(unet, one_thread):
    cc = CallCost(unet, "circle")
    ms = {m.name: m for m in methods(**SMALL)}
    full = cc.flops_per_sample(ms["full"].schedule, ms["full"].config)
    half = cc.flops_per_sample(ms["ancestral K=5"].schedule, ms["ancestral K=5"].config)
    assert full - cc.condition_flops == pytest.approx(2 * (half - cc.condition_flops))
    assert cc.flops_per_sample(ms["full"].schedule, ms["full"].config, encode_every_step=True) == pytest.approx(full + 9 * cc.condition_flops)
    g = glide_costs(unet, list(ms.values()), prompt="circle", repeats=0, progress=False)
    assert g.iloc[-1].method == "text encoded every step" and g.iloc[-1].flop_saving <= 0  # a class embedding: ~0 FLOPs
    assert (g.flops_text_every_step >= g.flops).all()
    assert g.set_index("method").loc["guidance truncated last 3", "unet_calls"] == 10


def test_pareto_keeps_the_undominated():
    t = pd.DataFrame({"method": list("abcd"), "ssim_mean": [1.0, 0.9, 0.8, 0.7], "speedup": [1.0, 1.5, 1.2, 2.0]})
    assert list(pareto(t).method) == ["a", "b", "d"]


def test_early_stop_part_alone_runs_fewer_calls(unet):
    stop = next(m for m in methods() if m.name == "shortcut: early stop only")
    assert stop.schedule.interventions == (EarlyStop(t=18),)
    assert len(stop.schedule.compile(100, 16, 16)) == 83
    assert isinstance(next(m for m in methods() if m.name == "shortcut: blocks only").schedule.interventions[0], DropBlocks)


def test_the_ddim_diagnosis_measures_agreement_saturation_and_self_consistency(unet):
    from unetdyn.paper.alternatives import ddim_diagnosis, ddim_reading

    prompts, seeds = ["circle", "star", "heart"], [0, 1, 2]
    judge = lambda images: (images.mean(dim=(1, 2, 3)) > 0).numpy()  # noqa: E731  a stand-in classifier
    t = ddim_diagnosis(unet, prompts, seeds, judge, guidances=(1.0, 3.0), steps=(6, 3), progress=False)
    assert list(zip(t.sampler, t.steps)) == [("ancestral", 6), ("ddim", 6), ("ddim", 3)] * 2
    assert ((0 <= t.agreement) & (t.agreement <= 1) & (t.agreement_lo <= t.agreement) & (t.agreement <= t.agreement_hi)).all()
    assert ((0 <= t.saturated) & (t.saturated <= 1)).all()
    own = t.ssim_to_own_most_steps
    assert own[t.steps == 3].notna().all() and own[t.steps == 6].isna().all()
    text = ddim_reading(t)
    assert text.count("at guidance") == 2 and "3 samples per point" in text
    assert ("self-consistent" in text) == bool(own.min() >= 0.95)  # said only when DDIM converges on its own output
    assert all(w in text for w in ("it), with",)) and any(w in text for w in ("below it", "above it", "not apart from it"))
