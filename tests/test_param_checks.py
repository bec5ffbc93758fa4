"""Chapter parameters: emptiness and ranges are checked before anything runs, naming the parameter."""

from __future__ import annotations

import math

import pytest

from unetdyn.paper.book import BookError, check_params
from unetdyn.paper.param_checks import RULES, check_values

DECLARED = {"steps": 100, "n_values": [2, 5], "image_t_starts": [95, 50], "thresholds": [0.8], "guidance": 3.0,
            "paper_t_starts": {2: 70}, "archs": ["builtin"], "n_samples": 100, "relax": [0, 1], "device": None,
            "budget": "ssim>=0.8", "other_budgets": ["ssim>=0.8"], "compute": False, "precision": "fp32"}


@pytest.mark.parametrize("params,expect", [
    ({"n_values": []}, "parameter n_values of ch must be a non-empty list of values in 1..100 (steps), got []"),
    ({"archs": []}, "parameter archs of ch must be a non-empty list, got []"),
    ({"paper_t_starts": {}}, "parameter paper_t_starts of ch must be a non-empty mapping"),
    ({"budget": "  "}, "parameter budget of ch must be a non-empty string"),
    ({"image_t_starts": [95, 101]}, "parameter image_t_starts of ch entry 1 (101) must be an integer in 1..100 (steps)"),
    ({"image_t_starts": [40], "steps": 30}, "entry 0 (40) must be an integer in 1..30 (steps)"),
    ({"relax": [-1]}, "parameter relax of ch entry 0 (-1) must be an integer in 0..100 (steps)"),
    ({"thresholds": [0.8, 1.25]}, "parameter thresholds of ch entry 1 (1.25) must be a finite number in 0..1"),
    ({"guidance": math.inf}, "parameter guidance of ch must be a finite number >= 0, got inf"),
    ({"guidance": -0.5}, "must be a finite number >= 0"),
    ({"n_samples": 0}, "parameter n_samples of ch must be an integer >= 1, got 0"),
    ({"steps": 1001}, "parameter steps of ch must be an integer in 1..1000, got 1001"),
    ({"paper_t_starts": {3: 0}}, "must map integers >= 1 to integers in 1..100 (steps); 3 does not"),
    ({"other_budgets": ["ssim>=0.8", ""]}, "parameter other_budgets of ch entry 1 ('') must be a non-empty string"),
    ({"device": "meta"}, "parameter device of ch must name a device to sample on"),
    ({"precision": "fp16"}, "parameter precision of ch must be one of 'fp32', 'bf16', got 'fp16'"),
])
def test_a_bad_value_is_named_with_its_range(params, expect):
    problem = check_values("ch", params, DECLARED, {k: f"-p {k}" for k in params})
    assert problem is not None and expect in problem
    assert problem.startswith(f"-p {next(iter(params))}: ")
    with pytest.raises(BookError, match="parameter .* of ch"):
        check_params("ch", params, DECLARED)


@pytest.mark.parametrize("params", [
    {"n_values": [1, 100]}, {"image_t_starts": [150], "steps": 200}, {"relax": [0]}, {"thresholds": [0, 1]},
    {"other_budgets": []}, {"device": "cpu"}, {"device": None}, {"device": "cuda:1"}, {"compute": True},
    {"paper_t_starts": {8: 60}}, {"guidance": 0}, {"steps": 1}, {"precision": "bf16"},
])
def test_values_in_range_pass(params):
    assert check_values("ch", params, DECLARED, {}) is None
    check_params("ch", params, DECLARED)


def test_every_rule_refuses_an_empty_or_missing_value_where_it_must():
    for key, rule in RULES.items():
        empty = {"int": None, "float": None, "str": "", "mapping": {}, "device": 3, "choice": ""}.get(rule.kind, [])
        problem = check_values("ch", {key: empty}, {"steps": 100}, {})
        assert (problem is None) == (rule.kind in ("ints", "floats", "strs") and not rule.nonempty), key
