"""Figures sized for the book's content column, each recording its smallest text.

A PNG wider than the column is shrunk to it, and its smallest text must still be
``MIN_TEXT_PX`` high on screen. :func:`subplots` is ``plt.subplots`` whose PNGs record that
text's height, in their own pixels, in a PNG text chunk (``TEXT_PX_KEY``); the browser test
reads it back for every image of every page and scales it as the browser scales the image.
"""

from __future__ import annotations

import functools
import io

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["CONTENT_PX", "MIN_TEXT_PX", "WIDTH_IN", "TEXT_PX_KEY", "subplots", "to_png", "smallest_text_px"]

CONTENT_PX = 772  # the book's content column in CSS px (Chromium, a 1400 px wide window)
MIN_TEXT_PX = 10  # the smallest text on screen a reader should have to read
WIDTH_IN = 7.6  # a figure this wide or less (at matplotlib's 100 dpi) is shown at its own size
TEXT_PX_KEY = "unetdyn:smallest-text-px"  # PNG text chunk: the smallest text's height in the PNG's pixels


def _text_points(fig) -> list[float]:
    """The font size (points) of every non-empty text a draw of ``fig`` paints: titles, labels,
    tick labels, legends, annotations; hidden ones (an axis turned off) are not drawn, so not counted."""
    renderer, sizes = fig.canvas.get_renderer(), []

    def record(gc, x, y, s, prop, *args, **kwargs):
        if s.strip():
            sizes.append(prop.get_size_in_points())

    renderer.draw_text = record  # only measures: the canvas is drawn afresh for every save
    try:
        fig.draw(renderer)
    finally:
        del renderer.draw_text
    return sizes


def to_png(fig) -> bytes:
    """``fig`` as the notebooks show it: a PNG cropped to its content (``bbox_inches="tight"``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def smallest_text_px(fig, width_px: float | None = CONTENT_PX) -> float:
    """Height in CSS px of ``fig``'s smallest text once its PNG is shown at most ``width_px`` wide
    (``None``: at its own size): ``s`` points are ``s * dpi / 72`` PNG pixels, shrunk with the image."""
    natural = int.from_bytes(to_png(fig)[16:20], "big")  # the PNG header's width
    scale = 1.0 if width_px is None else min(1.0, width_px / natural)
    return min(_text_points(fig), default=np.inf) * fig.dpi / 72 * scale


def subplots(*args, **kwargs):
    """``plt.subplots`` whose PNGs carry their smallest text's height in pixels (``TEXT_PX_KEY``)."""
    fig, axes = plt.subplots(*args, **kwargs)
    plain = fig.canvas.print_png

    @functools.wraps(plain)  # keeps its signature: matplotlib passes it only the arguments it takes
    def print_png(*a, metadata=None, **kw):
        pts = _text_points(fig)  # fig.dpi is the saving dpi here
        smallest = f"{min(pts) * fig.dpi / 72:.2f}" if pts else "inf"  # a figure without text has none too small
        return plain(*a, metadata={**(metadata or {}), TEXT_PX_KEY: smallest}, **kw)

    fig.canvas.print_png = print_png
    return fig, axes
