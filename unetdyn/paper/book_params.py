"""The book's parameters: one YAML file (default ``book/params.yaml``) and ``-p`` overrides,
checked against each notebook's ``parameters`` cell before papermill starts.

The cell is written from the chapter's ``Params`` dataclass
(:func:`unetdyn.paper.chapters.parameters_cell`; :func:`write_parameter_cells` rewrites the
notebooks), so checking against the cell checks against the dataclass. An unknown name, or a
value whose type differs from the default's, is a one-line error; ranges are checked by
:mod:`unetdyn.paper.param_checks`.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from unetdyn.paper.chapters import CHAPTERS, parameters_cell
from unetdyn.paper.param_checks import check_values
from unetdyn.paths import BOOK_DIR, NOTEBOOKS_DIR

__all__ = ["NOTEBOOKS", "BookError", "read_params_file", "load_params", "notebook_parameters", "check_params",
           "parse_value", "write_parameter_cells"]

NOTEBOOKS = tuple(CHAPTERS)
PARAMS_FILE = BOOK_DIR / "params.yaml"
_ANY = object()  # default of a parameter that is not a literal: any value is accepted


class BookError(ValueError):
    """A one-line error of the book driver (bad parameters, a failed or incomplete chapter)."""


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (messages quote user input)."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _first_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."




def read_params_file(path: str | Path | None = None) -> tuple[Path, dict]:
    """The parameters file as ``{"all": {...}, "notebooks": {name: {...}}}``.

    ``path=None`` reads ``book/params.yaml`` if it exists; a path that was given must exist.
    """
    p = Path(path) if path is not None else PARAMS_FILE
    if not p.exists():
        if path is not None:
            raise BookError(f"--params {p}: no such file")
        return p, {"all": {}, "notebooks": {}}
    if p.is_dir():
        raise BookError(f"--params {p}: is a directory, not a YAML file")
    try:
        raw = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BookError(f"--params {p}: not valid YAML ({_first_line(exc, 200)})") from None
    raw = raw or {}
    if not isinstance(raw, dict):
        raise BookError(f"--params {p}: must be a mapping with keys all, notebooks")
    unknown = set(raw) - {"all", "notebooks"}
    if unknown:
        raise BookError(f"--params {p}: unknown top-level key(s) {sorted(map(str, unknown))}; allowed: all, notebooks")
    every, per = raw.get("all") or {}, raw.get("notebooks") or {}
    if not isinstance(every, dict) or not isinstance(per, dict) or not all(isinstance(v or {}, dict) for v in per.values()):
        raise BookError(f"--params {p}: 'all' and each entry of 'notebooks' must be a mapping of parameter: value")
    bad = set(per) - set(NOTEBOOKS)
    if bad:
        raise BookError(f"--params {p}: unknown notebook(s) {sorted(map(str, bad))}; notebooks: {', '.join(NOTEBOOKS)}")
    return p, {"all": every, "notebooks": {k: v or {} for k, v in per.items()}}


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """The names and defaults of a notebook's ``parameters`` cell (``_ANY`` for a non-literal).

    Read with :mod:`ast` rather than ``papermill.inspect_notebook``, whose line parser skips
    assignments with an ``=`` in their comment and logs a warning for each.
    """
    cells = json.loads(Path(path).read_text())["cells"]  # plain JSON: no Jupyter packages needed
    cell = next((c for c in cells if c["cell_type"] == "code" and "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return {}
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    found: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        else:
            continue
        try:
            found[name] = ast.literal_eval(value)
        except ValueError:
            found[name] = _evaluate(value)
    return found


_SAFE_CALLS = {"list": list, "range": range, "tuple": tuple}


def _evaluate(node: ast.expr) -> Any:
    """A default like ``list(range(1, 16))``: evaluated with only list, range and tuple at hand;
    anything else is ``_ANY``."""
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    if not names <= set(_SAFE_CALLS):
        return _ANY
    try:
        return eval(compile(ast.Expression(node), "<parameters>", "eval"), {"__builtins__": {}}, dict(_SAFE_CALLS))  # noqa: S307
    except Exception:  # noqa: BLE001 - not a value we can know before the notebook runs
        return _ANY


def _type_ok(default: Any, value: Any) -> bool:
    """Whether ``value`` has the type of ``default`` (None accepts anything; int passes for float)."""
    if default is None or default is _ANY:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


_KIND = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list", tuple: "a list", dict: "a mapping"}


def check_params(name: str, params: dict[str, Any], declared: dict[str, Any], sources: dict[str, str] | None = None) -> None:
    """Raise :class:`BookError` for a parameter ``name``'s notebook does not declare or a mistyped value.

    ``sources`` says where each key came from (``-p n_samples``, ``book/params.yaml``) for the message.
    """
    sources = sources or {}
    for key, value in params.items():
        where = sources.get(key, "parameter")
        if key not in declared:
            raise BookError(f"{where}: {name} has no parameter {key!r}; its parameters: {', '.join(declared) or '(none)'}")
        default = declared[key]
        if not _type_ok(default, value):
            kind = _KIND.get(type(default), type(default).__name__)
            raise BookError(f"{where}: parameter {key} of {name} must be {kind} like its default {_short(default)}, not {_short(value)}")
    # then each value's range and emptiness (unetdyn.paper.param_checks.RULES), before anything runs
    problem = check_values(name, params, declared, sources)
    if problem:
        raise BookError(problem)


def parse_value(key: str, text: str) -> Any:
    """A ``-p NAME VALUE`` value, read as YAML (``5`` is an int, ``[2, 8]`` a list, ``abc`` a string)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BookError(f"-p {key}: {_short(text)} is not valid YAML ({_first_line(exc, 120)})") from None


def load_params(
    path: str | Path | None = None,
    names: Sequence[str] = NOTEBOOKS,
    overrides: dict[str, Any] | None = None,
    override_source: str = "-p",
    source_dir: str | Path = NOTEBOOKS_DIR,
    defaults: dict[str, Any] | None = None,
) -> dict[str, dict]:
    """Checked parameters of each notebook in ``names``, later sources winning: ``defaults``
    and the file's ``all`` (each for the notebooks that declare the key), the notebook's own
    entry, then ``overrides`` (which every notebook in ``names`` must declare)."""
    p, raw = read_params_file(path)
    declared = {n: notebook_parameters(Path(source_dir) / f"{n}.ipynb") for n in NOTEBOOKS}
    orphans = [k for k in raw["all"] if not any(k in d for d in declared.values())]
    if orphans:
        known = sorted({k for d in declared.values() for k in d})
        raise BookError(f"--params {p}: all.{orphans[0]} is a parameter of no notebook; parameters: {', '.join(known)}")
    out = {}
    for name in names:
        own = raw["notebooks"].get(name, {})
        params = {k: v for k, v in (defaults or {}).items() if k in declared[name]}
        sources = {k: f"{override_source} {k}" for k in params}
        common = {k: v for k, v in raw["all"].items() if k in declared[name]}
        params.update(common)
        sources.update({k: f"--params {p}: all.{k}" for k in common})
        params.update(own)
        sources.update({k: f"--params {p}: notebooks.{name}.{k}" for k in own})
        params.update(overrides or {})
        sources.update({k: f"{override_source} {k}" for k in overrides or {}})
        check_params(name, params, declared[name], sources)
        out[name] = params
    return out


def write_parameter_cells(source_dir: str | Path = NOTEBOOKS_DIR) -> list[str]:
    """Rewrite each notebook's ``parameters`` cell from its chapter's ``Params``; returns the notebooks changed."""
    changed = []
    for name in NOTEBOOKS:
        path = Path(source_dir) / f"{name}.ipynb"
        nb = json.loads(path.read_text())
        cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and "parameters" in c.get("metadata", {}).get("tags", []))
        new = parameters_cell(name).splitlines(keepends=True)
        if cell["source"] != new:
            cell["source"] = new
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(name)
    return changed
