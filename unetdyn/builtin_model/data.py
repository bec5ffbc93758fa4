"""The procedural dataset: one anti-aliased object of 10 classes over a smooth background.

Every image is a function of ``(seed, index)`` alone and is drawn on the fly:

* the label is ``index % 10`` (so any run of 10 consecutive indices is exactly balanced),
  in the order of :data:`CLASS_NAMES` (``unetdyn.backends.builtin.DEFAULT_CLASSES``);
* everything else (size, position, rotation, colours, gradient, texture) comes from
  ``numpy.random.default_rng([seed, index])``.

An object is a signed-distance function (SDF) in object units, evaluated at the pixel
centres; its coverage ``clip(0.5 - d_px, 0, 1)`` is an anti-aliased 1-pixel edge. The
background is a two-colour linear gradient in a random direction, the object is one colour
(at a minimum RGB distance from every background colour) with mild shading, and a
low-amplitude smooth noise at two scales lies over the whole image. Images are quantised
to 8 bits, like real data, and returned as float32 CHW tensors in [-1, 1].

Composition (which object, where, which colour) and detail (edges, shading, texture) are
thus separate things to learn.

Example:
    >>> x, y = make_batch(0, range(20))
    >>> tuple(x.shape), x.dtype, y[:12].tolist()
    ((20, 3, 32, 32), torch.float32, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
    >>> bool(x.min() >= -1 and x.max() <= 1)
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import cache

import numpy as np
import torch

from unetdyn.backends.builtin import DEFAULT_CLASSES

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "IMAGE_SIZE",
    "make_image",
    "make_batch",
    "ShapesDataset",
]

CLASS_NAMES: tuple[str, ...] = tuple(DEFAULT_CLASSES)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 32

# Drawing parameters (pixels unless noted; colours in [0, 1]).
RADIUS_RANGE = (7.0, 12.0)  # object radius: its farthest point is this far from the centre
MARGIN = 1.0  # keep the object this far inside the image
MIN_COLOR_DIST = 0.45  # RGB distance between the object and every background colour
BG_SPREAD = 0.3  # std of the second gradient colour around the first
SHADE_MAX = 0.12  # strength of the object's linear shading
TEXTURE_AMP = (0.015, 0.045)  # std of the coarse noise; the fine one has half of it
TEXTURE_GRIDS = (5, 11)  # noise control grids, bilinearly up-sampled


# -- signed distances (object units, negative inside) ------------------------------------


def _sd_polygon(x: np.ndarray, y: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Exact signed distance to a simple (possibly non-convex) polygon."""
    d2 = np.full(x.shape, np.inf)
    inside = np.zeros(x.shape, dtype=bool)
    n = len(verts)
    for i in range(n):
        ax, ay = verts[i]
        bx, by = verts[i - 1]
        ex, ey = bx - ax, by - ay
        wx, wy = x - ax, y - ay
        h = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        d2 = np.minimum(d2, (wx - ex * h) ** 2 + (wy - ey * h) ** 2)
        # crossing number: does the edge straddle the horizontal through the point, to its right?
        straddles = (y >= ay) != (y >= by)
        right = (ex * wy > ey * wx) == (by > ay)
        inside ^= straddles & right
    return np.where(inside, -1.0, 1.0) * np.sqrt(d2)


def _sd_circle(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    return np.hypot(x - cx, y - cy) - r


def _regular(n: int, r: float, phase: float = math.pi / 2) -> np.ndarray:
    a = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _star(points: int, r_out: float, r_in: float) -> np.ndarray:
    a = math.pi / 2 + math.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, r_out, r_in)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


_S2 = math.sqrt(2.0)
_HEART_S = 1.0  # side of the heart's rotated square; its lobes are circles on the upper edges
_HEART_C0 = -0.2  # vertical position of the square's centre (puts the shape's middle near 0)

_POLYGONS = {
    "square": np.array([[-0.7, -0.7], [0.7, -0.7], [0.7, 0.7], [-0.7, 0.7]]),
    "triangle": _regular(3, 1.0),
    "cross": np.array(
        [
            [0.27, 0.27],
            [0.27, 0.95],
            [-0.27, 0.95],
            [-0.27, 0.27],
            [-0.95, 0.27],
            [-0.95, -0.27],
            [-0.27, -0.27],
            [-0.27, -0.95],
            [0.27, -0.95],
            [0.27, -0.27],
            [0.95, -0.27],
            [0.95, 0.27],
        ]
    ),
    "star": _star(5, 1.0, 0.45),
    "diamond": np.array([[0.0, -1.0], [0.6, 0.0], [0.0, 1.0], [-0.6, 0.0]]),
    "arrow": np.array([[-0.95, -0.2], [0.1, -0.2], [0.1, -0.62], [0.95, 0.0], [0.1, 0.62], [0.1, 0.2], [-0.95, 0.2]]),
    "heart_square": np.array(
        [
            [0.0, _HEART_C0 - _HEART_S / _S2],
            [_HEART_S / _S2, _HEART_C0],
            [0.0, _HEART_C0 + _HEART_S / _S2],
            [-_HEART_S / _S2, _HEART_C0],
        ]
    ),
}


def _sdf(name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance of class ``name`` at object coordinates (x right, y up), radius ~1."""
    if name == "circle":
        return np.hypot(x, y) - 0.85
    if name == "ring":
        return np.abs(np.hypot(x, y) - 0.68) - 0.24
    if name == "crescent":
        return np.maximum(_sd_circle(x, y, -0.1, 0.0, 0.9), -_sd_circle(x, y, 0.35, 0.0, 0.72))
    if name == "heart":
        lobe_x, lobe_y, lobe_r = _HEART_S / (2 * _S2), _HEART_C0 + _HEART_S / (2 * _S2), _HEART_S / 2
        return np.minimum(
            _sd_polygon(x, y, _POLYGONS["heart_square"]),
            np.minimum(_sd_circle(x, y, -lobe_x, lobe_y, lobe_r), _sd_circle(x, y, lobe_x, lobe_y, lobe_r)),
        )
    return _sd_polygon(x, y, _POLYGONS[name])


@cache
def shape_extent(name: str) -> float:
    """Largest distance from the origin to a point of the shape, in object units."""
    g = np.linspace(-1.6, 1.6, 641)
    x, y = np.meshgrid(g, g)
    return float(np.hypot(x, y)[_sdf(name, x, y) <= 0].max())


# -- parameters and rendering ------------------------------------------------------------


def _upsample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Bilinear (align-corners) interpolation from ``n_in`` to ``n_out`` samples, [n_out, n_in]."""
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] = 1 - frac
    m[np.arange(n_out), lo + 1] = frac
    return m


_UP = {g: _upsample_matrix(g, IMAGE_SIZE) for g in TEXTURE_GRIDS}


def _dist_to_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of points p [N,3] to the segment a-b (the background's colours)."""
    e = b - a
    h = np.clip((p - a) @ e / max(float(e @ e), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - a - h[:, None] * e, axis=1)


def _draw_params(seed: int, index: int) -> dict:
    """All random choices of one image, from ``(seed, index)`` alone."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed} index={index}")
    rng = np.random.default_rng([seed, index])
    label = index % NUM_CLASSES
    radius = rng.uniform(*RADIUS_RANGE)
    scale = radius / shape_extent(CLASS_NAMES[label])  # pixels per object unit
    lo, hi = radius + MARGIN, IMAGE_SIZE - radius - MARGIN
    centre = rng.uniform(lo, hi, size=2)
    angle = rng.uniform(0.0, 2 * math.pi)
    c1 = rng.uniform(0.0, 1.0, size=3)
    c2 = np.clip(c1 + rng.normal(0.0, BG_SPREAD, size=3), 0.0, 1.0)
    grad_dir = rng.uniform(0.0, 2 * math.pi)
    # Object colour: the first of a few candidates far enough from the background colours.
    cands = rng.uniform(0.0, 1.0, size=(32, 3))
    dist = _dist_to_segment(cands, c1, c2)
    ok = np.flatnonzero(dist >= MIN_COLOR_DIST)
    obj = cands[ok[0] if len(ok) else int(dist.argmax())]
    shade_dir = rng.uniform(0.0, 2 * math.pi)
    shade = rng.uniform(0.0, SHADE_MAX)
    amp = rng.uniform(*TEXTURE_AMP)
    noise = [rng.normal(0.0, amp / (k + 1), size=(3, g, g)) for k, g in enumerate(TEXTURE_GRIDS)]
    return dict(
        label=label,
        scale=scale,
        centre=centre,
        angle=angle,
        c1=c1,
        c2=c2,
        grad_dir=grad_dir,
        obj=obj,
        shade_dir=shade_dir,
        shade=shade,
        noise=noise,
    )


def _render(params: list[dict], with_alpha: bool = False):
    """Draw images from their parameters, vectorised over the batch; [B, 3, H, W] in [0, 1].

    With ``with_alpha`` also the object's coverage, [B, H, W] in [0, 1].
    """
    b = len(params)
    n = IMAGE_SIZE
    col = lambda key: np.array([p[key] for p in params], dtype=np.float64)  # noqa: E731
    pix = np.arange(n) + 0.5
    px = pix[None, None, :]  # x to the right
    py = (n - pix)[None, :, None]  # y up (row 0 is the top)

    # 1. background: a linear gradient between two colours along a random direction
    gd = col("grad_dir")[:, None, None]
    s = ((px - n / 2) * np.cos(gd) + (py - n / 2) * np.sin(gd)) / (n / math.sqrt(2)) + 0.5  # [B,H,W] ~[0,1]
    c1, c2 = col("c1")[:, :, None, None], col("c2")[:, :, None, None]
    img = c1 + (c2 - c1) * np.clip(s, 0.0, 1.0)[:, None]

    # 2. object coordinates: rotate the pixel grid into each object's frame
    cx, cy = col("centre")[:, 0, None, None], (n - col("centre")[:, 1])[:, None, None]
    ang, scale = col("angle")[:, None, None], col("scale")[:, None, None]
    dx, dy = px - cx, py - cy
    ox = (np.cos(ang) * dx + np.sin(ang) * dy) / scale
    oy = (-np.sin(ang) * dx + np.cos(ang) * dy) / scale
    dist_px = np.empty((b, n, n))
    labels = np.array([p["label"] for p in params])
    for k in np.unique(labels):
        m = labels == k
        dist_px[m] = _sdf(CLASS_NAMES[k], ox[m], oy[m]) * scale[m]
    alpha = np.clip(0.5 - dist_px, 0.0, 1.0)[:, None]

    # 3. the object: one colour with a mild linear shading, composited with its coverage
    sd = col("shade_dir")[:, None, None]
    shading = 1.0 + col("shade")[:, None, None] * (ox * np.cos(sd) + oy * np.sin(sd))
    obj = np.clip(col("obj")[:, :, None, None] * shading[:, None], 0.0, 1.0)
    img = img * (1 - alpha) + obj * alpha

    # 4. texture: smooth noise at two scales over the whole image
    for k, g in enumerate(TEXTURE_GRIDS):
        grid = np.stack([p["noise"][k] for p in params])  # [B,3,g,g]
        up = _UP[g]
        img = img + np.einsum("hi,bcij,wj->bchw", up, grid, up, optimize=True)
    img = np.clip(img, 0.0, 1.0)
    return (img, alpha[:, 0]) if with_alpha else img


def make_batch(seed: int, indices: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[B, 3, 32, 32]`` (float32, 8-bit levels in [-1, 1]) and labels ``[B]`` (long).

    Args:
        seed: the data seed (>= 0); together with an index it fixes one image.
        indices: image indices (>= 0); the label of index ``i`` is ``i % 10``.
    """
    idx = [int(i) for i in indices]
    params = [_draw_params(int(seed), i) for i in idx]
    if not params:
        return torch.zeros(0, 3, IMAGE_SIZE, IMAGE_SIZE), torch.zeros(0, dtype=torch.long)
    img = np.round(_render(params) * 255.0) / 127.5 - 1.0
    labels = torch.tensor([p["label"] for p in params], dtype=torch.long)
    return torch.from_numpy(img.astype(np.float32)), labels


def make_image(seed: int, index: int) -> tuple[torch.Tensor, int]:
    """One image ``[3, 32, 32]`` in [-1, 1] and its label, from ``(seed, index)`` alone."""
    x, y = make_batch(seed, [index])
    return x[0], int(y[0])


class ShapesDataset(torch.utils.data.Dataset):
    """Indices ``offset .. offset + length - 1`` of the procedural dataset for ``seed``."""

    def __init__(self, seed: int = 0, length: int = 50_000, offset: int = 0):
        self.seed, self.length, self.offset = int(seed), int(length), int(offset)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} is out of range for a dataset of {self.length}")
        return make_image(self.seed, self.offset + (i % self.length))
