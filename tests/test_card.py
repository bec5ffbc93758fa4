"""The model card is assembled from the weights' metadata, checksum and quality check."""

from __future__ import annotations

import json

from unetdyn.backends.builtin_weights import sha256_file
from unetdyn.builtin_model.card import write_model_card
from unetdyn.cli import main

TINY = ["--width", "8", "--norm-groups", "4", "--head-channels", "8", "--batch-size", "4", "--no-progress", "--threads", "1"]


def test_card_reports_metadata_checksum_and_quality(tmp_path):
    w = tmp_path / "w" / "unet.safetensors"
    assert main(["train", "--out", str(tmp_path / "run"), "--steps", "2", *TINY, "--export", str(w)]) == 0
    card = write_model_card(w, tmp_path / "run", w.parent).read_text()
    assert sha256_file(w) in card and "| training steps | 2 of batch 4 |" in card
    assert "No quality check" in card and "![loss curve](losses.png)" in card
    # the losses are kept beside the weights, where the family reads them once the run folder is gone
    assert (w.parent / "losses.csv").read_text() == (tmp_path / "run" / "losses.csv").read_text()

    q = {"agreement": 0.93, "passes": True, "bar": 0.9, "per_class": {"circle": 1.0, "star": 0.86},
         "frechet_gen_real": 1.5, "frechet_real_real": 0.06, "classifier_accuracy": 0.997, "n_per_class": 100,
         "steps": 100, "guidance": 3.0, "model": {"sha256": sha256_file(w)}}
    (w.parent / "quality.json").write_text(json.dumps(q))
    card = write_model_card(w, None, w.parent).read_text()
    assert "93.0%" in card and "**met**" in card and "star 86%" in card

    q["model"]["sha256"] = "0" * 64  # a check of other weights is not reported for these
    (w.parent / "quality.json").write_text(json.dumps(q))
    assert "No quality check" in write_model_card(w, None, w.parent).read_text()
