"""The figures the notebooks call exist under ``plots.<name>``, and the diagrams draw from the package's structures."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from unetdyn.interventions import DropBlocks, Schedule  # noqa: E402
from unetdyn.paper import plots  # noqa: E402
from unetdyn.paths import NOTEBOOKS_DIR  # noqa: E402

from .conftest import random_unet  # noqa: E402


def test_every_figure_a_notebook_calls_is_there():
    called = {name for nb in NOTEBOOKS_DIR.glob("*.ipynb")
              for name in re.findall(r"(?<![\w.])plots\.(\w+)", nb.read_text())}
    assert called, "the scan finds the notebooks' figures"
    assert not sorted(n for n in called if not callable(getattr(plots, n, None)))
    assert all(callable(getattr(plots, n)) for n in plots.__all__)


@pytest.mark.parametrize("draw", [
    lambda: plots.fig1(),
    lambda: plots.fig2(random_unet(8), nb=2, ns=2),
    lambda: plots.timelines({"full": Schedule(()), "nb 4": Schedule((DropBlocks(8, 4, 4),))}, 10, 16, 16),
])
def test_the_diagrams_draw(draw):
    fig = draw()
    assert fig.axes
    plt.close(fig)
