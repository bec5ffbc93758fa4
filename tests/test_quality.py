"""The quality bar: Fréchet distance, the shape classifier, and evaluation end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unetdyn.backends.builtin import BuiltinConfig
from unetdyn.builtin_model.checkpoint import export_weights
from unetdyn.builtin_model.classifier import (
    CLASSIFIER_PATH,
    ClassifierConfig,
    ShapeClassifier,
    accuracy,
    frechet_distance,
    load_classifier,
    save_classifier,
    train_classifier,
)
from unetdyn.builtin_model.config import TrainConfig
from unetdyn.builtin_model.data import CLASS_NAMES, NUM_CLASSES, make_batch
from unetdyn.builtin_model.quality import class_grid, evaluate, format_table, main
from unetdyn.builtin_model.train import train

from .conftest import random_unet

TINY = BuiltinConfig(
    model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_ds=(2,), head_channels=8, norm_groups=4
)
SMALL = ClassifierConfig(
    widths=(8, 16, 32), steps=400, batch_size=32, lr=3e-3, n_train=2000, noise_std=0.05, blur_p=0.0, n_eval=500
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Training is timed and compared on one thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def small_classifier() -> ShapeClassifier:
    return train_classifier(SMALL, progress=False)


# -- Fréchet distance ---------------------------------------------------------------------


def test_frechet_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    x = np.random.default_rng(0).normal(size=(400, 16))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    dists = [frechet_distance(x, x + s) for s in (0.1, 0.5, 1.0)]
    np.testing.assert_allclose(dists, [16 * s**2 for s in (0.1, 0.5, 1.0)], rtol=1e-6)  # |shift|^2 exactly
    assert frechet_distance(x, 2 * x) > 0.5  # a change of spread counts too


def test_frechet_is_symmetric_and_finite_for_few_samples():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(10, 32)), rng.normal(1.0, 1.0, size=(12, 32))  # singular covariances
    d = frechet_distance(a, b)
    assert np.isfinite(d) and d > 0
    assert d == pytest.approx(frechet_distance(b, a), rel=1e-3)
    with pytest.raises(ValueError):
        frechet_distance(a, b[:, :8])


# -- the classifier -----------------------------------------------------------------------


def test_small_budget_classifier_learns(small_classifier):
    info = small_classifier.info
    assert info["held_out_accuracy"] >= 0.4  # chance is 0.1; this budget gives ~0.6, the shipped one 0.997
    assert info["n_eval"] == 500 and 0 <= info["train_accuracy"] <= 1


def test_classifier_save_load_round_trip(small_classifier, tmp_path):
    path = save_classifier(small_classifier, tmp_path / "clf.safetensors")
    loaded = load_classifier(path, train_if_missing=False)
    assert loaded.config == SMALL and loaded.info == pytest.approx(small_classifier.info)
    x, _ = make_batch(5, range(20))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), small_classifier(x))
    with pytest.raises(FileNotFoundError):
        load_classifier(tmp_path / "missing.safetensors", train_if_missing=False)


@pytest.mark.skipif(not CLASSIFIER_PATH.exists(), reason="no shipped classifier (python -m unetdyn.builtin_model.quality trains it)")
def test_shipped_classifier_classifies_fresh_held_out_images():
    clf = load_classifier(CLASSIFIER_PATH, train_if_missing=False)
    assert clf.info["held_out_accuracy"] >= 0.98
    assert accuracy(clf, seed=2000, n=200, offset=100_000) >= 0.95  # indices it was never measured on


# -- evaluation ---------------------------------------------------------------------------


def test_evaluate_end_to_end(small_classifier):
    res = evaluate(random_unet(), n_per_class=1, steps=5, batch_size=10, classifier=small_classifier, progress=False)
    json.dumps(res)
    assert res["n_samples"] == NUM_CLASSES and res["n_per_class"] == 1 and res["steps"] == 5
    assert 0.0 <= res["agreement"] <= 1.0 and res["passes"] == (res["agreement"] >= res["bar"])
    assert list(res["per_class"]) == list(CLASS_NAMES) and all(v in (0.0, 1.0) for v in res["per_class"].values())
    conf = np.asarray(res["confusion"])
    assert conf.shape == (NUM_CLASSES, NUM_CLASSES) and (conf.sum(1) == 1).all()
    assert res["agreement"] == pytest.approx(np.trace(conf) / conf.sum())
    assert np.mean(list(res["per_class"].values())) == pytest.approx(res["agreement"])
    for key in ("frechet_gen_real", "frechet_real_real"):
        assert np.isfinite(res[key]) and res[key] >= 0
    assert res["classifier_accuracy"] == small_classifier.info["held_out_accuracy"]
    assert res["feature_dim"] == SMALL.widths[-1] and 0 <= res["real_agreement"] <= 1
    table = format_table(res)
    assert all(name in table for name in CLASS_NAMES) and ("PASS" in table or "FAIL" in table)


def test_class_grid_puts_one_class_per_row():
    labels = torch.arange(25) % NUM_CLASSES
    images = labels.float()[:, None, None, None].expand(25, 3, 32, 32) / 10
    grid = class_grid(images, labels, ncol=4)
    assert grid.shape == (NUM_CLASSES * 4, 3, 32, 32)
    assert torch.equal(grid[12:16, 0, 0, 0], torch.tensor([0.3, 0.3, 0.3, 1.0]))  # class 3: 3 samples, 1 blank
    assert torch.equal(grid[28:32, 0, 0, 0], torch.tensor([0.7, 0.7, 1.0, 1.0]))  # class 7: 2 samples, 2 blanks


def test_cli_writes_json_and_grid(small_classifier, tmp_path, capsys):
    train(TrainConfig(model=TINY, batch_size=4, steps=1, ckpt_every=1), tmp_path / "run", progress=False)
    weights = export_weights(tmp_path / "run", tmp_path / "unet.safetensors")["path"]
    clf = save_classifier(small_classifier, tmp_path / "clf.safetensors")
    out = tmp_path / "out"
    argv = ["--weights", str(weights), "--classifier", str(clf), "--out", str(out), "--n-per-class", "1"]
    res = main([*argv, "--steps", "3", "--no-progress"])
    assert json.loads((out / "quality.json").read_text()) == json.loads(json.dumps(res))
    assert res["model"]["training_steps"] == 1 and res["model"]["sha256"]
    assert (out / "samples_by_class.png").stat().st_size > 0
    assert "Frechet" in capsys.readouterr().out
