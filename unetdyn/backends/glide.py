"""GLIDE's base model (glide-text2im's ``Text2ImUNet``, 64x64) behind the :class:`~unetdyn.unet.Unet` protocol.

glide-text2im is a dependency, not part of this project: it is not on PyPI, install it from
a checkout of its public repository ``openai/glide-text2im`` (``pip install <checkout>``).
This module imports without it; building a :class:`GlideUnet` then raises ``ImportError``.

Only the network is used; unetdyn's own sampler replaces glide-text2im's diffusion. The
blocks are glide-text2im's modules, called in the order of ``Text2ImUNet.forward``; the
one difference is that the text transformer runs once per prompt in :meth:`GlideUnet.condition`
instead of on every call (GLIDE's notebook runs it every step, ``cache_text_emb=False``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from unetdyn.noise import Diffusion
from unetdyn.unet import exact_float32

__all__ = ["INSTALL_HINT", "GlideContext", "GlideUnet"]

INSTALL_HINT = (
    "GlideUnet needs glide-text2im, which is not on PyPI. Install it from a checkout of its public "
    "repository openai/glide-text2im, keeping your torch:\n"
    "    git clone https://github.com/openai/glide-text2im\n"
    "    pip install --no-deps ./glide-text2im\n"
    "    pip install attrs filelock ftfy regex requests tqdm Pillow numpy\n"
    "(pyyaml, which its CLIP module needs, is not needed for the base model)."
)


def _glide(module: str = "") -> Any:
    """Import ``glide_text2im[.module]``, or raise ImportError with install instructions."""
    name = "glide_text2im" + (f".{module}" if module else "")
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"cannot import {name} ({exc}).\n{INSTALL_HINT}") from exc


class GlideContext(NamedTuple):
    """Per-call context: the block embedding (time + text), the text tokens' encoding, x's dtype."""

    emb: torch.Tensor
    xf_out: torch.Tensor
    out_dtype: torch.dtype


class GlideUnet:
    """GLIDE's base ``Text2ImUNet`` as a :class:`~unetdyn.unet.Unet`: 16 encoder blocks, 16 decoder blocks.

    Args:
        model: a base-model ``Text2ImUNet`` (as built by :meth:`build`), in eval mode.
        image_size: the resolution it runs at (64 for the base model).

    Example:
        >>> from unetdyn.unet import Surgery, forward
        >>> glide = GlideUnet.from_checkpoint("glide_model_cache/base.pt")  # doctest: +SKIP
        >>> cond = glide.condition(["a corgi in a field", None])           # doctest: +SKIP
        >>> x, t = torch.randn(2, 3, 64, 64), torch.tensor([999, 999])      # doctest: +SKIP
        >>> forward(glide, x, t, cond, Surgery(drop_blocks=8)).out.shape    # doctest: +SKIP
        torch.Size([2, 6, 64, 64])
    """

    def __init__(self, model: nn.Module, image_size: int = 64):
        self.model = model
        n_in, n_out = len(model.input_blocks), len(model.output_blocks)
        self.skips_pushed: tuple[int, ...] = (1,) * n_in
        self.skips_popped: tuple[int, ...] = (1,) * n_out
        self.image_shape: tuple[int, int, int] = (model.in_channels, image_size, image_size)
        self.prediction = "eps_var"  # GLIDE's base model: eps, then the learned variance interpolation
        self.diffusion = Diffusion()  # cosine, 1000 training steps, learned variance, x0 clipped
        self.conditional = True
        self._out_shapes = _decoder_shapes(model, image_size)
        self._timestep_embedding = _glide("nn").timestep_embedding

    # -- construction ----------------------------------------------------------------------

    @staticmethod
    def build(device: str | torch.device = "cpu", use_fp16: bool = False, init: bool = False) -> nn.Module:
        """GLIDE's base ``Text2ImUNet`` built as its notebook builds it (weights not loaded).

        ``model_and_diffusion_defaults()`` with ``timestep_respacing='100'``; the model is in
        eval mode with gradients off and converted with ``convert_to_fp16()`` if asked (CUDA
        only, as in the notebook; GLIDE's fp16 keeps the time embedding and ``out`` in fp32).
        ``init`` fills the embeddings GLIDE leaves uninitialised (``torch.empty``) with N(0, 0.01^2).
        """
        device = torch.device(device)
        if use_fp16 and device.type != "cuda":
            raise ValueError(f"use_fp16=True needs a CUDA device (as in GLIDE's notebook), got {device}")
        mc = _glide("model_creation")
        options = mc.model_and_diffusion_defaults()
        options.update(use_fp16=use_fp16, timestep_respacing="100")
        model, _diffusion = mc.create_model_and_diffusion(**options)
        model.eval().requires_grad_(False)
        if init:
            for name in ("positional_embedding", "padding_embedding"):
                if hasattr(model, name):
                    nn.init.normal_(getattr(model, name), std=0.01)
        if use_fp16:
            model.convert_to_fp16()
        return model.to(device)

    @classmethod
    def from_random(cls, device: str | torch.device = "cpu", use_fp16: bool = False, seed: int | None = 0) -> GlideUnet:
        """The architecture with random weights (no download), e.g. for cost measurements.

        GLIDE's zero-initialised output layers stay zero, so the output is zero. ``seed``
        makes the weights reproducible without touching the global RNG.
        """
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            return cls(cls.build(device, use_fp16, init=True))

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", use_fp16: bool = False) -> GlideUnet:
        """Load GLIDE's base checkpoint (``base.pt``, a state dict) from ``path``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"no GLIDE base checkpoint at {path}; download base.pt from "
                f"{_glide('download').MODEL_PATHS['base']} or use GlideUnet.from_pretrained()"
            )
        model = cls.build(device, use_fp16)
        model.load_state_dict(torch.load(path, map_location=torch.device(device), weights_only=True))
        return cls(model)

    @classmethod
    def from_pretrained(
        cls, device: str | torch.device = "cpu", use_fp16: bool = False, cache_dir: str | None = None
    ) -> GlideUnet:
        """GLIDE's base checkpoint through glide-text2im's own loader.

        It downloads ``base.pt`` (~1.5 GB) into ``cache_dir`` (default ``./glide_model_cache``)
        on first use; without network access this raises ``RuntimeError`` naming the URL.
        """
        download = _glide("download")
        try:
            state = download.load_checkpoint("base", torch.device(device), cache_dir=cache_dir)
        except Exception as exc:  # network and unpickling errors alike
            where = cache_dir or "./glide_model_cache"
            raise RuntimeError(
                f"could not get GLIDE's base checkpoint {download.MODEL_PATHS['base']} ({type(exc).__name__}: {exc}). "
                f"Download base.pt where the network allows, then use GlideUnet.from_checkpoint(path); "
                f"delete a partial or corrupt base.pt from {where}."
            ) from exc
        model = cls.build(device, use_fp16)
        model.load_state_dict(state)
        return cls(model)

    # -- the Unet protocol (unetdyn.unet) --------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.model.time_embed[0].weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def tokenize(self, prompts: Sequence[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded tokens ``[B, text_ctx]`` and mask as GLIDE's notebook builds them; ``None`` = empty prompt."""
        tok, ctx = self.model.tokenizer, self.model.text_ctx
        rows = []
        for p in prompts:
            if p is not None and not isinstance(p, str):
                raise TypeError(f"GLIDE prompts are strings or None (unconditional), got {p!r}")
            rows.append(tok.padded_tokens_and_mask(tok.encode(p) if p else [], ctx))
        tokens = torch.tensor([r[0] for r in rows], dtype=torch.long, device=self.device)
        mask = torch.tensor([r[1] for r in rows], dtype=torch.bool, device=self.device)
        return tokens, mask

    def condition(self, prompts: Sequence[str | None]) -> dict[str, torch.Tensor]:
        """Run the text transformer once per distinct prompt (``Text2ImUNet.get_text_emb``).

        Returns batch-first ``xf_proj`` ``[B, 4*192]`` and ``xf_out`` ``[B, 512, text_ctx]``.
        """
        unique = list(dict.fromkeys(prompts))
        tokens, mask = self.tokenize(unique)
        with exact_float32(self.device):
            enc = self.model.get_text_emb(tokens, mask)
        index = torch.tensor([unique.index(p) for p in prompts], device=self.device)
        return {"xf_proj": enc["xf_proj"][index], "xf_out": enc["xf_out"][index]}

    def begin(self, x: torch.Tensor, timesteps: torch.Tensor, cond: dict[str, torch.Tensor]) -> GlideContext:
        """Time embedding plus the projected text, as in ``Text2ImUNet.forward``."""
        m = self.model
        emb = m.time_embed(self._timestep_embedding(timesteps, m.model_channels))
        emb = emb + cond["xf_proj"].to(emb)
        return GlideContext(emb, cond["xf_out"], x.dtype)

    def encoder_block(self, i: int, h: torch.Tensor, ctx: GlideContext) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h = self.model.input_blocks[i](h.type(self.dtype), ctx.emb, ctx.xf_out)
        return h, (h,)

    def middle(self, h: torch.Tensor, ctx: GlideContext) -> torch.Tensor:
        return self.model.middle_block(h, ctx.emb, ctx.xf_out)

    def decoder_block(self, j: int, h: torch.Tensor, skips: tuple[torch.Tensor, ...], ctx: GlideContext) -> torch.Tensor:
        return self.model.output_blocks[j](torch.cat([h, *skips], dim=1).type(self.dtype), ctx.emb, ctx.xf_out)

    def head(self, h: torch.Tensor, ctx: GlideContext) -> torch.Tensor:
        return self.model.out(h.type(ctx.out_dtype))

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x  # a pixel model

    def decoder_out_shape(self, j: int) -> tuple[int, int, int]:
        return self._out_shapes[j]


def _decoder_shapes(model: nn.Module, image_size: int) -> list[tuple[int, int, int]]:
    """(C, H, W) of each output block's output, read from its layers (up-sampling ResBlocks double H, W)."""
    unet = _glide("unet")
    size = image_size // 2 ** (len(model.channel_mult) - 1)
    ch = model.model_channels * model.channel_mult[-1]
    shapes = []
    for block in model.output_blocks:
        for layer in block:
            if isinstance(layer, unet.ResBlock):
                ch = layer.out_channels
                if isinstance(layer.h_upd, unet.Upsample):
                    size *= 2
            elif isinstance(layer, unet.Upsample):
                ch, size = layer.out_channels, size * 2
        shapes.append((ch, size, size))
    return shapes
