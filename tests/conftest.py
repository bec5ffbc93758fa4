"""Shared fixtures: a small built-in Unet with random weights (no zero-initialised layers)."""

from __future__ import annotations

import pytest
import torch

from unetdyn.backends.builtin import BuiltinConfig, BuiltinUnet


def random_unet(model_channels: int = 16, seed: int = 0) -> BuiltinUnet:
    """A tiny built-in Unet whose zero-initialised layers are re-randomised, so every block matters."""
    torch.manual_seed(seed)
    net = BuiltinUnet(BuiltinConfig(model_channels=model_channels, head_channels=16))
    with torch.no_grad():
        for p in net.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.05)
    return net.eval()


@pytest.fixture(scope="session")
def unet() -> BuiltinUnet:
    return random_unet()


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: on a shared 2-core machine two OpenMP threads are several times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY_CONFIG = BuiltinConfig(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_ds=(2,), head_channels=8,
                            norm_groups=4)


def write_weights(path, tensors=None, config=None, metadata=None):
    """A weights file as ``export_weights`` writes one, with its ``.sha256`` computed for it.

    ``tensors``: the state dict (default: a random ``TINY_CONFIG`` model's); ``config``: the
    metadata's ``config`` text (default: ``TINY_CONFIG`` as JSON); ``metadata``: all of it.
    """
    import json

    from safetensors.torch import save_file

    from unetdyn.backends.builtin_weights import WEIGHTS_FORMAT, checksum_path, sha256_file

    if tensors is None:
        tensors = tiny_state()
    if metadata is None:
        metadata = {"format": WEIGHTS_FORMAT, "config": json.dumps(TINY_CONFIG.to_dict()) if config is None else config}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    checksum_path(path).write_text(f"{sha256_file(path)}  {path.name}\n")
    return path


def tiny_state() -> dict[str, torch.Tensor]:
    """The state dict of a ``TINY_CONFIG`` model with random weights (the same on every call)."""
    torch.manual_seed(0)
    return BuiltinUnet(TINY_CONFIG).state_dict()


@pytest.fixture()
def tiny_weights(tmp_path):
    """A valid weights file of a ``TINY_CONFIG`` model."""
    return write_weights(tmp_path / "tiny.safetensors")
