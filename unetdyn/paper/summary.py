"""The book's summary page: one row per claim of the paper, its verdict and why, every setting folded beneath.

Each chapter displays its findings with a machine-readable copy
(:data:`unetdyn.paper.claimplots.FINDINGS_MIME`); this module collects them from the executed
notebooks, groups them by claim (:mod:`unetdyn.paper.claims`) and takes each claim's verdict
from its own setting, so the summary shows exactly what the chapters show and computes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from unetdyn.fileio import atomic_write
from unetdyn.paper.claimplots import FINDINGS_MIME, MEMBERS_MIME, read_on_note
from unetdyn.paper.claims import MARGINS
from unetdyn.paper.verdicts import VERDICTS, Finding, claim_rows

__all__ = ["collect_findings", "collect_members", "summary_markdown", "lead_markdown", "write_summary"]

MARKS = {"holds": "holds", "differs": "**differs**", "imprecise": "*imprecise*", "not run": "not run", "-": "-",
         "holds on every member": "holds on every member", "differs on every member": "**differs on every member**",
         "depends on the member": "**depends on the member**", "holds so far": "holds so far",
         "differs so far": "**differs so far**", "imprecise so far": "*imprecise so far*",
         "one member read so far": "one member read so far"}


def _read(notebook: str | Path) -> dict:
    return json.loads(Path(notebook).read_text())


def collect_findings(notebook: str | Path | dict) -> list[Finding]:
    """The findings an executed notebook (a path, or the notebook already read) displayed: its last findings output."""
    nb = notebook if isinstance(notebook, dict) else _read(notebook)
    found: list[dict] = []
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if FINDINGS_MIME in data:
                raw = data[FINDINGS_MIME]
                found = json.loads(raw if isinstance(raw, str) else "".join(raw))
    return [Finding.from_dict(d) for d in found]


def collect_members(notebooks: Sequence[str | Path]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The members chapter 10 compared and, per claim, its verdict on each and ``across`` them (none: ``[], {}``)."""
    members, claims = [], {}
    for nb in map(Path, notebooks):
        for cell in _read(nb).get("cells", []):
            for out in cell.get("outputs", []):
                raw = out.get("data", {}).get(MEMBERS_MIME)
                if raw is not None:
                    record = json.loads(raw if isinstance(raw, str) else "".join(raw))
                    members, claims = record["members"], record["claims"]
    return members, claims


def _labels(nb: dict) -> list[str]:
    """The MyST targets, ``(name)=``, defined in a notebook's markdown cells."""
    text = "\n".join("".join(c["source"]) for c in nb.get("cells", []) if c["cell_type"] == "markdown")
    return re.findall(r"^\(([\w-]+)\)=\s*$", text, re.M)


def _cell(text: str) -> str:
    """Table-cell text: pipes and markdown's emphasis characters escaped ($math$ is kept)."""
    return re.sub(r"([|_*])", r"\\\1", str(text)).replace("\n", " ")


def _gather(notebooks: Sequence[str | Path]) -> tuple[list[Finding], dict[str, tuple[str, str]]]:
    """Every finding of every chapter, and where each chapter links (claim id -> (notebook, section))."""
    findings, links = [], {}
    for nb in map(Path, notebooks):
        content = _read(nb)
        labels = _labels(content)
        for f in collect_findings(content):
            findings.append(f)
            target = f.section if f.section in labels else next((lab for lab in labels if lab.startswith("findings")), "")
            if f.own or f.claim not in links:
                links[f.claim] = (nb.stem, target)
    return findings, links


def _tally(rows: list[dict]) -> dict[str, int]:
    judged = [r for r in rows if r["claim"].judged]
    return {v: sum(r["verdict"] == v for r in judged) for v in (*VERDICTS, "not run")}


def lead_markdown(notebooks: Sequence[str | Path]) -> str:
    """Five lines for the front page: the claims' verdicts in brief."""
    findings, _ = _gather(notebooks)
    rows = claim_rows(findings)
    t = _tally(rows)
    n = sum(t.values())
    names = lambda v: "; ".join(r["claim"].short for r in rows if r["claim"].judged and r["verdict"] == v)  # noqa: E731
    lines = [f"**The paper's {n} claims, judged on the built-in model** with declared margins "
             f"([the claims table](summary)): {t['holds']} hold, {t['differs']} differ, {t['imprecise']} are imprecise"
             + (f", {t['not run']} were not run at their own setting" if t["not run"] else "") + ".", ""]
    for v in VERDICTS:
        if t[v]:
            lines.append(f"- **{v.capitalize()}:** {names(v)}.")
    apart = [r["claim"] for r in rows if r["claim"].kind == "inconsistency"]
    if apart:
        lines.append(f"- **Not a claim about the model:** {'; '.join(c.short for c in apart)} (the paper's own arithmetic).")
    members, on_members = collect_members(notebooks)
    if members:
        across = [v["across"] for v in on_members.values() if v.get("across") not in (None, "not run")]
        counts = ", ".join(f"{across.count(a)} " + ("read on one member only so far" if a == "one member read so far"
                                                   else a) for a in dict.fromkeys(across))
        read = max((int(v.get("read on", "0").split()[0]) for v in on_members.values()), default=0)
        so_far = f", so far read on {read} of them" if read < len(members) else ""
        lines += ["", f"**Is it the model?** On {len(members)} models of the family ([chapter 10](10_is_it_the_model)"
                      f"{so_far}), the claims read: {counts}."]
    return "\n".join(lines) + "\n"


def summary_markdown(notebooks: Sequence[str | Path]) -> str:
    """A MyST page: one row per claim (the paper's words, ours at its own setting, the verdict and why),
    each claim's settings folded beneath, and the claims that take no verdict listed apart."""
    findings, links = _gather(notebooks)
    members, on_members = collect_members(notebooks)
    rows = claim_rows(findings)
    t = _tally(rows)
    n = sum(t.values())
    short = [m.replace("builtin:", "") for m in members]
    lines = [
        "# The paper's claims, and ours",
        "",
        "Each of the paper's claims, read on the built-in model at the claim's own setting, and judged against the "
        "paper's value with a declared margin of practical equivalence: **holds** when our 95% interval lies wholly "
        "where the claim is true, **differs** when it lies wholly where the claim is false by more than the margin "
        "(for a direction or an effect, such as a dip: wholly below the margin, an effect too small to matter), "
        "**imprecise** otherwise (an interval that straddles an edge, is wider than the margin allows, or is open at "
        "the grid's edge and reaches where the claim holds; one open but wholly where it is false differs). The margins, their reasons and the rule are in [What differs](differences); a threshold or "
        "window the paper does not give is ours, and the chapter that reads it shows the verdict over a range of it.",
        "",
        "**Terms** ([The method](index)): `t` counts the 100 sampling steps down, from pure noise at `t = 100` to the "
        "output at `t = 1`; an intervention starts at `t_start` and lasts `n` steps; it removes the bottom `nb` decoder "
        "blocks or zeroes the top `ns` skips; `r` untouched steps let the model relax between two cuts; a *jump* of `k` "
        "goes from `t` to `t - k` in one step. A *setting* is one way of reading a claim (its parameters): the claim's "
        "own setting gives its verdict. A *held-out contrast* is found on half of the samples and measured on the other "
        "half. The *store* is the committed result cache the book is read from.",
        "",
        f"**In all: {n} claims; {t['holds']} hold, {t['differs']} differ, {t['imprecise']} are imprecise"
        + (f", {t['not run']} not run at their own setting" if t["not run"] else "") + ".** "
        "The shortcut's mean SSIM is counted once, on chapter 7's samples; its other readings are settings of that claim.",
        "",
        *(["The last column reads each claim across the family of built-in models ([chapter 10](10_is_it_the_model), "
           "on coarser grids): is it the Unet, or this checkpoint? The table after this one gives its verdict on each "
           "member. *So far* marks a reading that may still change: some member's results are not in the store yet "
           "(*read on* says how many are); *one member read so far* says nothing across members yet. Each member runs chapters 1-6 only, so a claim whose own setting lies elsewhere (the shortcut's "
           "SSIM on chapter 7's samples, its speed-up on GLIDE's architecture) is read there at its first judged "
           "setting, and its last column may read otherwise than the verdict beside it.", ""] if members else []),
        ":::{container} claims",  # a smaller font (book/_static/unetdyn.css): the table fits the column
        "| claim | paper | ours [95% interval], at its own setting | verdict | why |" + (" across members |" if members else ""),
        "|---|---|---|---|---|" + ("---|" if members else ""),
    ]
    by_member = ["", "**Each claim on each member** of the family ([chapter 10](10_is_it_the_model)):", "",
                 ":::{container} claims", "| claim |" + "".join(f" {m} |" for m in short) + " across members |",
                 "|---|" + "---|" * (len(members) + 1)]
    for r in rows:
        c = r["claim"]
        if not c.judged:
            continue
        nb, target = links.get(c.id, ("", ""))
        own = r["own"]
        label = f"{c.short} ({c.where})"
        link = f"[{_cell(label)}]({target})" if target else _cell(label)
        ours = f"{own.ours} ({own.setting})" if own else "-"
        why = own.why if own else "its own setting was not run"
        if r["judged"] > 1:
            why += f". Of the claim's {r['judged']} settings (folded below), it holds at {r['held']}"
        per = on_members.get(c.id, {})
        reading = per.get("across", "not run")
        partial = read_on_note(reading, per.get("read on", ""), len(members))
        across = f" {MARKS.get(reading, reading)}{partial} |" if members else ""
        lines.append(f"| {link} <br> *\u201c{_cell(c.words)}\u201d* | {_cell(c.paper_value)} | {_cell(ours)} | "
                     f"{MARKS.get(r['verdict'], r['verdict'])} | {_cell(why)} |{across}")
        by_member.append(f"| {link} |" + "".join(f" {MARKS.get(per.get(m, 'not run'), per.get(m))} |" for m in members)
                         + across)
    lines.append(":::")
    if members:
        lines += by_member + [":::"]
    lines += ["", "<details><summary>Every setting of every claim</summary>", "", ":::{container} claims",
              "| claim | setting | paper | ours | verdict | why |", "|---|---|---|---|---|---|"]
    for r in rows:
        for f in r["detail"]:
            own = " (own)" if f.own and r["claim"].judged else ""
            lines.append(f"| {_cell(r['claim'].short)} | {_cell(f.setting + own)} | {_cell(f.paper)} | {_cell(f.ours)} | "
                         f"{MARKS.get(f.verdict, f.verdict)} | {_cell(f.why)} |")
    lines += [":::", "", "</details>", ""]
    apart = [r for r in rows if not r["claim"].judged]
    if apart:
        lines += ["## Listed apart: no verdict on the model", "",
                  "Statements of the paper that its own numbers contradict, facts shared with GLIDE by construction, "
                  "and our own checks. None is counted above.", "",
                  "| what | kind | the paper | ours |", "|---|---|---|---|"]
        kinds = {"inconsistency": "the paper's arithmetic", "construction": "shared by construction", "ours": "our check"}
        for r in apart:
            c = r["claim"]
            ours = "; ".join(f"{f.setting}: {f.ours}" + (f" ({f.why})" if f.why else "") for f in r["detail"])
            lines.append(f"| {_cell(c.short)} ({c.where}) | {kinds[c.kind]} | {_cell(c.paper_value)} | {_cell(ours)} |")
        lines.append("")
    lines += ["## The margins", "", "| quantity | margin | why |", "|---|---|---|"]
    lines += [f"| {q} | {m:g} | {_cell(why)} |" for q, (m, _, why) in MARGINS.items()]
    return "\n".join(lines) + "\n"


def write_summary(notebooks: Sequence[str | Path], path: str | Path) -> Path:
    """Write the summary page and, beside it, the front page's five lines (``summary_lead.md``), atomically."""
    path = Path(path)
    text, lead = summary_markdown(notebooks), lead_markdown(notebooks)
    atomic_write(path.with_name("summary_lead.md"), lambda tmp: tmp.write_text(lead))
    return atomic_write(path, lambda tmp: tmp.write_text(text))

