"""Noise schedule, respacing and the update rules (pure tensor math).

Step numbering follows the paper: sampling steps are ``t = K, K-1, ..., 1`` and
``t = K`` is the step that starts from pure noise. One step *at* ``t`` calls the Unet on
``x_t`` and produces ``x_{t-1}`` (or ``x_s`` for a jump to ``s < t``); ``x_0`` is the
output. The mapping to GLIDE's indices is::

    paper step t  <->  respaced index i = t - 1  <->  training step tau[t - 1]

where ``tau`` are the training steps kept by :func:`space_timesteps` (for K=100:
0, 10, 20, ..., 989, 999). ``abar[t]`` below is the cumulative signal level of ``x_t``:
``abar[t] = alphas_cumprod[tau[t-1]]`` for ``t >= 1`` and ``abar[0] = 1`` (clean data),
so GLIDE's respaced ``beta'_i = 1 - abar[i+1] / abar[i]``.

A jump ``t -> s`` (paper Eq. 4) uses ``beta = 1 - abar[t] / abar[s]`` in place of the
one-step beta and is otherwise the same update; it equals GLIDE's own respaced sampler
run over the kept steps. A plain step is the jump ``t -> t-1``.

:meth:`NoiseSchedule.step` is the whole update of the sampler: the model's output at ``x_t``
(:class:`ModelOutput`) -> the x0 estimate and ``x_s``, by the ancestral or the DDIM rule
(:class:`Rule`), for plain steps and jumps alike (:meth:`NoiseSchedule.coefficients`).

The training process is a :class:`Diffusion`: GLIDE's cosine schedule by default, or the
linear and scaled-linear schedules of diffusers pipelines, with a learned or a fixed
variance. Respacing follows GLIDE's rule whichever the schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "Diffusion",
    "NoiseSchedule",
    "cosine_alphas_cumprod",
    "space_timesteps",
    "StepCoefficients",
    "ModelOutput",
    "Rule",
]

TRAIN_STEPS = 1000


def cosine_alphas_cumprod(num_train_steps: int = TRAIN_STEPS, max_beta: float = 0.999) -> np.ndarray:
    """Cumulative alphas of the ``squaredcos_cap_v2`` schedule, as float64.

    Example:
        >>> a = cosine_alphas_cumprod()
        >>> round(float(a[0]), 5), a.shape
        (0.99996, (1000,))
    """

    def abar(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = np.array(
        [min(1 - abar((i + 1) / num_train_steps) / abar(i / num_train_steps), max_beta) for i in range(num_train_steps)],
        dtype=np.float64,
    )
    return np.cumprod(1.0 - betas)


BETA_SCHEDULES = ("cosine", "linear", "scaled_linear")
VARIANCES = ("learned", "fixed_small", "fixed_large")


@dataclass(frozen=True)
class Diffusion:
    """The forward process a model was trained with, and how its sampler reads the variance.

    Attributes:
        betas: ``"cosine"`` (GLIDE, improved DDPM; diffusers' ``squaredcos_cap_v2``),
            ``"linear"`` (DDPM) or ``"scaled_linear"`` (Stable Diffusion: linear in sqrt(beta)).
        beta_start, beta_end: the range of the linear and scaled-linear betas.
        train_steps: training steps T.
        variance: ``"learned"`` (the model predicts the log-variance interpolation, GLIDE),
            ``"fixed_small"`` (the posterior variance beta~) or ``"fixed_large"`` (beta).
        clip_x0: clip the x0 estimate to [-1, 1] (pixel models; latents are not clipped).

    Example:
        >>> round(float(Diffusion("scaled_linear", 0.00085, 0.012, variance="fixed_small").alphas_cumprod()[-1]), 5)
        0.00466
    """

    betas: str = "cosine"
    beta_start: float = 0.0001
    beta_end: float = 0.02
    train_steps: int = TRAIN_STEPS
    variance: str = "learned"
    clip_x0: bool = True

    def __post_init__(self):
        if self.betas not in BETA_SCHEDULES:
            raise ValueError(f"betas={self.betas!r} is not one of {', '.join(BETA_SCHEDULES)}")
        if self.variance not in VARIANCES:
            raise ValueError(f"variance={self.variance!r} is not one of {', '.join(VARIANCES)}")
        if isinstance(self.train_steps, bool) or not isinstance(self.train_steps, int) or not 2 <= self.train_steps <= 100_000:
            raise ValueError(f"train_steps={self.train_steps!r} is out of range 2..100000")
        if self.betas != "cosine" and not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"beta_start={self.beta_start!r}, beta_end={self.beta_end!r}: need 0 < beta_start < beta_end < 1")

    def alphas_cumprod(self) -> np.ndarray:
        """``abar`` of every training step, float64."""
        T = self.train_steps
        if self.betas == "cosine":
            return cosine_alphas_cumprod(T)
        if self.betas == "linear":
            betas = np.linspace(self.beta_start, self.beta_end, T, dtype=np.float64)
        else:
            betas = np.linspace(self.beta_start**0.5, self.beta_end**0.5, T, dtype=np.float64) ** 2
        return np.cumprod(1.0 - betas)


def space_timesteps(num_train_steps: int, num_steps: int) -> list[int]:
    """Training steps kept when respacing to ``num_steps`` (GLIDE's rule for a single section).

    GLIDE walks a float index from 0 in strides of ``(T - 1) / (K - 1)``, adding the stride
    ``K - 1`` times and rounding each partial sum: the accumulated rounding error decides
    ties, so this is not always ``round(k * stride)`` (for ``K = 21`` the middle step is 499,
    not 500). Evenly spread, including the first and last training step.

    Example:
        >>> space_timesteps(1000, 100)[:7], space_timesteps(1000, 100)[-2:]
        ([0, 10, 20, 30, 40, 50, 61], [989, 999])
        >>> space_timesteps(1000, 21)[10]
        499
    """
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"steps={num_steps} is out of range 1..{num_train_steps}")
    if num_steps == 1:
        return [0]
    stride = (num_train_steps - 1) / (num_steps - 1)
    kept, index = [], 0.0
    for _ in range(num_steps):
        kept.append(round(index))
        index += stride
    return kept


@dataclass(frozen=True)
class StepCoefficients:
    """Per-sample float32 coefficients of one update ``x_t -> x_s``; each is shaped [B,1,1,1]."""

    sqrt_recip_abar: torch.Tensor  # 1/sqrt(abar_t): x0 = a*x_t - b*eps
    sqrt_recipm1_abar: torch.Tensor  # sqrt(1/abar_t - 1)
    mean_coef_x0: torch.Tensor  # posterior mean = c1 * x0 + c2 * x_t
    mean_coef_xt: torch.Tensor
    log_beta: torch.Tensor  # upper end of the learned log-variance range
    log_beta_tilde: torch.Tensor  # lower end (posterior variance, log clipped)
    sqrt_abar_s: torch.Tensor  # for DDIM
    abar_t: torch.Tensor
    abar_s: torch.Tensor
    final: torch.Tensor  # bool [B,1,1,1]: s == 0, no noise is added


class ModelOutput(NamedTuple):
    """What the model (with guidance: the guided combination) predicts at ``x_t``."""

    pred: torch.Tensor  # eps, or v for a v-prediction model
    var: torch.Tensor | None = None  # the learned variance interpolation in [-1, 1]; None: a fixed variance


METHODS = ("ancestral", "ddim")


@dataclass(frozen=True)
class Rule:
    """How :meth:`NoiseSchedule.step` reads the model's output and moves ``x_t``.

    Attributes:
        prediction: what the model predicts: ``"eps_var"`` or ``"eps"`` (eps) or ``"v"``.
        method: ``"ancestral"`` (the posterior, GLIDE's sampler) or ``"ddim"``.
        eta: DDIM's noise (0: deterministic); the ancestral rule ignores it.
    """

    prediction: str = "eps_var"
    method: str = "ancestral"
    eta: float = 0.0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not one of {', '.join(METHODS)}")


class NoiseSchedule:
    """A training process (default: GLIDE's cosine schedule) respaced to ``num_steps`` sampling steps.

    Example:
        >>> ns = NoiseSchedule(100)
        >>> ns.timestep(100), ns.timestep(1), round(float(ns.abar[51]), 4)
        (999, 0, 0.4845)
    """

    def __init__(self, num_steps: int = 100, diffusion: Diffusion = Diffusion()):
        self.num_steps = num_steps
        self.diffusion = diffusion
        self.num_train_steps = diffusion.train_steps
        self.alphas_cumprod = diffusion.alphas_cumprod()
        self.kept = space_timesteps(self.num_train_steps, num_steps)
        # abar[t] for paper steps t = 0..K, float64; abar[0] = 1 (the clean image).
        self.abar = np.concatenate([[1.0], self.alphas_cumprod[self.kept]])

    def timestep(self, t: int) -> int:
        """The training step the model is called with at paper step ``t`` (1..K)."""
        if not 1 <= t <= self.num_steps:
            raise ValueError(f"t={t} is out of range 1..{self.num_steps}")
        return self.kept[t - 1]

    @cached_property
    def betas(self) -> np.ndarray:
        """Respaced one-step betas, ``betas[t-1]`` belongs to step t (the paper's Fig. 15)."""
        return 1.0 - self.abar[1:] / self.abar[:-1]

    @cached_property
    def _clipped_log_var_floor(self) -> float:
        # GLIDE clips the log posterior variance of its first respaced step (which is 0)
        # to the value of the second one; it matters only for a step that lands on s=0 with
        # noise, which never happens, but keeps the log finite.
        if self.num_steps < 2:
            return math.log(self.betas[0])
        b = self.betas[1]
        return math.log(b * (1 - self.abar[1]) / (1 - self.abar[2]))

    def coefficients(
        self, t: list[int], s: list[int], dtype=torch.float32, device=None, variance_s: list[int] | None = None
    ) -> StepCoefficients:
        """Coefficients of the update from ``x_t`` to ``x_s`` (``s < t``), one pair per sample.

        ``variance_s``: the step whose variance terms the update adds (default ``s``; ``t - 1``
        gives a jump the one-step sigma_t of Eq. 4 read literally).
        """
        t_a = np.asarray(t)
        s_a = np.asarray(s)
        v_a = s_a if variance_s is None else np.asarray(variance_s)
        if np.any(s_a >= t_a) or np.any(s_a < 0) or np.any(t_a > self.num_steps) or np.any(v_a < s_a) or np.any(v_a >= t_a):
            raise ValueError(f"need 0 <= s <= variance_s < t <= {self.num_steps}, got t={t} s={s} variance_s={variance_s}")
        at = self.abar[t_a]
        as_ = self.abar[s_a]
        beta = 1.0 - at / as_
        av = self.abar[v_a]
        beta_v = 1.0 - at / av
        post_var = beta_v * (1.0 - av) / (1.0 - at)
        with np.errstate(divide="ignore"):
            log_post = np.where(v_a == 0, self._clipped_log_var_floor, np.log(np.where(v_a == 0, 1.0, post_var)))

        def col(a) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, dtype=np.float64), device=device).to(dtype).view(-1, 1, 1, 1)

        return StepCoefficients(
            sqrt_recip_abar=col(np.sqrt(1.0 / at)),
            sqrt_recipm1_abar=col(np.sqrt(1.0 / at - 1.0)),
            mean_coef_x0=col(beta * np.sqrt(as_) / (1.0 - at)),
            mean_coef_xt=col((1.0 - as_) * np.sqrt(1.0 - beta) / (1.0 - at)),
            log_beta=col(np.log(beta_v)),
            log_beta_tilde=col(log_post),
            sqrt_abar_s=col(np.sqrt(as_)),
            abar_t=col(at),
            abar_s=col(as_),
            final=torch.as_tensor(s_a == 0, device=device).view(-1, 1, 1, 1),
        )

    # -- update rules -------------------------------------------------------------------

    def step(
        self, c: StepCoefficients, x_t: torch.Tensor, out: ModelOutput, noise: torch.Tensor, rule: Rule = Rule()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One update from ``x_t`` given the model's output: the x0 estimate and ``x_s``.

        ``c``: :meth:`coefficients` of the update, per row: a plain step, a jump of several
        steps, or a jump with the one-step variance. ``noise``: what the update adds (none
        where ``s = 0``, or for DDIM with ``eta = 0``).

        Example:
            >>> ns, x = NoiseSchedule(10), torch.zeros(1, 3, 4, 4)
            >>> x0, x_s = ns.step(ns.coefficients([1], [0]), x, ModelOutput(x, x), torch.ones_like(x))
            >>> torch.equal(x0, x), torch.equal(x_s, x)
            (True, True)
        """
        eps = self.eps_from_v(c, x_t, out.pred) if rule.prediction == "v" else out.pred
        x0 = self.predict_x0(c, x_t, eps, clip=self.diffusion.clip_x0)
        if rule.method == "ancestral":
            return x0, self.ancestral(c, x_t, x0, out.var, noise, self.diffusion.variance)
        return x0, self.ddim(c, x_t, x0, noise, rule.eta)

    @staticmethod
    def predict_x0(c: StepCoefficients, x_t: torch.Tensor, eps: torch.Tensor, clip: bool = True) -> torch.Tensor:
        """``x0^ = (x_t - sqrt(1-abar_t) eps) / sqrt(abar_t)``, clipped to [-1, 1]."""
        x0 = c.sqrt_recip_abar * x_t - c.sqrt_recipm1_abar * eps
        return x0.clamp(-1, 1) if clip else x0

    @staticmethod
    def eps_from_v(c: StepCoefficients, x_t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """eps from a v-prediction ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0``."""
        return c.abar_t.sqrt() * v + (1 - c.abar_t).sqrt() * x_t

    @staticmethod
    def ancestral(
        c: StepCoefficients,
        x_t: torch.Tensor,
        x0: torch.Tensor,
        v: torch.Tensor | None,
        noise: torch.Tensor,
        variance: str = "learned",
    ) -> torch.Tensor:
        """One ancestral step (also a jump).

        ``variance="learned"``: the model's interpolation ``v`` in [-1, 1] between the log
        posterior variance and log beta (GLIDE); ``"fixed_small"``: the posterior variance;
        ``"fixed_large"``: beta (``v`` is then ignored).
        """
        mean = c.mean_coef_x0 * x0 + c.mean_coef_xt * x_t
        if variance == "learned":
            frac = (v + 1) / 2
            log_var = frac * c.log_beta + (1 - frac) * c.log_beta_tilde
        elif variance == "fixed_small":
            log_var = c.log_beta_tilde
        elif variance == "fixed_large":
            log_var = c.log_beta
        else:
            raise ValueError(f"variance={variance!r} is not one of {', '.join(VARIANCES)}")
        return torch.where(c.final, mean, mean + torch.exp(0.5 * log_var) * noise)

    @staticmethod
    def ddim(
        c: StepCoefficients, x_t: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, eta: float = 0.0
    ) -> torch.Tensor:
        """One DDIM step; eps is re-derived from the clipped x0 as GLIDE's ``ddim_sample`` does."""
        eps = (c.sqrt_recip_abar * x_t - x0) / c.sqrt_recipm1_abar
        sigma = eta * torch.sqrt((1 - c.abar_s) / (1 - c.abar_t)) * torch.sqrt(1 - c.abar_t / c.abar_s)
        mean = c.sqrt_abar_s * x0 + torch.sqrt(1 - c.abar_s - sigma**2) * eps
        return torch.where(c.final, mean, mean + sigma * noise)
