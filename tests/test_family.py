"""The family of built-in models: names, folders, the listing, and loading a member by name."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_CONFIG, write_weights
from unetdyn.backends import load_unet, registry
from unetdyn.backends.builtin_weights import WEIGHTS_FORMAT, sha256_file
from unetdyn.builtin_model.family import WEIGHTS_NAME, member_weights, members
from unetdyn.cli import main
from unetdyn.paths import BUILTIN_DIR, is_builtin, member_dir, member_name


def _member(family, name, steps=1200, seed=3, quality=None):
    d = family / name
    d.mkdir(parents=True, exist_ok=True)
    meta = {"format": WEIGHTS_FORMAT, "config": json.dumps(TINY_CONFIG.to_dict()), "steps": str(steps),
            "data_seed": str(seed), "train_config": json.dumps({"seed": seed})}
    w = write_weights(d / WEIGHTS_NAME, metadata=meta)
    if quality is not None:
        (d / "quality.json").write_text(json.dumps({**quality, "model": {"sha256": sha256_file(w)}}))
    return w


@pytest.mark.parametrize("model,name", [("builtin", None), ("builtin:seed1", "seed1"), ("builtin:w8-12k", "w8-12k")])
def test_a_member_is_named_builtin_colon_name(model, name):
    assert is_builtin(model) and member_name(model) == name
    assert member_dir(model) == (BUILTIN_DIR if name is None else BUILTIN_DIR.parent / "family" / name)


@pytest.mark.parametrize("model", ["builtin:", "builtin:../data", "builtin:Seed1", "builtin:a/b", "builtin:" + "x" * 41])
def test_a_name_that_is_not_a_members_is_refused(model):
    with pytest.raises(ValueError, match="a member's name is 1..40"):
        member_name(model)
    with pytest.raises(ValueError, match="a member's name"):
        registry.check_model(model)


def test_the_listing_reads_each_members_files(tmp_path):
    _member(tmp_path, "seed2", steps=12000, seed=2, quality={"agreement": 0.925, "frechet_gen_real": 1.5})
    w = _member(tmp_path, "narrow")
    (tmp_path / "notes").mkdir()  # a folder without weights is no member
    (tmp_path / "Bad Name").mkdir()
    found = {m.model: m for m in members(tmp_path)}
    assert list(found) == ["builtin", "builtin:narrow", "builtin:seed2"]
    s2 = found["builtin:seed2"]
    assert (s2.steps, s2.seed, s2.data_seed, s2.width, s2.agreement) == (12000, 2, 2, TINY_CONFIG.model_channels, 0.925)
    assert "class agreement 92.5%" in s2.summary()
    assert found["builtin:narrow"].agreement is None and "quality not checked" in found["builtin:narrow"].summary()
    # a quality record of other weights says nothing about these
    (tmp_path / "narrow" / "quality.json").write_text(json.dumps({"agreement": 0.99, "model": {"sha256": "0" * 64}}))
    assert {m.model: m for m in members(tmp_path)}["builtin:narrow"].agreement is None
    assert member_weights("builtin:narrow", tmp_path) == w
    with pytest.raises(ValueError, match=r"no weights at .*; the family holds builtin, builtin:narrow, builtin:seed2"):
        member_weights("builtin:seed9", tmp_path)


def test_load_unet_takes_a_member_by_name(tmp_path, monkeypatch):
    _member(tmp_path, "tiny")
    monkeypatch.setattr(registry, "member_dir", lambda model: tmp_path / member_name(model))
    unet = load_unet("builtin:tiny")
    assert unet.config == TINY_CONFIG and unet.weights_sha256 == sha256_file(tmp_path / "tiny" / WEIGHTS_NAME)
    with pytest.raises(ValueError, match="no weights at .*unetdyn models"):
        load_unet("builtin:other")


def test_unetdyn_models_lists_the_shipped_model(capsys, monkeypatch):
    import unetdyn.builtin_model.family as family

    monkeypatch.setattr(family, "in_training", lambda: [("builtin:seed3", 1500)])
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "builtin " in out and "10000 steps" in out and "class agreement" in out
    assert "builtin:seed3    still training: its checkpoint is at step 1,500 (data/family/seed3/train/)" in out


def test_a_member_still_training_is_listed_with_its_step_until_it_has_weights(tmp_path):
    from unetdyn.builtin_model.family import in_training

    run = tmp_path / "seed3" / "train"
    run.mkdir(parents=True)
    (run / "ckpt.json").write_text(json.dumps({"step": 1500, "train_config": {"steps": 12000}}))
    (tmp_path / "notes").mkdir()  # no run folder: not training
    assert in_training(tmp_path) == [("builtin:seed3", 1500)]
    assert "builtin:seed3" not in {m.model for m in members(tmp_path)}  # not selectable yet
    _member(tmp_path, "seed3")  # once it has weights it is a member, and no longer training
    assert in_training(tmp_path) == [] and "builtin:seed3" in {m.model for m in members(tmp_path)}


def _family_member_script():
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("family_member", Path(__file__).parents[1] / "benchmarks" / "family_member.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["family_member"] = mod  # its dataclass looks its module up there
    spec.loader.exec_module(mod)
    return mod


def test_a_members_stages_are_read_from_its_files(tmp_path):
    import torch
    from safetensors.torch import save_file

    fm = _family_member_script()

    def state(stages):
        return {s.name: s.done for s in stages}

    with pytest.raises(ValueError, match="no checkpoint .* and no weights; give --new"):
        fm.plan("m", 10, family=tmp_path)
    fresh = fm.plan("m", 10, new="--width 8 --seed 3", family=tmp_path)
    assert not any(state(fresh).values()) and fresh[0].command[-4:] == ("--width", "8", "--seed", "3")
    run = tmp_path / "m" / "train"
    run.mkdir(parents=True)
    save_file({"x": torch.zeros(1)}, str(run / "ckpt.safetensors"), metadata={"step": "5"})
    halfway = fm.plan("m", 10, new="--width 8", family=tmp_path)
    assert state(halfway) == dict.fromkeys(fm.STAGES, False)
    assert halfway[0].state == "checkpoint at step 5 of 10" and "--width" not in halfway[0].command  # a resume
    save_file({"x": torch.zeros(1)}, str(run / "ckpt.safetensors"), metadata={"step": "10"})
    w = _member(tmp_path, "m", steps=10, quality={"agreement": 0.95, "frechet_gen_real": 1.0})
    assert state(fm.plan("m", 10, family=tmp_path)) == {"train": True, "export": True, "quality": True, "card": False,
                                                        "grids": False}
    (tmp_path / "m" / "MODEL_CARD.md").write_text(f"sha256 `{sha256_file(w)}`")
    assert state(fm.plan("m", 10, family=tmp_path))["card"]
    on_gpu = {s.name: " ".join(s.command) for s in fm.plan("m", 10, device="cuda", batch_size=512, family=tmp_path)}
    assert "--device cuda --batch-size 512" in on_gpu["grids"] and "--device cuda" in on_gpu["quality"]
    assert not state(fm.plan("m", 12, family=tmp_path))["export"]  # trained on: its weights are of an earlier step
    for f in run.iterdir():  # a finished run's folder removed: the weights say how far it trained
        f.unlink()
    assert state(fm.plan("m", 10, family=tmp_path))["train"]
    with pytest.raises(ValueError, match="weights are of step 10 and .* holds no checkpoint to train on to --steps 12"):
        fm.plan("m", 12, family=tmp_path)


def test_a_members_training_losses_come_from_its_run_then_from_its_card(tmp_path):
    from unetdyn.builtin_model.family import training_losses

    assert training_losses("builtin:m", tmp_path) is None  # neither kept
    (tmp_path / "m" / "train").mkdir(parents=True)
    (tmp_path / "m" / "losses.csv").write_text("step,loss\n0,1.0\n1,0.5\n")
    assert list(training_losses("builtin:m", tmp_path).loss) == [1.0, 0.5]
    (tmp_path / "m" / "train" / "losses.csv").write_text("step,loss\n0,1.0\n1,0.5\n2,0.25\n")
    assert len(training_losses("builtin:m", tmp_path)) == 3  # the run folder, while it is there, is the latest
