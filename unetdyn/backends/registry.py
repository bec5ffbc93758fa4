"""Build a Unet backend by name: ``builtin`` (the shipped model), ``glide``, or ``diffusers:PATH``."""

from __future__ import annotations

from pathlib import Path

import torch

from unetdyn.unet import Unet

__all__ = ["MODELS", "check_model", "load_unet", "resolve_device"]

MODELS = ("builtin", "glide", "diffusers")


def check_model(model: str) -> str:
    """``model`` if it names a backend: ``builtin``, ``glide``, ``diffusers`` (with ``arch``) or
    ``diffusers:PATH`` (a pipeline directory); a ValueError naming the choices otherwise."""
    if not isinstance(model, str) or (model not in MODELS and not (model.startswith("diffusers:") and len(model) > 10)):
        raise ValueError(f"model={model!r} is not one of builtin, glide, diffusers:PATH (a diffusers pipeline directory)")
    return model


def resolve_device(device: str | None) -> torch.device:
    """``None``/"cpu" -> CPU; "cuda" only where a GPU is present (clear error otherwise);
    "meta" (shapes without data: counting the FLOPs of random-weights architectures)."""
    if device in (None, "cpu"):
        return torch.device("cpu")
    if device == "meta":
        return torch.device("meta")
    if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r}: only cpu and cuda are supported (and meta, for counting FLOPs)")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but torch sees no CUDA GPU here; use --device cpu")
    if dev.type == "cuda":
        # float32 means float32: TF32 products (cuDNN's default for convolutions) would move
        # results computed on a GPU further from the CPU's than float rounding does
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
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
        weights: builtin: a safetensors file (default: the shipped ``data/builtin`` weights);
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
        from unetdyn.backends.diffusers import ARCHS, DiffusersUnet

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
    if model == "builtin":
        from unetdyn.backends.builtin import BuiltinUnet
        from unetdyn.builtin_model.weights import load_builtin, shipped_config

        if fp16:
            raise ValueError("fp16 is offered for the glide model only; the built-in model runs in float32")
        net = BuiltinUnet(shipped_config(weights)) if random_weights else load_builtin(weights, device=dev)
        return net.to(dev).eval()
    if model == "glide":
        from unetdyn.backends.glide import GlideUnet

        half = dev.type == "cuda" if fp16 is None else fp16
        if random_weights:
            return GlideUnet.from_random(device=dev, use_fp16=half)
        if weights is not None:
            return GlideUnet.from_checkpoint(weights, device=dev, use_fp16=half)
        return GlideUnet.from_pretrained(device=dev, use_fp16=half)
    raise AssertionError(model)  # check_model let through a name no branch handles
