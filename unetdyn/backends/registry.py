"""Build a Unet backend by name: ``builtin`` (the shipped model; ``builtin:NAME``, a member of its family), ``glide``, or ``diffusers:PATH``."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from unetdyn.backends.builtin import BuiltinUnet
from unetdyn.backends.builtin_weights import load_builtin, shipped_config
from unetdyn.backends.diffusers import ARCHS, DiffusersUnet
from unetdyn.backends.glide import GlideUnet
from unetdyn.paths import is_builtin, member_dir, member_name
from unetdyn.unet import Unet

__all__ = ["MODELS", "check_device", "check_model", "load_unet", "resolve_device"]

MODELS = ("builtin", "glide", "diffusers")


def check_model(model: str) -> str:
    """``model`` if it names a backend: ``builtin`` (or ``builtin:NAME``, a member of its family),
    ``glide``, ``diffusers`` (with ``arch``) or ``diffusers:PATH`` (a pipeline directory); a
    ValueError naming the choices otherwise."""
    if isinstance(model, str) and model.startswith("builtin:"):
        member_name(model)  # a ValueError for a name that is not a member's
        return model
    if not isinstance(model, str) or (model not in MODELS and not (model.startswith("diffusers:") and len(model) > 10)):
        raise ValueError(f"model={model!r} is not one of builtin, builtin:NAME (a member of its family), glide, "
                         "diffusers:PATH (a diffusers pipeline directory)")
    return model


def _has_mps() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_built()


def check_device(device: str | None, allow_meta: bool = True) -> None:
    """A ValueError unless ``device`` names a device this torch can run on: cpu, cuda, cuda:N,
    mps where torch has it, and meta (shapes without data) where ``allow_meta``. Whether that
    device is present is checked by :func:`resolve_device`."""
    if device is None:
        return
    ok = isinstance(device, str) and (
        device == "cpu" or re.fullmatch(r"cuda(:\d{1,3})?", device) is not None or (device == "mps" and _has_mps())
    )
    if ok or (device == "meta" and allow_meta):
        return
    shown = repr(device) if len(repr(device)) <= 40 else repr(device)[:37] + "..."
    names = "cpu and cuda (cuda:N)" + (", mps" if _has_mps() else "")
    if allow_meta:
        why = " (and meta, for counting FLOPs)"
    else:
        why = "; meta holds no data, so nothing can be sampled on it" if device == "meta" else ""
    raise ValueError(f"device={shown}: only {names} are supported{why}")


def resolve_device(device: str | None) -> torch.device:
    """``None``/"cpu" -> CPU; "cuda" or "cuda:N" only where that GPU is present, "mps" where torch
    has it (clear errors otherwise); "meta" (shapes without data: counting the FLOPs of
    random-weights architectures).

    It changes no global setting: on CUDA, TF32 is off only while the model runs
    (:func:`unetdyn.unet.exact_float32`)."""
    check_device(device)
    if device in (None, "cpu"):
        return torch.device("cpu")
    if device == "meta":
        return torch.device("meta")
    dev = torch.device(device)
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device={device!r} was asked for, but torch sees no MPS device here; use --device cpu")
        return dev
    if not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but torch sees no CUDA GPU here; use --device cpu")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r}: cuda index {dev.index} is out of range 0..{torch.cuda.device_count() - 1}")
    return dev


def load_unet(
    model: str = "builtin",
    weights: str | Path | None = None,
    device: str | None = None,
    random_weights: bool = False,
    fp16: bool | None = None,
    arch: str | None = None,
) -> Unet:
    """The backend ``model`` on ``device``, in eval mode.

    Args:
        weights: builtin: a safetensors file (default: the shipped ``data/builtin`` weights, or
            ``data/family/NAME`` for ``builtin:NAME``);
            glide: a ``base.pt`` checkpoint (default: glide-text2im's own loader).
        random_weights: the architecture with random weights (for cost measurements); for
            builtin, the config of the weights file if there is one.
        fp16: half precision (default: on for GLIDE on CUDA, as its notebook does).
        arch: ``model="diffusers"`` with ``random_weights``: a named architecture
            (``sd15``, ``ddpm32``; see ``unetdyn/backends/archs``).

    ``model="diffusers:PATH"`` loads the diffusers pipeline saved in the directory PATH (never
    from a hub); with ``random_weights`` only its configs are read.

    Example:
        >>> unet = load_unet("builtin")          # doctest: +SKIP
        >>> unet.image_shape                     # doctest: +SKIP
        (3, 32, 32)
    """
    check_model(model)
    dev = resolve_device(device)
    if model.startswith("diffusers"):
        if fp16:
            raise ValueError("fp16 is offered for the glide model only")
        if weights is not None:
            raise ValueError("weights: a diffusers pipeline brings its own; give model='diffusers:PATH'")
        if model == "diffusers":
            if not random_weights or arch is None:
                raise ValueError(f"model='diffusers' needs random_weights and arch (one of {', '.join(ARCHS)}); "
                                 "for a pipeline on disk give model='diffusers:PATH'")
            return DiffusersUnet.from_arch(arch, device=dev)
        if arch is not None:
            raise ValueError("arch applies to model='diffusers' with random weights, not to a pipeline path")
        return DiffusersUnet.from_pipeline(model.split(":", 1)[1], device=dev, random_weights=random_weights)
    if arch is not None:
        raise ValueError(f"arch={arch!r} applies to model='diffusers' only")
    if is_builtin(model):
        if weights is None and member_name(model) is not None:
            weights = member_dir(model) / "unet.safetensors"
            if not weights.exists():
                raise ValueError(f"model={model!r}: no weights at {weights}; `unetdyn models` lists the family")
        if fp16:
            raise ValueError("fp16 is offered for the glide model only; the built-in model runs in float32")
        net = BuiltinUnet(shipped_config(weights)) if random_weights else load_builtin(weights, device=dev)
        return net.to(dev).eval()
    if model == "glide":
        half = dev.type == "cuda" if fp16 is None else fp16
        if random_weights:
            return GlideUnet.from_random(device=dev, use_fp16=half)
        if weights is not None:
            return GlideUnet.from_checkpoint(weights, device=dev, use_fp16=half)
        return GlideUnet.from_pretrained(device=dev, use_fp16=half)
    raise AssertionError(model)  # check_model let through a name no branch handles
