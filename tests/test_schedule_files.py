"""Schedule files: parsed once under bounds, duplicate keys refused, odd paths named."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from unetdyn.interventions import DropBlocks, EarlyStop, Schedule, ScheduleError, load_schedule
from unetdyn.schedule_files import MAX_DEPTH, MAX_FILE_BYTES, MAX_INT_CHARS, MAX_NODES, parse_schedule_text


def _refused_quickly(path: Path, match: str) -> ScheduleError:
    start = time.perf_counter()
    with pytest.raises(ScheduleError, match=match) as e:
        load_schedule(path)
    assert time.perf_counter() - start < 5, f"{path.name} took {time.perf_counter() - start:.1f} s"
    assert str(path) in str(e.value) and len(str(e.value)) < 400
    return e.value


@pytest.mark.parametrize("name,text", [
    ("flow.yaml", "interventions: " + "[" * 300_000 + "]" * 300_000),
    ("mapping.yaml", "{k: " * 120_000 + "1" + "}" * 120_000),
    ("block.yaml", "".join(" " * i + "-\n" for i in range(1000))),
    ("nested.json", '{"interventions": ' + "[" * 450_000 + "]" * 450_000 + "}"),
    ("objects.json", '{"a": ' * 130_000 + "1" + "}" * 130_000),
])
def test_deep_nesting_under_the_size_limit_is_refused_at_once(tmp_path, name, text):
    assert len(text) <= MAX_FILE_BYTES
    path = tmp_path / name
    path.write_text(text)
    _refused_quickly(path, f"nested deeper than {MAX_DEPTH} levels at line")


@pytest.mark.parametrize("name,text", [
    ("flat.yaml", "interventions: [" + "x, " * 300_000 + "x]"),
    ("lines.yaml", "interventions:\n" + "  - 7\n" * 150_000),
    ("keys.yaml", "".join(f"k{i}: 0\n" for i in range(90_000))),
    ("anchors.yaml", "interventions: [" + ", ".join(f"&a{i} 0" for i in range(80_000)) + "]"),
])
def test_a_flat_file_of_many_nodes_is_refused_at_once(tmp_path, name, text):
    assert len(text) <= MAX_FILE_BYTES
    path = tmp_path / name
    path.write_text(text)
    _refused_quickly(path, f"more than {MAX_NODES} YAML nodes by line")


@pytest.mark.parametrize("text", ['{"interventions": [' + "0, " * 320_000 + "0]}",
                                  '{"name": "x", "interventions": [' + '"ab", ' * 150_000 + '"ab"]}'])
def test_a_flat_json_list_is_read_in_one_pass(tmp_path, text):
    path = tmp_path / "flat.json"
    path.write_text(text)
    _refused_quickly(path, "a schedule holds at most 1000 interventions")


def test_a_long_base_60_integer_is_refused_before_it_is_built(tmp_path):
    path = tmp_path / "sexagesimal.yaml"
    path.write_text("interventions: [{kind: early_stop, t: " + "5:" * 300_000 + "9}]")
    _refused_quickly(path, f"the integer at line 1 has 600001 characters; at most {MAX_INT_CHARS}")
    path.write_text("interventions: [{kind: early_stop, t: 1:0}]")  # 60: short ones are integers still
    assert load_schedule(path) == Schedule((EarlyStop(t=60),))


@pytest.mark.parametrize("name,text,match", [
    ("twice.yaml", "interventions: []\nname: a\ninterventions: []\n",
     r"duplicate key 'interventions' at line 3 \(first given at line 1\)"),
    ("twice.yaml", "interventions:\n  - kind: drop_blocks\n    t_start: 50\n    n: 3\n    nb: 6\n    t_start: 40\n",
     r"duplicate key 't_start' at line 6 \(first given at line 3\)"),
    ("twice.yaml", "interventions: [{kind: drop_blocks, t_start: 50, n: 3, nb: 6, nb: 4}]", r"duplicate key 'nb' at line 1"),
    ("twice.yaml", "interventions: [{kind: early_stop, t: 9, 't': 9}]", r"duplicate key 't' at line 1"),
    ("twice.json", '{"interventions": [],\n "name": "a",\n "interventions": []}',
     r"duplicate key 'interventions' at line 3 \(first given at line 1\)"),
    ("twice.json", '{"interventions": [\n {"kind": "early_stop", "t": 20},\n {"kind": "drop_blocks", "t_start": 50, "n": 3, "nb": 6,\n  "n": 4}]}',
     r"duplicate key 'n' at line 4 \(first given at line 3\)"),
    ("twice.json", '{"n\\u0061me": "a", "name": "b", "interventions": []}', r"duplicate key 'name' at line 1"),
])
def test_a_key_given_twice_is_refused_naming_key_and_line(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ScheduleError, match=match) as e:
        load_schedule(path)
    assert str(path) in str(e.value)


def test_one_key_in_several_mappings_is_no_duplicate():
    text = '{"name": "b", "interventions": [{"kind": "drop_blocks", "t_start": 50, "n": 3, "nb": 6},' \
           ' {"kind": "drop_blocks", "t_start": 40, "n": 3, "nb": 4}]}'
    s = parse_schedule_text(text, json_syntax=True)
    assert s.interventions == (DropBlocks(t_start=50, n=3, nb=6), DropBlocks(t_start=40, n=3, nb=4))
    yaml_text = "name: b\ninterventions:\n  - {kind: drop_blocks, t_start: 50, n: 3, nb: 6}\n  - {kind: early_stop, t: 9}\n"
    assert parse_schedule_text(yaml_text).interventions == (DropBlocks(t_start=50, n=3, nb=6), EarlyStop(t=9))
    # a key's text inside a string value is no key
    with pytest.raises(ScheduleError, match="schedule.name="):
        parse_schedule_text('{"name": "a \\"name\\": b", "interventions": []}', json_syntax=True)


def test_a_fifo_or_a_symlink_to_a_device_is_refused_without_reading(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # opening it would block until a writer came
    _refused_quickly(fifo, "not a regular file")
    link = tmp_path / "zeros.yaml"
    link.symlink_to("/dev/zero")
    _refused_quickly(link, "not a regular file")


def test_a_path_that_cannot_be_read_is_an_error_naming_it(tmp_path):
    dangling = tmp_path / "gone.yaml"
    dangling.symlink_to(tmp_path / "nowhere.yaml")
    _refused_quickly(dangling, "cannot read schedule file .*gone.yaml: No such file or directory")
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    _refused_quickly(loop, "cannot read schedule file .*loop.yaml")
    directory = tmp_path / "dir.yaml"
    directory.mkdir()
    _refused_quickly(directory, "dir.yaml is not a schedule file")


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("proc", ["/proc/self/mem", "/proc/self/clear_refs", "/proc/self/environ"])
def test_proc_files_that_fail_to_read_or_are_not_schedules_are_named(proc):
    with pytest.raises(ScheduleError) as e:
        load_schedule(proc)
    assert proc in str(e.value) and len(str(e.value)) < 400
