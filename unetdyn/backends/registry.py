"""Build a Unet backend by name: ``builtin`` (the shipped model) or ``glide``."""

from __future__ import annotations

from pathlib import Path

import torch

from unetdyn.unet import Unet

__all__ = ["MODELS", "load_unet", "resolve_device"]

MODELS = ("builtin", "glide")


def resolve_device(device: str | None) -> torch.device:
    """``None``/"cpu" -> CPU; "cuda" only where a GPU is present (clear error otherwise)."""
    if device in (None, "cpu"):
        return torch.device("cpu")
    if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r}: only cpu and cuda are supported")
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
) -> Unet:
    """The backend ``model`` on ``device``, in eval mode.

    Args:
        weights: builtin: a safetensors file (default: the shipped ``data/builtin`` weights);
            glide: a ``base.pt`` checkpoint (default: glide-text2im's own loader).
        random_weights: the architecture with random weights (for cost measurements); for
            builtin, the config of the weights file if there is one.
        fp16: half precision (default: on for GLIDE on CUDA, as its notebook does).

    Example:
        >>> unet = load_unet("builtin")          # doctest: +SKIP
        >>> unet.image_shape                     # doctest: +SKIP
        (3, 32, 32)
    """
    dev = resolve_device(device)
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
    raise ValueError(f"model={model!r} is not one of {', '.join(MODELS)}")
