"""The book's chapters, one module per notebook, in book order.

Each module ``chNN_<notebook>`` holds the chapter's ``Params`` (a frozen dataclass: every
parameter once, with its default and a line of doc), its result record, and ``run(params)``,
which returns the record: the curves, the images, the readings with their 95% intervals, and
the findings, each with the paper's value and a verdict computed from the interval.

With ``compute=False`` (how the book is built) every result must already be in the store, and a
missing one raises :class:`~unetdyn.paper.cache.CacheMiss`; with ``compute=True`` missing
results are sampled and stored as they finish.

A notebook's ``parameters`` cell is written from its ``Params`` (:func:`parameters_cell`), so
papermill overrides each field; the next cell builds the dataclass from them (:func:`params`)
and runs the chapter::

    p = chapters.params("03_nb_sweep", globals())
    r = chapters.run(p)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from unetdyn.paper.chapters import (
    ch01_phases,
    ch02_skip_vs_deconv,
    ch03_nb_sweep,
    ch04_n_limit,
    ch05_relaxation,
    ch06_shortcut,
    ch07_alternatives,
    ch08_beyond,
    ch09_other_unets,
    ch10_is_it_the_model,
)
from unetdyn.paper.chapters.common import SweepParams, build, doc, t_grid

__all__ = ["CHAPTERS", "params", "run", "parameters_cell", "module_of", "SweepParams", "t_grid"]

# notebook name -> its chapter's module, in book order
CHAPTERS: dict[str, ModuleType] = {
    "01_phases": ch01_phases,
    "02_skip_vs_deconv": ch02_skip_vs_deconv,
    "03_nb_sweep": ch03_nb_sweep,
    "04_n_limit": ch04_n_limit,
    "05_relaxation": ch05_relaxation,
    "06_shortcut": ch06_shortcut,
    "07_alternatives": ch07_alternatives,
    "08_beyond": ch08_beyond,
    "09_other_unets": ch09_other_unets,
    "10_is_it_the_model": ch10_is_it_the_model,
}


def module_of(name: str) -> ModuleType:
    """The chapter module of notebook ``name``."""
    if name not in CHAPTERS:
        raise KeyError(f"no chapter {name!r}; chapters: {', '.join(CHAPTERS)}")
    return CHAPTERS[name]


def params(name: str, values: Mapping[str, Any] = {}, **more: Any):
    """Chapter ``name``'s parameters: its defaults, with the fields found in ``values`` (a notebook's
    ``globals()``: the parameters cell and papermill's overrides) and ``more``."""
    return build(module_of(name).Params, values, **more)


def run(p: Any):
    """Run the chapter whose parameters ``p`` are; returns its record."""
    for mod in CHAPTERS.values():
        if type(p) is mod.Params:
            return mod.run(p)
    raise TypeError(f"not a chapter's parameters: {type(p).__name__}")


def _ordered_fields(cls: type) -> list[dataclasses.Field]:
    """Fields in cell order: the model and samples, the chapter's own, then how it runs."""
    fields = dataclasses.fields(cls)
    if not issubclass(cls, SweepParams):
        return list(fields)
    shared = [f.name for f in dataclasses.fields(SweepParams)]
    spec = shared[:5]
    return ([f for f in fields if f.name in spec] + [f for f in fields if f.name not in shared]
            + [f for f in fields if f.name in shared[5:]])


def _literal(value: Any) -> str:
    """A default as the parameters cell writes it (a list for a tuple; a long run of integers as a range)."""
    if isinstance(value, tuple):
        if len(value) > 5 and all(isinstance(v, int) for v in value) and list(value) == list(range(value[0], value[-1] + 1)):
            return f"list(range({value[0]}, {value[-1] + 1}))"
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def parameters_cell(name: str) -> str:
    """The source of notebook ``name``'s ``parameters`` cell, written from its chapter's ``Params``."""
    cls = module_of(name).Params
    default = cls()
    lines = []
    for f in _ordered_fields(cls):
        line = f"{f.name} = {_literal(getattr(default, f.name))}"
        text = doc(cls, f.name)
        lines.append(f"{line}  # {text}" if text else line)
    return "\n".join(lines)
