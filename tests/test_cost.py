"""FLOPs are counted by running the intervened forward, and they add up."""

from __future__ import annotations

import pytest

from unetdyn.cost import forward_flops, schedule_cost
from unetdyn.interventions import DropBlocks, DropGuidance, EarlyStop, Schedule, SkipSteps
from unetdyn.sampler import SamplerConfig
from unetdyn.unet import Surgery

CFG = SamplerConfig(steps=20)


def test_full_schedule_costs_k_guided_forwards(unet):
    c = schedule_cost(unet, "full", CFG)
    assert c.unet_calls == 20 and c.saving == 0
    assert c.full_flops_per_sample == pytest.approx(20 * forward_flops(unet, Surgery(), rows=2))


def test_dropping_blocks_saves_flops_monotonically(unet):
    flops = [forward_flops(unet, Surgery(drop_blocks=nb), rows=1) for nb in (0, 2, 4, 8, 12, 16)]
    assert all(a > b for a, b in zip(flops, flops[1:]))
    assert flops[-1] > 0  # the head still runs


def test_saving_of_early_stop_and_skips_is_the_share_of_calls(unet):
    assert schedule_cost(unet, Schedule((EarlyStop(t=11),)), CFG).saving == pytest.approx(0.5)
    assert schedule_cost(unet, Schedule((SkipSteps(t_start=10, n=5),)), CFG).saving == pytest.approx(4 / 20)


def test_drop_blocks_saving_matches_per_call_counts(unet):
    c = schedule_cost(unet, Schedule((DropBlocks(t_start=10, n=5, nb=8),)), CFG)
    full, nb8 = forward_flops(unet, Surgery(), 2), forward_flops(unet, Surgery(drop_blocks=8), 2)
    assert c.flops_per_sample == pytest.approx(15 * full + 5 * nb8)
    assert c.truncated_calls == 5 and 0 < c.saving < 5 / 20


def test_dropping_guidance_halves_the_rows(unet):
    c = schedule_cost(unet, Schedule((DropGuidance(t_start=20, n=20),)), CFG)
    assert c.saving == pytest.approx(0.5)
    c = schedule_cost(unet, Schedule((DropGuidance(t_start=5, n=5),)), CFG)
    assert c.saving == pytest.approx(5 / 40)
