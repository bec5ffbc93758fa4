"""Figures record their smallest text, and its height on screen follows the image's scaling."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from unetdyn.paper.canvas import TEXT_PX_KEY, smallest_text_px, subplots, to_png  # noqa: E402


def test_a_png_records_its_smallest_text_in_pixels():
    fig, ax = subplots(figsize=(4, 3), dpi=100)
    ax.set_title("title", fontsize=14)
    ax.set_xlabel("x", fontsize=9)
    ax.tick_params(labelsize=11)
    recorded = float(Image.open(io.BytesIO(to_png(fig))).text[TEXT_PX_KEY])
    assert recorded == pytest.approx(9 * 100 / 72, abs=0.01)  # 9 pt at 100 dpi
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=200)  # another saving dpi: more pixels for the same text
    assert float(Image.open(buf).text[TEXT_PX_KEY]) == pytest.approx(9 * 200 / 72, abs=0.01)
    plt.close(fig)


def test_text_shrinks_with_a_figure_wider_than_the_column():
    narrow, ax = subplots(figsize=(4, 3), dpi=100)
    ax.set_xlabel("x", fontsize=10)
    wide, ax = subplots(figsize=(16, 3), dpi=100)
    ax.set_xlabel("x", fontsize=10)
    assert smallest_text_px(narrow) == pytest.approx(10 * 100 / 72)  # shown at its own size
    natural = int.from_bytes(to_png(wide)[16:20], "big")  # its cropped width, well over the column's 772 px
    assert natural > 1200
    assert smallest_text_px(wide) == pytest.approx(10 * 100 / 72 * 772 / natural)
    assert smallest_text_px(wide, None) == pytest.approx(10 * 100 / 72)
    plt.close("all")


def test_a_figure_without_text_records_none_too_small():
    fig, ax = subplots(figsize=(2, 2))
    ax.axis("off")
    assert Image.open(io.BytesIO(to_png(fig))).text[TEXT_PX_KEY] == "inf"
    plt.close(fig)
