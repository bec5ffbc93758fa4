"""The book's front page: every quantitative claim of the paper beside ours, on one screen.

Each chapter displays its findings with a machine-readable copy
(:data:`unetdyn.paper.plots.FINDINGS_MIME`); this module collects them from the executed
notebooks, so the summary shows exactly what the chapters show and computes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from unetdyn.fileio import atomic_write
from unetdyn.paper.plots import FINDINGS_MIME

__all__ = ["collect_findings", "summary_markdown", "write_summary"]

MARKS = {"agrees": "agrees", "differs": "**differs**", "inconclusive": "*inconclusive*"}


def _read(notebook: str | Path) -> dict:
    return json.loads(Path(notebook).read_text())


def collect_findings(notebook: str | Path | dict) -> list[dict]:
    """The findings an executed notebook (a path, or the notebook already read) displayed: its last findings output."""
    nb = notebook if isinstance(notebook, dict) else _read(notebook)
    found: list[dict] = []
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if FINDINGS_MIME in data:
                raw = data[FINDINGS_MIME]
                found = json.loads(raw if isinstance(raw, str) else "".join(raw))
    return found


def _title(nb: dict, default: str) -> str:
    for cell in nb.get("cells", []):
        if cell["cell_type"] == "markdown":
            first = "".join(cell["source"]).strip().splitlines()[0]
            return first.lstrip("# ").strip()
    return default


def _labels(nb: dict) -> list[str]:
    """The MyST targets, ``(name)=``, defined in a notebook's markdown cells."""
    text = "\n".join("".join(c["source"]) for c in nb.get("cells", []) if c["cell_type"] == "markdown")
    return re.findall(r"^\(([\w-]+)\)=\s*$", text, re.M)


def _cell(text: str) -> str:
    """Table-cell text: pipes and markdown's emphasis characters escaped ($math$ is kept)."""
    return re.sub(r"([|_*])", r"\\\1", str(text)).replace("\n", " ")


def summary_markdown(notebooks: Sequence[str | Path]) -> str:
    """A MyST page: per chapter, a table of claim, paper, ours and verdict, each claim linked to its section."""
    lines = [
        "# The paper's claims, and ours",
        "",
        "Every quantitative claim the chapters check, with the paper's value, ours with its 95% bootstrap "
        "interval over samples (100 per curve unless the chapter says otherwise), and the verdict that follows from the interval: *agrees* when the paper's value "
        "lies in our interval (or our interval in the paper's range), **differs** when they do not overlap, "
        "*inconclusive* otherwise; \"-\" where the paper gives no number to compare. Each claim links to the "
        "section that shows it. The numbers are the built-in model's (see [What differs](differences)).",
        "",
        "",  # the tally, filled in below
        "",
    ]
    counts = {"agrees": 0, "differs": 0, "inconclusive": 0}
    for nb in map(Path, notebooks):
        content = _read(nb)
        found = collect_findings(content)
        if not found:
            continue
        labels = _labels(content)
        fallback = next((lab for lab in labels if lab.startswith("findings")), None)
        lines += [f"## [{_title(content, nb.stem)}]({nb.stem})", "", "| claim | paper | ours [95% interval] | verdict |", "|---|---|---|---|"]
        for f in found:
            claim = _cell(f["claim"])
            target = f.get("section") if f.get("section") in labels else fallback
            link = f"[{claim}]({target})" if target else claim
            lines.append(f"| {link} | {_cell(f['paper'])} | {_cell(f['ours'])} | {MARKS.get(f['verdict'], f['verdict'])} |")
            if f["verdict"] in counts:
                counts[f["verdict"]] += 1
        lines.append("")
    lines[4] = (f"In all: {counts['agrees']} agree, {counts['differs']} differ, {counts['inconclusive']} are "
                "inconclusive.")
    return "\n".join(lines)


def write_summary(notebooks: Sequence[str | Path], path: str | Path) -> Path:
    """Write the summary page (atomically) from the executed notebooks."""
    text = summary_markdown(notebooks)
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text))
