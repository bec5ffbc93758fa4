"""The book's figures, one function per figure of the paper, drawn from a chapter's result.

They only draw what a chapter function returned; nothing here samples or reads the cache.
Bands are the paper's (mean +- k sd over samples); the shaded inner band, where drawn, is
the 95% bootstrap interval of the mean. Every figure is sized for the book's content column
(:mod:`unetdyn.paper.canvas`).

The notebooks call every figure as ``plots.<name>``; the figures live by family:

* :mod:`~unetdyn.paper.plots.diagrams`: what runs where (Figs. 1, 2, 11, schedule timelines);
* :mod:`~unetdyn.paper.plots.curves`: quality against t_start, n and r (chapters 1-5);
* :mod:`~unetdyn.paper.plots.samples`: image rows and per-sample SSIM histograms;
* :mod:`~unetdyn.paper.plots.tradeoffs`: savings against quality (chapters 6-9);
* :mod:`~unetdyn.paper.plots.tables`: the tables of methods and costs;
* :mod:`~unetdyn.paper.plots.members`: the family side by side (chapter 10);
* :mod:`~unetdyn.paper.galleries`: the image galleries (Figs. 19-21);
* :mod:`~unetdyn.paper.plots.common`: the shared colours, band and panel grid.
"""

from __future__ import annotations

from unetdyn.paper.galleries import fig19, fig20, fig21, image_rows
from unetdyn.paper.plots.common import band
from unetdyn.paper.plots.curves import block_usage, fig4, fig7, fig8, fig9, fig10, fig18, figs15_17
from unetdyn.paper.plots.diagrams import fig1, fig2, fig11, timelines
from unetdyn.paper.plots.members import members_losses, members_spread, members_usage
from unetdyn.paper.plots.samples import fig3, fig12, fig13, fig22, figs5_6, found_pairs, held_out_histograms
from unetdyn.paper.plots.tables import equal_cost_table, glide_table, methods_table
from unetdyn.paper.plots.tradeoffs import (
    beyond_pareto,
    ddim_diagnosis,
    efficiency,
    equal_cost,
    family_colors,
    other_unets,
    pareto,
    search_path,
    time_saved,
)

__all__ = [
    "band",
    "image_rows",
    "fig1",
    "fig2",
    "fig3",
    "fig4",
    "figs15_17",
    "fig18",
    "figs5_6",
    "fig7",
    "fig8",
    "block_usage",
    "fig19",
    "fig9",
    "fig20",
    "fig10",
    "fig21",
    "fig11",
    "fig12",
    "fig13",
    "fig22",
    "time_saved",
    "family_colors",
    "pareto",
    "equal_cost",
    "methods_table",
    "equal_cost_table",
    "glide_table",
    "efficiency",
    "other_unets",
    "timelines",
    "search_path",
    "held_out_histograms",
    "found_pairs",
    "beyond_pareto",
    "ddim_diagnosis",
    "members_losses",
    "members_usage",
    "members_spread",
]
