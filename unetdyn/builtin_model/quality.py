"""The quality bar of the built-in model: does it draw the class it is asked for?

The shape classifier (:mod:`unetdyn.builtin_model.classifier`), trained on images the diffusion
model never saw, labels generated samples; the bar is that at least 90% of 1,000 samples (100
steps, guidance 3.0, 100 per class) get the class they were conditioned on. Beside the
agreement, :func:`evaluate` reports a Fréchet distance between real and generated images in
that classifier's feature space, next to the same distance between two independent real sets,
the floor that sampling noise alone gives at that sample size.

Command line (writes ``quality.json`` and ``samples_by_class.png``, prints a table)::

    python -m unetdyn.builtin_model.quality [--weights PATH] [--n-per-class 100] [--out data/builtin]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetdyn.builtin_model.classifier import (
    CLASSIFIER_PATH,
    REAL_SEEDS,
    ShapeClassifier,
    frechet_distance,
    load_classifier,
    predict_features,
)
from unetdyn.builtin_model.data import CLASS_NAMES, IMAGE_SIZE, NUM_CLASSES, make_batch
from unetdyn.fileio import atomic_write
from unetdyn.paths import BUILTIN_DIR, BUILTIN_WEIGHTS, REPO_ROOT

__all__ = ["BAR", "generate", "score", "evaluate", "class_grid", "format_table", "main"]

BAR = 0.90  # the required agreement


# -- evaluation --------------------------------------------------------------------------


def generate(
    unet,
    n_per_class: int = 100,
    steps: int = 100,
    guidance: float = 3.0,
    seed0: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples ``[10 n, 3, 32, 32]`` of the full schedule and their conditioning labels ``[10 n]``.

    Sample ``k`` is conditioned on class ``k % 10`` (as in the dataset) with sampler seed ``seed0 + k``.
    """
    from unetdyn.sampler import RunOptions, SamplerConfig, sample

    n = n_per_class * NUM_CLASSES
    labels = torch.arange(n) % NUM_CLASSES
    prompts = [CLASS_NAMES[int(c)] for c in labels]
    cfg = SamplerConfig(steps=steps, guidance=guidance)
    res = sample(unet, prompts, list(range(seed0, seed0 + n)), "full",
                 RunOptions(cfg, batch_size=batch_size, progress=progress))
    return res.images[0], labels


def score(
    images: torch.Tensor,
    labels: torch.Tensor,
    classifier: ShapeClassifier | None = None,
    real_seeds: tuple[int, int] = REAL_SEEDS,
) -> dict[str, Any]:
    """Agreement of the classifier with the conditioning labels and Fréchet distances.

    The real sets are images ``0 .. N-1`` of data seeds ``real_seeds`` (``N = len(images)``);
    ``frechet_gen_real`` compares the samples with the first, ``frechet_real_real`` the
    second with the first. See :func:`evaluate` for the keys.
    """
    clf = classifier if classifier is not None else load_classifier()
    y = labels.numpy().astype(np.int64)
    n = len(images)
    pred, f_gen = predict_features(clf, images)
    real_a, real_y = make_batch(real_seeds[0], range(n))
    real_b, _ = make_batch(real_seeds[1], range(n))
    pred_a, f_a = predict_features(clf, real_a)
    _, f_b = predict_features(clf, real_b)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    per_class_n = confusion.sum(1)
    per_class = {
        name: (float(confusion[c, c] / per_class_n[c]) if per_class_n[c] else None)
        for c, name in enumerate(CLASS_NAMES)
    }
    agreement = float((pred == y).mean()) if n else float("nan")
    return {
        "agreement": agreement,
        "passes": bool(agreement >= BAR),
        "bar": BAR,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "classes": list(CLASS_NAMES),
        "n_samples": n,
        "frechet_gen_real": frechet_distance(f_gen, f_a),
        "frechet_real_real": frechet_distance(f_b, f_a),
        "real_agreement": float((pred_a == real_y.numpy()).mean()),
        "real_seeds": list(real_seeds),
        "feature_dim": clf.feature_dim,
        "classifier_accuracy": clf.info.get("held_out_accuracy"),
        "classifier": {"config": clf.config.to_dict(), **clf.info},
    }


def evaluate(
    unet,
    n_per_class: int = 100,
    steps: int = 100,
    guidance: float = 3.0,
    seed0: int = 0,
    batch_size: int = 16,
    classifier: ShapeClassifier | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Sample ``n_per_class`` images per class and score them against the classifier.

    Args:
        unet: a model of the Unet protocol whose prompts are the class names.
        n_per_class, steps, guidance: what to sample (the bar: 100, 100, 3.0).
        seed0: sampler seed of the first sample (sample ``k`` has seed ``seed0 + k``).
        batch_size: samples per Unet call (guidance doubles the rows).
        classifier: default :func:`load_classifier` (trained and saved when missing).

    Returns:
        A JSON-ready dict: ``agreement`` (fraction of samples classified as their
        conditioning class), ``passes`` (``agreement >= bar``), ``bar``, ``per_class``
        (class name -> agreement), ``confusion`` (``[10][10]`` counts, row = conditioning
        class, column = predicted), ``classes``, ``n_samples``, ``frechet_gen_real``,
        ``frechet_real_real``, ``real_agreement`` (the classifier on the real reference set),
        ``real_seeds``, ``feature_dim``, ``classifier_accuracy`` (held-out), ``classifier``
        (its config and info), ``n_per_class``, ``steps``, ``guidance``, ``seed0``,
        ``model`` (the weights' SHA-256 and training step when known), ``seconds``.
    """
    return _evaluate(unet, n_per_class, steps, guidance, seed0, batch_size, classifier, progress)[0]


def _evaluate(unet, n_per_class, steps, guidance, seed0, batch_size, classifier, progress):
    """:func:`evaluate`, also returning the samples and their labels."""
    clf = classifier if classifier is not None else load_classifier(progress=progress)
    t0 = time.perf_counter()
    images, labels = generate(unet, n_per_class, steps, guidance, seed0, batch_size, progress)
    t_sample = time.perf_counter() - t0
    out = score(images, labels, clf)
    out.update(n_per_class=n_per_class, steps=steps, guidance=guidance, seed0=seed0, model=_model_info(unet))
    out["seconds"] = {"sampling": round(t_sample, 1), "scoring": round(time.perf_counter() - t0 - t_sample, 1)}
    return out, images, labels


def _model_info(unet) -> dict[str, Any]:
    return {"sha256": getattr(unet, "weights_sha256", None)}


# -- command line ------------------------------------------------------------------------


def class_grid(images: torch.Tensor, labels: torch.Tensor, ncol: int = 10) -> torch.Tensor:
    """The first ``ncol`` images of each class in class order, one class per row (blank-padded)."""
    rows = []
    for c in range(NUM_CLASSES):
        sel = images[labels == c][:ncol]
        pad = torch.ones(ncol - len(sel), 3, IMAGE_SIZE, IMAGE_SIZE)  # white
        rows.append(torch.cat([sel.float(), pad]))
    return torch.cat(rows)


def format_table(result: dict[str, Any]) -> str:
    """The per-class agreement and the summary lines, as plain text."""
    conf = np.asarray(result["confusion"])
    lines = [f"{'class':<10} {'agree':>6}  most confused with"]
    for c, name in enumerate(result["classes"]):
        a = result["per_class"][name]
        row = conf[c].copy()
        row[c] = -1
        worst = int(row.argmax())
        other = f"{result['classes'][worst]} ({row[worst]})" if row[worst] > 0 else "-"
        lines.append(f"{name:<10} {'-' if a is None else f'{a:6.1%}':>6}  {other}")
    acc = result["classifier_accuracy"]
    lines += [
        f"{'all':<10} {result['agreement']:6.1%}  ({result['n_samples']} samples; bar {result['bar']:.0%}: "
        f"{'PASS' if result['passes'] else 'FAIL'})",
        f"classifier held-out accuracy {'?' if acc is None else f'{acc:.2%}'}, on the real reference set "
        f"{result['real_agreement']:.2%}",
        f"Frechet distance ({result['feature_dim']}-d classifier features): generated vs real "
        f"{result['frechet_gen_real']:.4g}, real vs real {result['frechet_real_real']:.4g}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``python -m unetdyn.builtin_model.quality``: evaluate the built-in model, write quality.json and a grid."""
    from unetdyn.backends.builtin_weights import load_builtin, read_metadata
    from unetdyn.backends.registry import resolve_device
    from unetdyn.viz import save_grid

    p = argparse.ArgumentParser(prog="python -m unetdyn.builtin_model.quality", description=__doc__.split("\n")[0])
    p.add_argument("--weights", type=Path, help="built-in Unet safetensors (default: the shipped one)")
    p.add_argument("--n-per-class", type=int, default=100, help="samples per class (default 100)")
    p.add_argument("--steps", type=int, default=100, help="sampling steps (default 100)")
    p.add_argument("--guidance", type=float, default=3.0, help="guidance scale (default 3.0)")
    p.add_argument("--seed0", type=int, default=0, help="sampler seed of the first sample (default 0)")
    p.add_argument("--batch-size", type=int, default=16, help="samples per Unet call (default 16: fastest on a 2-core CPU)")
    p.add_argument("--classifier", type=Path, default=CLASSIFIER_PATH, help=f"default {CLASSIFIER_PATH}")
    p.add_argument("--out", type=Path, default=BUILTIN_DIR, help=f"output folder (default {BUILTIN_DIR})")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: where the model samples")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.no_progress

    wpath = args.weights or BUILTIN_WEIGHTS
    unet = load_builtin(wpath, device=resolve_device(args.device))
    meta = read_metadata(wpath)
    clf = load_classifier(args.classifier, progress=progress)
    result, images, labels = _evaluate(
        unet, args.n_per_class, args.steps, args.guidance, args.seed0, args.batch_size, clf, progress
    )
    shown = wpath.resolve().relative_to(REPO_ROOT) if wpath.resolve().is_relative_to(REPO_ROOT) else wpath
    result["model"].update(path=str(shown), training_steps=int(meta["steps"]) if "steps" in meta else None)

    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(args.out / "quality.json", lambda q: q.write_text(text))
    save_grid(class_grid(images, labels), args.out / "samples_by_class.png", nrow=10, scale=2)
    print(format_table(result))
    print(f"wrote {args.out / 'quality.json'} and {args.out / 'samples_by_class.png'}")
    return result


if __name__ == "__main__":
    main()
