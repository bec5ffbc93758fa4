"""The training objective of improved DDPM (Nichol & Dhariwal 2021) with a learned variance.

:class:`DiffusionTables` holds the cosine schedule's per-step coefficients (the sampler's
own, so that training and sampling agree); :func:`hybrid_loss` is ``L_simple + lambda L_vlb``
built from the Gaussian KL (:func:`normal_kl`) and the discretised decoder likelihood
(:func:`discretized_gaussian_log_likelihood`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from unetdyn.noise import TRAIN_STEPS, Diffusion, NoiseSchedule

__all__ = ["DiffusionTables", "hybrid_loss", "normal_kl", "discretized_gaussian_log_likelihood"]


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
