"""The one sampling loop: schedules -> per-step Unet calls -> images (and trajectories).

Every (schedule, sample) pair is a *job*. All jobs advance together from ``t = K`` down to
``t = 1``; at each step the jobs that are due there are grouped by their Unet surgery into
batches (:class:`_Batch`). A batch runs the guided model once (:func:`_denoiser`:
classifier-free guidance doubles its rows) and the noise schedule's update
(:meth:`~unetdyn.noise.NoiseSchedule.step`) moves each job to its next ``x``. A jump (skip
steps) only changes the job's next ``t``; an early stop returns that step's x0 estimate.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from unetdyn.interventions import Schedule, ScheduleError, Step, preset
from unetdyn.noise import METHODS, ModelOutput, NoiseSchedule, Rule, StepCoefficients
from unetdyn.unet import PREDICTIONS, ForwardResult, Surgery, Unet, forward

__all__ = ["SamplerConfig", "RunOptions", "Trajectory", "SampleResult", "Stats", "sample", "trajectory", "step_noise",
           "PRECISIONS", "NonFiniteError", "x0_change", "below_share"]

PRECISIONS = ("fp32", "bf16")

Cond = dict[str, torch.Tensor]
Callback = Callable[[int, list[tuple[int, int]], torch.Tensor, torch.Tensor], None]
Denoiser = Callable[[torch.Tensor, "_Batch"], tuple[ModelOutput, ForwardResult]]


class NonFiniteError(FloatingPointError):
    """A sample became NaN or infinite; the message names the schedule, the seed and the step."""


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


@dataclass(frozen=True, eq=False)
class RunOptions:
    """How to run the sampler, besides the model, the samples and the schedules.

    Attributes:
        config: the sampler config.
        baseline: a :class:`Trajectory` of the same samples and config (usually the full
            schedule's); each job resumes from it at the first step where its run differs.
        batch_size: maximum samples per Unet call (guidance doubles the rows).
        progress: show a progress bar.
        precision: ``"fp32"`` or ``"bf16"``: the Unet's matrix products (convolutions,
            attention, linear layers) under bfloat16 autocast, faster on CPUs with
            AVX512-BF16/AMX (the built-in model: 1.3-1.9x); the update rules, the noise and
            the returned tensors stay float32. Results differ from fp32 ones beyond rounding,
            so stores key them apart; small intervention effects drown in the amplified bf16
            rounding (see the README).
        callback: ``callback(t, jobs, x_t, x0_hat)`` after each batched step; ``jobs``
            holds the (schedule index, sample index) of each row.
    """

    config: SamplerConfig = SamplerConfig()
    baseline: Trajectory | None = None
    batch_size: int = 16
    progress: bool = True
    precision: str = "fp32"
    callback: Callback | None = None

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of {', '.join(PRECISIONS)}")


@dataclass
class _Job:
    """One (schedule, sample) pair: where it is, and the decoder outputs it keeps for cache fill."""

    row: int  # schedule index
    col: int  # sample index
    seed: int
    schedule: str  # its name, for messages
    steps: dict[int, Step]
    t: int  # the next step to run
    x: torch.Tensor
    keep: tuple[int, ...] = ()  # decoder outputs to remember for cache fill
    cache: dict[int, torch.Tensor] = field(default_factory=dict)
    out: torch.Tensor | None = None


@dataclass
class _Batch:
    """Jobs due at step ``t`` that share one Unet surgery: one Unet call, and the bookkeeping
    around it (the cache fill it reads, the decoder outputs it keeps, where each job goes)."""

    t: int
    surgery: Surgery
    jobs: list[_Job]

    @property
    def keep(self) -> list[int]:
        """The decoder outputs that some job of the batch fills a later step with."""
        return sorted(set().union(*(j.keep for j in self.jobs)))

    def x(self) -> torch.Tensor:
        return torch.stack([j.x for j in self.jobs])

    def fill(self) -> torch.Tensor | None:
        """What replaces the dropped decoders' output: each job's cached one (``fill="cache"``), else None (zeros)."""
        nb = self.surgery.drop_blocks
        if self.surgery.fill != "cache" or not nb:
            return None
        if any(nb - 1 not in j.cache for j in self.jobs):
            raise ScheduleError(f"drop_blocks fill='cache' at t={self.t}: no earlier step computed that block")
        return torch.stack([j.cache[nb - 1] for j in self.jobs])

    def coefficients(self, ns: NoiseSchedule, device: torch.device) -> StepCoefficients:
        """The update of each job: to its next step (``t - 1``, or further for a jump), adding
        the variance of that jump or, with ``one_step_variance``, of the plain step."""
        steps = [j.steps[self.t] for j in self.jobs]
        return ns.coefficients([self.t] * len(steps), [s.next_t for s in steps], device=device,
                               variance_s=[self.t - 1 if s.one_step_variance else s.next_t for s in steps])

    def noise(self, device: torch.device) -> torch.Tensor:
        return torch.stack([step_noise(j.seed, self.t, j.x.shape) for j in self.jobs]).to(device)

    def finish(self, x0: torch.Tensor, x_next: torch.Tensor, kept: dict[int, torch.Tensor]) -> None:
        """Move every job on: to ``x_next`` at its next step, or out (an early stop's x0 estimate,
        the last step's ``x_0``); remember the decoder outputs it keeps."""
        # one check per batch, read back once (the arithmetic is untouched)
        finite = torch.isfinite(x_next).flatten(1).all(1) & torch.isfinite(x0).flatten(1).all(1)
        if not bool(finite.all()):
            bad = [j for j, ok in zip(self.jobs, finite.tolist()) if not ok]
            raise NonFiniteError(_non_finite_message(bad, f"at step t={self.t}"))
        for k, j in enumerate(self.jobs):
            j.cache.update({blk: h[k] for blk, h in kept.items() if blk in j.keep})
            s = j.steps[self.t]
            if s.stop:
                j.out = x0[k]
            else:
                j.x, j.t = x_next[k], s.next_t
                if s.next_t == 0:
                    j.out = x_next[k]


def _batches(jobs: list[_Job], t: int, batch_size: int) -> Iterator[_Batch]:
    """The jobs due at ``t`` grouped by surgery (in order of first appearance), at most ``batch_size`` a batch."""
    groups: dict[Surgery, list[_Job]] = defaultdict(list)
    for j in jobs:
        if j.out is None and j.t == t:
            groups[Surgery(*j.steps[t].surgery)].append(j)
    for surgery, group in groups.items():
        for i in range(0, len(group), batch_size):
            yield _Batch(t, surgery, group[i : i + batch_size])


def _denoiser(unet: Unet, ns: NoiseSchedule, config: SamplerConfig, prompts: Sequence[Any]) -> Denoiser:
    """The model with classifier-free guidance: ``denoise(x, batch)`` runs the batch's Unet call
    on its ``x_t`` and returns the guided output and the call's :class:`ForwardResult` (the
    decoder outputs kept, the blocks run)."""
    with torch.no_grad():
        cond = unet.condition(list(prompts))
        uncond = unet.condition([None]) if config.guidance != 1.0 and unet.conditional else None

    @torch.no_grad()
    def denoise(x: torch.Tensor, batch: _Batch) -> tuple[ModelOutput, ForwardResult]:
        b, surgery = len(x), batch.surgery
        timesteps = torch.full((b,), ns.timestep(batch.t), dtype=torch.long, device=unet.device)
        c, fill = _gather(cond, [j.col for j in batch.jobs]), batch.fill()
        guided = surgery.guided and uncond is not None
        if guided:  # the conditional and unconditional rows in one call
            u = _gather(uncond, [0] * b)
            c = {k: torch.cat([c[k], u[k]]) for k in c}
            x, timesteps = torch.cat([x, x]), timesteps.repeat(2)
            fill = None if fill is None else torch.cat([fill, fill])
        res = forward(unet, x.to(unet.dtype), timesteps, c, surgery, fill, batch.keep)
        out = res.out.float()
        ch = unet.image_shape[0]
        pred, var = out[:, :ch], (out[:, ch:] if unet.prediction == "eps_var" else None)
        # guidance acts on what the model predicts (eps or v: either is affine in the other for one x_t)
        if guided:
            pred_c, pred_u = pred[:b], pred[b:]
            pred, var = pred_u + config.guidance * (pred_c - pred_u), (None if var is None else var[:b])
            res.kept = {k: h[:b] for k, h in res.kept.items()}
        return ModelOutput(pred, var), res

    return denoise


def _gather(cond: Cond, idx: list[int]) -> Cond:
    if not cond:  # an unconditional model
        return {}
    index = torch.tensor(idx, device=next(iter(cond.values())).device)
    return {k: v.index_select(0, index) for k, v in cond.items()}


def _start(steps: tuple[Step, ...], K: int, baseline: Trajectory | None, base_steps: tuple[Step, ...]) -> int:
    """The step a job starts at: K, or with a baseline the first step where it differs from the
    baseline's run (0: it is the baseline's run; nothing to compute). Up to there both ran the
    same steps, so both reach it from the same ``x_t``.

    Cache fill needs the activation of the last full step, so such jobs start one step
    earlier and recompute it, which only a full baseline (no interventions) guarantees to be
    a full step; on another baseline they start at K.
    """
    if baseline is None:
        return K
    base = {st.t: st for st in base_steps}
    first = next((st.t for st in steps if base.get(st.t) != st), None)
    if first is None:
        return 0
    if any(s.fill == "cache" and s.drop_blocks for s in steps):
        return min(K, first + 1) if not baseline.schedule.interventions else K
    return first


def _jobs(unet: Unet, scheds: list[Schedule], seeds: Sequence[int], run: RunOptions) -> list[_Job]:
    """Every (schedule, sample) pair at the step it starts at (see :func:`_start`)."""
    K, baseline, dev = run.config.steps, run.baseline, unet.device
    blocks = (K, len(unet.skips_popped), sum(unet.skips_pushed))
    base_steps = baseline.schedule.compile(*blocks) if baseline is not None else ()
    jobs = []
    for row, sched in enumerate(scheds):
        name = sched.name or sched.describe()
        try:
            steps = sched.compile(*blocks)
        except ScheduleError as exc:
            raise ScheduleError(f"schedule {name!r}: {exc}") from exc
        t0 = _start(steps, K, baseline, base_steps)
        keep = tuple(sorted({st.drop_blocks - 1 for st in steps if st.fill == "cache" and st.drop_blocks}))
        by_t = {st.t: st for st in steps}
        for col, seed in enumerate(seeds):
            if t0 == 0:  # the baseline's own run: nothing to compute
                jobs.append(_Job(row, col, seed, name, by_t, 0, baseline.xs[0, col], out=baseline.xs[0, col].to(dev)))
                continue
            x = baseline.xs[t0, col] if baseline is not None else step_noise(seed, 0, unet.image_shape, "init")
            jobs.append(_Job(row, col, seed, name, by_t, t0, x.to(dev, torch.float32), keep))
    return jobs


def sample(
    unet: Unet,
    prompts: Sequence[Any],
    seeds: Sequence[int],
    schedules: Sequence[Schedule] | Schedule | str = "full",
    run: RunOptions = RunOptions(),
) -> SampleResult:
    """Sample every prompt/seed pair under every schedule.

    Args:
        prompts, seeds: one per sample (a prompt is what ``unet.condition`` accepts).
        schedules: one schedule, a preset name, or several (run together, batched).
        run: the sampler config, a baseline to resume from, batching, precision (:class:`RunOptions`).

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
    config, baseline = run.config, run.baseline
    if baseline is not None:
        if list(baseline.seeds) != list(seeds) or list(baseline.prompts) != list(prompts) or baseline.config != config:
            raise ValueError("baseline was computed for other prompts, seeds or sampler config")
    jobs = _jobs(unet, scheds, seeds, run)  # compiles the schedules: their errors come before any work
    check_parameterization(unet)
    ns, dev = NoiseSchedule(config.steps, unet.diffusion), unet.device
    denoise, rule = _denoiser(unet, ns, config, prompts), Rule(unet.prediction, config.method, config.eta)

    stats = Stats()
    todo = sum(sum(1 for st in j.steps.values() if st.t <= j.t) for j in jobs)
    bar = tqdm(total=todo, desc="sampling", unit="step", disable=not run.progress, leave=False)
    # one autocast region for the whole loop: the bf16 copies of the weights are made once
    with bar, torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=run.precision == "bf16"):
        for t in range(config.steps, 0, -1):
            for batch in _batches(jobs, t, run.batch_size):
                x = batch.x()
                out, res = denoise(x, batch)
                x0, x_next = ns.step(batch.coefficients(ns, dev), x, out, batch.noise(dev), rule)
                batch.finish(x0, x_next, res.kept)
                if run.callback is not None:
                    run.callback(t, [(j.row, j.col) for j in batch.jobs], x, x0)
                b = len(batch.jobs)
                stats.add(Stats(b, b * res.encoder_blocks, b * int(res.middle), b * res.decoder_blocks))
                bar.update(b)

    latents = torch.stack([torch.stack([j.out for j in jobs if j.row == r]) for r in range(len(scheds))])
    images = _decode(unet, latents.flatten(0, 1), run.batch_size).unflatten(0, latents.shape[:2])
    if not torch.isfinite(images).all():  # a latent model's decoder can overflow where the sampler did not
        bad = [j for j in jobs if not torch.isfinite(images[j.row, j.col]).all()]
        raise NonFiniteError(_non_finite_message(bad, "when its latents were decoded"))
    return SampleResult(images=images.cpu(), schedules=scheds, stats=stats, latents=latents.cpu())


def _non_finite_message(jobs: list[_Job], when: str) -> str:
    names = sorted({j.schedule for j in jobs})
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
    config, dev, n = baseline.config, unet.device, len(baseline.seeds)
    ns = NoiseSchedule(config.steps, unet.diffusion)
    denoise, rule = _denoiser(unet, ns, config, baseline.prompts), Rule(unet.prediction, config.method, config.eta)
    change = torch.zeros(len(nbs), len(steps))
    for s, t in enumerate(tqdm(steps, desc="block usage", unit="step", leave=False, disable=len(steps) < 10)):
        for i in range(0, n, batch_size):
            cols = range(i, min(n, i + batch_size))
            jobs = [_Job(0, c, baseline.seeds[c], "", {}, t, baseline.xs[t, c].to(dev, torch.float32)) for c in cols]
            x = torch.stack([j.x for j in jobs])
            coef = ns.coefficients([t] * len(cols), [t - 1] * len(cols), device=dev)
            x0 = []  # the step's x0 estimate: whole, then without the bottom nb decoder blocks
            for nb in (0, *nbs):
                out, _ = denoise(x, _Batch(t, Surgery(drop_blocks=nb), jobs))
                x0.append(ns.step(coef, x, out, torch.zeros_like(x), rule)[0].flatten(1))
            for k in range(len(nbs)):
                change[k, s] += ((x0[k + 1] - x0[0]).norm(dim=1) / x0[0].norm(dim=1)).sum().cpu()
    return change / n


@torch.no_grad()
def below_share(unet: Unet, baseline: Trajectory, steps: Sequence[int], batch_size: int = 16) -> torch.Tensor:
    """Where each decoder block's input comes from at ``x_t`` of ``baseline``: ``[decoders, len(steps)]``,
    the mean over samples of the share of the energy decoder ``j`` receives that comes from below
    (the middle's or decoder ``j-1``'s output) rather than from the skips it pops (see
    :func:`~unetdyn.unet.forward`), on the conditional branch. Removing the bottom ``nb`` blocks
    zeroes what decoder ``nb`` receives from below: where that share is small, the skips carry it.
    """
    config, dev, n = baseline.config, unet.device, len(baseline.seeds)
    ns = NoiseSchedule(config.steps, unet.diffusion)
    cond = unet.condition(list(baseline.prompts))
    share = torch.zeros(len(unet.skips_popped), len(steps))
    for s, t in enumerate(steps):
        for i in range(0, n, batch_size):
            cols = list(range(i, min(n, i + batch_size)))
            timesteps = torch.full((len(cols),), ns.timestep(t), dtype=torch.long, device=dev)
            res = forward(unet, baseline.xs[t, cols].to(dev, unet.dtype), timesteps, _gather(cond, cols), shares=True)
            for j, v in res.below.items():
                share[j, s] += v.sum().cpu()
    return share / n


def check_parameterization(unet: Unet) -> None:
    """The backend's prediction and its training process's variance must fit together."""
    if unet.prediction not in PREDICTIONS:
        raise ValueError(f"the model predicts {unet.prediction!r}; the sampler knows {', '.join(PREDICTIONS)}")
    learned = unet.diffusion.variance == "learned"
    if learned != (unet.prediction == "eps_var"):
        raise ValueError(f"a model that predicts {unet.prediction!r} cannot sample with variance="
                         f"{unet.diffusion.variance!r}: eps_var goes with the learned variance, eps and v with "
                         "fixed_small or fixed_large")


@torch.no_grad()
def _decode(unet: Unet, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``unet.decode`` in batches (a pixel model returns its input: no copy)."""
    parts = [unet.decode(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def trajectory(unet: Unet, prompts: Sequence[Any], seeds: Sequence[int], schedule: Schedule | str = "full",
               run: RunOptions = RunOptions()) -> Trajectory:
    """Run a schedule (default: the full one) and keep every ``x_t`` and x0 estimate (a baseline for reuse).

    ``run.baseline``: a trajectory of the same samples to resume from (the steps before the
    first difference are copied from it). Rows of steps the schedule does not visit (a
    jump's, those after an early stop) are zeros.

    Example:
        >>> base = trajectory(unet, ["circle"] * 4, range(4))                                    # doctest: +SKIP
        >>> sample(unet, base.prompts, base.seeds, "paper-shortcut", RunOptions(baseline=base))  # doctest: +SKIP
    """
    sched = preset(schedule) if isinstance(schedule, str) else schedule
    K, n, baseline = run.config.steps, len(seeds), run.baseline
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
        if run.callback is not None:
            run.callback(t, jobs, x_t, x0)

    res = sample(unet, prompts, seeds, sched, replace(run, callback=record))
    if visited:  # rows above the first step run are the baseline's (the shared prefix); below, unvisited rows are zeros
        for t in range(1, max(visited)):
            if t not in visited:
                xs[t] = 0
                x0_hat[0][t] = 0
    xs[0] = res.latents[0]
    x0_hat[0][0] = res.images[0]
    return Trajectory(prompts=list(prompts), seeds=[int(s) for s in seeds], config=run.config, xs=xs,
                      x0_hat=x0_hat[0], schedule=sched)

