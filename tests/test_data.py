"""The procedural dataset: determinism, ranges, balance, legibility, speed, pictures."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from PIL import Image

from unetdyn.backends.builtin import DEFAULT_CLASSES
from unetdyn.builtin_model import data
from unetdyn.builtin_model.data import CLASS_NAMES, ShapesDataset, make_batch, make_image
from unetdyn.viz import save_grid, to_uint8


def test_classes_are_the_models():
    assert CLASS_NAMES == DEFAULT_CLASSES
    assert len(CLASS_NAMES) == 10


def test_deterministic_per_seed_and_index():
    a, la = make_image(3, 17)
    b, lb = make_image(3, 17)
    assert torch.equal(a, b) and la == lb
    # an image does not depend on the batch it is drawn in
    xs, ys = make_batch(3, [5, 17, 2])
    assert torch.equal(xs[1], a) and int(ys[1]) == la


def test_seeds_and_indices_differ():
    x0, y0 = make_batch(0, range(10))
    x1, y1 = make_batch(1, range(10))
    assert torch.equal(y0, y1)  # labels are index % 10 ...
    assert all(not torch.equal(x0[i], x1[i]) for i in range(10))  # ... images are not
    assert (x0[0] - make_image(0, 10)[0]).abs().mean() > 0.05


def test_shapes_range_and_levels():
    x, y = make_batch(0, range(64))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (64,) and y.dtype == torch.long
    assert x.min() >= -1 and x.max() <= 1
    levels = (x + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4)  # 8-bit data
    assert x.std() > 0.2  # not washed out


def test_classes_balanced():
    _, y = make_batch(0, range(200))
    assert torch.bincount(y, minlength=10).tolist() == [20] * 10
    assert make_image(0, 1234)[1] == 1234 % 10


def test_objects_inside_visible_and_contrasting():
    params = [data._draw_params(0, i) for i in range(300)]
    _, alpha = data._render(params, with_alpha=True)
    area = alpha.sum(axis=(1, 2))
    assert area.min() > 25  # at least ~5x5 pixels
    border = np.concatenate([alpha[:, 0], alpha[:, -1], alpha[:, :, 0], alpha[:, :, -1]], axis=1)
    assert border.max() == 0  # never cut by the image edge
    dist = np.array([data._dist_to_segment(p["obj"][None], p["c1"], p["c2"])[0] for p in params])
    assert (dist >= data.MIN_COLOR_DIST).mean() > 0.98


def _mask(name: str, angle: float, n: int = 96) -> np.ndarray:
    g = (np.arange(n) + 0.5) / n * 2.4 - 1.2
    x, y = np.meshgrid(g, g)
    c, s = math.cos(angle), math.sin(angle)
    return data._sdf(name, c * x + s * y, -s * x + c * y) <= 0


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_shapes_are_distinct_under_rotation(name):
    """No class looks like another one rotated (e.g. a square turned 45 degrees vs the diamond)."""
    ref = _mask(name, 0.0)
    assert 0.5 < data.shape_extent(name) <= 1.0
    for other in CLASS_NAMES:
        if other == name:
            continue
        best = max(
            (ref & _mask(other, a)).sum() / (ref | _mask(other, a)).sum()
            for a in np.linspace(0, 2 * math.pi, 72, endpoint=False)
        )
        assert best < 0.85, (name, other, best)


def test_batch_is_fast():
    make_batch(0, range(16))  # warm-up
    t = time.perf_counter()
    make_batch(0, range(256))
    assert time.perf_counter() - t < 2.0  # ~0.15 s on an idle 2-core CPU


def test_dataset():
    ds = ShapesDataset(seed=2, length=30, offset=100)
    x, y = ds[3]
    assert len(ds) == 30 and y == 103 % 10
    assert torch.equal(x, make_image(2, 103)[0])
    with pytest.raises(IndexError):
        ds[30]
    loader = torch.utils.data.DataLoader(ds, batch_size=10)
    xb, yb = next(iter(loader))
    assert xb.shape == (10, 3, 32, 32) and yb.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_save_grid(tmp_path):
    x, _ = make_batch(0, range(10))
    path = save_grid(x, tmp_path / "sub" / "grid.png", nrow=5, scale=2, pad=2)
    im = Image.open(path)
    assert im.size == (2 + 5 * (64 + 2), 2 + 2 * (64 + 2))
    arr = np.asarray(im)
    assert np.array_equal(arr[2:66, 2:66], to_uint8(x[0]).repeat(2, 0).repeat(2, 1))
