"""Training the built-in Unet the way GLIDE's base model was trained (improved DDPM).

* **Objective**: the hybrid loss of improved DDPM (Nichol & Dhariwal 2021) with a learned
  variance, see :func:`hybrid_loss`; uniform timesteps over the 1000 training steps of the
  cosine schedule (:func:`unetdyn.noise.cosine_alphas_cumprod`).
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
thread count). A checkpoint is a single safetensors file written atomically
(``ckpt.safetensors``: model, EMA, AdamW state and the loss history as tensors; step,
configs and optimiser hyper-parameters as JSON in its metadata). It is the only thing
resume reads; ``ckpt.json``, ``losses.csv`` and ``losses.png`` beside it are for people.

Example:
    >>> cfg = TrainConfig(model=BuiltinConfig(model_channels=32), steps=20000)  # doctest: +SKIP
    >>> train(cfg, "runs/builtin")                                              # doctest: +SKIP
    >>> export_weights("runs/builtin", "data/builtin/unet.safetensors")         # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import signal
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from unetdyn.backends.builtin import BuiltinConfig, BuiltinUnet
from unetdyn.builtin_model.data import make_batch
from unetdyn.fileio import atomic_write
from unetdyn.noise import TRAIN_STEPS, Diffusion, NoiseSchedule
from unetdyn.viz import save_grid
from unetdyn.backends.builtin_weights import WEIGHTS_FORMAT, checksum_path, sha256_file

__all__ = [
    "TrainConfig",
    "DiffusionTables",
    "hybrid_loss",
    "normal_kl",
    "discretized_gaussian_log_likelihood",
    "train",
    "load_checkpoint",
    "export_weights",
    "add_train_args",
    "config_from_args",
    "run_train",
    "add_export_args",
    "run_export",
    "main",
]

CKPT_NAME = "ckpt.safetensors"
CKPT_FORMAT = "unetdyn-train-checkpoint/1"
HISTORY_COLUMNS = ("step", "loss", "mse", "vb", "grad_norm", "lr")
# Fields that may differ when a run is resumed; all others must match the checkpoint.
RESUMABLE_CHANGES = ("steps", "ckpt_every")

# RNG streams of one step
_STREAM_DIFFUSION, _STREAM_TORCH = 0, 1


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (with the machine it runs on)."""

    model: BuiltinConfig = field(default_factory=BuiltinConfig)
    batch_size: int = 64
    steps: int = 20_000
    lr: float = 2e-4
    lr_warmup: int = 500
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0  # max gradient norm; 0 turns clipping off
    ema_decay: float = 0.999
    lambda_vlb: float = 0.001  # the paper's lambda, see hybrid_loss
    p_uncond: float = 0.2
    ckpt_every: int = 1000
    data_seed: int = 0
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", BuiltinConfig.from_dict(self.model))
        object.__setattr__(self, "adam_betas", tuple(self.adam_betas))
        for k in ("batch_size", "steps", "ckpt_every"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if not 0.0 <= self.p_uncond <= 1.0:
            raise ValueError(f"p_uncond must be in [0, 1], got {self.p_uncond}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["model"] = self.model.to_dict()
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**d)


# -- the objective -----------------------------------------------------------------------


@dataclass(frozen=True)
class DiffusionTables:
    """Per-training-step float32 coefficients of the cosine schedule, each ``[T]``.

    The learned log-variance interpolates between ``log_beta`` and ``post_log_var``
    (the posterior variance ``beta~``, its log at t=0 clipped to the t=1 value), exactly the
    range :meth:`unetdyn.noise.NoiseSchedule.ancestral` samples with.
    """

    sqrt_abar: torch.Tensor
    sqrt_one_minus_abar: torch.Tensor
    sqrt_recip_abar: torch.Tensor
    sqrt_recipm1_abar: torch.Tensor
    post_coef_x0: torch.Tensor
    post_coef_xt: torch.Tensor
    post_log_var: torch.Tensor
    log_beta: torch.Tensor

    @classmethod
    def cosine(cls, num_train_steps: int = TRAIN_STEPS) -> DiffusionTables:
        """The sampler's own coefficients (:class:`~unetdyn.noise.NoiseSchedule` without
        respacing) of the steps ``t -> t - 1``, indexed by training step ``0 .. T-1``."""
        ns = NoiseSchedule(num_train_steps, Diffusion(train_steps=num_train_steps))
        t = list(range(1, num_train_steps + 1))
        c = ns.coefficients(t, [k - 1 for k in t])
        abar = ns.abar[1:]
        f = lambda a: torch.as_tensor(a, dtype=torch.float64).float()  # noqa: E731
        return cls(
            sqrt_abar=f(np.sqrt(abar)),
            sqrt_one_minus_abar=f(np.sqrt(1.0 - abar)),
            sqrt_recip_abar=c.sqrt_recip_abar.flatten(),
            sqrt_recipm1_abar=c.sqrt_recipm1_abar.flatten(),
            post_coef_x0=c.mean_coef_x0.flatten(),
            post_coef_xt=c.mean_coef_xt.flatten(),
            post_log_var=c.log_beta_tilde.flatten(),
            log_beta=c.log_beta.flatten(),
        )

    @property
    def num_train_steps(self) -> int:
        return len(self.log_beta)

    def at(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """Coefficient ``name`` at timesteps ``t``, shaped [B, 1, 1, 1]."""
        return getattr(self, name).to(t.device)[t].view(-1, 1, 1, 1)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``."""
        return self.at("sqrt_abar", t) * x0 + self.at("sqrt_one_minus_abar", t) * noise


def _mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """Elementwise ``KL(N(mean1, e^logvar1) || N(mean2, e^logvar2))`` in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Elementwise log-probability (nats) of 8-bit data ``x`` in [-1, 1] under a Gaussian
    integrated over each pixel's bin of width 2/255; the edge bins extend to +-infinity."""
    centred = x - mean
    inv_std = torch.exp(-log_scale)
    upper = inv_std * (centred + 1.0 / 255.0)
    lower = inv_std * (centred - 1.0 / 255.0)
    log_cdf_upper = torch.special.log_ndtr(upper)  # bin [-inf, x + 1/255] for x = -1
    log_sf_lower = torch.special.log_ndtr(-lower)  # bin [x - 1/255, inf] for x = +1
    mass = (torch.special.ndtr(upper) - torch.special.ndtr(lower)).clamp(min=1e-12)
    return torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_sf_lower, torch.log(mass)))


def hybrid_loss(
    out: torch.Tensor,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    tables: DiffusionTables,
    lambda_vlb: float = 0.001,
) -> dict[str, torch.Tensor]:
    """Improved DDPM's ``L_hybrid = L_simple + lambda * L_vlb``, per sample.

    Args:
        out: the model output ``[B, 2C, H, W]``: eps, then ``v`` (nominally in [-1, 1]; not
            clamped, as in improved-diffusion), with ``log sigma^2 = f log beta_t +
            (1 - f) log beta~_t`` and ``f = (v + 1) / 2``.
        x0, x_t, noise: the clean batch, its noised version at ``t`` and the noise used.
        t: training timesteps ``[B]`` in ``0 .. T-1``, drawn uniformly.
        tables: the schedule's coefficients.
        lambda_vlb: the paper's lambda (0.001).

    Returns:
        ``loss``, ``mse`` (L_simple) and ``vb`` (the sampled VLB term ``L_t`` in bits/dim),
        each ``[B]``.

    The terms:

    * ``mse`` = mean over pixels of ``(eps - eps_theta)^2`` (L_simple);
    * ``vb`` = ``L_t`` in bits per dimension: for ``t > 0`` the KL between the Gaussian
      posterior ``q(x_{t-1} | x_t, x_0)`` and the model ``p(x_{t-1} | x_t)``; at ``t = 0``
      the negative log-likelihood of ``x_0`` under the discretised Gaussian decoder. The
      model mean enters with a stop-gradient (it is computed from ``eps.detach()``), so
      the VLB term trains only the variance and ``L_simple`` alone trains the mean.

    The weight of ``vb``: the paper's ``L_vlb = L_0 + ... + L_{T-1} (+ L_T)`` is a *sum* over
    the T timesteps; with ``t`` uniform, ``T * L_t`` is its unbiased one-sample estimate, so
    ``lambda * L_vlb`` is implemented as ``lambda * T * vb``. For ``lambda = 0.001`` and
    ``T = 1000`` the weight is exactly 1: ``loss = mse + vb``. That is what improved-diffusion
    computes with ``learn_sigma=True`` and ``rescale_learned_sigmas=True``
    (``LossType.RESCALED_MSE``): it multiplies the per-term vb by ``num_timesteps / 1000``
    (= lambda * T with lambda = 1/1000) and adds it to the MSE. ``L_T`` (prior matching) has
    no parameters and is left out, as there.
    """
    c = x0.shape[1]
    eps, v = out[:, :c], out[:, c:]
    mse = _mean_flat((noise - eps) ** 2)

    at = lambda name: tables.at(name, t)  # noqa: E731
    x0_hat = at("sqrt_recip_abar") * x_t - at("sqrt_recipm1_abar") * eps.detach()  # stop-gradient on the mean
    model_mean = at("post_coef_x0") * x0_hat + at("post_coef_xt") * x_t
    frac = (v + 1.0) / 2.0
    model_log_var = frac * at("log_beta") + (1.0 - frac) * at("post_log_var")
    true_mean = at("post_coef_x0") * x0 + at("post_coef_xt") * x_t
    kl = _mean_flat(normal_kl(true_mean, at("post_log_var"), model_mean, model_log_var)) / math.log(2.0)
    nll = -_mean_flat(discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var)) / math.log(2.0)
    vb = torch.where(t == 0, nll, kl)
    return {"loss": mse + lambda_vlb * tables.num_train_steps * vb, "mse": mse, "vb": vb}


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


# -- checkpoints -------------------------------------------------------------------------


@dataclass
class _State:
    cfg: TrainConfig
    model: BuiltinUnet
    ema: dict[str, torch.Tensor]
    opt: torch.optim.AdamW
    step: int = 0
    history: list[tuple[float, ...]] = field(default_factory=list)
    train_seconds: float = 0.0


def _new_state(cfg: TrainConfig) -> _State:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = BuiltinUnet(cfg.model)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.adam_betas, weight_decay=cfg.weight_decay)
    return _State(cfg, model, ema, opt)


def _jsonable(x):
    if isinstance(x, (tuple, list)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, torch.Tensor):
        return x.item() if x.numel() == 1 else x.tolist()
    return x


def _save_checkpoint(st: _State, out_dir: Path) -> Path:
    opt_sd = st.opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for k, v in st.model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().contiguous().clone()
    for k, v in st.ema.items():
        tensors[f"ema.{k}"] = v.contiguous().clone()
    opt_extra: dict[str, dict] = {}
    for pid, pstate in opt_sd["state"].items():
        for k, v in pstate.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{pid}.{k}"] = v.detach().contiguous().clone()
            else:
                opt_extra.setdefault(str(pid), {})[k] = _jsonable(v)
    tensors["history"] = torch.tensor(st.history, dtype=torch.float64).reshape(-1, len(HISTORY_COLUMNS))
    meta = {
        "format": CKPT_FORMAT,
        "step": str(st.step),
        "train_config": json.dumps(st.cfg.to_dict()),
        "optimizer_param_groups": json.dumps(_jsonable(opt_sd["param_groups"])),
        "optimizer_state_extra": json.dumps(opt_extra),
        "history_columns": json.dumps(HISTORY_COLUMNS),
        "train_seconds": repr(st.train_seconds),
        "rng": "stateless: step k draws from SeedSequence([seed, k, stream]); batch k = images k*B..(k+1)*B-1",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CKPT_NAME
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))

    # Human-readable companions (resume never reads them).
    info = {k: json.loads(v) if k.startswith(("train_config", "optimizer", "history")) else v for k, v in meta.items()}
    last = dict(zip(HISTORY_COLUMNS, st.history[-1], strict=True)) if st.history else None
    info.update(step=st.step, train_seconds=st.train_seconds, last=last)
    atomic_write(out_dir / "ckpt.json", lambda p: p.write_text(json.dumps(info, indent=2) + "\n"))
    _write_history_csv(st.history, out_dir / "losses.csv")
    _plot_history(st.history, out_dir / "losses.png", st.cfg.lambda_vlb * TRAIN_STEPS)
    return path


def load_checkpoint(out_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of the checkpoint in ``out_dir``."""
    path = Path(out_dir) / CKPT_NAME
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint {path}: train into {out_dir} first (unetdyn train --out {out_dir})")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path} is not a unetdyn training checkpoint (format {meta.get('format')!r})")
    return load_file(str(path)), meta


def _restore(cfg: TrainConfig, out_dir: Path) -> _State:
    tensors, meta = load_checkpoint(out_dir)
    saved = TrainConfig.from_dict(json.loads(meta["train_config"]))
    diff = [
        f.name
        for f in fields(TrainConfig)
        if f.name not in RESUMABLE_CHANGES and getattr(saved, f.name) != getattr(cfg, f.name)
    ]
    if diff:
        detail = ", ".join(f"{k}: checkpoint {getattr(saved, k)!r} vs asked {getattr(cfg, k)!r}" for k in diff)
        raise ValueError(
            f"{out_dir / CKPT_NAME} was trained with a different configuration ({detail}); "
            f"only {', '.join(RESUMABLE_CHANGES)} may change on resume. Use another --out directory."
        )
    st = _new_state(cfg)
    st.model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    st.ema = {k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")}
    opt_state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = v
    for pid, extra in json.loads(meta["optimizer_state_extra"]).items():
        opt_state.setdefault(int(pid), {}).update(extra)
    groups = json.loads(meta["optimizer_param_groups"])
    for g in groups:
        g["betas"] = tuple(g["betas"])
    st.opt.load_state_dict({"state": opt_state, "param_groups": groups})
    st.step = int(meta["step"])
    st.history = [tuple(r) for r in tensors["history"].tolist()]
    st.train_seconds = float(meta["train_seconds"])
    return st


def _write_history_csv(history: Sequence[tuple[float, ...]], path: Path) -> None:
    def write(p: Path) -> None:
        with open(p, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(HISTORY_COLUMNS)
            for row in history:
                w.writerow([int(row[0]), *(f"{v:.6g}" for v in row[1:])])

    atomic_write(path, write)


def _plot_history(history: Sequence[tuple[float, ...]], path: Path, vb_weight: float) -> None:
    """Loss curves (moving averages, log scale) as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    fig = Figure(figsize=(7.2, 4.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    win = 1
    if len(history) >= 2:
        arr = np.asarray(history, dtype=np.float64)
        win = max(1, len(arr) // 100)
        kernel = np.ones(win) / win
        for name, color, v in (("loss", "black", arr[:, 1]), ("mse", "tab:blue", arr[:, 2]),
                               (f"vb x {vb_weight:g}", "tab:red", vb_weight * arr[:, 3])):
            ax.plot(arr[win - 1 :, 0], np.convolve(np.clip(v, 1e-6, None), kernel, mode="valid"), color=color, lw=1.2, label=name)
        ax.set_yscale("log")
        ax.legend()
    ax.set(xlabel="step", ylabel="loss", title=f"training loss (moving average over {win} steps)")
    atomic_write(path, lambda p: fig.savefig(p, format="png"))


# -- the loop ----------------------------------------------------------------------------


def _train_step(st: _State, tables: DiffusionTables) -> tuple[float, ...]:
    cfg, step = st.cfg, st.step
    x0, labels = _batch(cfg, step)
    t, noise, labels = _draws(cfg, step, x0, labels)
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


def train(cfg: TrainConfig, out_dir: str | Path, progress: bool = True, max_steps: int | None = None) -> dict:
    """Train (or resume training) the built-in Unet into ``out_dir``.

    Args:
        cfg: the run's configuration; if ``out_dir`` holds a checkpoint it must match it
            except for ``steps`` and ``ckpt_every``.
        out_dir: checkpoint folder; created if missing.
        progress: show a tqdm bar with the running loss.
        max_steps: stop once this many steps in all are done (below ``cfg.steps``), as if
            interrupted there; a checkpoint is written at the stop.

    Returns:
        A summary: ``step``, ``train_seconds``, ``checkpoint`` (path), ``last`` (the last
        history row as a dict).
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    st = _restore(cfg, out_dir) if (out_dir / CKPT_NAME).exists() else _new_state(cfg)
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
            row = _train_step(st, tables)
            st.history.append(row)
            bar.update(1)
            if progress:
                recent = np.asarray(st.history[-100:])[:, 1:4].mean(axis=0)  # mean of the last 100 steps
                bar.set_postfix(loss=f"{recent[0]:.4f}", mse=f"{recent[1]:.4f}", vb=f"{recent[2]:.3f}")
            if st.step % cfg.ckpt_every == 0 or st.step == end:
                st.train_seconds = secs0 + time.perf_counter() - t_start
                _save_checkpoint(st, out_dir)
                saved_at = st.step
    finally:
        bar.close()
        if in_main:
            signal.signal(signal.SIGINT, previous)
    if saved_at != st.step or not (out_dir / CKPT_NAME).exists():
        st.train_seconds = secs0 + time.perf_counter() - t_start
        _save_checkpoint(st, out_dir)
    if interrupted:
        raise TrainingInterrupted(st.step, out_dir / CKPT_NAME)
    return {
        "step": st.step,
        "train_seconds": st.train_seconds,
        "checkpoint": out_dir / CKPT_NAME,
        "last": dict(zip(HISTORY_COLUMNS, st.history[-1], strict=True)) if st.history else None,
    }


# -- shipping ----------------------------------------------------------------------------


def _sort_metadata(path: Path) -> None:
    """Rewrite a safetensors header with its metadata keys sorted (safetensors writes them in
    hash order), so that the same weights always give the same bytes and checksum."""
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > n:  # cannot happen for a pure reordering; keep the original then
            return
        f.seek(8)
        f.write(text + b" " * (n - len(text)))


def export_weights(out_dir: str | Path, path: str | Path, dtype: str = "float16") -> dict:
    """Write the EMA weights of the run in ``out_dir`` as one safetensors file for shipping.

    The model config (``config``), training config, step count, data seed and training time
    go into the safetensors metadata; the file's SHA-256 goes into ``<path>.sha256``
    (``sha256sum -c`` format), which :func:`unetdyn.backends.builtin_weights.load_builtin` verifies.
    float16 halves the size (2 bytes/parameter, e.g. 3.4 MB for 1.7M parameters) and
    changes the weights by at most a relative 2^-11; load_builtin casts back to float32.

    Returns:
        ``path``, ``sha256``, ``bytes``, ``params``, ``step``.
    """
    if dtype not in ("float16", "float32", "bfloat16"):
        raise ValueError(f"dtype must be float16, bfloat16 or float32, got {dtype!r}")
    tensors, meta = load_checkpoint(out_dir)
    cfg = TrainConfig.from_dict(json.loads(meta["train_config"]))
    tdtype = getattr(torch, dtype)
    ema = {k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")}
    for k, v in ema.items():
        if v.is_floating_point() and not torch.isfinite(v.to(tdtype)).all():
            raise ValueError(f"EMA weight {k} overflows {dtype}; export as float32")
    weights = {k: (v.to(tdtype) if v.is_floating_point() else v).contiguous() for k, v in ema.items()}
    n_params = sum(v.numel() for v in weights.values())
    out_meta = {
        "format": WEIGHTS_FORMAT,
        "config": json.dumps(cfg.model.to_dict()),
        "train_config": json.dumps(cfg.to_dict()),
        "steps": meta["step"],
        "data_seed": str(cfg.data_seed),
        "train_seconds": f"{float(meta['train_seconds']):.1f}",
        "weights": f"EMA (decay {cfg.ema_decay})",
        "dtype": dtype,
        "params": str(n_params),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: (save_file(weights, str(p), metadata=out_meta), _sort_metadata(p)))
    digest = sha256_file(path)
    atomic_write(checksum_path(path), lambda p: p.write_text(f"{digest}  {path.name}\n"))
    return {"path": path, "sha256": digest, "bytes": path.stat().st_size, "params": n_params, "step": int(meta["step"])}


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


def _checkpoint_step(out_dir: Path) -> int | None:
    """The step a run folder's checkpoint holds, or None without one."""
    if not (out_dir / CKPT_NAME).exists():
        return None
    with safe_open(str(out_dir / CKPT_NAME), framework="pt") as f:
        step = (f.metadata() or {}).get("step")
    return int(step) if step is not None else None


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
    cfg = config_from_args(args)
    done = _checkpoint_step(Path(args.out))
    if done is not None and done >= cfg.steps:
        print(f"{args.out} is already at step {done} of --steps {cfg.steps}: nothing to train (a larger --steps continues it)")
    n_params = sum(p.numel() for p in BuiltinUnet(cfg.model).parameters())
    print(f"training {n_params / 1e6:.2f}M parameters into {args.out}: {json.dumps(cfg.to_dict())}")
    result = train(cfg, args.out, progress=not args.no_progress, max_steps=args.max_steps)
    print(f"step {result['step']} ({result['train_seconds'] / 3600:.2f} h), checkpoint {result['checkpoint']}")
    if args.export:
        info = export_weights(args.out, args.export)
        print(f"exported {info['path']} ({info['bytes'] / 1e6:.2f} MB, sha256 {info['sha256']})")
    return result


def add_export_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``unetdyn export``."""
    from unetdyn.paths import BUILTIN_WEIGHTS

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
