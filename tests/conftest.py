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
