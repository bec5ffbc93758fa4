"""Verdicts: a reading's 95% interval judged against one of the paper's claims, with its margin.

The rule is that of an equivalence test. Each claim (:mod:`unetdyn.paper.claims`) declares
where it is true in practice:

* ``holds`` when the whole interval lies where the claim is true;
* ``differs`` when the whole interval lies where the claim is false by more than the margin;
* ``imprecise`` otherwise: an interval that straddles an edge, one wider than the region, or
  one left open at the grid's edge where that edge is inside the region.

What "true" means depends on the claim's kind (``v``: the paper's value, ``m``: the margin):

===============  ================================  ==================================
kind             holds: interval inside            differs: interval wholly outside
===============  ================================  ==================================
``value``        ``[v - m, v + m]``                ``[v - m, v + m]``
``range``        ``[a - m, b + m]``                ``[a - m, b + m]``
``at_least``     ``[v, inf)``                      ``[v - m, inf)``
``at_most``      ``(-inf, v]``                     ``(-inf, v + m]``
``positive``     ``[m, inf)``: clears 0 by m       ``[m, inf)``
``negative``     ``(-inf, -m]``                    ``(-inf, -m]``
===============  ================================  ==================================

A bound (``at_least``) must be met by the whole interval to hold, and missed by more than the
margin to differ. A direction must clear zero by the margin to hold; an effect that stays
below the margin is practically absent, so the claim differs. A reading censored at the
grid's edge is an interval open on that side (``>= 15`` is ``[15, inf)``): it can never hold a
finite value, and it differs only when the part of it that is known already lies outside.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from unetdyn.paper.claims import CLAIMS, Claim, claim
from unetdyn.paper.readings import Reading

__all__ = ["VERDICTS", "Finding", "finding", "known", "note", "judge", "explain", "Sensitivity", "sensitivity",
           "claim_rows", "what_holds"]

VERDICTS = ("holds", "differs", "imprecise")


def judge(lo: float, hi: float, c: Claim, untested: str = "") -> str:
    """``holds`` / ``differs`` / ``imprecise``: the interval ``[lo, hi]`` against claim ``c``.

    ``untested`` (a reason) makes an interval that would hold imprecise: the reading cannot
    test the claim there (ties at the grid's edge, for example).

    Example:
        >>> from unetdyn.paper.claims import Claim
        >>> c = Claim("x", "w", "Fig. 0", "q", "value", 0.795, "ssim")
        >>> judge(0.795, 0.805, c), judge(0.9, 0.95, c), judge(0.80, 0.84, c)
        ('holds', 'differs', 'imprecise')
    """
    inner, outer = c.regions()
    if np.isnan(lo) or np.isnan(hi):
        return "imprecise"
    if inner[0] <= lo and hi <= inner[1]:
        return "imprecise" if untested else "holds"
    if hi < outer[0] or lo > outer[1]:
        return "differs"
    return "imprecise"


def _fmt(c: Claim, v: float) -> str:
    if v == np.inf:
        return "inf"
    if v == -np.inf:
        return "-inf"
    return f"{v:.{c.digits}f}"



def explain(lo: float, hi: float, c: Claim, verdict: str, untested: str = "") -> str:
    """One line: why the interval got its verdict, and the margin at which it would turn."""
    inner, outer = c.regions()
    region = lambda r: f"[{_fmt(c, r[0])}, {_fmt(c, r[1])}]"  # noqa: E731
    ours = f"[{_fmt(c, lo)}, {_fmt(c, hi)}]"
    if verdict == "holds":
        line = f"{ours} lies inside {region(inner)}"
    elif verdict == "differs":
        line = f"{ours} lies wholly outside {region(outer)}"
    elif untested and inner[0] <= lo and hi <= inner[1]:
        line = f"{ours} lies inside {region(inner)}, but {untested}"
    elif np.isinf(lo) or np.isinf(hi):
        line = f"{ours} is open at the grid's edge and reaches into {region(outer)}"
    elif hi - lo > inner[1] - inner[0]:
        line = f"{ours} is wider than {region(inner)}"
    else:
        line = f"{ours} straddles an edge of {region(inner)}"
    if untested and not line.endswith(untested):
        line += f"; {untested}"
    turn = c.turning_margin(lo, hi) if c.margin > 0 else ""
    return f"{line}; {turn} (declared: {c.margin:g})" if turn else line


@dataclass(frozen=True)
class Finding:
    """One reading of one claim at one setting, with its verdict.

    Attributes:
        claim: the id of the claim in :data:`~unetdyn.paper.claims.CLAIMS`.
        setting: where it was read (which curve, samples, parameters); the claim's own
            setting is named by the claim.
        ours: our reading (with its 95% interval) or value, as printed.
        verdict: ``holds`` / ``differs`` / ``imprecise``, or ``-`` where the claim takes no
            verdict (our own checks, facts shared by construction, the paper's arithmetic).
        why: one computed line saying why, and what the verdict depends on.
        lo, hi: the interval judged (NaN where none).
        section: the chapter section that shows it.
        own: whether this is the claim's own setting, whose verdict is the claim's.
        paper: the paper's value at this setting, as printed (default: the claim's).
        value: our reading's point value (NaN where it has none: a note, a range over rounds).
    """

    claim: str
    setting: str
    ours: str
    verdict: str
    why: str = ""
    lo: float = float("nan")
    hi: float = float("nan")
    section: str = ""
    own: bool = False
    paper: str = ""
    value: float = float("nan")

    def __post_init__(self):
        if self.claim not in CLAIMS:
            raise KeyError(f"finding names claim {self.claim!r}, which is not in the registry")
        if not self.paper:
            object.__setattr__(self, "paper", CLAIMS[self.claim].paper_value)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("lo", "hi", "value"):  # JSON has no inf or NaN
            d[k] = None if np.isnan(d[k]) else ("inf" if d[k] == np.inf else "-inf" if d[k] == -np.inf else d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Finding:
        conv = lambda v: float("nan") if v is None else float(v)  # noqa: E731
        return cls(**{**d, **{k: conv(d.get(k)) for k in ("lo", "hi", "value")}})


def known(r: Reading) -> tuple[float, float]:
    """The interval a reading is judged on: an end censored beyond the grid's top (``>= 15``,
    ``> 25``) is known to lie at or above the top, so it counts from there and stays open."""
    lo = r.top if (r.lo == np.inf and r.top is not None) else r.lo
    return float(lo), float(r.hi)


def finding(claim_id: str, setting: str, reading: Reading | tuple[float, float, str], section: str = "",
            untested: str = "", choices: Sequence[Sensitivity] = (), context: Sequence[Sensitivity] = (),
            own: bool = False, paper: float | None = None) -> Finding:
    """The :class:`Finding` of ``reading`` (a :class:`Reading`, or ``(lo, hi, printed)`` for an
    interval that is not a bootstrap one, such as a range over timing rounds). ``paper``: the
    paper's value at this setting where it differs from the claim's (its other number).

    ``choices``: the reading redone over the declared range of each choice of ours it rests on
    (a threshold or window the paper does not give). Where the verdict turns inside that range,
    the choice sets it, not the paper: the finding is ``imprecise``, and says what it would be at
    the book's value and where it turns. ``context``: the same for a value the paper gives (its
    0.8 threshold), shown beside the verdict without changing it.
    """
    c = claim(claim_id)
    if paper is not None:
        c = replace(c, paper=paper, paper_text="")
    lo, hi, ours = (*known(reading), str(reading)) if isinstance(reading, Reading) else reading
    if c.kind in ("ours", "construction", "inconsistency"):
        raise ValueError(f"claim {claim_id!r} is {c.kind}: it takes no verdict (use note())")
    v = judge(lo, hi, c, untested)
    why = explain(lo, hi, c, v, untested)
    turning = [s for s in choices if len(set(s.verdicts)) > 1]
    if turning and v != "imprecise":
        names = " and ".join(s.parameter for s in turning)
        why = f"the verdict turns over a choice of ours that the paper does not make ({names}); at the book's value it {v}: {why}"
        v = "imprecise"
    why += "".join(f". {s.text()}" for s in (*choices, *context))
    value = reading.value if isinstance(reading, Reading) else (lo if lo == hi else np.nan)
    return Finding(claim_id, setting, ours, v, why, float(lo), float(hi), section, own, c.paper_value, float(value))


def note(claim_id: str, setting: str, ours: str, section: str = "", why: str = "", own: bool = False) -> Finding:
    """A row that takes no verdict: a detail, our own check, or a fact of the paper's arithmetic."""
    claim(claim_id)
    return Finding(claim_id, setting, ours, "-", why, section=section, own=own)


@dataclass(frozen=True)
class Sensitivity:
    """A reading of one claim redone over a declared range of one of our choices.

    Attributes:
        claim: the claim's id.
        parameter: the choice (a notebook parameter, or the margin).
        values: the choice's values, in order; ``default``: the book's.
        readings: the reading at each value.
        verdicts: the verdict at each value.
    """

    claim: str
    parameter: str
    values: tuple[float, ...]
    default: float
    readings: tuple[Reading, ...]
    verdicts: tuple[str, ...]

    def text(self) -> str:
        """``robust over ...`` or where the verdict turns, in words."""
        span = f"{self.parameter} {self.values[0]:g} to {self.values[-1]:g}"
        if len(set(self.verdicts)) == 1:
            return f"Robust over {span}: {self.verdicts[0]} at every value"
        parts, start = [], 0
        for i in range(1, len(self.values) + 1):
            if i == len(self.values) or self.verdicts[i] != self.verdicts[start]:
                a, b = self.values[start], self.values[i - 1]
                parts.append(f"{self.verdicts[start]} at {a:g}" if a == b else f"{self.verdicts[start]} for {a:g} to {b:g}")
                start = i
        return f"Turns over {span}: " + ", ".join(parts)

    def table(self):
        import pandas as pd

        return pd.DataFrame({self.parameter: self.values, "reading [95%]": [str(r) for r in self.readings],
                             "verdict": self.verdicts})


def sensitivity(claim_id: str, parameter: str, values: Sequence[float], default: float,
                read: Callable[[float], Reading]) -> Sensitivity:
    """Redo a claim's reading at each value of one choice (``read(value) -> Reading``) and judge each."""
    c = claim(claim_id)
    rs = tuple(read(v) for v in values)
    return Sensitivity(claim_id, parameter, tuple(float(v) for v in values), float(default), rs,
                       tuple(judge(*known(r), c) for r in rs))


# -- claim-level: many findings -> one row per claim -----------------------------------------------


def claim_rows(findings: Sequence[Finding]) -> list[dict]:
    """One row per claim met in ``findings``, registry order: its verdict from its own setting,
    with how many of its other settings hold (``detail``: every finding of the claim)."""
    by: dict[str, list[Finding]] = {}
    for f in findings:
        by.setdefault(f.claim, []).append(f)
    rows = []
    for cid, c in CLAIMS.items():
        if cid not in by:
            continue
        fs = by[cid]
        own = next((f for f in fs if f.own), None)
        judged = [f for f in fs if f.verdict in VERDICTS]
        held = sum(f.verdict == "holds" for f in judged)
        rows.append({
            "claim": c,
            "own": own,
            "verdict": own.verdict if own is not None else ("-" if c.kind in ("ours", "construction", "inconsistency")
                                                           else "not run"),
            "held": held,
            "judged": len(judged),
            "detail": fs,
        })
    return rows


def what_holds(findings: Sequence[Finding], owned_only: bool = True) -> str:
    """A paragraph, computed from the verdicts: which of the paper's claims hold on this model.

    ``owned_only``: only the claims whose own setting is among ``findings`` (a chapter speaks
    for the claims it owns; it mentions the others' readings as detail)."""
    rows = [r for r in claim_rows(findings) if r["claim"].kind not in ("ours", "construction", "inconsistency")]
    if owned_only:
        rows = [r for r in rows if r["own"] is not None]
    if not rows:
        return "This chapter judges none of the paper's claims at their own settings."
    groups = {v: [r for r in rows if r["verdict"] == v] for v in (*VERDICTS, "not run")}
    label = {"holds": "Holds", "differs": "Differs", "imprecise": "Imprecise", "not run": "Not run at its own setting"}
    lines = []
    for v, rs in groups.items():
        if not rs:
            continue
        items = []
        for r in rs:
            c, own = r["claim"], r["own"]
            extra = f" (holds at {r['held']} of {r['judged']} settings)" if r["judged"] > 1 else ""
            items.append(f"{c.short} ({c.where}): {own.ours if own else '-'}{extra}")
        lines.append(f"- **{label[v]}** ({len(rs)}): " + "; ".join(items) + ".")
    return "\n".join(lines)
