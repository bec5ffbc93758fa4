"""What a training run of the built-in Unet is: :class:`TrainConfig` (the reasons for its
defaults are in :mod:`unetdyn.builtin_model.train`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from unetdyn.backends.builtin import BuiltinConfig

__all__ = ["TrainConfig"]


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
