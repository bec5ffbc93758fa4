"""A search for cheap schedules under a quality budget, composed from the package's interventions.

The search space. Sampling steps ``t = K .. 1`` are cut into windows of ``window`` steps;
each window takes at most one *window move*: the bottom ``nb`` decoder blocks dropped over
the whole window (zeros, or reused from the last full step as DeepCache does), or a jump
of ``n`` steps from the window's first step (Eq. 4). Two *ladders* act on the tail: an early
stop at ``t`` (return that step's x0 estimate) and guidance truncation (the unconditional
branch dropped for the last ``m`` steps). A state is one value per slot (window or ladder);
:func:`compose` turns it into a :class:`~unetdyn.interventions.Schedule`, cutting windows
around the steps a jump or the early stop removes.

The method: sensitivity-ordered greedy with verification.

1. Each move alone is measured on the search samples (the Fig. 8-style sensitivity curve
   of every intervention): its FLOP saving and its loss of quality.
2. Moves that alone break the budget are pruned; the rest are ordered by FLOPs saved per
   unit of quality lost.
3. In that order, each move is added to the current state (replacing its slot's value if it
   saves more) and the composite schedule is *measured*; it is kept if it still meets the
   budget. Passes repeat until one adds nothing.

Interactions are never assumed: every kept state was measured. Measurements go through a
:class:`~unetdyn.paper.sweeps.Sweep`, so each schedule is stored as soon as it is measured
and an interrupted search continues where it stopped. The search samples are not the ones
the result is reported on (:func:`search_samples` keeps seeds and classes apart).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from unetdyn.cost import CallCost
from unetdyn.interventions import DropBlocks, DropGuidance, EarlyStop, Intervention, Schedule, ScheduleError, SkipSteps
from unetdyn.paths import is_builtin
from unetdyn.sampler import SamplerConfig

__all__ = ["Budget", "Move", "SearchResult", "BudgetNotMet", "candidate_moves", "compose", "search", "search_samples"]

METRICS = {"ssim": "mean SSIM", "ssim_lcb": "95% lower confidence bound of the mean SSIM",
           "ssim_p5": "5th percentile of SSIM", "psnr": "mean PSNR"}


class BudgetNotMet(ValueError):
    """No schedule the search found meets the budget; the message names the best it found."""


@dataclass(frozen=True)
class Budget:
    """A quality floor on the search samples: ``metric >= threshold``, and optionally a FLOP saving to reach.

    ``metric``: ``ssim`` (mean SSIM to the full output), ``ssim_lcb`` (the one-sided 95% lower
    confidence bound of that mean, ``mean - t_{0.95, n-1} sd / sqrt(n)``: a schedule passes only
    if its mean on samples it was not chosen on is likely to pass too), ``ssim_p5`` (its 5th
    percentile) or ``psnr`` (mean PSNR, dB). ``min_saving``: the search fails (:class:`BudgetNotMet`) when its
    best schedule saves less than this fraction of the full sampler's FLOPs.

    Example:
        >>> Budget.parse("ssim>=0.8")
        Budget(metric='ssim', threshold=0.8, min_saving=0.0)
        >>> Budget.parse("ssim_p5 >= 0.6").value(np.linspace(0.5, 1, 101))
        0.525
    """

    metric: str = "ssim"
    threshold: float = 0.8
    min_saving: float = 0.0

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"budget metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)):
            raise ValueError(f"budget threshold {self.threshold!r} must be a finite number")
        if not 0 <= self.min_saving < 1:
            raise ValueError(f"min_saving={self.min_saving!r} is out of range [0, 1)")

    @classmethod
    def parse(cls, text: str, min_saving: float = 0.0) -> Budget:
        m = re.fullmatch(r"\s*([a-z_0-9]+)\s*>=\s*(\S+)\s*", text or "")
        if not m:
            raise ValueError(f"budget {text!r} must read METRIC>=VALUE, METRIC one of {', '.join(METRICS)} (e.g. ssim>=0.8)")
        try:
            value = float(m.group(2))
        except ValueError:
            raise ValueError(f"budget {text!r}: {m.group(2)!r} is not a number") from None
        return cls(m.group(1), value, min_saving)

    def value(self, ssim: np.ndarray, psnr: np.ndarray | None = None) -> float:
        """The budget's metric over per-sample SSIM (and PSNR) values."""
        if self.metric == "ssim":
            return float(np.mean(ssim))
        if self.metric == "ssim_lcb":
            from scipy.stats import t

            v = np.asarray(ssim, dtype=float)
            if v.size < 2:
                raise ValueError(f"budget {self} needs at least 2 samples for a confidence bound, got {v.size}")
            return float(v.mean() - t.ppf(0.95, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
        if self.metric == "ssim_p5":
            return float(np.percentile(ssim, 5))
        p = np.asarray(psnr, dtype=float)
        return float(np.mean(np.where(np.isinf(p), 100.0, p)))  # identical outputs: PSNR capped at 100 dB

    def __str__(self) -> str:
        return f"{self.metric}>={self.threshold:g}"


@dataclass(frozen=True)
class Move:
    """One value for one slot: ``slot`` is ``"stop"``, ``"guidance"`` or ``"window@T"`` (T its first step)."""

    slot: str
    value: Intervention


def candidate_moves(
    K: int = 100,
    n_blocks: int = 16,
    window: int = 10,
    nbs: Sequence[int] = (8, 12),
    cache_nbs: Sequence[int] = (12,),
    jumps: Sequence[int] = (3,),
    stops: Sequence[int] = (10, 15, 20, 25, 30),
    guidance: Sequence[int] = (20, 40, 60, 80, 90),
) -> list[Move]:
    """The search space: window moves on every window of ``window`` steps, and the two ladders.

    Example:
        >>> ms = candidate_moves(K=20, n_blocks=16, window=10, stops=(5,), guidance=(10,))
        >>> [(m.slot, m.value) for m in ms][:2]
        [('window@20', DropBlocks(t_start=20, n=10, nb=8, fill='zeros')), ('window@20', DropBlocks(t_start=20, n=10, nb=12, fill='zeros'))]
    """
    if not 1 <= window <= K:
        raise ValueError(f"window={window} is out of range 1..{K}")
    out: list[Move] = []
    for start in range(K, 0, -window):
        n = min(window, start)
        slot = f"window@{start}"
        out += [Move(slot, DropBlocks(start, n, nb)) for nb in nbs if nb <= n_blocks]
        if start < K:  # the first step has no earlier step to reuse
            out += [Move(slot, DropBlocks(start, n, nb, fill="cache")) for nb in cache_nbs if nb <= n_blocks]
        out += [Move(slot, SkipSteps(start, j)) for j in jumps if j < start]
    out += [Move("stop", EarlyStop(t)) for t in stops if 1 < t <= K]
    out += [Move("guidance", DropGuidance(m, m)) for m in guidance if 1 <= m <= K]
    return out


def _runs(steps: Sequence[int]) -> list[tuple[int, int]]:
    """Descending steps -> (first step, length) of each run of consecutive steps."""
    runs: list[tuple[int, int]] = []
    for t in steps:
        if runs and runs[-1][0] - runs[-1][1] == t:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((t, 1))
    return runs


def compose(state: dict[str, Intervention], name: str = "") -> Schedule:
    """The schedule of a search state, windows cut around the steps a jump or the early stop removes.

    Example:
        >>> s = compose({"window@20": SkipSteps(20, 3), "guidance": DropGuidance(20, 20), "stop": EarlyStop(5)})
        >>> print(s.describe())
        skip_steps(t_start=20, n=3); early_stop(t=5); drop_guidance(t_start=20, n=1); drop_guidance(t_start=17, n=13)
    """
    stop = state.get("stop")
    removed: set[int] = set(range(1, stop.t)) if stop is not None else set()
    jumps = [iv for iv in state.values() if isinstance(iv, SkipSteps)]
    for j in jumps:
        removed |= set(range(j.t_start - j.n + 1, j.t_start))
    ivs: list[Intervention] = [*jumps, *([stop] if stop is not None else [])]
    for iv in state.values():
        if isinstance(iv, (DropBlocks, DropGuidance)):
            kept = [t for t in iv.window() if t not in removed]
            for start, n in _runs(kept):
                ivs.append(DropBlocks(start, n, iv.nb, iv.fill) if isinstance(iv, DropBlocks) else DropGuidance(start, n))
    if not name:
        name = "search " + hashlib.sha256(repr(sorted(map(repr, ivs))).encode()).hexdigest()[:10]
    return Schedule(tuple(ivs), name=name)


@dataclass
class Trial:
    """One measured schedule: its state, FLOP saving and quality on the search samples."""

    state: dict[str, Intervention]
    schedule: Schedule
    saving: float
    value: float  # the budget's metric
    ssim: float  # mean SSIM (for the loss of quality)


@dataclass
class SearchResult:
    """The cheapest schedule found that meets the budget, and every schedule measured on the way.

    Attributes:
        best: the found schedule (its state, saving and quality on the search samples).
        singles: each candidate move alone (the sensitivity the search orders moves by).
        path: the accepted states in order (each measured).
        trials: how many schedules were measured.
    """

    budget: Budget
    best: Trial
    singles: list[Trial]
    path: list[Trial] = field(default_factory=list)
    trials: int = 0


def search(
    measure: Callable[[Sequence[Schedule], Schedule], list[tuple[np.ndarray, np.ndarray]]],
    flops: Callable[[Schedule], float],
    budget: Budget,
    moves: Sequence[Move],
    passes: int = 2,
    progress: bool = True,
) -> SearchResult:
    """Sensitivity-ordered greedy search (see the module's docstring).

    Args:
        measure: ``measure(schedules, base)``: per schedule, per-sample (SSIM, PSNR) to the full
            output on the search samples; ``base`` is a schedule they all extend (the current
            best), from whose run a measurement may resume.
        flops: FLOPs per sample of a schedule (the full schedule's is ``flops(Schedule())``).
        budget: what the found schedule must meet on the search samples.
        moves: the search space (:func:`candidate_moves`).
        passes: greedy passes over the ordered moves (a pass that adds nothing ends it).

    Raises:
        BudgetNotMet: the best schedule found saves less than ``budget.min_saving``, or not even
            the full schedule meets the budget; the message names the best found.
    """
    full = float(flops(Schedule()))

    def trials_of(states: list[dict[str, Intervention]], base: Schedule) -> list[Trial | None]:
        scheds: list[Schedule | None] = []
        for st in states:
            try:
                scheds.append(compose(st))
            except ScheduleError:
                scheds.append(None)
        ok: dict[str, Schedule] = {}  # by name: states that compose alike are measured once
        cost: dict[str, float] = {}
        for s in scheds:
            if s is None or s.name in ok:
                continue
            try:
                cost[s.name] = flops(s)  # compiles it against the Unet and the steps
                ok[s.name] = s
            except ScheduleError:
                pass
        measured = dict(zip(ok, measure(list(ok.values()), base))) if ok else {}
        out: list[Trial | None] = []
        for st, s in zip(states, scheds):
            if s is None or s.name not in measured:
                out.append(None)
                continue
            ssim, psnr = measured[s.name]
            out.append(Trial(dict(st), s, 1.0 - cost[s.name] / full, budget.value(ssim, psnr), float(np.mean(ssim))))
        return out

    ssim0, psnr0 = measure([Schedule(name="full")], Schedule())[0]
    start = Trial({}, Schedule(name="full"), 0.0, budget.value(ssim0, psnr0), float(np.mean(ssim0)))
    if start.value < budget.threshold:
        raise BudgetNotMet(f"budget {budget} is not met even by the full sampler ({budget.metric} = {start.value:.3f})")
    singles_all = trials_of([{m.slot: m.value} for m in moves], Schedule())
    singles = [t for t in singles_all if t is not None]
    n_trials = 1 + len(singles)
    kept = [t for t in singles if t.value >= budget.threshold and t.saving > 0]
    order = sorted(kept, key=lambda t: t.saving / max(1.0 - t.ssim, 1e-3), reverse=True)

    best, path = start, [start]
    bar = tqdm(total=passes * len(order), desc="search", unit="trial", disable=not progress)
    for _ in range(passes):
        added = False
        for single in order:
            bar.update(1)
            (slot, value), = single.state.items()
            if best.state.get(slot) == value:
                continue
            state = {**best.state, slot: value}
            trial = trials_of([state], best.schedule)[0]
            n_trials += 1
            if trial is not None and trial.value >= budget.threshold and trial.saving > best.saving:
                best, added = trial, True
                path.append(trial)
        if not added:
            break
    bar.close()
    result = SearchResult(budget, best, singles, path, n_trials)
    if best.saving < budget.min_saving:
        raise BudgetNotMet(
            f"no schedule found meets {budget} and saves >= {budget.min_saving:.0%} of the FLOPs; the best found saves "
            f"{best.saving:.1%} at {budget.metric} = {best.value:.3f}: {best.schedule.describe()}"
        )
    return result


def search_samples(class_names: Sequence[str], per_class: int = 4, classes: Sequence[int] = (0, 1, 2, 3, 4),
                   first_seed: int = 1000) -> tuple[list[str], list[int]]:
    """The samples the search measures on: ``per_class`` seeds of each of ``classes``.

    Seeds start at ``first_seed``, away from the book's samples (seeds 0..99), and the
    classes are half of the built-in model's: the other half are held out.
    """
    prompts = [class_names[c] for c in classes for _ in range(per_class)]
    return prompts, list(range(first_seed, first_seed + len(prompts)))


def flops_counter(unet, config: SamplerConfig, prompt=None) -> Callable[[Schedule], float]:
    """FLOPs per sample of a schedule on ``unet`` (each distinct forward counted once)."""
    cc = CallCost(unet, prompt)
    return lambda s: cc.flops_per_sample(s, config)


def sweep_search(sweep, budget: Budget, moves: Sequence[Move] | None = None, passes: int = 2,
                 progress: bool = True) -> SearchResult:
    """:func:`search` on the samples of a :class:`~unetdyn.paper.sweeps.Sweep`: every schedule it
    measures is stored as soon as it is measured, and a sweep over a read-only store replays a
    finished search without sampling."""
    unet = sweep.unet
    if moves is None:
        moves = candidate_moves(sweep.config.steps, len(unet.skips_popped))

    def measure(schedules: Sequence[Schedule], base: Schedule) -> list[tuple[np.ndarray, np.ndarray]]:
        t = sweep.run(schedules, resume_from=base).table
        return [(t.ssim[t.schedule == s.name].to_numpy(), t.psnr[t.schedule == s.name].to_numpy()) for s in schedules]

    return search(measure, flops_counter(unet, sweep.config, sweep.prompts[0]), budget, moves, passes, progress)


def open_search_sweep(model: str = "builtin", weights: str | None = None, per_class: int = 4, steps: int = 100,
                      guidance: float = 3.0, *, compute: bool = True, device: str | None = None, cache_dir=None,
                      batch_size: int = 16, progress: bool = True, precision: str = "fp32", executor: str = "local",
                      address: str | None = None):
    """The sweep of the search samples (:func:`search_samples`; other models: the book's prompts, seeds from 1000).

    ``executor="ray"``: the schedules each step of the search measures are computed on Ray workers
    (``address``: the cluster; None: a local Ray), each loading the model as named here; see
    :func:`~unetdyn.paper.sweeps.open_sweep`."""
    from pathlib import Path

    from unetdyn.backends import load_unet
    from unetdyn.paper.cache import Cache
    from unetdyn.paper.executors import make_executor
    from unetdyn.paper.sweeps import Sweep, default_samples
    from unetdyn.paths import CACHE_DIR

    if isinstance(per_class, bool) or not isinstance(per_class, int) or not 1 <= per_class <= 1000:
        raise ValueError(f"per_class={per_class!r} is out of range 1..1000")
    unet = load_unet(model, weights, "cpu" if executor == "ray" else device)
    executor = make_executor(executor, unet, model=model, weights=weights, device=device, address=address)
    if is_builtin(model):
        prompts, seeds = search_samples(unet.config.class_names, per_class)
    else:
        prompts, _ = default_samples(unet, model, 5 * per_class)
        seeds = list(range(1000, 1000 + len(prompts)))
    cache = Cache(Path(cache_dir) if cache_dir is not None else CACHE_DIR, read_only=not compute)
    return Sweep(unet, prompts, seeds, SamplerConfig(steps=steps, guidance=guidance), cache, batch_size, progress, precision,
                 executor)
