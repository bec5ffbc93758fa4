"""Reading a schedule from a JSON or YAML file, bounded and strict.

A schedule file is user input: it is read only if it is a regular file of at most
``MAX_FILE_BYTES``, parsed once, and refused while it is being parsed as soon as it nests
deeper than a schedule can (``MAX_DEPTH``), holds more nodes than the largest schedule
(``MAX_NODES``) or more YAML aliases than ``MAX_ALIASES``, so that no file under the size
limit keeps the parser busy for long. A key given twice in one mapping is an error naming
the key and its line, not a silent "last one wins".
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import yaml

from unetdyn.interventions import MAX_INTERVENTIONS, PRESETS, Schedule, ScheduleError, _short

__all__ = ["load_schedule", "parse_schedule_text", "MAX_FILE_BYTES", "MAX_DEPTH", "MAX_NODES", "MAX_ALIASES", "MAX_INT_CHARS"]

MAX_FILE_BYTES = 1_000_000
MAX_ALIASES = 100
# a schedule is a mapping -> its list of interventions -> one mapping each -> scalars: depth 4;
# the bound leaves room for flow style and a nested name, and nothing more
MAX_DEPTH = 8
# the largest schedule: MAX_INTERVENTIONS mappings of at most 5 fields (a key and a value node
# each) plus the kind, under a two-key top mapping
MAX_NODES = 13 * MAX_INTERVENTIONS + 16
MAX_INT_CHARS = 100


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that counts while it composes: nesting depth, nodes and aliases are
    bounded (the error names the line), and a mapping may not repeat a key."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = self._nodes = self._aliases = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise ScheduleError(f"{self._aliases} YAML aliases by line {line}; a schedule file may use at most {MAX_ALIASES}")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise ScheduleError(
                f"more than {MAX_NODES} YAML nodes by line {line}; a schedule of at most {MAX_INTERVENTIONS} "
                "interventions holds fewer"
            )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ScheduleError(f"nested deeper than {MAX_DEPTH} levels at line {line}; a schedule nests 4 deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node):
        # a base-60 integer (1:2:3) of many parts takes quadratic time to build; no field needs one
        if len(node.value) > MAX_INT_CHARS:
            line = node.start_mark.line + 1
            raise ScheduleError(f"the integer at line {line} has {len(node.value)} characters; at most {MAX_INT_CHARS}")
        return super().construct_yaml_int(node)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class names it
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise ScheduleError(f"duplicate key {_short(key)} at line {line} (first given at line {first}); give each key once")
            seen[key] = line
        return super().construct_mapping(node, deep)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


# a JSON string (escapes included), a bracket, a colon or a newline: enough to follow the
# nesting and the keys of each object
_JSON_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"|[\[\]{}:\n]')


def _check_json_structure(raw: str) -> None:
    """Refuse JSON nested deeper than ``MAX_DEPTH``, or an object that repeats a key, before
    parsing it; the error names the line (and the key)."""
    objects: list[dict | None] = []  # per open bracket: the keys seen so far (None for a list)
    line, last = 1, ""
    for m in _JSON_TOKENS.finditer(raw):
        c = m.group(0)
        if c == "\n":
            line += 1
            continue
        if c in "[{":
            objects.append({} if c == "{" else None)
            if len(objects) > MAX_DEPTH:
                raise ScheduleError(f"nested deeper than {MAX_DEPTH} levels at line {line}; a schedule nests 4 deep")
        elif c in "]}":
            if objects:
                objects.pop()
        elif c == ":" and last.startswith('"') and objects and objects[-1] is not None:
            try:
                key = json.loads(last)
            except ValueError:  # a bad escape: the parser names it
                key = last
            keys = objects[-1]
            if key in keys:
                raise ScheduleError(f"duplicate key {_short(key)} at line {line} (first given at line {keys[key]}); give each key once")
            keys[key] = line
        last = c


def _parse_json(raw: str):
    _check_json_structure(raw)
    return json.loads(raw)


def _parse_yaml(raw: str):
    loader = _BoundedLoader(raw)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def parse_schedule_text(raw: str, json_syntax: bool = False, where: str = "schedule") -> Schedule:
    """A schedule from the text of a file (YAML, or JSON with ``json_syntax``); ``where`` names it in errors."""
    try:
        data = _parse_json(raw) if json_syntax else _parse_yaml(raw)
    except ScheduleError as exc:
        raise ScheduleError(f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any parser error becomes a schedule error
        raise ScheduleError(f"cannot parse schedule file {where}: {' '.join(str(exc).split())[:300]}") from None
    try:
        return Schedule.from_dict(data)
    except ScheduleError as exc:
        raise ScheduleError(f"{where}: {exc}") from exc


def _read(path: Path) -> str:
    """The text of a schedule file: a regular file of at most ``MAX_FILE_BYTES`` bytes of UTF-8."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ScheduleError(f"cannot read schedule file {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise ScheduleError(f"{path} is not a schedule file (a directory)")
    if not stat.S_ISREG(mode):
        raise ScheduleError(f"{path} is not a schedule file (not a regular file: a FIFO, socket or device)")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # the size on disk is not trusted (/proc files report 0)
    except OSError as exc:
        raise ScheduleError(f"cannot read schedule file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ScheduleError(f"{path}: over {MAX_FILE_BYTES} bytes; a schedule file holds at most {MAX_FILE_BYTES}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScheduleError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None


def load_schedule(spec: str | Path) -> Schedule:
    """A preset name, or a path to a JSON/YAML schedule file.

    Example file (YAML)::

        name: nb8-at-60
        interventions:
          - {kind: drop_blocks, t_start: 60, n: 5, nb: 8}
          - {kind: early_stop, t: 18}
    """
    text_spec = str(spec)
    if text_spec in PRESETS:
        return PRESETS[text_spec]
    path = Path(text_spec)
    if not os.path.lexists(path):
        raise ScheduleError(f"{_short(text_spec)} is neither a preset ({', '.join(PRESETS)}) nor an existing file")
    return parse_schedule_text(_read(path), json_syntax=path.suffix == ".json", where=str(path))
