"""benchmarks/book_times.py steps: a chapter counted from a tiny store, and estimated from the reference's runs of it
for a model the store lacks, its FLOPs counted on that model's own architecture."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from unetdyn.backends.builtin import BuiltinUnet
from unetdyn.cost import CallCost
from unetdyn.paper import chapters
from unetdyn.paper.cache import Cache
from unetdyn.paper.chapters import common
from unetdyn.paper.sweeps import Sweep, default_samples

from .conftest import TINY_CONFIG, random_unet

_spec = importlib.util.spec_from_file_location("book_times", Path(__file__).parents[1] / "benchmarks" / "book_times.py")
bt = importlib.util.module_from_spec(_spec)
sys.modules["book_times"] = bt  # its dataclass looks its module up there
_spec.loader.exec_module(bt)

PARAMS = """
all: {n_samples: 4, steps: 10}
notebooks:
  01_phases: {t_stride: 3, n_values: [2], t_stride_fig18: 5, eq4_variance: false, image_samples: 1, image_t_starts: [8]}
  02_skip_vs_deconv: {n: 2, t_stride: 3, image_samples: 1, image_t_starts: [8], late: 5, early: 7}
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory, one_thread):
    """A store holding chapters 1 and 2 of the tiny reference ``builtin`` (width 16), and of ``builtin:wide`` (the same
    architecture at width 32) the baseline only. Returns (root, params file, unets)."""
    root = tmp_path_factory.mktemp("store")
    params = root / "params.yaml"
    params.write_text(PARAMS)
    unets = {"builtin": random_unet(16, seed=0), "builtin:wide": random_unet(32, seed=1)}

    def fake_open(spec, *, compute=True, cache_dir=None, batch_size=16, **_):
        unet = unets[spec.model]
        prompts, seeds = default_samples(unet, "builtin", spec.n_samples)
        return Sweep(unet, prompts, seeds, spec.config, Cache(cache_dir, read_only=not compute), batch_size, False)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(common, "open_sweep", fake_open)
        for name in ("01_phases", "02_skip_vs_deconv"):
            chapters.run(bt.chapter_params(name, str(params), "builtin", compute=True, progress=False, cache_dir=str(root)))
        bt.chapter_params("01_phases", str(params), "builtin:wide", compute=True, cache_dir=str(root)).sweep().baseline()
        mp.setattr(bt, "chapter_runs", functools.cache(bt.chapter_runs))  # each chapter read once per model
        yield root, str(params), unets


def arch(unets, model, has_weights):
    return bt.Arch(model, CallCost(unets[model]), "the test's", has_weights)


def test_a_model_the_store_lacks_is_estimated_from_the_reference(store):
    root, params, unets = store
    ref, wide = arch(unets, "builtin", True), arch(unets, "builtin:wide", True)
    for name in ("01_phases", "02_skip_vs_deconv"):
        counted = bt.sample_steps(name, params, root, ref, ref)
        assert counted["source"] == "counted from the store" and counted["estimated_from"] is None
        assert counted["schedules"] > 0 and counted["sample_steps"] > 4 * 10  # more than the baseline
        est = bt.sample_steps(name, params, root, wide, ref)  # builtin:wide has weights, but only its baseline stored
        # the chapter's schedules do not depend on the model: the estimate is the reference's count
        assert (est["schedules"], est["sample_steps"]) == (counted["schedules"], counted["sample_steps"])
        assert est["estimated_from"] == "builtin"
        assert est["source"].startswith("ESTIMATE from builtin's runs (the same schedules on every model)")
        assert est["source"].endswith("stored for builtin:wide: the baseline, 0 of the schedules")
        assert est["stored_steps"] == 4 * 10
        # the same runs counted on the reference's own architecture give the reference's FLOPs
        same = bt.Arch("builtin:same", ref.cost, "the reference's", False)
        assert bt.sample_steps(name, params, root, same, ref)["flops"] == pytest.approx(counted["flops"])
        assert est["flops"] > 2 * counted["flops"]  # twice the width: more than twice the FLOPs


def test_flops_scale_with_the_models_own_step(store):
    root, params, unets = store
    ref, wide = arch(unets, "builtin", True), arch(unets, "builtin:wide", False)  # no weights: estimated directly
    counted = bt.sample_steps("01_phases", params, root, ref, ref)
    est = bt.sample_steps("01_phases", params, root, wide, ref)
    assert "stored_steps" not in est and est["sample_steps"] == counted["sample_steps"]
    # chapter 1 skips steps: every call is a full guided one, so FLOPs are sample-steps times one step's
    assert counted["flops"] == pytest.approx(counted["sample_steps"] * CallCost(unets["builtin"]).flops(0, 0, 2))
    assert est["flops"] == pytest.approx(est["sample_steps"] * CallCost(unets["builtin:wide"]).flops(0, 0, 2))
    assert est["flops"] / counted["flops"] == pytest.approx(wide.step_flops / ref.step_flops)


def test_the_table_labels_estimates_and_scales_the_rate_by_flops(store, capsys):
    root, params, unets = store
    ref, wide = arch(unets, "builtin", True), arch(unets, "builtin:wide", True)
    rows = [bt.sample_steps(name, params, root, wide, ref) for name in ("01_phases", "02_skip_vs_deconv")]
    bt.print_steps(rows, wide, ref, 180.0, False)
    out = capsys.readouterr().out.splitlines()
    per_s = 180.0 * ref.step_flops / wide.step_flops
    assert any(line.startswith("rate: 180 ") and line.endswith(f"= {per_s:.1f}") for line in out)
    total = next(line for line in out if line.startswith("total"))
    steps = sum(r["sample_steps"] for r in rows)
    assert f"{steps:,d}" in total and f"{steps / per_s / 3600:.2f}" in total and "2 of 2 chapters estimated" in total
    assert sum("ESTIMATE from builtin's runs" in line for line in out) == 2
    left = steps - 2 * 4 * 10  # both chapters' baseline is stored: one trajectory, counted once per chapter
    assert out[-1].startswith(f"left to run for builtin:wide: {left:,d} guided sample-steps ({left / per_s / 3600:.2f} h)")


def test_the_rate_can_be_measured_here_and_the_table_says_so(store, capsys):
    root, params, unets = store
    ref = arch(unets, "builtin", True)
    rate = bt.measure_rate("builtin", samples=2, steps=2)  # the shipped model, timed on this machine
    assert rate > 0 and rate < float("inf")
    bt.print_steps([bt.sample_steps("01_phases", params, root, ref, ref)], ref, ref, rate, "measured here just now")
    assert f"rate: {rate:.4g} guided sample-steps/s (measured here just now)" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # one rate or the other, and only where hours are estimated
        bt.main(["steps", "--rate", "90", "--measure-rate"])


def test_the_reference_missing_a_chapter_is_reported_not_guessed(store):
    root, params, unets = store
    ref, wide = arch(unets, "builtin", True), arch(unets, "builtin:wide", False)
    assert bt.sample_steps("03_nb_sweep", params, root, ref, ref)["source"].startswith("not in the store: ")
    r = bt.sample_steps("03_nb_sweep", params, root, wide, ref)
    assert r["sample_steps"] is None and r["source"].endswith("cannot be estimated")


def test_a_member_without_weights_is_counted_from_its_training_checkpoint(monkeypatch, tmp_path):
    from safetensors.torch import save_file

    from unetdyn.builtin_model.config import TrainConfig

    member = tmp_path / "fam" / "young"
    (member / "train").mkdir(parents=True)
    cfg = TrainConfig(model=TINY_CONFIG, steps=300)
    save_file({"x": torch.zeros(1)}, str(member / "train" / "ckpt.safetensors"),
              metadata={"train_config": json.dumps(cfg.to_dict()), "step": "120"})
    monkeypatch.setattr(bt, "member_dir", lambda model: tmp_path / "fam" / model.split(":", 1)[1])
    a = bt.architecture("builtin:young")  # data/family/young holds no weights
    assert not a.has_weights and "step 120 of 300; no weights yet" in a.source
    assert a.step_flops == CallCost(BuiltinUnet(TINY_CONFIG)).flops(0, 0, 2)
    none = bt.architecture("builtin:nothing")
    assert none.cost is None and not none.has_weights and none.source.startswith("unknown (")


def test_a_members_regeneration_takes_chapter_3s_usage_maps_first(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(bt.chapters.ch03_nb_sweep, "usage", lambda p: calls.append(("usage", p.model, p.compute)))
    monkeypatch.setattr(bt, "regenerate", lambda p, timings: calls.append((type(p).__module__.split(".")[-1], p.model)))
    args = ["regenerate", "--member-grids", "--model", "builtin:seed1", "--no-record", "--cache-dir", str(tmp_path)]
    bt.main([*args, "--only", "01_phases", "03_nb_sweep"])
    assert calls == [("usage", "builtin:seed1", True), ("ch01_phases", "builtin:seed1"), ("ch03_nb_sweep", "builtin:seed1")]
    assert "03 usage maps" in capsys.readouterr().out  # timed as a row of its own
    calls.clear()
    bt.main([*args, "--only", "01_phases"])  # no chapter 3: no maps
    assert calls == [("ch01_phases", "builtin:seed1")]
    calls.clear()
    bt.main(["regenerate", "--model", "builtin:seed1", "--no-record", "--cache-dir", str(tmp_path), "--only", "03_nb_sweep"])
    assert calls == [("ch03_nb_sweep", "builtin:seed1")]  # the book's own grids: the chapter computes them in its turn
