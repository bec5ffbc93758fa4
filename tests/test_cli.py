"""The command line end to end on a tiny trained model: train -> export -> sample -> cost."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from unetdyn.cli import main, parse_seeds

TINY = ["--width", "8", "--norm-groups", "4", "--head-channels", "8", "--batch-size", "4", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    assert main(["train", "--out", str(d / "run"), "--steps", "2", *TINY, "--export", str(d / "w.safetensors")]) == 0
    return d / "w.safetensors"


def test_sample_writes_pngs_grid_arrays_and_metrics(weights, tmp_path, capsys):
    out = tmp_path / "s"
    rc = main(["sample", "--weights", str(weights), "--schedule", "full", "paper-shortcut", "--seeds", "0-1",
               "--classes", "star", "heart", "--out", str(out)])
    assert rc == 0
    assert sorted(p.name for p in (out / "paper-shortcut").iterdir()) == ["seed0000_star.png", "seed0001_heart.png"]
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape[0] > grid.shape[1] / 2  # two rows of two
    z = np.load(out / "samples.npz")
    assert z["images"].shape == (2, 2, 3, 32, 32) and list(z["seeds"]) == [0, 1]
    assert json.loads(str(z["schedules"][1]))["name"] == "paper-shortcut"
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0] == "schedule,seed,prompt,ssim,psnr" and len(rows) == 5
    assert "SSIM to full" in capsys.readouterr().out


def test_cost_prints_one_json_object(weights, capsys):
    assert main(["cost", "--weights", str(weights), "--schedule", "paper-shortcut", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["unet_calls"] == 83 and 0 < d["saving"] < 1
    assert d["flops_per_sample"] < d["full_flops_per_sample"]


def test_bad_schedule_is_a_clear_error(weights, tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("interventions: [{kind: drop_blocks, t_start: 60, n: 5, nb: 40}]")
    assert main(["sample", "--weights", str(weights), "--schedule", str(f), "--out", str(tmp_path / "o")]) == 2
    assert "drop_blocks.nb=40 is out of range 1..16" in capsys.readouterr().err


def test_missing_weights_is_a_clear_error(tmp_path, capsys):
    assert main(["sample", "--weights", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "o")]) == 2
    assert "weights not found" in capsys.readouterr().err


def test_cuda_without_gpu_is_a_clear_error(weights, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["sample", "--weights", str(weights), "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


@pytest.mark.parametrize("spec,seeds", [("0-3", [0, 1, 2, 3]), ("5", [5]), ("1,4-5", [1, 4, 5])])
def test_parse_seeds(spec, seeds):
    assert parse_seeds(spec) == seeds


def test_parse_seeds_rejects_backwards_ranges():
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="runs backwards"):
        parse_seeds("5-2")
