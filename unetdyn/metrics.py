"""SSIM and PSNR per sample, with scikit-image.

Images are compared as the 8-bit pictures a user sees: ``[-1, 1]`` floats are mapped to
``0..255`` (rounded), then SSIM (scikit-image's default 7x7 uniform window, channels as the
last axis) and PSNR are computed with ``data_range=255``. Identical images have PSNR ``inf``.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from unetdyn.viz import to_uint8

__all__ = ["to_uint8", "ssim", "psnr", "compare"]


def _pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    ua, ub = to_uint8(a), to_uint8(b)
    if ua.shape != ub.shape:
        raise ValueError(f"image shapes differ: {ua.shape} vs {ub.shape}")
    return ua.reshape(-1, *ua.shape[-3:]), ub.reshape(-1, *ub.shape[-3:])


def ssim(a, b) -> np.ndarray:
    """SSIM of each pair of images (``[..., C, H, W]`` in [-1, 1]); returns ``a``'s batch shape.

    Example:
        >>> x = torch.rand(2, 3, 16, 16) * 2 - 1
        >>> ssim(x, x).tolist()
        [1.0, 1.0]
    """
    ua, ub = _pairs(a, b)
    vals = [structural_similarity(p, q, data_range=255, channel_axis=-1) for p, q in zip(ua, ub)]
    return np.asarray(vals, dtype=np.float64).reshape(np.shape(a)[:-3])


def psnr(a, b) -> np.ndarray:
    """PSNR in dB of each pair of images; ``inf`` where they are identical."""
    ua, ub = _pairs(a, b)
    out = []
    for p, q in zip(ua, ub):
        out.append(np.inf if np.array_equal(p, q) else peak_signal_noise_ratio(p, q, data_range=255))
    return np.asarray(out, dtype=np.float64).reshape(np.shape(a)[:-3])


def compare(reference, images) -> dict[str, np.ndarray]:
    """Both metrics of ``images`` against ``reference`` (broadcast over a leading schedule axis)."""
    ref = torch.as_tensor(reference)
    imgs = torch.as_tensor(images)
    ref = ref.expand_as(imgs)
    return {"ssim": ssim(imgs, ref), "psnr": psnr(imgs, ref)}
