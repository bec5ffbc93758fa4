"""Pictures: [-1, 1] image tensors to 8-bit arrays and PNG grids."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["to_uint8", "save_grid"]


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[..., C, H, W]`` in [-1, 1] -> ``[..., H, W, C]`` uint8.

    Example:
        >>> to_uint8(torch.zeros(3, 2, 2)).shape, int(to_uint8(torch.ones(3, 1, 1))[0, 0, 0])
        ((2, 2, 3), 255)
    """
    x = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float32)
    x = np.moveaxis(x, -3, -1)
    return np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8)


def save_grid(
    images: torch.Tensor | np.ndarray | Sequence,
    path: str | Path,
    nrow: int = 8,
    scale: int = 2,
    pad: int = 2,
    pad_value: int = 255,
) -> Path:
    """Save ``[N, 3, H, W]`` images in [-1, 1] as a PNG grid of ``nrow`` images per row.

    Args:
        images: a batch (tensor or array) or a sequence of CHW images.
        path: the PNG to write (its folder is created).
        nrow: images per row.
        scale: integer nearest-neighbour up-scaling of every image.
        pad: pixels between images (after scaling).
        pad_value: grey level of the padding.
    """
    from PIL import Image

    if not isinstance(images, (torch.Tensor, np.ndarray)):
        images = torch.stack([torch.as_tensor(im) for im in images])
    arr = to_uint8(images)
    if arr.ndim == 3:
        arr = arr[None]
    n, h, w, c = arr.shape
    if scale > 1:
        arr = arr.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    ncol = max(1, min(nrow, n))
    nr = max(1, math.ceil(n / ncol))
    grid = np.full((pad + nr * (h + pad), pad + ncol * (w + pad), c), pad_value, dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, ncol)
        y0, x0 = pad + r * (h + pad), pad + q * (w + pad)
        grid[y0 : y0 + h, x0 : x0 + w] = arr[k]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path
