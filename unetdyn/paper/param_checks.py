"""The allowed values of the chapters' parameters, declared once and checked before a notebook runs.

:func:`unetdyn.paper.book.check_params` checks names and types against a notebook's
``parameters`` cell; this table adds what a type cannot say: lists that must not be empty,
integers and numbers in a range. A range's upper end may name another parameter (``"steps"``:
a time step lies in ``1..steps``), read from the values given or else the notebook's default.
A bad value is refused with its parameter and range before any sampling starts (an empty
``nbs`` would otherwise end a sweep in pandas' "No objects to concatenate").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Rule", "RULES", "check_values"]


@dataclass(frozen=True)
class Rule:
    """What one parameter may hold.

    Attributes:
        kind: ``int``, ``float`` (finite), ``ints`` or ``floats`` (lists of them), ``strs``
            (a list of non-empty strings), ``str`` (non-empty), ``choice`` (one of ``choices``), ``mapping`` (int keys >= 1 to
            int values in ``low``..``high``), ``device`` (None, or a device that can sample).
        low, high: the range of each number (inclusive); ``high`` None: no upper end; a
            string: the value of that parameter.
        nonempty: a list or mapping needs at least one entry.
        choices: for ``kind="choice"``, the values allowed.
    """

    kind: str
    low: float | None = None
    high: float | str | None = None
    nonempty: bool = True
    choices: tuple[str, ...] = ()


_T = Rule("int", 1, "steps")  # a time step, or a count of steps: 1..K
_COUNT = Rule("int", 1)
_SSIM = Rule("float", 0, 1)

RULES: dict[str, Rule] = {
    "steps": Rule("int", 1, 1000),
    "guidance": Rule("float", 0),
    "n_samples": _COUNT, "samples": _COUNT, "chunk": _COUNT, "batch_size": _COUNT, "per_class": _COUNT,
    "image_samples": _COUNT, "samples_shown": _COUNT, "pairs_shown": _COUNT, "alternatives_samples": _COUNT,
    "timing_samples": _COUNT, "timing_repeats": _COUNT, "repeats": _COUNT, "glide_repeats": _COUNT,
    "n": _T, "fig8_n": _T, "t_stride": _T, "t_stride_fig18": _T, "fig8_t_stride": _T, "window": _T,
    "late": _T, "early": _T, "usage_stride": _T, "usage_samples": _COUNT,
    "ns": _COUNT, "nb": _COUNT,
    "n_values": Rule("ints", 1, "steps"),
    "image_t_starts": Rule("ints", 1, "steps"),
    "nbs": Rule("ints", 1),
    "relax": Rule("ints", 0, "steps"),
    "deepcache": Rule("ints", 1),
    "paper_t_starts": Rule("mapping", 1, "steps"),
    "threshold": _SSIM, "x0_threshold": _SSIM,
    "thresholds": Rule("floats", 0, 1),
    "rise_factor": Rule("float", 0),
    "archs": Rule("strs"),
    "other_budgets": Rule("strs", nonempty=False),
    "device": Rule("device"),
    "model": Rule("str"), "schedule": Rule("str"), "budget": Rule("str"),
    "smooth": _COUNT,
    "references": Rule("strs", nonempty=False),
    "members": Rule("strs", nonempty=False),
    "precision": Rule("choice", choices=("fp32", "bf16")),
    "executor": Rule("choice", choices=("local", "ray")),
    "timing_device": Rule("choice", choices=("cpu", "cuda")),
}


def _range(rule: Rule, high: float | None) -> str:
    lo = "" if rule.low is None else f"{rule.low:g}"
    if high is None:
        return f">= {lo}" if lo else "finite"
    return f"in {lo}..{high:g}" + (f" ({rule.high})" if isinstance(rule.high, str) else "")


def _number_ok(value: Any, integer: bool, low: float | None, high: float | None) -> bool:
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    if not math.isfinite(value):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def _problem(rule: Rule, value: Any, high: float | None) -> str | None:
    """What is wrong with ``value`` under ``rule`` (None: nothing)."""
    span = _range(rule, high)
    if rule.kind in ("int", "float"):
        kind = "an integer" if rule.kind == "int" else "a finite number"
        return None if _number_ok(value, rule.kind == "int", rule.low, high) else f"must be {kind} {span}"
    if rule.kind == "device":
        from unetdyn.backends.registry import check_device

        try:
            check_device(value, allow_meta=False)
        except ValueError as exc:
            return f"must name a device to sample on ({exc})"
        return None
    if rule.kind == "choice":
        return None if value in rule.choices else f"must be one of {', '.join(map(repr, rule.choices))}"
    if rule.kind == "str":
        return None if isinstance(value, str) and value.strip() else "must be a non-empty string"
    if rule.kind == "mapping":
        if not isinstance(value, dict) or (rule.nonempty and not value):
            return f"must be a non-empty mapping of integer: integer {span}"
        bad = [k for k, v in value.items() if not _number_ok(k, True, 1, None) or not _number_ok(v, True, rule.low, high)]
        return f"must map integers >= 1 to integers {span}; {bad[0]!r} does not" if bad else None
    if not isinstance(value, (list, tuple)):
        return "must be a list"
    if rule.nonempty and not value:
        return "must be a non-empty list" + ("" if rule.kind == "strs" else f" of values {span}")
    for k, item in enumerate(value):
        ok = (isinstance(item, str) and item.strip()) if rule.kind == "strs" else _number_ok(item, rule.kind == "ints", rule.low, high)
        if not ok:
            what = "a non-empty string" if rule.kind == "strs" else ("an integer " if rule.kind == "ints" else "a finite number ") + span
            return f"entry {k} ({item!r}) must be {what}"
    return None


def check_values(name: str, params: dict[str, Any], declared: dict[str, Any], sources: dict[str, str]) -> str | None:
    """The first parameter in ``params`` whose value breaks its rule, as one line (None: all fit).

    ``declared``: the notebook's defaults (for ``high`` naming another parameter);
    ``sources``: where each value came from, for the message.
    """
    for key, value in params.items():
        rule = RULES.get(key)
        if rule is None:
            continue
        high = rule.high
        if isinstance(high, str):
            ref = params.get(high, declared.get(high))
            high = ref if _number_ok(ref, True, 1, None) else None
        problem = _problem(rule, value, high)
        if problem:
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            return f"{sources.get(key, 'parameter')}: parameter {key} of {name} {problem}, got {shown}"
    return None
