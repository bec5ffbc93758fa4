"""A training run's state and its checkpoint: save, load, restore, and export for shipping.

A checkpoint is a single safetensors file written atomically (``ckpt.safetensors``: model,
EMA, AdamW state and the loss history as tensors; step, configs and optimiser
hyper-parameters as JSON in its metadata). It is the only thing resume reads; ``ckpt.json``,
``losses.csv`` and ``losses.png`` beside it are for people. :func:`export_weights` turns a
run's EMA weights into the file :func:`unetdyn.backends.builtin_weights.load_builtin` reads.
"""

from __future__ import annotations

import csv
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure  # no pyplot: no global state, no display needed
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from unetdyn.backends.builtin import BuiltinUnet
from unetdyn.backends.builtin_weights import WEIGHTS_FORMAT, checksum_path, sha256_file
from unetdyn.builtin_model.config import TrainConfig
from unetdyn.fileio import atomic_write
from unetdyn.noise import TRAIN_STEPS

__all__ = [
    "CKPT_NAME",
    "HISTORY_COLUMNS",
    "RESUMABLE_CHANGES",
    "State",
    "new_state",
    "optimizer",
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_step",
    "checkpoint_metadata",
    "restore",
    "export_weights",
]

CKPT_NAME = "ckpt.safetensors"
LOSSES_CSV = "losses.csv"  # the loss history per step, for people and for the family chapter
LOSSES_PNG = "losses.png"
CKPT_FORMAT = "unetdyn-train-checkpoint/1"
HISTORY_COLUMNS = ("step", "loss", "mse", "vb", "grad_norm", "lr")
# Fields that may differ when a run is resumed; all others must match the checkpoint.
RESUMABLE_CHANGES = ("steps", "ckpt_every")


@dataclass
class State:
    """Everything a run carries from one step to the next."""

    cfg: TrainConfig
    model: BuiltinUnet
    ema: dict[str, torch.Tensor]
    opt: torch.optim.AdamW
    step: int = 0
    history: list[tuple[float, ...]] = field(default_factory=list)
    train_seconds: float = 0.0


def new_state(cfg: TrainConfig) -> State:
    """Step 0 of the run ``cfg``: the model initialised from ``cfg.seed``, its EMA, a fresh AdamW."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = BuiltinUnet(cfg.model)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return State(cfg, model, ema, optimizer(model, cfg))


def optimizer(model: BuiltinUnet, cfg: TrainConfig) -> torch.optim.AdamW:
    """A fresh AdamW over ``model``'s parameters, as ``cfg`` sets it."""
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.adam_betas, weight_decay=cfg.weight_decay)


def _jsonable(x):
    if isinstance(x, (tuple, list)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, torch.Tensor):
        return x.item() if x.numel() == 1 else x.tolist()
    return x


def save_checkpoint(st: State, out_dir: Path) -> Path:
    """Write ``st`` to ``out_dir/ckpt.safetensors`` (atomically) and refresh the companions for people."""
    opt_sd = st.opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for k, v in st.model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().contiguous().cpu().clone()
    for k, v in st.ema.items():
        tensors[f"ema.{k}"] = v.contiguous().cpu().clone()
    opt_extra: dict[str, dict] = {}
    for pid, pstate in opt_sd["state"].items():
        for k, v in pstate.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{pid}.{k}"] = v.detach().contiguous().cpu().clone()
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
    _write_history_csv(st.history, out_dir / LOSSES_CSV)
    _plot_history(st.history, out_dir / LOSSES_PNG, st.cfg.lambda_vlb * TRAIN_STEPS)
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


def checkpoint_metadata(out_dir: Path) -> dict[str, str] | None:
    """The metadata of a run folder's checkpoint (its step, train_config, ...; no tensor is read), or None
    without one."""
    if not (out_dir / CKPT_NAME).exists():
        return None
    with safe_open(str(out_dir / CKPT_NAME), framework="pt") as f:
        return f.metadata() or {}


def checkpoint_step(out_dir: Path) -> int | None:
    """The step a run folder's checkpoint holds, or None without one."""
    step = (checkpoint_metadata(out_dir) or {}).get("step")
    return int(step) if step is not None else None


def restore(cfg: TrainConfig, out_dir: Path) -> State:
    """The state saved in ``out_dir``; a ValueError if it was trained with another ``cfg``
    (only :data:`RESUMABLE_CHANGES` may differ)."""
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
    st = new_state(cfg)
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


# -- the loss history, for people --------------------------------------------------------


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
