"""The family of built-in models: the shipped one and the members trained beside it.

A member is a folder ``data/family/NAME/`` laid out as ``data/builtin/`` is: the EMA weights
(``unet.safetensors``, its ``.sha256``), the model card, the quality check's record and, while
it trains across sessions, its run folder ``train/`` (the checkpoint a resumed run reads). The
shipped model is the member ``builtin``; another is selected as ``builtin:NAME`` (``--model``,
``-p model``; :func:`unetdyn.paths.member_dir` resolves it). Results in the store are keyed by
the weights' checksum, so every member's results live beside the others'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from unetdyn.backends.builtin_weights import checksum_path, read_metadata
from unetdyn.builtin_model.checkpoint import LOSSES_CSV
from unetdyn.paths import BUILTIN_DIR, FAMILY_DIR, member_dir, member_name

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Member", "WEIGHTS_NAME", "member_weights", "members", "in_training", "training_losses"]

WEIGHTS_NAME = "unet.safetensors"


def member_weights(model: str, family: Path = FAMILY_DIR) -> Path:
    """The weights file of ``builtin`` or ``builtin:NAME``; a ValueError listing the family when it has none."""
    path = member_dir(model, family) / WEIGHTS_NAME
    if member_name(model) is not None and not path.exists():
        have = ", ".join(m.model for m in members(family)) or "none"
        raise ValueError(f"model={model!r}: no weights at {path}; the family holds {have} (`unetdyn models` lists them)")
    return path


@dataclass(frozen=True)
class Member:
    """One member as its files describe it (nothing is loaded)."""

    model: str
    weights: Path
    width: int
    image_size: int
    steps: int
    seed: int
    data_seed: int
    agreement: float | None  # the quality check's class agreement, where it was run on these weights
    frechet: float | None
    sha256: str  # the weights' checksum as their ``.sha256`` file records it

    def summary(self) -> str:
        q = "quality not checked" if self.agreement is None else (
            f"class agreement {self.agreement:.1%}, Fréchet {self.frechet:.2f}")
        return (f"{self.model:<16} width {self.width:<3} {self.image_size}x{self.image_size}  {self.steps:>6} steps  "
                f"seed {self.seed}, data seed {self.data_seed}  {q}")


def _member(model: str, weights: Path) -> Member:
    meta = read_metadata(weights)
    cfg, train = json.loads(meta["config"]), json.loads(meta.get("train_config", "{}"))
    quality = weights.parent / "quality.json"
    q = json.loads(quality.read_text()) if quality.exists() else {}
    digest = checksum_path(weights).read_text().split()[0]
    if q.get("model", {}).get("sha256") != digest:
        q = {}  # a check of other weights says nothing about these
    return Member(model, weights, int(cfg["model_channels"]), int(cfg["image_size"]), int(meta.get("steps", 0)),
                  int(train.get("seed", 0)), int(meta.get("data_seed", 0)), q.get("agreement"), q.get("frechet_gen_real"),
                  digest)


def members(family: Path = FAMILY_DIR) -> list[Member]:
    """The shipped model, then every member under ``family`` that holds weights, by name."""
    found = [_member("builtin", BUILTIN_DIR / WEIGHTS_NAME)] if (BUILTIN_DIR / WEIGHTS_NAME).exists() else []
    if family.is_dir():
        for d in sorted(p for p in family.iterdir() if p.is_dir()):
            try:
                model = f"builtin:{d.name}"
                member_name(model)
            except ValueError:
                continue  # not a member's folder
            if (d / WEIGHTS_NAME).exists():
                found.append(_member(model, d / WEIGHTS_NAME))
    return found


def in_training(family: Path = FAMILY_DIR) -> list[tuple[str, int]]:
    """The members still training (a run folder ``train/`` and no weights yet): ``(model, step)``, the step
    read from the checkpoint's ``ckpt.json`` (a resumed run continues from there)."""
    found = []
    if family.is_dir():
        for d in sorted(p for p in family.iterdir() if p.is_dir()):
            info = d / "train" / "ckpt.json"
            if info.exists() and not (d / WEIGHTS_NAME).exists():
                rec = json.loads(info.read_text())
                found.append((f"builtin:{d.name}", int(rec["step"])))
    return found



def training_losses(model: str, family: Path = FAMILY_DIR) -> pd.DataFrame | None:
    """The training losses per step (``step, loss, mse, vb, grad_norm, lr``) of ``builtin`` or
    ``builtin:NAME``: from its run folder ``train/`` while it has one, else the copy its card keeps
    beside the weights; None where neither was kept."""
    import pandas as pd  # here: loading a member's weights needs no pandas

    home = member_dir(model, family)
    for path in (home / "train" / LOSSES_CSV, home / LOSSES_CSV):
        if path.exists():
            return pd.read_csv(path)
    return None
