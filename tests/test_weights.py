"""Loading weights: a file whose checksum is right is still checked, metadata and tensors, before use."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unetdyn.backends.builtin import MAX_PARAMETERS, BuiltinConfig, BuiltinUnet
from unetdyn.backends.builtin_weights import (
    WEIGHTS_FORMAT,
    WeightsError,
    config_from_metadata,
    load_builtin,
    shipped_config,
)

from .conftest import TINY_CONFIG, tiny_state, write_weights

BASE = TINY_CONFIG.to_dict()


def test_a_good_file_loads_its_tensors_as_float32(tiny_weights):
    net = load_builtin(tiny_weights)
    assert net.config == TINY_CONFIG and net.weights_sha256
    for k, v in tiny_state().items():
        assert torch.equal(net.state_dict()[k], v), k


@pytest.mark.parametrize("config,match", [
    (json.dumps({**BASE, "depth": 3}), r"unknown field\(s\) \['depth'\]"),
    (json.dumps("small"), r"config must be a mapping of field: value, got str"),
    (json.dumps(7), r"config must be a mapping of field: value, got int"),
    (json.dumps({**BASE, "num_res_blocks": "two"}), r"config.num_res_blocks must be an integer in 1..32, got 'two'"),
    (json.dumps({**BASE, "in_channels": [3]}), r"config.in_channels must be an integer in 1..64"),
    (json.dumps({**BASE, "head_channels": 0}), r"config.head_channels=0 is out of range 1..4096"),
    (json.dumps({**BASE, "dropout": 2.5}), r"config.dropout=2.5 must be a number in \[0.0, 1.0\)"),
    (json.dumps({**BASE, "channel_mult": []}), r"config.channel_mult must be a list of 1..8 entries"),
    (json.dumps({**BASE, "class_names": ["a", "b", "a"]}), r"config.class_names=.* holds a name twice"),
    (json.dumps({**BASE, "image_size": 33}), r"config.image_size=33 must be divisible by 2"),
    (json.dumps({**BASE, "model_channels": 6}), r"config.norm_groups=4 must divide .*; 6 is not divisible"),
    (json.dumps({**BASE, "model_channels": 5, "norm_groups": 5}), r"config.model_channels=5 must be even"),
    (json.dumps({**BASE, "model_channels": 24, "norm_groups": 4, "head_channels": 9}),
     r"config.head_channels=9 splits the attention width 48 into 5 unequal heads"),
])
def test_a_bad_config_is_a_weights_error_naming_file_and_field(tmp_path, config, match):
    path = write_weights(tmp_path / "w.safetensors", config=config)
    with pytest.raises(WeightsError, match=match) as e:
        load_builtin(path)
    assert str(path) in str(e.value)
    with pytest.raises(WeightsError, match=match):
        shipped_config(path)


def test_metadata_without_a_config_or_with_a_config_that_is_not_json(tmp_path):
    path = write_weights(tmp_path / "w.safetensors", metadata={"format": WEIGHTS_FORMAT, "steps": "10"})
    with pytest.raises(WeightsError, match=f"{path} has no metadata 'config'"):
        load_builtin(path)
    path = write_weights(tmp_path / "w.safetensors", config="{'image_size': 32}")  # a Python dict, not JSON
    with pytest.raises(WeightsError, match=f"{path}: metadata 'config' is not JSON"):
        load_builtin(path)
    path = write_weights(tmp_path / "w.safetensors", config='{"image_size": ' * 50_000)
    with pytest.raises(WeightsError, match="is not JSON"):
        load_builtin(path)
    path = write_weights(tmp_path / "w.safetensors", metadata={"format": "someone-else/2", "config": "{}"})
    with pytest.raises(WeightsError, match="not a built-in Unet weights file: metadata 'format' is 'someone-else/2'"):
        load_builtin(path)


@pytest.mark.parametrize("change", [{"model_channels": 4000}, {"model_channels": 512, "num_res_blocks": 32},
                                    {"class_names": [f"c{i}" for i in range(10_000)], "model_channels": 2048}])
def test_a_config_too_big_to_hold_is_refused_before_anything_is_allocated(tmp_path, change):
    path = write_weights(tmp_path / "w.safetensors", config=json.dumps({**BASE, **change}))
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=f"parameters; the built-in Unet holds at most {MAX_PARAMETERS:,}") as e:
        load_builtin(path)
    assert time.perf_counter() - start < 5
    assert str(path) in str(e.value)
    with pytest.raises(ValueError, match="at most"):  # nor can such a model be built by hand
        BuiltinUnet(BuiltinConfig(**{**BASE, **change}))


def test_a_checksum_file_that_is_not_utf8_is_an_error_naming_it(tiny_weights):
    sums = tiny_weights.with_name(tiny_weights.name + ".sha256")
    sums.write_bytes(b"\xc3\x28" + b"0" * 62 + b"  tiny.safetensors\n")
    with pytest.raises(WeightsError, match=f"checksum file {sums} is not UTF-8 text"):
        load_builtin(tiny_weights)


@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8, torch.int64])
def test_tensors_that_are_not_floating_point_are_refused(tmp_path, dtype):
    state = {k: v.to(dtype) for k, v in tiny_state().items()}
    path = write_weights(tmp_path / "w.safetensors", tensors=state)
    with pytest.raises(WeightsError, match=r"tensor \S+ is [IU]\d+; weights must be floating point") as e:
        load_builtin(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("bad,dtype", [(float("inf"), torch.float32), (float("-inf"), torch.float16),
                                       (1e39, torch.float64)])  # 1e39 overflows float32
def test_a_tensor_with_an_infinite_value_is_refused(tmp_path, bad, dtype):
    state = {k: v.to(dtype) for k, v in tiny_state().items()}
    name = "middle_block.0.conv1.weight"
    state[name].view(-1)[7] = bad
    path = write_weights(tmp_path / "w.safetensors", tensors=state)
    with pytest.raises(WeightsError, match=f"{path}: tensor {name} holds 1 NaN or infinite value"):
        load_builtin(path)


def test_tensors_must_have_the_configs_names_and_shapes(tmp_path):
    name = "out.2.weight"
    state = tiny_state()
    state[name] = state[name][:, :4].contiguous()
    path = write_weights(tmp_path / "w.safetensors", tensors=state)
    with pytest.raises(WeightsError, match=rf"tensor {name} has shape \[6, 4, 3, 3\], its config gives \[6, 8, 3, 3\]"):
        load_builtin(path)
    state = tiny_state()
    state["extra.bias"] = torch.zeros(2)
    del state["time_embed.0.bias"]
    path = write_weights(tmp_path / "w.safetensors", tensors=state)
    with pytest.raises(WeightsError, match=r"missing \['time_embed.0.bias'\]; unexpected \['extra.bias'\]"):
        load_builtin(path)


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_weights_path_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path, kind):
    path = tmp_path / "w.safetensors"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    with pytest.raises(WeightsError, match=f"weights file {path} is not a regular file"):
        load_builtin(path, verify=False)
    good = write_weights(tmp_path / "good.safetensors")
    sums = good.with_name(good.name + ".sha256")
    sums.unlink()
    os.mkfifo(sums)
    with pytest.raises(WeightsError, match=f"checksum file {sums} is not a regular file"):
        load_builtin(good)


# -- any metadata: a model that runs, or a WeightsError ----------------------------------------


_values = st.one_of(st.integers(-3, 70), st.integers(-10**6, 10**7), st.booleans(), st.none(), st.text(max_size=6),
                    st.floats(allow_nan=True), st.lists(st.integers(-1, 9), max_size=4),
                    st.lists(st.text(max_size=3), max_size=3))
_plausible = {  # each value in its field's range; together they may still not make a model
    "image_size": st.sampled_from([8, 12, 16, 24, 32]),
    "in_channels": st.integers(1, 4),
    "model_channels": st.sampled_from([2, 4, 6, 8, 12, 16, 18]),
    "channel_mult": st.lists(st.integers(1, 5), min_size=1, max_size=3),
    "num_res_blocks": st.integers(1, 2),
    "attention_ds": st.lists(st.sampled_from([1, 2, 4, 8]), max_size=3),
    "head_channels": st.sampled_from([3, 4, 5, 8, 9, 16]),
    "norm_groups": st.sampled_from([1, 2, 3, 4, 6]),
    "dropout": st.floats(0, 0.5),
    "class_names": st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=4),
}
_configs = st.one_of(
    st.fixed_dictionaries(_plausible),
    st.tuples(st.fixed_dictionaries(_plausible), st.sampled_from([*_plausible, "extra"]), _values).map(
        lambda c: {**c[0], c[1]: c[2]}),  # one field out of its range or type, or unknown
    st.fixed_dictionaries({}, optional=_plausible),  # fields left out take their defaults
    _values,
)
_metadata = st.one_of(
    st.fixed_dictionaries({"format": st.just(WEIGHTS_FORMAT), "config": _configs.map(json.dumps)}),
    st.fixed_dictionaries({}, optional={"format": st.sampled_from([WEIGHTS_FORMAT, "x"]),
                                        "config": st.one_of(_configs.map(json.dumps), st.text(max_size=20)),
                                        "steps": st.text(max_size=4)}),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_metadata)
def test_any_metadata_is_a_model_that_runs_or_a_weights_error(meta):
    try:
        config = config_from_metadata("w.safetensors", meta)
    except WeightsError as exc:
        assert "w.safetensors" in str(exc) and len(str(exc)) < 800
        return
    with torch.device("meta"):  # shapes only: builds and runs any config the check lets through
        net = BuiltinUnet(config)
        x = torch.zeros(2, config.in_channels, config.image_size, config.image_size)
        out = net(x, torch.tensor([0, 999]), torch.tensor([0, config.num_classes]))
    assert out.shape == (2, 2 * config.in_channels, config.image_size, config.image_size)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_configs.filter(lambda c: isinstance(c, dict)))
def test_any_config_in_a_file_loads_or_is_a_weights_error(tmp_path, config):
    try:
        cfg = BuiltinConfig.from_dict(config)
        state = {k: v.contiguous() for k, v in BuiltinUnet(cfg).state_dict().items()} if cfg.num_parameters() < 10**6 else None
    except (ValueError, TypeError):
        state = tiny_state()  # the tensors of another config: the load must refuse it all the same
        cfg = None
    if state is None:
        return
    path = write_weights(tmp_path / "w.safetensors", tensors=state, config=json.dumps(config))
    try:
        net = load_builtin(path)
    except WeightsError as exc:
        assert cfg is None and str(path) in str(exc)
        return
    assert net.config == cfg
