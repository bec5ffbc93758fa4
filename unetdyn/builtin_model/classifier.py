"""The built-in model's quality classifier: an independent judge of what a sample shows.

A small CNN (:class:`ShapeClassifier`), trained on procedural images of a data seed the
diffusion model never saw, labels generated images; its global-pooled penultimate features give
a Fréchet distance between image sets in its feature space (:func:`frechet_distance`, the FID
formula). :mod:`unetdyn.builtin_model.quality` holds the quality bar that uses it, and chapter 7
reads class agreement and Fréchet distances with it.

Data seeds (the diffusion model trains on seed 0):

* ``1000``: the classifier's training images;
* ``2000``: the classifier's held-out accuracy;
* ``3000`` and ``4000``: the two real reference sets of the Fréchet distances.

The classifier ships as ``data/builtin/classifier.safetensors`` (config and held-out
accuracy in its metadata); :func:`load_classifier` trains and writes it when it is missing.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from unetdyn.builtin_model.data import CLASS_NAMES, NUM_CLASSES, make_batch
from unetdyn.fileio import atomic_write
from unetdyn.paths import BUILTIN_DIR

__all__ = [
    "CLASSIFIER_PATH",
    "REAL_SEEDS",
    "ClassifierConfig",
    "ShapeClassifier",
    "train_classifier",
    "predict",
    "predict_features",
    "class_judge",
    "accuracy",
    "save_classifier",
    "load_classifier",
    "features",
    "frechet_distance",
]

CLASSIFIER_PATH = BUILTIN_DIR / "classifier.safetensors"
CLASSIFIER_FORMAT = "unetdyn-shape-classifier/1"
TRAIN_SEED, HELD_OUT_SEED, REAL_SEEDS = 1000, 2000, (3000, 4000)


# -- the classifier ----------------------------------------------------------------------


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture and training recipe of the classifier.

    Attributes:
        widths: channels of the three stages (32, 16, 8 pixels); each stage is two 3x3
            conv-BN-ReLU layers, max-pooled between stages. The last width is the feature dim.
        steps, batch_size, lr: Adam, with the learning rate decayed linearly to 0.
        n_train: size of the training pool (indices ``0..n_train-1`` of ``data_seed``),
            seen under random flips and 90° rotations (every class is mirror symmetric and
            drawn at a uniform angle, so these keep the label and the distribution).
        noise_std, blur_p: training images get Gaussian noise of a std uniform in
            ``[0, noise_std]`` and, with probability ``blur_p``, a slight blur, so that the
            grain or softness of generated samples does not decide their class.
        data_seed, eval_seed, n_eval: training data; held-out data and its size.
        seed: torch seed of the initialisation and the batch draws.
    """

    widths: tuple[int, int, int] = (16, 32, 64)
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    n_train: int = 20_000
    noise_std: float = 0.15
    blur_p: float = 0.25
    data_seed: int = TRAIN_SEED
    eval_seed: int = HELD_OUT_SEED
    n_eval: int = 5000
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierConfig:
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        return cls(**d)


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class ShapeClassifier(nn.Module):
    """A small CNN over ``[B, 3, 32, 32]`` images in [-1, 1]: three conv stages, global average
    pooling (the features), a linear layer (the logits). ``info`` holds what is known of it
    (held-out accuracy, training time)."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        a, b, c = config.widths
        self.config = config
        self.body = nn.Sequential(
            *_conv(3, a), *_conv(a, a), nn.MaxPool2d(2),
            *_conv(a, b), *_conv(b, b), nn.MaxPool2d(2),
            *_conv(b, c), *_conv(c, c),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.fc = nn.Linear(c, NUM_CLASSES)
        self.info: dict[str, Any] = {}

    @property
    def feature_dim(self) -> int:
        return self.config.widths[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


_BLUR = (torch.tensor([1.0, 2.0, 1.0])[:, None] * torch.tensor([1.0, 2.0, 1.0])[None, :] / 16).expand(3, 1, 3, 3)


def _augment(x: torch.Tensor, g: torch.Generator, config: ClassifierConfig) -> torch.Tensor:
    """Per image: a random element of the dihedral group, a 3x3 binomial blur with
    probability ``blur_p``, Gaussian noise of a std uniform in ``[0, noise_std]``."""
    k = torch.randint(0, 8, (len(x),), generator=g)
    out = x.clone()
    for r in range(8):
        m = k == r
        if m.any():
            y = torch.rot90(x[m], r % 4, dims=(2, 3))
            out[m] = y.flip(3) if r >= 4 else y
    if config.blur_p > 0:
        m = torch.rand(len(x), generator=g) < config.blur_p
        if m.any():
            out[m] = nn.functional.conv2d(nn.functional.pad(out[m], (1, 1, 1, 1), mode="replicate"), _BLUR, groups=3)
    if config.noise_std > 0:
        std = config.noise_std * torch.rand(len(x), 1, 1, 1, generator=g)
        out = out + std * torch.randn(out.shape, generator=g)
    return out


@torch.no_grad()
def predict_features(model: ShapeClassifier, images: torch.Tensor, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels ``[N]`` and features ``[N, D]`` (float64) of images in [-1, 1]."""
    model.eval()
    preds, feats = [], []
    for i in range(0, len(images), batch_size):
        f = model.features(images[i : i + batch_size].float())
        feats.append(f.double().numpy())
        preds.append(model.fc(f).argmax(1).numpy())
    d = model.feature_dim
    if not preds:
        return np.zeros(0, dtype=np.int64), np.zeros((0, d))
    return np.concatenate(preds), np.concatenate(feats)


def predict(model: ShapeClassifier, images: torch.Tensor) -> np.ndarray:
    """The class index the classifier gives each image (``[N, 3, 32, 32]`` in [-1, 1])."""
    return predict_features(model, images)[0]


def class_judge(prompts, classifier: ShapeClassifier | None = None):
    """A function telling, per image, whether the classifier sees the class it was prompted with."""
    clf = classifier if classifier is not None else load_classifier(train_if_missing=False)
    target = np.array([CLASS_NAMES.index(str(p)) for p in prompts])
    return lambda images: predict(clf, images) == target


def accuracy(model: ShapeClassifier, seed: int = HELD_OUT_SEED, n: int = 2000, offset: int = 0) -> float:
    """Accuracy on images ``offset .. offset + n - 1`` of data seed ``seed`` (balanced for n % 10 == 0)."""
    x, y = make_batch(seed, range(offset, offset + n))
    pred, _ = predict_features(model, x)
    return float((pred == y.numpy()).mean())


def train_classifier(config: ClassifierConfig = ClassifierConfig(), progress: bool = True) -> ShapeClassifier:
    """Train the classifier (deterministic for a config) and measure its held-out accuracy.

    Returns the model in eval mode; ``model.info`` holds ``held_out_accuracy``,
    ``train_accuracy`` (last 10% of the steps, augmented) and ``train_seconds``.
    """
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = ShapeClassifier(config)
    g = torch.Generator().manual_seed(config.seed + 1)
    x_pool, y_pool = make_batch(
        config.data_seed, tqdm(range(config.n_train), desc="classifier data", disable=not progress, leave=False)
    )
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / config.steps)
    model.train()
    hits = seen = 0
    for step in tqdm(range(config.steps), desc="classifier", unit="step", disable=not progress, leave=False):
        idx = torch.randint(0, config.n_train, (config.batch_size,), generator=g)
        x, y = _augment(x_pool[idx], g, config), y_pool[idx]
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step >= 0.9 * config.steps:
            hits += int((logits.argmax(1) == y).sum())
            seen += len(y)
    model.eval()
    model.info = {
        "train_accuracy": hits / max(seen, 1),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "held_out_accuracy": accuracy(model, config.eval_seed, config.n_eval),
        "n_eval": config.n_eval,
        "eval_seed": config.eval_seed,
    }
    return model


def save_classifier(model: ShapeClassifier, path: str | Path = CLASSIFIER_PATH) -> Path:
    """Write the classifier as safetensors; config and ``info`` go into the metadata."""
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": CLASSIFIER_FORMAT, "config": json.dumps(model.config.to_dict())}
    meta.update({k: json.dumps(v) for k, v in sorted(model.info.items())})
    return atomic_write(Path(path), lambda p: save_file(tensors, str(p), metadata=meta))


def load_classifier(
    path: str | Path | None = CLASSIFIER_PATH, train_if_missing: bool = True, progress: bool = True
) -> ShapeClassifier:
    """The classifier stored at ``path``; if there is none, train it (and save it there).

    Args:
        path: the safetensors file (``None``: train and do not save).
        train_if_missing: otherwise raise ``FileNotFoundError`` when ``path`` does not exist.
    """
    if path is None or not Path(path).exists():
        if not train_if_missing:
            raise FileNotFoundError(f"no classifier at {path}; run `python -m unetdyn.builtin_model.quality` to train it")
        model = train_classifier(progress=progress)
        if path is not None:
            save_classifier(model, path)
        return model
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    if meta.get("format") != CLASSIFIER_FORMAT:
        raise ValueError(f"{path} is not a shape classifier (format {meta.get('format')!r})")
    model = ShapeClassifier(ClassifierConfig.from_dict(json.loads(meta.pop("config"))))
    model.load_state_dict(load_file(str(path)))
    model.info = {k: json.loads(v) for k, v in meta.items() if k != "format"}
    return model.eval()


# -- the Fréchet distance ----------------------------------------------------------------


@torch.no_grad()
def features(model: ShapeClassifier, images: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """The classifier's penultimate features ``[N, D]`` (float64) of images ``[N, 3, 32, 32]``."""
    return predict_features(model, images, batch_size)[1]


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a [N, D]`` and ``b [M, D]``:
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (the FID formula).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(500, 4))
        >>> round(frechet_distance(x, x), 6), round(frechet_distance(x, x + 2.0), 6)
        (0.0, 16.0)
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two feature sets [N, D] of the same D with N >= 2, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False).reshape(a.shape[1], -1), np.cov(b, rowvar=False).reshape(b.shape[1], -1)
    with warnings.catch_warnings():  # singular products are handled below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():  # singular product (few samples): regularise, as pytorch-fid does
        off = eps * np.eye(len(s_a))
        covmean = scipy.linalg.sqrtm((s_a + off) @ (s_b + off))
    covmean = np.real(covmean)  # rounding leaves a tiny imaginary part
    d = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean))
    return d if d > 0 else 0.0  # rounding can take a zero distance below 0
