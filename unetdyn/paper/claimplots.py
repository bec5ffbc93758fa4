"""How a chapter shows its verdicts: the findings table, the sensitivity plot, "what holds".

Each chapter's findings are displayed with a machine-readable copy (:data:`FINDINGS_MIME`)
that the summary page collects (:mod:`unetdyn.paper.summary`), so the summary shows exactly
what the chapters show and computes nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from unetdyn.paper.canvas import subplots
from unetdyn.paper.claims import CLAIMS
from unetdyn.paper.verdicts import Finding, Sensitivity, known, what_holds

__all__ = ["FINDINGS_MIME", "MEMBERS_MIME", "VERDICT_COLORS", "read_on_note", "show_findings", "show_members", "show_what_holds",
           "sensitivity_plot"]

FINDINGS_MIME = "application/vnd.unetdyn.findings+json"  # the book's summary page collects these
MEMBERS_MIME = "application/vnd.unetdyn.members+json"  # and these: each claim's verdict on each member
VERDICT_COLORS = {"holds": "#d9f0d3", "differs": "#f4cccc", "imprecise": "#fff2cc"}


def findings_frame(findings: Sequence[Finding]) -> pd.DataFrame:
    """One row per finding: the claim, the setting (its own setting marked), the paper's value, ours, the verdict, why."""
    return pd.DataFrame([{
        "claim": f"{CLAIMS[f.claim].short} ({CLAIMS[f.claim].where})",
        "setting": f.setting + (" (its own setting)" if f.own and CLAIMS[f.claim].judged else ""),
        "paper": f.paper,
        "ours [95% interval]": f.ours,
        "verdict": f.verdict,
        "why": f.why,
    } for f in findings])


def show_findings(findings: Sequence[Finding]) -> None:
    """Display a chapter's findings in full, verdicts coloured (and tagged for the summary page)."""
    from IPython.display import display

    df = findings_frame(findings)
    html = (df.style.hide(axis="index")
            .map(lambda v: f"background-color: {VERDICT_COLORS.get(v, 'white')}", subset=["verdict"])
            .set_properties(**{"text-align": "left", "white-space": "normal"})
            .to_html())
    records = [f.to_dict() for f in findings]
    display({"text/html": html, "text/plain": df.to_string(index=False), FINDINGS_MIME: json.dumps(records)}, raw=True)


def read_on_note(across: str, read_on: str, members: int) -> str:
    """What an across-members cell adds to its reading ``across``: how many of the ``members`` were read
    (``read_on``, e.g. "2 of 4") where not all were, and nothing where ``across`` already says it (one
    member read so far).

    >>> read_on_note("holds so far", "2 of 4", 4), read_on_note("holds on every member", "4 of 4", 4)
    (' (read on 2 of 4)', '')
    >>> read_on_note("one member read so far", "1 of 4", 4)
    ''
    """
    if not read_on or read_on.startswith(f"{members} of") or across == "one member read so far":
        return ""
    return f" (read on {read_on})"


def show_members(verdicts: pd.DataFrame) -> None:
    """Display each claim's verdict on each member of the family and across them (tagged for the summary page)."""
    from IPython.display import display

    # members by their short names ("seed1" for builtin:seed1), as the summary names them, and the count of members
    # read folded into the across cell where it is partial: the table fits the page
    df = (verdicts.rename(index=lambda cid: f"{CLAIMS[cid].short} ({CLAIMS[cid].where})",
                          columns=lambda c: c.removeprefix("builtin:"))
          .reset_index())
    members = len(verdicts.columns) - 2
    colors = {**VERDICT_COLORS, "holds on every member": VERDICT_COLORS["holds"],
              "differs on every member": VERDICT_COLORS["differs"], "depends on the member": "#cfe2f3",
              "holds so far": "#eef8ec", "differs so far": "#faeaea", "imprecise so far": "#fffaea",
              "one member read so far": "#f3f3f3"}  # paler: some member is not read yet
    # each cell is coloured by its reading, before the across cell gains its note
    cells = df.columns[1:].drop("read on")
    background = df[cells].map(lambda v: f"background-color: {colors.get(v, 'white')}")
    df["across"] = [a + read_on_note(a, read, members) for a, read in zip(df.pop("across"), df.pop("read on"))]
    html = (df.style.hide(axis="index")
            .apply(lambda _: background, axis=None, subset=list(cells))
            .set_properties(**{"text-align": "left", "white-space": "normal"})
            # the claim's words get room; one verdict word per member stays on one line
            .set_properties(subset=list(df.columns[1:-1]), **{"white-space": "nowrap"})
            .set_table_styles([{"selector": "td:first-child", "props": "min-width: 12em"}])
            .to_html())
    record = {"members": [c for c in verdicts.columns if c not in ("across", "read on")],
              "claims": verdicts.to_dict("index")}
    display({"text/html": html, "text/plain": df.to_string(index=False), MEMBERS_MIME: json.dumps(record)}, raw=True)


def show_what_holds(findings: Sequence[Finding]) -> None:
    """The chapter's closing paragraph, computed from its verdicts."""
    from IPython.display import Markdown, display

    display(Markdown(what_holds(findings)))


def _finite(v: float, top: float) -> float:
    return top if v == np.inf else v


def sensitivity_plot(sens: Sequence[Sensitivity], cols: int = 2):
    """Each reading redone over its declared range: the reading with its 95% interval at each value
    of the choice, coloured by verdict, the claim's region shaded, the book's value marked."""
    if not sens:
        return None
    rows = math.ceil(len(sens) / cols)
    fig, axes = subplots(rows, min(cols, len(sens)), figsize=(3.7 * min(cols, len(sens)), 3.0 * rows), squeeze=False)
    edge = {"holds": "#1b7837", "differs": "#b2182b", "imprecise": "#bf812d"}
    titles = [CLAIMS[s.claim].short for s in sens]
    for ax, s in zip(axes.flat, sens):
        c = CLAIMS[s.claim]
        inner, outer = c.regions()
        ks = [known(r) for r in s.readings]
        finite = [v for r, k in zip(s.readings, ks) for v in (r.value, *k) if np.isfinite(v)]
        lo_y, hi_y = (min(finite), max(finite)) if finite else (0.0, 1.0)
        for a, b in (inner, outer):
            lo_y, hi_y = min(lo_y, a) if np.isfinite(a) else lo_y, max(hi_y, b) if np.isfinite(b) else hi_y
        pad = 0.08 * (hi_y - lo_y or 1.0)
        top, bottom = hi_y + pad, lo_y - pad
        ax.axhspan(max(inner[0], bottom), min(inner[1], top), color=VERDICT_COLORS["holds"], alpha=0.7, lw=0, label="holds if inside")
        xs = np.arange(len(s.values))
        for x, r, k, v in zip(xs, s.readings, ks, s.verdicts):
            lo, hi = _finite(k[0], top), _finite(k[1], top)
            y = _finite(r.value, top) if np.isfinite(r.value) or r.value == np.inf else bottom
            ax.plot([x, x], [lo, hi], color=edge[v], lw=2.2)
            ax.plot(x, y, "o", color=edge[v], ms=6, mfc=edge[v] if np.isfinite(r.value) else "white")
        every = max(1, -(-len(xs) // 7))  # at most about 7 labels: long grids (t_start) would overlap
        ax.set_xticks(xs, [f"{v:g}" if k % every == 0 else "" for k, v in enumerate(s.values)], fontsize=11)
        if np.isfinite(s.default) and s.default in s.values:
            ax.axvline(s.values.index(s.default), color="0.4", ls=":", lw=1)
        ax.set_ylim(bottom, top)
        ax.set_xlabel(s.parameter, fontsize=11)
        ax.set_ylabel(f"reading ({c.unit})" if c.unit else "reading", fontsize=11)
        ax.set_title(f"{c.short}\nover {s.parameter.split(' (')[0]}" if titles.count(c.short) > 1 else c.short,
                     fontsize=11, wrap=True)
        ax.tick_params(labelsize=11)
    for ax in list(axes.flat)[len(sens):]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=col, lw=2.2, marker="o", label=v) for v, col in edge.items()]
    handles.append(plt.Rectangle((0, 0), 1, 1, color=VERDICT_COLORS["holds"], label="where the claim holds"))
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=11, frameon=False)
    fig.tight_layout(rect=(0, 0.14 / rows, 1, 1), h_pad=2.0)
    return fig
