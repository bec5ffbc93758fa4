"""SSIM / PSNR per sample agree with scikit-image on 8-bit pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from unetdyn.metrics import compare, psnr, ssim, to_uint8


def test_to_uint8_maps_range_and_moves_channels():
    x = torch.tensor([-1.0, 0.0, 1.0]).view(3, 1, 1)
    assert to_uint8(x).tolist() == [[[0, 128, 255]]]


def test_metrics_match_skimage_per_sample():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    b = (a + 0.2 * torch.randn(3, 3, 32, 32, generator=g)).clamp(-1, 1)
    s, p = ssim(a, b), psnr(a, b)
    assert s.shape == (3,) and p.shape == (3,)
    ua, ub = to_uint8(a), to_uint8(b)
    for k in range(3):
        assert s[k] == pytest.approx(structural_similarity(ua[k], ub[k], data_range=255, channel_axis=-1))
        assert p[k] == pytest.approx(peak_signal_noise_ratio(ua[k], ub[k], data_range=255))
    assert (s < 1).all() and (p < 40).all()


def test_identical_images():
    a = torch.rand(2, 3, 8, 8) * 2 - 1
    assert ssim(a, a).tolist() == [1.0, 1.0]
    assert np.isinf(psnr(a, a)).all()


def test_compare_broadcasts_over_schedules():
    ref = torch.rand(4, 3, 16, 16) * 2 - 1
    imgs = torch.stack([ref, -ref])
    m = compare(ref, imgs)
    assert m["ssim"].shape == (2, 4) and (m["ssim"][0] == 1).all() and (m["ssim"][1] < 0.5).all()


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="image shapes differ"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 16, 16))
