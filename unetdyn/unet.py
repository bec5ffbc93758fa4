"""The protocol every Unet backend satisfies, and the one forward pass that applies surgery.

A backend exposes its network as a stack: encoder blocks that each push skips, a middle,
decoder blocks that each pop skips, a head, and the conditioning. The intervened forward
(:func:`forward`) is written once against that protocol, so the sampler never sees a
backend's attribute names. GLIDE's blocks push and pop one skip each; diffusers' up blocks
pop several, which ``skips_pushed`` / ``skips_popped`` express.

Skips are numbered in push order: skip 0 comes from the first encoder block (the top of
the "U"), so "the top ``ns`` skips" are skips ``0 .. ns-1``. Decoder blocks are numbered
from the bottom: decoder 0 runs right after the middle block, so "the bottom ``nb`` blocks"
are decoders ``0 .. nb-1``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from unetdyn.noise import Diffusion

__all__ = ["Unet", "Surgery", "ForwardResult", "forward", "encoder_blocks_needed", "exact_float32", "zero_output"]

Cond = dict[str, torch.Tensor]


@runtime_checkable
class Unet(Protocol):
    """What the sampler and the interventions need from a network.

    Attributes:
        skips_pushed: per encoder block, how many skips it pushes.
        skips_popped: per decoder block (bottom first), how many skips it pops.
        image_shape: (C, H, W) of the images it denoises.
        device, dtype: where and in which precision its blocks run.
        prediction: what the head predicts, one of :data:`PREDICTIONS`: ``"eps_var"`` (eps,
            then the learned variance interpolation v, as GLIDE), ``"eps"`` or ``"v"``
            (``sqrt(abar) eps - sqrt(1 - abar) x0``).
        diffusion: the training process (noise schedule, fixed or learned variance, clipping);
            ``eps_var`` goes with ``variance="learned"``, ``eps`` and ``v`` with a fixed one.
        conditional: whether :meth:`condition` depends on the prompt (an unconditional model
            runs no guidance: its two branches would be the same).
    """

    skips_pushed: tuple[int, ...]
    skips_popped: tuple[int, ...]
    image_shape: tuple[int, int, int]
    device: torch.device
    dtype: torch.dtype
    prediction: str
    diffusion: Diffusion
    conditional: bool

    def condition(self, prompts: Sequence[Any]) -> Cond:
        """Encode prompts once (``None`` = the unconditional prompt); batch-first tensors."""

    def begin(self, x: torch.Tensor, timesteps: torch.Tensor, cond: Cond) -> Any:
        """Per-call context (time and condition embedding) passed to every block."""

    def encoder_block(self, i: int, h: torch.Tensor, ctx: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Run encoder block ``i``: returns its output and the skips it pushes."""

    def middle(self, h: torch.Tensor, ctx: Any) -> torch.Tensor: ...

    def decoder_block(self, j: int, h: torch.Tensor, skips: tuple[torch.Tensor, ...], ctx: Any) -> torch.Tensor:
        """Run decoder block ``j`` (0 = bottom) on ``h`` and the skips it pops (last pushed first)."""

    def head(self, h: torch.Tensor, ctx: Any) -> torch.Tensor:
        """The output layer, laid out as :attr:`prediction` says (``eps_var``: ``[B, 2C, H, W]``)."""

    def decoder_out_shape(self, j: int) -> tuple[int, int, int]:
        """(C, H, W) of decoder block ``j``'s output, used to build its zero replacement."""

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Sampler states to images in [-1, 1] (pixel models: ``x`` itself; latent models: the VAE)."""


PREDICTIONS = ("eps_var", "eps", "v")


@dataclass(frozen=True)
class Surgery:
    """Everything about one Unet call that a schedule decides: one record from plan to forward.

    Attributes:
        zero_skips: the top ``ns`` skips are replaced by zeros.
        drop_blocks: the bottom ``nb`` decoder blocks are not run; decoder ``nb-1``'s output
            is replaced by zeros, or by the tensor passed to :func:`forward` when ``fill`` is
            ``"cache"`` (the sampler keeps it from the last step that computed it).
        fill: ``"zeros"`` or ``"cache"``.
        guided: whether classifier-free guidance runs the unconditional branch too.
    """

    zero_skips: int = 0
    drop_blocks: int = 0
    fill: str = "zeros"
    guided: bool = True


@dataclass
class ForwardResult:
    out: torch.Tensor
    kept: dict[int, torch.Tensor] = field(default_factory=dict)  # decoder outputs asked for
    # per decoder run, per row: the share of its input's energy that comes from below, where asked for
    below: dict[int, torch.Tensor] = field(default_factory=dict)
    encoder_blocks: int = 0  # block evaluations actually run (for efficiency accounting)
    decoder_blocks: int = 0
    middle: bool = False


def encoder_blocks_needed(unet: Unet, drop_blocks: int) -> int:
    """How many encoder blocks must run when the bottom ``drop_blocks`` decoders are removed.

    The remaining decoders pop the earliest-pushed skips; only the encoder prefix that
    pushes them is needed.

    Example (GLIDE: 16 blocks of one skip each): ``nb=8`` needs encoder blocks 0..7.
    """
    if drop_blocks == 0:
        return len(unet.skips_pushed)
    needed = sum(unet.skips_popped[drop_blocks:])
    pushed = 0
    for k, p in enumerate(unet.skips_pushed):
        if pushed >= needed:
            return k
        pushed += p
    return len(unet.skips_pushed)


def forward(
    unet: Unet,
    x: torch.Tensor,
    timesteps: torch.Tensor,
    cond: Cond,
    surgery: Surgery = Surgery(),
    fill: torch.Tensor | None = None,
    keep: Sequence[int] = (),
    shares: bool = False,
) -> ForwardResult:
    """The Unet forward with surgery applied; returns the head's output and what was kept.

    Args:
        surgery: which skips to zero and how many bottom decoder blocks to drop.
        fill: replacement for decoder ``nb-1``'s output when blocks are dropped
            (default zeros of its shape).
        keep: decoder indices whose outputs to return in ``kept`` (for cache fill).
        shares: return in ``below``, per decoder run, the share of the energy it receives that
            comes from below (the middle's or the decoder beneath's output) rather than from the
            skips it pops: ``||h||^2 / (||h||^2 + sum ||skip||^2)`` per row. Removing the bottom
            ``nb`` blocks replaces exactly that input of decoder ``nb``.

    Example:
        >>> res = forward(unet, x, t, cond, Surgery(drop_blocks=8))  # doctest: +SKIP
        >>> res.encoder_blocks, res.decoder_blocks                   # doctest: +SKIP
        (8, 8)
    """
    nb, ns = surgery.drop_blocks, surgery.zero_skips
    n_dec = len(unet.skips_popped)
    if not 0 <= nb <= n_dec:
        raise ValueError(f"drop_blocks={nb} is out of range 0..{n_dec}")
    if not 0 <= ns <= sum(unet.skips_pushed):
        raise ValueError(f"zero_skips={ns} is out of range 0..{sum(unet.skips_pushed)}")
    with exact_float32(x.device):
        ctx = unet.begin(x, timesteps, cond)
        res = ForwardResult(out=x)

        # 1. encoder: only the prefix whose skips the kept decoders consume
        h = x
        stack: list[torch.Tensor] = []
        n_enc = encoder_blocks_needed(unet, nb)
        for i in range(n_enc):
            h, pushed = unet.encoder_block(i, h, ctx)
            for s in pushed:
                stack.append(torch.zeros_like(s) if len(stack) < ns else s)
        res.encoder_blocks = n_enc
        if nb:
            # the removed decoders would have popped skips pushed after what remains needed
            del stack[sum(unet.skips_popped[nb:]) :]

        # 2. middle (or the replacement of decoder nb-1's output)
        if nb == 0:
            h = unet.middle(h, ctx)
            res.middle = True
        elif fill is not None:
            h = fill.to(device=h.device, dtype=h.dtype)
        else:
            c, hh, ww = unet.decoder_out_shape(nb - 1)
            h = torch.zeros(x.shape[0], c, hh, ww, device=h.device, dtype=h.dtype)

        # 3. decoder
        for j in range(nb, n_dec):
            k = unet.skips_popped[j]
            popped = tuple(stack.pop() for _ in range(k))
            if shares:
                below = _energy(h)
                res.below[j] = below / (below + sum((_energy(s) for s in popped), torch.zeros_like(below)))
            h = unet.decoder_block(j, h, popped, ctx)
            if j in keep:
                res.kept[j] = h
        res.decoder_blocks = n_dec - nb

        # 4. head
        res.out = unet.head(h, ctx)
        return res


def _energy(h: torch.Tensor) -> torch.Tensor:
    """Per row, the squared norm of ``h`` (in float32)."""
    return h.float().pow(2).flatten(1).sum(1)


@contextmanager
def exact_float32(device: torch.device | str | None) -> Iterator[None]:
    """Within the ``with``, float32 matmuls and convolutions on a CUDA ``device`` run in float32,
    not TF32; torch's global TF32 settings are restored on exit. Elsewhere nothing changes.

    TF32 products (cuDNN's default for convolutions) would move results computed on a GPU
    further from the CPU's than float rounding does. Every Unet pass (:func:`forward`) and the
    backends' text encoders and latent decoders run inside it, so sampling on a GPU is float32
    while the caller's own settings stay as they were.
    """
    if device is None or torch.device(device).type != "cuda":
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


@contextmanager
def zero_output(module: torch.nn.Module) -> Iterator[None]:
    """Within the ``with``, ``module``'s output is replaced by zeros (a forward hook, always removed).

    This is the paper's definition of removing a block, applied to the plain forward; the
    truncated :func:`forward` must agree with it.
    """
    def zeros(_module, _inputs, out):
        if isinstance(out, tuple):  # modules that return (output, ...) as diffusers' transformers do
            return (torch.zeros_like(out[0]), *out[1:])
        return torch.zeros_like(out)

    handle = module.register_forward_hook(zeros)
    try:
        yield
    finally:
        handle.remove()
