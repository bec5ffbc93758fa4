"""Loading the shipped weights of the built-in Unet, checksum verified.

The weights are one safetensors file (written by :func:`unetdyn.builtin_model.train.export_weights`) whose
metadata holds the model config; its SHA-256 lies beside it in ``<file>.sha256``
(``sha256sum -c`` format).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from unetdyn.backends.builtin import BuiltinConfig, BuiltinUnet
from unetdyn.paths import BUILTIN_WEIGHTS

__all__ = ["WeightsError", "load_builtin", "shipped_config", "read_metadata", "sha256_file", "verify_checksum", "checksum_path"]

WEIGHTS_FORMAT = "unetdyn-builtin-unet/1"

_HOW_TO_FIX = (
    "Restore the shipped file (git checkout -- data/builtin/), or export it again from its training run "
    "with `unetdyn.builtin_model.train.export_weights(RUN_DIR, PATH)` (CLI: `unetdyn export --run RUN_DIR --to PATH`), "
    "which writes the file and its checksum together."
)


class WeightsError(RuntimeError):
    """The weights file is missing, corrupt, truncated or not a built-in Unet."""


def checksum_path(path: str | Path) -> Path:
    """The checksum file of a weights file: ``<file>.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_checksum(path: str | Path) -> str:
    """Check ``path`` against the SHA-256 recorded in ``<path>.sha256``; return the digest."""
    path = Path(path)
    sums = checksum_path(path)
    if not sums.exists():
        raise WeightsError(f"no checksum file {sums} for {path}, so it cannot be verified. {_HOW_TO_FIX}")
    fields = sums.read_text().split()
    expected = fields[0].lower() if fields else ""
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise WeightsError(f"{sums} holds no SHA-256 digest (read {sums.read_text()[:80]!r}). {_HOW_TO_FIX}")
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"checksum mismatch for {path} ({path.stat().st_size} bytes): expected sha256 {expected} "
            f"(recorded in {sums}), got {actual}. The file is corrupt or truncated, or was replaced "
            f"without its checksum. {_HOW_TO_FIX}"
        )
    return actual


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors metadata of a weights file (config, steps, data seed, ...)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise WeightsError(f"cannot read {path} as safetensors ({e}). {_HOW_TO_FIX}") from e


def shipped_config(path: str | Path | None = None) -> BuiltinConfig:
    """The model config recorded in a weights file (default: the shipped one), else the default config."""
    path = Path(path) if path is not None else BUILTIN_WEIGHTS
    if not path.exists():
        return BuiltinConfig()
    return BuiltinConfig.from_dict(json.loads(read_metadata(path)["config"]))


def load_builtin(
    path: str | Path | None = None, device: str | torch.device = "cpu", verify: bool = True
) -> BuiltinUnet:
    """The built-in Unet with the shipped (EMA) weights, float32, in eval mode.

    Args:
        path: the safetensors file; default ``data/builtin/unet.safetensors`` in the repository.
        device: where to put the model.
        verify: check the file's SHA-256 against ``<path>.sha256`` first (raises
            :class:`WeightsError` on a mismatch or a missing checksum).
    """
    path = Path(path) if path is not None else BUILTIN_WEIGHTS
    if not path.exists():
        raise WeightsError(
            f"built-in Unet weights not found: {path}. They ship as data/builtin/unet.safetensors "
            f"(with unet.safetensors.sha256); train a model with `unetdyn train --out RUN_DIR` and "
            f"export it with `unetdyn export --run RUN_DIR --to {path}`, or restore the file from git."
        )
    digest = verify_checksum(path) if verify else None
    meta = read_metadata(path)
    if meta.get("format") != WEIGHTS_FORMAT or "config" not in meta:
        raise WeightsError(f"{path} is not a built-in Unet weights file (format {meta.get('format')!r}). {_HOW_TO_FIX}")
    config = BuiltinConfig.from_dict(json.loads(meta["config"]))
    try:
        state = load_file(str(path))
    except Exception as e:
        raise WeightsError(f"cannot read the tensors of {path} ({e}). {_HOW_TO_FIX}") from e
    model = BuiltinUnet(config)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as e:
        raise WeightsError(f"{path} does not fit its recorded config {config}: {e}") from e
    model.weights_sha256 = digest  # what cached results are keyed by (unetdyn.paper.sweeps.model_id)
    return model.to(device).eval()
