"""Training the built-in Unet the way GLIDE's base model was trained (improved DDPM).

* **Objective**: the hybrid loss of improved DDPM (Nichol & Dhariwal 2021) with a learned
  variance, see :mod:`unetdyn.builtin_model.objective`; uniform timesteps over the 1000
  training steps of the cosine schedule (:func:`unetdyn.noise.cosine_alphas_cumprod`).
* **Classifier-free guidance**: each label is replaced by the null class
  (``num_classes``) with probability ``p_uncond`` (0.2).
* **Optimiser**: AdamW, lr 2e-4 by default after a linear warm-up of 500 steps and constant
  afterwards (improved-diffusion / GLIDE use 1e-4 to 1.2e-4 for models 10-100x larger;
  a small model on simple data tolerates and profits from 2e-4), no weight decay, gradient
  norm clipped at 1. The schedule never depends on the total step count, so a finished
  run can be extended by asking for more steps.
* **EMA** of the weights with decay ``min(ema_decay, (1 + n) / (10 + n))`` after ``n``
  optimiser steps (the warm-up lets short runs have a useful EMA); 0.999 by default, which
  averages over about the last 1000 steps. Use 0.9999 for runs of well over 50k steps.

Determinism and resume: the batch of step ``k`` is images ``k*B .. (k+1)*B - 1`` of the
procedural dataset for ``data_seed``; timesteps, noise, label drop-out and the global torch
RNG (dropout) of step ``k`` are drawn from generators seeded with
``SeedSequence([seed, k, stream])``. No RNG state is carried from step to step, so a run
resumed from a checkpoint reproduces the uninterrupted run bit for bit (same machine, same
thread count). The run's configuration is :class:`~unetdyn.builtin_model.config.TrainConfig`;
its state and checkpoint are in :mod:`unetdyn.builtin_model.checkpoint`.

Device: a run trains on the CPU by default, or on a GPU (``device="cuda"``) in float32 with
TF32 off. The batches and draws are made on the CPU either way, so a GPU run sees the same
data and noise; its arithmetic differs from the CPU's by rounding, so a run resumed on the
other kind of device continues from the checkpoint, not bit for bit.

Example:
    >>> cfg = TrainConfig(model=BuiltinConfig(model_channels=32), steps=20000)  # doctest: +SKIP
    >>> train(cfg, "runs/builtin")                                              # doctest: +SKIP
    >>> export_weights("runs/builtin", "data/builtin/unet.safetensors")         # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from unetdyn.backends.builtin import BuiltinConfig, BuiltinUnet
from unetdyn.backends.registry import resolve_device
from unetdyn.builtin_model.checkpoint import (
    CKPT_NAME,
    HISTORY_COLUMNS,
    State,
    checkpoint_step,
    export_weights,
    load_checkpoint,
    new_state,
    optimizer,
    restore,
    save_checkpoint,
)
from unetdyn.builtin_model.config import TrainConfig
from unetdyn.builtin_model.data import make_batch
from unetdyn.builtin_model.objective import DiffusionTables, hybrid_loss
from unetdyn.noise import TRAIN_STEPS
from unetdyn.paths import BUILTIN_WEIGHTS
from unetdyn.unet import exact_float32
from unetdyn.viz import save_grid

__all__ = [
    "TrainingInterrupted",
    "train",
    "add_train_args",
    "config_from_args",
    "run_train",
    "add_export_args",
    "run_export",
    "main",
]

# RNG streams of one step
_STREAM_DIFFUSION, _STREAM_TORCH = 0, 1


# -- per-step randomness -----------------------------------------------------------------


def _step_seed(seed: int, step: int, stream: int) -> int:
    state = np.random.SeedSequence([seed, step, stream]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & 0x7FFF_FFFF_FFFF_FFFF


def _batch(cfg: TrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean images and labels of training step ``step`` (a function of data_seed, step)."""
    b = cfg.batch_size
    return make_batch(cfg.data_seed, range(step * b, (step + 1) * b))


def _draws(cfg: TrainConfig, step: int, x0: torch.Tensor, labels: torch.Tensor):
    """Timesteps, noise and the labels after CFG drop-out of step ``step``."""
    g = torch.Generator().manual_seed(_step_seed(cfg.seed, step, _STREAM_DIFFUSION))
    t = torch.randint(0, TRAIN_STEPS, (x0.shape[0],), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    drop = torch.rand(x0.shape[0], generator=g) < cfg.p_uncond
    return t, noise, torch.where(drop, torch.full_like(labels, cfg.model.num_classes), labels)


def _lr_at(cfg: TrainConfig, step: int) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.lr_warmup))


def _ema_decay_at(cfg: TrainConfig, n_updates: int) -> float:
    return min(cfg.ema_decay, (1.0 + n_updates) / (10.0 + n_updates))


# -- the loop ----------------------------------------------------------------------------


def _on_device(st: State, device: torch.device) -> None:
    """Move the run to ``device``: model, EMA and the optimizer's state. The optimizer is made anew over
    the moved parameters (``module.to`` may replace them) and given the old one's state, each moment
    cast to its parameter's device (torch keeps non-capturable AdamW's step counts on the CPU)."""
    state = st.opt.state_dict()
    st.model.to(device)
    st.ema = {k: v.to(device) for k, v in st.ema.items()}
    st.opt = optimizer(st.model, st.cfg)
    st.opt.load_state_dict(state)


def _train_step(st: State, tables: DiffusionTables) -> tuple[float, ...]:
    cfg, step = st.cfg, st.step
    x0, labels = _batch(cfg, step)
    t, noise, labels = _draws(cfg, step, x0, labels)
    dev = next(st.model.parameters()).device  # the data and draws are made on the CPU (same on every device)
    x0, labels, t, noise = x0.to(dev), labels.to(dev), t.to(dev), noise.to(dev)
    lr = _lr_at(cfg, step)
    for g in st.opt.param_groups:
        g["lr"] = lr
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_step_seed(cfg.seed, step, _STREAM_TORCH))  # dropout, if any
        st.model.train()
        x_t = tables.q_sample(x0, t, noise)
        terms = hybrid_loss(st.model(x_t, t, labels), x0, x_t, t, noise, tables, cfg.lambda_vlb)
        loss = terms["loss"].mean()
        st.opt.zero_grad(set_to_none=True)
        loss.backward()
    params = [p for p in st.model.parameters()]
    if cfg.grad_clip > 0:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
    else:
        grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
    st.opt.step()
    decay = _ema_decay_at(cfg, step)
    with torch.no_grad():
        for k, v in st.model.state_dict().items():
            e = st.ema[k]
            if e.is_floating_point():
                e.mul_(decay).add_(v.detach(), alpha=1.0 - decay)
            else:
                e.copy_(v)
    st.step += 1
    return (float(step), loss.item(), terms["mse"].mean().item(), terms["vb"].mean().item(), grad_norm, lr)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: the run stopped after a whole step, with a checkpoint."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"interrupted at step {step}; checkpoint {checkpoint} written, the same command resumes")
        self.step, self.checkpoint = step, checkpoint


def train(cfg: TrainConfig, out_dir: str | Path, progress: bool = True, max_steps: int | None = None,
          device: str | torch.device = "cpu") -> dict:
    """Train (or resume training) the built-in Unet into ``out_dir``.

    Args:
        cfg: the run's configuration; if ``out_dir`` holds a checkpoint it must match it
            except for ``steps`` and ``ckpt_every``.
        out_dir: checkpoint folder; created if missing.
        progress: show a tqdm bar with the running loss.
        max_steps: stop once this many steps in all are done (below ``cfg.steps``), as if
            interrupted there; a checkpoint is written at the stop.
        device: where the model trains (the checkpoint is written from the CPU's copy).

    Returns:
        A summary: ``step``, ``train_seconds``, ``checkpoint`` (path), ``last`` (the last
        history row as a dict).
    """
    out_dir = Path(out_dir)
    st = restore(cfg, out_dir) if (out_dir / CKPT_NAME).exists() else new_state(cfg)
    dev = torch.device(device)
    if dev.type != "cpu":
        _on_device(st, dev)
    if not (out_dir / "data.png").exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        save_grid(make_batch(cfg.data_seed, range(40))[0], out_dir / "data.png", nrow=10, scale=2)
    end = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    tables = DiffusionTables.cosine()
    saved_at = st.step
    t_start, secs0 = time.perf_counter(), st.train_seconds
    bar = tqdm(total=cfg.steps, initial=st.step, disable=not progress, desc="train", unit="step", dynamic_ncols=True)
    # Ctrl-C ends the current step, then the run stops there with a checkpoint (a step cut
    # in half would leave weights and optimizer out of step with each other)
    interrupted: list[int] = []
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(1)) if in_main else None
    try:
        while st.step < end and not interrupted:
            with exact_float32(dev):
                row = _train_step(st, tables)
            st.history.append(row)
            bar.update(1)
            if progress:
                recent = np.asarray(st.history[-100:])[:, 1:4].mean(axis=0)  # mean of the last 100 steps
                bar.set_postfix(loss=f"{recent[0]:.4f}", mse=f"{recent[1]:.4f}", vb=f"{recent[2]:.3f}")
            if st.step % cfg.ckpt_every == 0 or st.step == end:
                st.train_seconds = secs0 + time.perf_counter() - t_start
                save_checkpoint(st, out_dir)
                saved_at = st.step
    finally:
        bar.close()
        if in_main:
            signal.signal(signal.SIGINT, previous)
    if saved_at != st.step or not (out_dir / CKPT_NAME).exists():
        st.train_seconds = secs0 + time.perf_counter() - t_start
        save_checkpoint(st, out_dir)
    if interrupted:
        raise TrainingInterrupted(st.step, out_dir / CKPT_NAME)
    return {
        "step": st.step,
        "train_seconds": st.train_seconds,
        "checkpoint": out_dir / CKPT_NAME,
        "last": dict(zip(HISTORY_COLUMNS, st.history[-1], strict=True)) if st.history else None,
    }


# -- command line ------------------------------------------------------------------------


def _parse_ints(s: str) -> tuple[int, ...]:
    return tuple(int(v) for v in s.replace(" ", "").split(",") if v)


def _run_folder(value: str) -> Path:
    """``--out``: a run folder; an empty one would put the run into the current directory."""
    if not value.strip():
        raise argparse.ArgumentTypeError("is empty; give a run folder (e.g. --out runs/builtin)")
    return Path(value)


def add_train_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``unetdyn train``; unset options come from the checkpoint or the defaults."""
    a = parser.add_argument
    a("--out", required=True, type=_run_folder, help="run folder (resumed if it holds a checkpoint)")
    a("--steps", type=int, help=f"total training steps (default {TrainConfig.steps})")
    a("--max-steps", type=int, help="stop after this many steps in all, as if interrupted")
    a("--batch-size", type=int, help=f"default {TrainConfig.batch_size}")
    a("--width", type=int, help=f"model_channels (default {BuiltinConfig.model_channels})")
    a("--channel-mult", type=_parse_ints, help="e.g. 1,2,2,2 (default 1,2,3,4)")
    a("--num-res-blocks", type=int, help=f"default {BuiltinConfig.num_res_blocks}")
    a("--head-channels", type=int, help=f"default {BuiltinConfig.head_channels}")
    a("--norm-groups", type=int, help=f"default {BuiltinConfig.norm_groups}")
    a("--dropout", type=float, help=f"default {BuiltinConfig.dropout}")
    a("--lr", type=float, help=f"default {TrainConfig.lr}")
    a("--lr-warmup", type=int, help=f"default {TrainConfig.lr_warmup}")
    a("--ema-decay", type=float, help=f"default {TrainConfig.ema_decay}")
    a("--grad-clip", type=float, help=f"default {TrainConfig.grad_clip} (0: off)")
    a("--p-uncond", type=float, help=f"default {TrainConfig.p_uncond}")
    a("--ckpt-every", type=int, help=f"default {TrainConfig.ckpt_every}")
    a("--data-seed", type=int, help=f"default {TrainConfig.data_seed}")
    a("--seed", type=int, help=f"default {TrainConfig.seed}")
    a("--threads", type=int, help="torch CPU threads (default: torch's)")
    a("--device", default="cpu", help="cpu (default) or cuda: where the model trains (float32, TF32 off)")
    a("--export", type=Path, help="after training, export the EMA weights to this .safetensors")
    a("--no-progress", action="store_true", help="no progress bar")
    return parser


_MODEL_ARGS = {
    "width": "model_channels",
    "channel_mult": "channel_mult",
    "num_res_blocks": "num_res_blocks",
    "head_channels": "head_channels",
    "norm_groups": "norm_groups",
    "dropout": "dropout",
}
_TRAIN_ARGS = (
    "steps",
    "batch_size",
    "lr",
    "lr_warmup",
    "ema_decay",
    "grad_clip",
    "p_uncond",
    "ckpt_every",
    "data_seed",
    "seed",
)


_MINIMUMS = {"width": 1, "num_res_blocks": 1, "head_channels": 1, "norm_groups": 1, "steps": 1, "max_steps": 1,
             "batch_size": 1, "lr_warmup": 0, "ckpt_every": 1, "data_seed": 0, "seed": 0, "threads": 1}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The checkpoint's config (or the defaults) with the options given on the command line."""
    ckpt = Path(args.out) / CKPT_NAME
    base = (
        TrainConfig.from_dict(json.loads(load_checkpoint(args.out)[1]["train_config"]))
        if ckpt.exists()
        else TrainConfig()
    )
    model_kw = {v: getattr(args, k) for k, v in _MODEL_ARGS.items() if getattr(args, k, None) is not None}
    train_kw = {k: getattr(args, k) for k in _TRAIN_ARGS if getattr(args, k, None) is not None}
    return replace(base, model=replace(base.model, **model_kw), **train_kw)


def run_train(args: argparse.Namespace) -> dict:
    """``unetdyn train``: train or resume, then optionally export."""
    for name, low in _MINIMUMS.items():
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise ValueError(f"--{name.replace('_', '-')} {value} must be >= {low}")
    if args.dropout is not None and not 0 <= args.dropout < 1:
        raise ValueError(f"--dropout {args.dropout} must be in [0, 1)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)  # a clear error where that device is absent
    cfg = config_from_args(args)
    done = checkpoint_step(Path(args.out))
    if done is not None and done >= cfg.steps:
        print(f"{args.out} is already at step {done} of --steps {cfg.steps}: nothing to train (a larger --steps continues it)")
    n_params = sum(p.numel() for p in BuiltinUnet(cfg.model).parameters())
    print(f"training {n_params / 1e6:.2f}M parameters into {args.out}: {json.dumps(cfg.to_dict())}")
    result = train(cfg, args.out, progress=not args.no_progress, max_steps=args.max_steps, device=device)
    print(f"step {result['step']} ({result['train_seconds'] / 3600:.2f} h), checkpoint {result['checkpoint']}")
    if args.export:
        info = export_weights(args.out, args.export)
        print(f"exported {info['path']} ({info['bytes'] / 1e6:.2f} MB, sha256 {info['sha256']})")
    return result


def add_export_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``unetdyn export``."""
    parser.add_argument("--run", required=True, type=Path, help="training run folder")
    parser.add_argument("--to", type=Path, required=True,
                        help=f"the .safetensors to write (the shipped model is {BUILTIN_WEIGHTS.relative_to(BUILTIN_WEIGHTS.parents[2])})")
    parser.add_argument("--force", action="store_true", help="replace --to if it exists")
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    return parser


def run_export(args: argparse.Namespace) -> dict:
    if Path(args.to).exists() and not args.force:
        raise ValueError(f"--to {args.to} exists; add --force to replace it")
    info = export_weights(args.run, args.to, args.dtype)
    print(f"exported {info['path']} ({info['bytes'] / 1e6:.2f} MB, step {info['step']}, sha256 {info['sha256']})")
    return info


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m unetdyn.builtin_model.train --out DIR ...`` (the same options as ``unetdyn train``)."""
    run_train(
        add_train_args(argparse.ArgumentParser(prog="unetdyn train", description=__doc__.split("\n")[0])).parse_args(
            argv
        )
    )


if __name__ == "__main__":
    main()
