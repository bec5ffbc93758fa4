"""The one sampling loop: schedules -> per-step Unet calls -> images (and trajectories).

Every (schedule, sample) pair is a *job*. All jobs advance together from ``t = K`` down to
``t = 1``; at each step the jobs that are due there are grouped by their Unet surgery and
run as one batch (classifier-free guidance doubles it). A jump (skip steps) only changes
the job's next ``t``; an early stop returns that step's x0 estimate.

Determinism: the starting noise of a sample and the noise added at step ``t`` derive from
``(seed, t)`` alone (:func:`step_noise`), so results do not depend on batch size, batch
composition or order (beyond the rounding of the CPU kernels, which pick other code paths for
other batch shapes: equal shapes give equal bits), and an intervened run and its baseline see
the same noise.

Prefix reuse: given the baseline :class:`Trajectory` of the same samples, a job starts at
its schedule's first intervened step from the baseline's ``x_t`` instead of recomputing
the steps they share.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from unetdyn.interventions import Schedule, ScheduleError, Step, preset
from unetdyn.noise import NoiseSchedule
from unetdyn.unet import PREDICTIONS, Surgery, Unet, forward

__all__ = ["SamplerConfig", "Trajectory", "SampleResult", "Stats", "advance", "sample", "trajectory", "step_noise",
           "PRECISIONS", "NonFiniteError", "x0_change"]

METHODS = ("ancestral", "ddim")
PRECISIONS = ("fp32", "bf16")


class NonFiniteError(FloatingPointError):
    """A sample became NaN or infinite; the message names the schedule, the seed and the step."""


class _NonFinite(Exception):
    """Raised inside the loop with the jobs that went non-finite at step ``t`` (named by :func:`sample`)."""

    def __init__(self, t: int, jobs: list):
        super().__init__(t)
        self.t, self.jobs = t, jobs


@dataclass(frozen=True)
class SamplerConfig:
    """How to sample.

    Attributes:
        steps: number of respaced sampling steps K (GLIDE's base model: 100).
        guidance: classifier-free guidance scale on eps (1.0 = conditional only, no doubling).
        method: ``"ancestral"`` (GLIDE's sampler, learned variance) or ``"ddim"``.
        eta: DDIM noise (0 = deterministic); only with ``method="ddim"``.
    """

    steps: int = 100
    guidance: float = 3.0
    method: str = "ancestral"
    eta: float = 0.0

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= 1000:
            raise ValueError(f"steps={self.steps!r} is out of range 1..1000")
        if not (isinstance(self.guidance, (int, float)) and math.isfinite(self.guidance) and self.guidance >= 0):
            raise ValueError(f"guidance={self.guidance!r} must be a finite number >= 0 (1.0: conditional only)")
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not one of {', '.join(METHODS)}")
        if not 0 <= self.eta <= 1:
            raise ValueError(f"eta={self.eta!r} is out of range 0..1")
        if self.eta and self.method != "ddim":
            raise ValueError(f"eta={self.eta} applies only to method='ddim'")


def step_noise(seed: int, t: int, shape: Sequence[int], kind: str = "step") -> torch.Tensor:
    """The noise of sample ``seed`` at step ``t`` (``kind="init"``: the starting ``x_K``).

    The sampler draws the starting noise with ``t=0`` whatever ``K``, so samplers with fewer
    steps start from the same ``x_K`` as the 100-step one (only the per-step noise differs).

    Example:
        >>> torch.equal(step_noise(3, 50, (3, 8, 8)), step_noise(3, 50, (3, 8, 8)))
        True
    """
    state = np.random.SeedSequence([int(seed), {"init": 1, "step": 2}[kind], int(t)]).generate_state(2, np.uint32)
    g = torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))
    return torch.randn(tuple(shape), generator=g)


@dataclass
class Stats:
    """What the sampler actually computed."""

    unet_calls: int = 0  # per sample (a guided call counts once)
    encoder_blocks: int = 0  # block evaluations, per sample (guidance doubling not counted)
    middle_blocks: int = 0
    decoder_blocks: int = 0

    def add(self, other: Stats) -> None:
        for k in vars(self):
            setattr(self, k, getattr(self, k) + getattr(other, k))


@dataclass
class Trajectory:
    """The baseline run of some samples, kept for reuse and for the phase figures.

    Attributes:
        xs: ``[K+1, N, C, H, W]``, ``xs[t]`` is ``x_t`` (``xs[0]`` the output, ``xs[K]`` the noise);
            a latent model's latents.
        x0_hat: ``[K+1, N, C, H, W]``, ``x0_hat[t]`` the x0 estimate at step t as an image
            (decoded, for a latent model); ``x0_hat[0]`` is the output image.
    """

    prompts: list[Any]
    seeds: list[int]
    config: SamplerConfig
    xs: torch.Tensor
    x0_hat: torch.Tensor
    schedule: Schedule = field(default_factory=Schedule)  # the schedule it ran (default: none, the full run)

    @property
    def x0(self) -> torch.Tensor:
        """The output images (decoded, for a latent model; ``xs[0]`` is the final latent)."""
        return self.x0_hat[0]


@dataclass
class SampleResult:
    """Images ``[S, N, C, H, W]`` in [-1, 1], one row per schedule, and what it cost.

    ``latents``: the sampler's final states, ``[S, N, *unet.image_shape]`` (for a latent
    model what the VAE decoded into ``images``; for a pixel model ``images`` itself).
    """

    images: torch.Tensor
    schedules: list[Schedule]
    stats: Stats = field(default_factory=Stats)
    latents: torch.Tensor | None = None


@dataclass
class _Job:
    row: int  # schedule index
    col: int  # sample index
    seed: int
    steps: dict[int, Step]
    t: int  # the next step to run
    x: torch.Tensor
    keep: tuple[int, ...] = ()  # decoder outputs to remember for cache fill
    cache: dict[int, torch.Tensor] = field(default_factory=dict)
    out: torch.Tensor | None = None


def _diverge(steps: Sequence[Step], base_steps: Sequence[Step]) -> int | None:
    """The first (largest) step at which two compiled runs differ, or None if they are the same run.

    Up to there both ran the same steps, so both reach it from the same ``x_t``.
    """
    base = {st.t: st for st in base_steps}
    for st in steps:
        if base.get(st.t) != st:
            return st.t
    return None


def _start(steps: tuple[Step, ...], K: int, baseline: Trajectory | None, base_steps: tuple[Step, ...]) -> int:
    """The step a job starts at: K, or with a baseline the first step where it differs from the
    baseline's run (0: it is the baseline's run; nothing to compute).

    Cache fill needs the activation of the last full step, so such jobs start one step
    earlier and recompute it, which only a full baseline (no interventions) guarantees to be
    a full step; on another baseline they start at K.
    """
    if baseline is None:
        return K
    first = _diverge(steps, base_steps)
    if first is None:
        return 0
    if any(s.fill == "cache" and s.drop_blocks for s in steps):
        return min(K, first + 1) if not baseline.schedule.interventions else K
    return first


def sample(
    unet: Unet,
    prompts: Sequence[Any],
    seeds: Sequence[int],
    schedules: Sequence[Schedule] | Schedule | str = "full",
    config: SamplerConfig = SamplerConfig(),
    baseline: Trajectory | None = None,
    batch_size: int = 16,
    progress: bool = True,
    callback: Callable[[int, list[tuple[int, int]], torch.Tensor, torch.Tensor], None] | None = None,
    precision: str = "fp32",
) -> SampleResult:
    """Sample every prompt/seed pair under every schedule.

    Args:
        prompts, seeds: one per sample (a prompt is what ``unet.condition`` accepts).
        schedules: one schedule, a preset name, or several (run together, batched).
        baseline: a :class:`Trajectory` of the same samples and config (usually the full
            schedule's); each job resumes from it at the first step where its run differs.
        batch_size: maximum samples per Unet call (guidance doubles the rows).
        callback: ``callback(t, jobs, x_t, x0_hat)`` after each batched step; ``jobs``
            holds the (schedule index, sample index) of each row.
        precision: ``"fp32"`` or ``"bf16"``: the Unet's matrix products (convolutions,
            attention, linear layers) under bfloat16 autocast, faster on CPUs with
            AVX512-BF16/AMX (the built-in model: 1.3-1.9x); the update rules, the noise and
            the returned tensors stay float32.
            Results differ from fp32 ones beyond rounding, so stores key them apart; small
            intervention effects drown in the amplified bf16 rounding (see the README).

    Example:
        >>> res = sample(unet, ["circle", "star"], [0, 1], ["full", "paper-shortcut"])  # doctest: +SKIP
        >>> res.images.shape                                                             # doctest: +SKIP
        torch.Size([2, 2, 3, 32, 32])
    """
    if isinstance(schedules, (str, Schedule)):
        schedules = [schedules]
    scheds = [preset(s) if isinstance(s, str) else s for s in schedules]
    if len(prompts) != len(seeds):
        raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds; give one seed per prompt")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    K = config.steps
    if baseline is not None:
        if list(baseline.seeds) != list(seeds) or list(baseline.prompts) != list(prompts) or baseline.config != config:
            raise ValueError("baseline was computed for other prompts, seeds or sampler config")
    n_blocks, n_skips = len(unet.skips_popped), sum(unet.skips_pushed)
    plans = []
    for s in scheds:
        try:
            plans.append(s.compile(K, n_blocks, n_skips))
        except ScheduleError as exc:
            raise ScheduleError(f"schedule {s.name or s.describe()!r}: {exc}") from exc

    check_parameterization(unet)
    ns = NoiseSchedule(K, unet.diffusion)
    dev = unet.device
    shape = unet.image_shape
    with torch.no_grad():
        cond = unet.condition(list(prompts))
        uncond = unet.condition([None]) if config.guidance != 1.0 and unet.conditional else None

    base_steps = baseline.schedule.compile(K, n_blocks, n_skips) if baseline is not None else ()
    jobs: list[_Job] = []
    for row, (s, steps) in enumerate(zip(scheds, plans)):
        t0 = _start(steps, K, baseline, base_steps)
        keep = tuple(sorted({st.drop_blocks - 1 for st in steps if st.fill == "cache" and st.drop_blocks}))
        by_t = {st.t: st for st in steps}
        for col, seed in enumerate(seeds):
            if t0 == 0:  # the baseline's own run: nothing to compute
                jobs.append(_Job(row, col, seed, by_t, 0, baseline.xs[0, col], out=baseline.xs[0, col].to(dev)))
                continue
            x = baseline.xs[t0, col] if baseline is not None else step_noise(seed, 0, shape, "init")
            jobs.append(_Job(row, col, seed, by_t, t0, x.to(dev, torch.float32), keep))

    stats = Stats()
    todo = sum(sum(1 for st in j.steps.values() if st.t <= j.t) for j in jobs)
    bar = tqdm(total=todo, desc="sampling", unit="step", disable=not progress, leave=False)
    # one autocast region for the whole loop: the bf16 copies of the weights are made once
    try:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            for t in range(K, 0, -1):
                due = [j for j in jobs if j.out is None and j.t == t]
                groups: dict[Surgery, list[_Job]] = defaultdict(list)
                for j in due:
                    groups[Surgery(*j.steps[t].surgery)].append(j)
                for surgery, group in groups.items():
                    for i in range(0, len(group), batch_size):
                        chunk = group[i : i + batch_size]
                        stats.add(_run_step(unet, ns, config, t, chunk, surgery, cond, uncond, callback))
                        bar.update(len(chunk))
    except _NonFinite as exc:
        raise NonFiniteError(_non_finite_message(scheds, exc.jobs, f"at step t={exc.t}")) from None
    finally:
        bar.close()

    latents = torch.stack([torch.stack([j.out for j in jobs if j.row == r]) for r in range(len(scheds))])
    images = _decode(unet, latents.flatten(0, 1), batch_size).unflatten(0, latents.shape[:2])
    if not torch.isfinite(images).all():  # a latent model's decoder can overflow where the sampler did not
        bad = [j for j in jobs if not torch.isfinite(images[j.row, j.col]).all()]
        raise NonFiniteError(_non_finite_message(scheds, bad, "when its latents were decoded"))
    return SampleResult(images=images.cpu(), schedules=scheds, stats=stats, latents=latents.cpu())


def _non_finite_message(scheds: Sequence[Schedule], jobs: list[_Job], when: str) -> str:
    names = sorted({scheds[j.row].name or scheds[j.row].describe() for j in jobs})
    seeds = sorted({j.seed for j in jobs})
    return (f"sampling went NaN or infinite {when} under schedule(s) {', '.join(map(repr, names))[:200]} "
            f"(seed(s) {', '.join(map(str, seeds[:8]))}{', ...' if len(seeds) > 8 else ''}): the model's weights or "
            "its output overflow float32; no image was written")


def x0_change(unet: Unet, baseline: Trajectory, nbs: Sequence[int], steps: Sequence[int],
                      batch_size: int = 16) -> torch.Tensor:
    """How far the step from ``x_t`` of ``baseline`` moves its x0 estimate when the bottom ``nb``
    decoder blocks are removed from that one call: ``[len(nbs), len(steps)]``, the mean over
    samples of ``||x0_nb - x0|| / ||x0||``. It shows what the blocks contribute at each step
    before any later step can correct it; the x0 estimate, not the raw prediction, so that steps
    are comparable (eps enters x0 scaled by ``sqrt(1 / alpha_bar - 1)``, large at t = K, small near 0).
    """
    config, K = baseline.config, baseline.config.steps
    ns, dev, n = NoiseSchedule(K, unet.diffusion), unet.device, len(baseline.seeds)
    change = torch.zeros(len(nbs), len(steps))
    with torch.no_grad():
        cond = unet.condition(list(baseline.prompts))
        uncond = unet.condition([None]) if config.guidance != 1.0 and unet.conditional else None
        for j, t in enumerate(tqdm(steps, desc="block usage", unit="step", leave=False, disable=len(steps) < 10)):
            for i in range(0, n, batch_size):
                cols = list(range(i, min(n, i + batch_size)))
                x = baseline.xs[t, cols].to(dev, torch.float32)
                timesteps = torch.full((len(cols),), ns.timestep(t), dtype=torch.long, device=dev)
                coef = ns.coefficients([t] * len(cols), [t - 1] * len(cols), device=dev)
                c = _gather(cond, cols)

                def x0_of(surgery: Surgery) -> torch.Tensor:
                    pred, v, _, _ = _model_output(unet, config, x, timesteps, c, uncond, surgery, None, ())
                    return advance(ns, unet.prediction, config, coef, x, pred, v, torch.zeros_like(x))[0].flatten(1)

                full = x0_of(Surgery())
                for k, nb in enumerate(nbs):
                    cut = x0_of(Surgery(drop_blocks=nb))
                    change[k, j] += ((cut - full).norm(dim=1) / full.norm(dim=1)).sum().cpu()
    return change / n


def check_parameterization(unet: Unet) -> None:
    """The backend's prediction and its training process's variance must fit together."""
    if unet.prediction not in PREDICTIONS:
        raise ValueError(f"the model predicts {unet.prediction!r}; the sampler knows {', '.join(PREDICTIONS)}")
    learned = unet.diffusion.variance == "learned"
    if learned != (unet.prediction == "eps_var"):
        raise ValueError(
            f"a model that predicts {unet.prediction!r} cannot sample with variance={unet.diffusion.variance!r}: "
            "eps_var goes with the learned variance, eps and v with fixed_small or fixed_large"
        )


@torch.no_grad()
def _decode(unet: Unet, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``unet.decode`` in batches (a pixel model returns its input: no copy)."""
    parts = [unet.decode(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _gather(cond: dict[str, torch.Tensor], idx: list[int]) -> dict[str, torch.Tensor]:
    if not cond:  # an unconditional model
        return {}
    index = torch.tensor(idx, device=next(iter(cond.values())).device)
    return {k: v.index_select(0, index) for k, v in cond.items()}


@torch.no_grad()
def _model_output(unet: Unet, config: SamplerConfig, x, timesteps, c, uncond, surgery: Surgery, fill_t, keep):
    """One (guided) forward: the prediction (eps or v, guided), the learned variance interpolation
    (None without one), the kept decoder outputs."""
    b = len(x)
    guided = surgery.guided and uncond is not None
    if guided:  # the conditional and unconditional rows in one call
        u = _gather(uncond, [0] * b)
        c = {k: torch.cat([c[k], u[k]]) for k in c}
        x, timesteps = torch.cat([x, x]), timesteps.repeat(2)
        fill_t = None if fill_t is None else torch.cat([fill_t, fill_t])
    res = forward(unet, x.to(unet.dtype), timesteps, c, surgery, fill_t, keep)
    out = res.out.float()
    ch = unet.image_shape[0]
    # guidance acts on what the model predicts (eps or v: either is affine in the other for one x_t)
    pred, v = out[:, :ch], (out[:, ch:] if unet.prediction == "eps_var" else None)
    if guided:
        pred_c, pred_u = pred[:b], pred[b:]
        pred, v = pred_u + config.guidance * (pred_c - pred_u), (None if v is None else v[:b])
        return pred, v, {k: h[:b] for k, h in res.kept.items()}, res
    return pred, v, res.kept, res


def advance(
    ns: NoiseSchedule,
    prediction: str,
    config: SamplerConfig,
    coef,
    x: torch.Tensor,
    pred: torch.Tensor,
    v: torch.Tensor | None,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One update from ``x_t`` given the (guided) model prediction: the x0 estimate and ``x_s``.

    ``pred`` is eps, or v for ``prediction="v"``; ``v`` is the learned variance interpolation
    (``eps_var`` models) or None. ``coef`` are ``ns.coefficients`` of the update.
    """
    eps = ns.eps_from_v(coef, x, pred) if prediction == "v" else pred
    x0 = ns.predict_x0(coef, x, eps, clip=ns.diffusion.clip_x0)
    if config.method == "ancestral":
        return x0, ns.ancestral(coef, x, x0, v, noise, ns.diffusion.variance)
    return x0, ns.ddim(coef, x, x0, noise, config.eta)


@torch.no_grad()
def _run_step(
    unet: Unet,
    ns: NoiseSchedule,
    config: SamplerConfig,
    t: int,
    chunk: list[_Job],
    surgery: Surgery,
    cond: dict[str, torch.Tensor],
    uncond: dict[str, torch.Tensor] | None,
    callback,
) -> Stats:
    """One batched Unet call at step t and the update of every job in ``chunk``."""
    dev = unet.device
    b = len(chunk)
    x = torch.stack([j.x for j in chunk])
    fill_t = None
    if surgery.fill == "cache" and surgery.drop_blocks:
        if any(surgery.drop_blocks - 1 not in j.cache for j in chunk):
            raise ScheduleError(f"drop_blocks fill='cache' at t={t}: no earlier step computed that block")
        fill_t = torch.stack([j.cache[surgery.drop_blocks - 1] for j in chunk])
    keep = sorted(set().union(*(j.keep for j in chunk)))
    timesteps = torch.full((b,), ns.timestep(t), dtype=torch.long, device=dev)
    c = _gather(cond, [j.col for j in chunk])
    pred, v, kept, res = _model_output(unet, config, x, timesteps, c, uncond, surgery, fill_t, keep)

    steps = [j.steps[t] for j in chunk]
    coef = ns.coefficients([t] * b, [s.next_t for s in steps], device=dev,
                           variance_s=[t - 1 if s.one_step_variance else s.next_t for s in steps])
    noise = torch.stack([step_noise(j.seed, t, x.shape[1:]) for j in chunk]).to(dev)
    x0, x_next = advance(ns, unet.prediction, config, coef, x, pred, v, noise)
    # one reduction per batch (the arithmetic above is untouched); rows are located only on failure
    if not bool(torch.isfinite(x_next).all() & torch.isfinite(x0).all()):
        rows = [k for k in range(b) if not bool(torch.isfinite(x_next[k]).all() & torch.isfinite(x0[k]).all())]
        raise _NonFinite(t, [chunk[k] for k in rows])

    for k, (j, s) in enumerate(zip(chunk, steps)):
        for blk, h in kept.items():
            if blk in j.keep:
                j.cache[blk] = h[k]
        if s.stop:
            j.out = x0[k]
        else:
            j.x, j.t = x_next[k], s.next_t
            if s.next_t == 0:
                j.out = x_next[k]
    if callback is not None:
        callback(t, [(j.row, j.col) for j in chunk], x, x0)
    return Stats(
        unet_calls=b,
        encoder_blocks=b * res.encoder_blocks,
        middle_blocks=b * int(res.middle),
        decoder_blocks=b * res.decoder_blocks,
    )


def trajectory(
    unet: Unet,
    prompts: Sequence[Any],
    seeds: Sequence[int],
    config: SamplerConfig = SamplerConfig(),
    batch_size: int = 16,
    progress: bool = True,
    schedule: Schedule | str = "full",
    baseline: Trajectory | None = None,
    precision: str = "fp32",
) -> Trajectory:
    """Run a schedule (default: the full one) and keep every ``x_t`` and x0 estimate (a baseline for reuse).

    ``baseline``: a trajectory of the same samples to resume from (the steps before the
    first difference are copied from it). Rows of steps the schedule does not visit (a
    jump's, those after an early stop) are zeros.

    Example:
        >>> base = trajectory(unet, ["circle"] * 4, range(4))                    # doctest: +SKIP
        >>> sample(unet, base.prompts, base.seeds, "paper-shortcut", baseline=base)  # doctest: +SKIP
    """
    sched = preset(schedule) if isinstance(schedule, str) else schedule
    K = config.steps
    n = len(seeds)
    xs = baseline.xs.clone() if baseline is not None else torch.zeros((K + 1, n, *unet.image_shape))
    # allocated at the first step without a baseline: a latent model's images have another shape
    x0_hat: list[torch.Tensor] = [baseline.x0_hat.clone()] if baseline is not None else []
    visited: set[int] = set()

    def record(t: int, jobs: list[tuple[int, int]], x_t: torch.Tensor, x0: torch.Tensor) -> None:
        cols = [c for _, c in jobs]
        visited.add(t)
        xs[t, cols] = x_t.cpu()
        img = unet.decode(x0).cpu()
        if not x0_hat:
            x0_hat.append(torch.zeros((K + 1, n, *img.shape[1:])))
        x0_hat[0][t, cols] = img

    res = sample(unet, prompts, seeds, sched, config, baseline=baseline, batch_size=batch_size, progress=progress,
                 callback=record, precision=precision)
    if visited:  # rows above the first step run are the baseline's (the shared prefix); below, unvisited rows are zeros
        for t in range(1, max(visited)):
            if t not in visited:
                xs[t] = 0
                x0_hat[0][t] = 0
    xs[0] = res.latents[0]
    x0_hat[0][0] = res.images[0]
    return Trajectory(prompts=list(prompts), seeds=[int(s) for s in seeds], config=config, xs=xs, x0_hat=x0_hat[0],
                      schedule=sched)
