"""Loading the shipped weights of the built-in Unet, checksum verified.

The weights are one safetensors file (written by :func:`unetdyn.builtin_model.checkpoint.export_weights`) whose
metadata holds the model config; its SHA-256 lies beside it in ``<file>.sha256``
(``sha256sum -c`` format).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import torch
from safetensors import safe_open

from unetdyn.backends.builtin import BuiltinConfig, BuiltinUnet, _short, parameter_shapes
from unetdyn.paths import BUILTIN_WEIGHTS

__all__ = [
    "WeightsError", "load_builtin", "shipped_config", "config_from_metadata", "read_metadata", "sha256_file",
    "verify_checksum", "checksum_path",
]

WEIGHTS_FORMAT = "unetdyn-builtin-unet/1"

_HOW_TO_FIX = (
    "Restore the shipped file (git checkout -- data/builtin/), or export it again from its training run "
    "with `unetdyn.builtin_model.checkpoint.export_weights(RUN_DIR, PATH)` (CLI: `unetdyn export --run RUN_DIR --to PATH`), "
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


def _regular_file(path: Path, what: str) -> None:
    """A WeightsError unless ``path`` is a regular file (a FIFO or a device would block or never end)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise WeightsError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        raise WeightsError(f"{what} {path} is not a regular file")


def verify_checksum(path: str | Path) -> str:
    """Check ``path`` against the SHA-256 recorded in ``<path>.sha256``; return the digest."""
    path = Path(path)
    sums = checksum_path(path)
    if not sums.exists():
        raise WeightsError(f"no checksum file {sums} for {path}, so it cannot be verified. {_HOW_TO_FIX}")
    _regular_file(sums, "checksum file")
    try:
        with open(sums, "rb") as f:
            text = f.read(4096).decode("utf-8")
    except UnicodeDecodeError as e:
        raise WeightsError(f"checksum file {sums} is not UTF-8 text ({e.reason} at byte {e.start}). {_HOW_TO_FIX}") from None
    except OSError as e:
        raise WeightsError(f"cannot read checksum file {sums}: {e.strerror or e}") from None
    fields = text.split()
    expected = fields[0].lower() if fields else ""
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise WeightsError(f"{sums} holds no SHA-256 digest (read {text[:80]!r}). {_HOW_TO_FIX}")
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
    _regular_file(Path(path), "weights file")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise WeightsError(f"cannot read {path} as safetensors ({e}). {_HOW_TO_FIX}") from e


def config_from_metadata(path: str | Path, meta: dict[str, str]) -> BuiltinConfig:
    """The model config in a weights file's metadata, checked against its schema (field types,
    ranges, unknown fields) and the size bound; a WeightsError naming the file and the field."""
    if meta.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(
            f"{path} is not a built-in Unet weights file: metadata 'format' is {_short(meta.get('format'))}, "
            f"expected {WEIGHTS_FORMAT!r}. {_HOW_TO_FIX}"
        )
    if "config" not in meta:
        raise WeightsError(f"{path} has no metadata 'config' (the model config as JSON). {_HOW_TO_FIX}")
    try:
        raw = json.loads(meta["config"])
    except (ValueError, RecursionError) as e:
        raise WeightsError(f"{path}: metadata 'config' is not JSON ({' '.join(str(e).split())[:120]}). {_HOW_TO_FIX}") from None
    try:
        config = BuiltinConfig.from_dict(raw)
        config.check_size()
    except (ValueError, TypeError) as e:
        raise WeightsError(f"{path}: metadata {e}. {_HOW_TO_FIX}") from None
    return config


def shipped_config(path: str | Path | None = None) -> BuiltinConfig:
    """The model config recorded in a weights file (default: the shipped one), else the default config."""
    path = Path(path) if path is not None else BUILTIN_WEIGHTS
    if not path.exists():
        return BuiltinConfig()
    return config_from_metadata(path, read_metadata(path))


_FLOATS = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}


def _checked_tensors(path: Path, config: BuiltinConfig) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` as float32, each checked against the config before it is read:
    the names and shapes ``BuiltinUnet(config)`` has, a floating dtype, and finite values."""
    want = parameter_shapes(config)
    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            missing, extra = sorted(set(want) - names), sorted(names - set(want))
            if missing or extra:
                raise WeightsError(
                    f"{path} does not hold the tensors of its recorded config: "
                    + "; ".join(x for x in (f"missing {_short(missing)}" if missing else "",
                                            f"unexpected {_short(extra)}" if extra else "") if x)
                    + f". {_HOW_TO_FIX}"
                )
            for name in sorted(names):
                sl = f.get_slice(name)
                dtype, shape = sl.get_dtype(), tuple(sl.get_shape())
                if dtype not in _FLOATS:
                    raise WeightsError(
                        f"{path}: tensor {name} is {dtype}; weights must be floating point "
                        f"({', '.join(_FLOATS)}). {_HOW_TO_FIX}"
                    )
                if shape != want[name]:
                    raise WeightsError(
                        f"{path}: tensor {name} has shape {list(shape)}, its config gives {list(want[name])}. {_HOW_TO_FIX}"
                    )
            state = {name: f.get_tensor(name).float() for name in sorted(names)}
    except WeightsError:
        raise
    except Exception as e:  # safetensors' own error types for a bad body
        raise WeightsError(f"cannot read the tensors of {path} ({e}). {_HOW_TO_FIX}") from e
    for name, v in state.items():
        finite = torch.isfinite(v)
        if not finite.all():
            bad = int((~finite).sum())
            raise WeightsError(
                f"{path}: tensor {name} holds {bad} NaN or infinite value(s) of {v.numel()} (as float32); "
                f"the model would sample only NaN. {_HOW_TO_FIX}"
            )
    return state


def load_builtin(
    path: str | Path | None = None, device: str | torch.device = "cpu", verify: bool = True
) -> BuiltinUnet:
    """The built-in Unet with the shipped (EMA) weights, float32, in eval mode.

    Args:
        path: the safetensors file; default ``data/builtin/unet.safetensors`` in the repository.
        device: where to put the model.
        verify: check the file's SHA-256 against ``<path>.sha256`` first (raises
            :class:`WeightsError` on a mismatch or a missing checksum).

    Whatever the checksum says, the content is checked before the model is built: the
    metadata config against its schema and the size bound, then each tensor's name, dtype
    (floating point), shape (the config's) and values (finite).
    """
    path = Path(path) if path is not None else BUILTIN_WEIGHTS
    if not path.exists():
        raise WeightsError(
            f"built-in Unet weights not found: {path}. They ship as data/builtin/unet.safetensors "
            f"(with unet.safetensors.sha256); train a model with `unetdyn train --out RUN_DIR` and "
            f"export it with `unetdyn export --run RUN_DIR --to {path}`, or restore the file from git."
        )
    _regular_file(path, "weights file")
    digest = verify_checksum(path) if verify else None
    config = config_from_metadata(path, read_metadata(path))
    state = _checked_tensors(path, config)
    model = BuiltinUnet(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsError(f"{path} does not fit its recorded config {config}: {e}") from e
    model.weights_sha256 = digest  # what cached results are keyed by (unetdyn.paper.sweeps.model_id)
    return model.to(device).eval()
