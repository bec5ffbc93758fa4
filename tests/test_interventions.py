"""Interventions are data: validation names the field and range; round-trips; the presets."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from unetdyn.interventions import (
    PRESETS,
    DropBlocks,
    DropGuidance,
    EarlyStop,
    Schedule,
    ScheduleError,
    SkipSteps,
    ZeroSkips,
    load_schedule,
    preset,
)

K, NB, NS = 100, 16, 16


def compile_(*ivs):
    return Schedule(tuple(ivs)).compile(K, NB, NS)


def test_empty_schedule_is_one_plain_step_per_t():
    steps = compile_()
    assert [s.t for s in steps] == list(range(100, 0, -1))
    assert all(s.next_t == s.t - 1 and s.surgery == (0, 0, "zeros", True) and not s.stop for s in steps)


def test_skip_steps_jumps_and_removes_calls():
    steps = compile_(SkipSteps(t_start=60, n=5))
    by_t = {s.t: s for s in steps}
    assert by_t[60].next_t == 55
    assert not set(range(56, 60)) & set(by_t)
    assert len(steps) == 96  # n - 1 = 4 calls saved


def test_skip_steps_n1_is_the_plain_step():
    assert compile_(SkipSteps(t_start=40, n=1)) == compile_()


def test_windows_cover_t_start_down_to_t_start_minus_n_plus_1():
    steps = {s.t: s for s in compile_(DropBlocks(t_start=65, n=5, nb=6), ZeroSkips(t_start=30, n=2, ns=3))}
    assert [t for t, s in steps.items() if s.drop_blocks == 6] == [65, 64, 63, 62, 61]
    assert [t for t, s in steps.items() if s.zero_skips == 3] == [30, 29]


def test_drop_guidance_window():
    steps = {s.t: s for s in compile_(DropGuidance(t_start=10, n=10))}
    assert [t for t, s in steps.items() if not s.guided] == list(range(10, 0, -1))
    assert steps[11].guided and steps[10].surgery == (0, 0, "zeros", False)


def test_early_stop_ends_after_that_call():
    steps = compile_(EarlyStop(t=18))
    assert steps[-1].t == 18 and steps[-1].stop and len(steps) == 83


def test_paper_shortcut_reading():
    steps = preset("paper-shortcut").compile(K, NB, NS)
    by_nb = {nb: [s.t for s in steps if s.drop_blocks == nb] for nb in (6, 8)}
    assert by_nb[6] == list(range(65, 60, -1))
    assert by_nb[8] == [60, 59, *range(47, 40, -1), *range(31, 24, -1)]
    assert len(steps) == 83 and steps[-1].t == 18 and steps[-1].stop
    assert preset("full").compile(K, NB, NS) == compile_()


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: DropBlocks(t_start=60, n=5, nb=0), r"drop_blocks.nb=0 must be >= 1"),
        (lambda: SkipSteps(t_start=60, n=0), r"skip_steps.n=0 must be >= 1"),
        (lambda: SkipSteps(t_start=3, n=5), r"skip_steps.n=5 is out of range 1..3"),
        (lambda: ZeroSkips(t_start=0, n=1, ns=2), r"zero_skips.t_start=0 must be >= 1"),
        (lambda: ZeroSkips(t_start=4, n=5, ns=2), r"zero_skips.n=5 is out of range 1..4"),
        (lambda: EarlyStop(t=2.5), r"early_stop.t must be an integer"),
        (lambda: DropBlocks(t_start=60, n=5, nb=2, fill="mean"), r"drop_blocks.fill='mean' is not one of zeros, cache"),
    ],
)
def test_field_errors_name_field_and_range(make, match):
    with pytest.raises(ScheduleError, match=match):
        make()


@pytest.mark.parametrize(
    "ivs,match",
    [
        ((DropBlocks(t_start=60, n=5, nb=17),), r"drop_blocks.nb=17 is out of range 1..16"),
        ((ZeroSkips(t_start=60, n=5, ns=20),), r"zero_skips.ns=20 is out of range 1..16"),
        ((DropBlocks(t_start=101, n=5, nb=2),), r"drop_blocks.t_start=101 is out of range 1..100"),
        ((EarlyStop(t=120),), r"early_stop.t=120 is out of range 1..100"),
        ((DropBlocks(t_start=60, n=5, nb=2), DropBlocks(t_start=58, n=5, nb=4)), r"drop_blocks windows overlap at t=58"),
        ((SkipSteps(t_start=60, n=5), DropBlocks(t_start=57, n=1, nb=2)), r"acts at t=57, a step that skip_steps\(t_start=60, n=5\) removes"),
        ((EarlyStop(t=20), DropBlocks(t_start=10, n=2, nb=2)), r"acts after early_stop.t=20"),
        ((EarlyStop(t=20), EarlyStop(t=30)), r"one early_stop"),
        ((DropGuidance(t_start=10, n=5), DropGuidance(t_start=8, n=2)), r"drop_guidance windows overlap at t=8"),
        ((DropBlocks(t_start=100, n=2, nb=2, fill="cache"),), r"fill='cache' at t=100"),
    ],
)
def test_schedule_errors(ivs, match):
    with pytest.raises(ScheduleError, match=match):
        Schedule(ivs).compile(K, NB, NS)


def test_records_are_frozen_and_hashable():
    s = preset("paper-shortcut")
    assert hash(s) == hash(Schedule(s.interventions, name="paper-shortcut"))
    with pytest.raises(AttributeError):
        s.interventions[0].nb = 3  # type: ignore[misc]


@pytest.mark.parametrize("name", list(PRESETS))
def test_json_and_yaml_round_trip(name, tmp_path):
    s = preset(name)
    assert Schedule.from_dict(json.loads(s.to_json())) == s
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(s.to_dict()))
    assert load_schedule(f) == s
    g = tmp_path / "s.json"
    g.write_text(s.to_json())
    assert load_schedule(g) == s


@pytest.mark.parametrize(
    "content,match",
    [
        ("interventions: [{kind: teleport, t: 3}]", r"kind='teleport' is not one of skip_steps, zero_skips, drop_blocks, early_stop, drop_guidance"),
        ("interventions: [{kind: drop_blocks, t_start: 60, n: 5}]", r"drop_blocks is missing field\(s\) \['nb'\]"),
        ("interventions: [{kind: early_stop, t: 3, when: now}]", r"early_stop has no field\(s\) \['when'\]"),
        ("interventions: {kind: early_stop}", r"must be a list"),
        ("steps: []", r"unknown field\(s\) \['steps'\]|must be a mapping with a list 'interventions'"),
        ("interventions: [1, 2", r"cannot parse schedule file"),
    ],
)
def test_malformed_schedule_files(tmp_path, content, match):
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    with pytest.raises(ScheduleError, match=match):
        load_schedule(f)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ScheduleError, match="unknown preset 'fastest'; presets: full, paper-shortcut"):
        preset("fastest")
    with pytest.raises(ScheduleError, match="neither a preset"):
        load_schedule("no-such-file.yaml")


# -- what a schedule file may hold --------------------------------------------------------------


def test_an_intervention_past_an_early_stop_is_refused():
    with pytest.raises(ScheduleError, match="acts after early_stop.t=18"):
        Schedule((DropBlocks(t_start=20, n=5, nb=8), EarlyStop(t=18))).compile(100, 16, 16)
    Schedule((DropBlocks(t_start=23, n=5, nb=8), EarlyStop(t=18))).compile(100, 16, 16)  # ends at 19: fine


def test_cache_fill_needs_an_earlier_step_that_computed_the_block():
    with pytest.raises(ScheduleError, match="no earlier step computes decoder block 8"):
        Schedule((DropBlocks(t_start=100, n=1, nb=8), DropBlocks(t_start=99, n=5, nb=8, fill="cache"))).compile(100, 16, 16)
    Schedule((DropBlocks(t_start=100, n=1, nb=6), DropBlocks(t_start=99, n=5, nb=8, fill="cache"))).compile(100, 16, 16)


@pytest.mark.parametrize("name", ["../../evil", "/abs", ".hidden", "a/b", "x" * 81, "tab\there"])
def test_a_name_that_is_not_a_plain_folder_name_is_refused(name):
    with pytest.raises(ScheduleError, match="schedule.name"):
        Schedule((), name=name)


def test_names_and_counts_from_files_are_checked_before_anything_is_built(tmp_path):
    with pytest.raises(ScheduleError, match="name must be a string"):
        Schedule.from_dict({"name": ["a", "b"], "interventions": []})
    with pytest.raises(ScheduleError, match="at most 1000 interventions"):
        Schedule.from_dict({"interventions": [{"kind": "early_stop", "t": 1}] * 1001})
    with pytest.raises(ScheduleError, match="kind=\\['drop_blocks'\\] is not one of"):
        Schedule.from_dict({"interventions": [{"kind": ["drop_blocks"]}]})
    big = tmp_path / "big.yaml"
    big.write_text("#" * 1_000_001)
    with pytest.raises(ScheduleError, match="at most 1000000"):
        load_schedule(big)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x]\nb: [" + ", ".join(["*a"] * 101) + "]\ninterventions: []\n")
    with pytest.raises(ScheduleError, match="101 YAML aliases"):
        load_schedule(bomb)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScheduleError, match="bin.yaml: not a UTF-8 text file"):
        load_schedule(binary)


# -- any schedule dict: a valid schedule or a ScheduleError naming what is wrong ------------------


_values = st.one_of(st.integers(-5, 120), st.booleans(), st.none(), st.text(max_size=8), st.floats(allow_nan=True),
                    st.lists(st.integers(0, 3), max_size=3))
_fields = st.sampled_from(["t_start", "n", "nb", "ns", "t", "fill", "kind", "extra", ""])
_interventions = st.one_of(
    st.fixed_dictionaries({"kind": st.sampled_from(["skip_steps", "zero_skips", "drop_blocks", "early_stop", "drop_guidance"])},
                          optional={"t_start": st.integers(-2, 110), "n": st.integers(-2, 40), "nb": st.integers(-1, 20),
                                    "ns": st.integers(-1, 20), "t": st.integers(-2, 110), "fill": st.sampled_from(["zeros", "cache", "x"])}),
    st.dictionaries(_fields, _values, max_size=5),
    _values,
)
_schedules = st.one_of(
    st.fixed_dictionaries({"interventions": st.lists(_interventions, max_size=6)},
                          optional={"name": st.one_of(st.text(max_size=12), _values)}),
    st.dictionaries(st.sampled_from(["interventions", "name", "other"]), _values, max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(_schedules)
def test_any_schedule_dict_is_a_schedule_or_a_schedule_error(d):
    try:
        Schedule.from_dict(d).compile(K, NB, NS)
    except ScheduleError as exc:
        assert str(exc) and len(str(exc)) < 600
