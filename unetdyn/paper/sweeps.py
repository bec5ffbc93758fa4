"""Sweeps: many schedules against one baseline, as a cached table of per-sample metrics.

A sweep's result for one schedule is stored in the :class:`~unetdyn.paper.cache.Cache` under
a key derived from everything that determines it: the model's weights checksum, the sampler
config, the prompts and seeds, the schedule's interventions (not its name) and the schema
version. Each schedule is stored as soon as it is computed, so an interrupted sweep keeps
what it finished. A sweep opened with ``compute=False`` never samples: a missing result
raises :class:`~unetdyn.paper.cache.CacheMiss` naming it.

What is missing is computed by the sweep's executor (:mod:`unetdyn.paper.executors`): in this
process, or on Ray workers (``open_sweep(..., executor="ray")``), in units of a few schedules
each; either way this process stores each result as it arrives.

Example:
    >>> sw = open_sweep(SweepSpec(n_samples=10))                                       # doctest: +SKIP
    >>> res = sw.run([Schedule((SkipSteps(t, 5),), name=f"t{t}") for t in range(6, 101)])  # doctest: +SKIP
    >>> res.table.groupby("schedule").ssim.mean()                                      # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from unetdyn.backends.registry import check_model
from unetdyn.interventions import Schedule, ScheduleError
from unetdyn.paper import sweep_units
from unetdyn.paper.cache import SCHEMA_VERSION, Cache, CacheMiss, content_key, model_id
from unetdyn.paper.executors import Executor, Unit, UnitProgress, make_executor
from unetdyn.paths import is_builtin
from unetdyn.sampler import PRECISIONS, SamplerConfig, Trajectory
from unetdyn.unet import Unet

__all__ = [
    "Cache",
    "CacheMiss",
    "Sweep",
    "SweepResult",
    "SweepSpec",
    "model_id",
    "open_sweep",
]


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep's results depend on besides its schedules: the model and the samples.

    Chapters that share a sweep (the Fig. 8 curves feed chapters 3 to 6) share one spec, so
    they read the same cached results. Runtime choices (device, batch size, progress) are not
    part of it: they do not change the results beyond float rounding. The sampler's precision
    does, so a sweep run in bf16 keys its results apart (see :class:`Sweep`).

    Attributes:
        model: ``builtin``, ``glide`` or ``diffusers:PATH`` (a diffusers pipeline folder).
        weights: a weights file (None: the shipped built-in weights / glide-text2im's loader).
        n_samples: samples per curve (the paper: 100 prompts, one sample each).
        steps: respaced sampling steps K (GLIDE's base model: 100).
        guidance: classifier-free guidance scale.
    """

    model: str = "builtin"
    weights: str | None = None
    n_samples: int = 100
    steps: int = 100
    guidance: float = 3.0

    def __post_init__(self):
        if self.model == "diffusers":
            raise ValueError("model='diffusers' names random-weights architectures; a sweep needs a pipeline: diffusers:PATH")
        check_model(self.model)
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, int) or not 1 <= self.n_samples <= 10_000:
            raise ValueError(f"n_samples={self.n_samples!r} is out of range 1..10000")
        SamplerConfig(steps=self.steps, guidance=self.guidance)  # validates both

    @property
    def config(self) -> SamplerConfig:
        return SamplerConfig(steps=self.steps, guidance=self.guidance)


@dataclass(frozen=True)
class SweepResult:
    """Per-sample metrics of a sweep's schedules, and the images kept for some samples.

    Attributes:
        table: one row per (schedule, sample): ``schedule, sample, seed, prompt, ssim, psnr``
            and the label columns the sweep was given.
        images: a schedule's interventions (its ``interventions`` tuple) -> uint8
            ``[k, H, W, C]`` of the kept samples.
    """

    table: pd.DataFrame
    images: Mapping[tuple, np.ndarray] = field(default_factory=dict)

    def image(self, *interventions) -> np.ndarray:
        """The kept images of the schedule made of exactly these interventions."""
        return self.images[tuple(interventions)]

    @staticmethod
    def concat(results: Sequence[SweepResult]) -> SweepResult:
        images: dict[tuple, np.ndarray] = {}
        for r in results:
            images.update(r.images)
        return SweepResult(pd.concat([r.table for r in results], ignore_index=True), images)


class Sweep:
    """Schedules run against the baseline of fixed samples; results cached per schedule.

    Args:
        unet: the backend.
        prompts, seeds: the samples (the paper: 100 prompts, one sample each).
        config: the sampler config shared by the baseline and every schedule.
        cache: where results live (None: no caching). A read-only cache makes every miss a
            :class:`CacheMiss`: such a sweep never samples.
        batch_size: samples per Unet call.
        precision: the sampler's precision (``"fp32"`` or ``"bf16"``, see
            :func:`~unetdyn.sampler.sample`). bf16 results are stored under keys of their own;
            fp32 keys are those of a sweep without the option, so existing stores stay valid.
        executor: where what is missing is computed: ``"local"`` (this process), ``"ray"`` (Ray
            workers, each with a copy of ``unet``; :func:`open_sweep` has them load it by name), or an
            :class:`~unetdyn.paper.executors.Executor`. Either way this process writes the store.
        address: the Ray cluster (``executor="ray"``; None: a local Ray).
    """

    def __init__(
        self,
        unet: Unet,
        prompts: Sequence[Any],
        seeds: Sequence[int],
        config: SamplerConfig = SamplerConfig(),
        cache: Cache | None = None,
        batch_size: int = 16,
        progress: bool = True,
        precision: str = "fp32",
        executor: str | Executor = "local",
        address: str | None = None,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}")
        self.unet, self.config, self.cache = unet, config, cache
        self.prompts, self.seeds = list(prompts), [int(s) for s in seeds]
        self.batch_size, self.progress, self.precision = batch_size, progress, precision
        self.executor = make_executor(executor, unet, address=address)
        self._base: Trajectory | None = None  # the full run's x_t (x0 estimates: the output only)
        self._base_arrays: dict[str, np.ndarray] | None = None  # its metrics, computed with it
        self._resumed: Trajectory | None = None  # the last trajectory of an intervened schedule (run(resume_from=...))
        self._ident = {
            "model": model_id(unet),
            "config": asdict(config),
            "prompts": [str(p) for p in self.prompts],
            "seeds": self.seeds,
        }
        if precision != "fp32":  # fp32 keys stay as they were before the option existed
            self._ident["precision"] = precision

    def key(self, what: str, extra: Any = None) -> str:
        return content_key({"v": SCHEMA_VERSION, **self._ident, "what": what, "extra": extra})

    @property
    def computes(self) -> bool:
        """Whether a miss is computed (False: it raises :class:`CacheMiss`)."""
        return self.cache is None or not self.cache.read_only

    def _describe(self, what: str) -> str:
        return f"{what} ({len(self.seeds)} samples, {self.config.steps} steps, guidance {self.config.guidance})"

    def _samples(self) -> dict[str, Any]:
        """What every unit of this sweep is given: its samples and how to sample them."""
        return {"prompts": self.prompts, "seeds": self.seeds, "config": self.config, "batch_size": self.batch_size,
                "precision": self.precision}

    @property
    def _shows_progress(self) -> bool:
        """Whether a unit shows its own progress bar (a local one does; a worker's would print elsewhere)."""
        return self.progress and self.executor.kind == "local"

    # -- the baseline ---------------------------------------------------------------------

    @property
    def full_trajectory(self) -> Trajectory:
        """The full-schedule trajectory (computed on first use; kept in memory, not cached): every
        ``x_t``, and of the x0 estimates the output ``x0`` only."""
        if self._base is None:
            if not self.computes:
                raise CacheMiss(f"{self._describe('the baseline trajectory')} would have to be sampled")
            self._base, self._base_arrays = self.executor.call(
                sweep_units.baseline_unit, self._describe("the baseline trajectory"), **self._samples(),
                progress=self._shows_progress)
        return self._base

    def trajectory_of(self, schedule: Schedule) -> Trajectory:
        """The trajectory of ``schedule`` on the sweep's samples (resumed from the full run's; kept
        in memory, the last one only)."""
        if not schedule.interventions:
            return self.full_trajectory
        if self._resumed is None or self._resumed.schedule.interventions != schedule.interventions:
            if not self.computes:
                raise CacheMiss(f"{self._describe('the trajectory of ' + repr(schedule.describe()))} would have to be sampled")
            self._resumed = self.executor.call(
                sweep_units.resumed_unit, self._describe(f"the trajectory of {schedule.describe()!r}"), **self._samples(),
                schedule=schedule, base=self.full_trajectory)
        return self._resumed

    def baseline(self) -> dict[str, np.ndarray]:
        """The untouched outputs and their per-step trajectory metrics (cached).

        Returns ``x0`` (uint8 images ``[N, H, W, C]``), ``psnr_xt[t, i]`` (PSNR of ``x_t`` to
        ``x_0``, the paper's Fig. 16) and ``ssim_x0hat[t, i]`` (SSIM of the x0 estimate at
        ``t`` to ``x_0``, Fig. 17), for ``t = 0..K`` (row 0 compares ``x_0`` with itself).
        """
        n, k = len(self.seeds), self.config.steps
        expect = {"x0": (n, None, None, None), "psnr_xt": (k + 1, n), "ssim_x0hat": (k + 1, n)}
        key = self.key("baseline")
        hit = self.cache.get(key, expect) if self.cache is not None else None
        if hit is not None:
            return hit
        self.full_trajectory  # noqa: B018 - computes the trajectory and its metrics
        arrays = dict(self._base_arrays)
        if self.cache is not None:
            self.cache.put(key, arrays, {"what": "baseline"})
        return arrays

    def block_usage(self, nbs: Sequence[int], steps: Sequence[int], samples: int) -> dict[str, np.ndarray]:
        """Per step of the baseline's run (``t = steps[j]``), the mean over its first ``samples`` samples (each
        cached):

        - ``change[i, j]``: how far the step from ``x_t`` moves its x0 estimate when the bottom ``nbs[i]``
          decoder blocks are removed from that one call (:func:`~unetdyn.sampler.x0_change`);
        - ``share[k, j]``: the share of the energy decoder ``k`` receives at ``x_t`` that comes from below,
          not from its skips (:func:`~unetdyn.sampler.below_share`).
        """
        n = min(samples, len(self.seeds))
        first = None  # the noise derives from (seed, t): the first samples' run is the full baseline's first columns
        if self._base is not None:
            b = self._base
            first = Trajectory(b.prompts[:n], b.seeds[:n], b.config, b.xs[:, :n], b.x0_hat[:, :n])
        steps, nbs = list(map(int, steps)), list(map(int, nbs))
        described = f"the block usage on {n} samples"
        keys = {"change": self.key("block-usage-x0", {"nbs": nbs, "steps": steps, "samples": n}),
                "share": self.key("block-share", {"steps": steps, "samples": n})}
        shapes = {"change": (len(nbs), len(steps)), "share": (len(self.unet.skips_popped), len(steps))}
        arrays = {}
        if self.cache is not None:
            for name, key in keys.items():
                arrays.update(self.cache.get(key, {name: shapes[name]}) or {})
        missing = [name for name in keys if name not in arrays]
        if missing:
            if not self.computes:
                raise CacheMiss(f"{self._describe(described)} ({', '.join(missing)}) is not in the store")
            # one unit for what is missing: the first samples' baseline is sampled once for both maps
            computed = self.executor.call(sweep_units.block_usage_unit, self._describe(described), **self._samples(),
                                          nbs=nbs, steps=steps, n=n, first=first, parts=missing,
                                          progress=self._shows_progress)
            for name in missing:
                if self.cache is not None:
                    self.cache.put(keys[name], {name: computed[name]}, {"what": f"block usage ({name})"})
                arrays[name] = computed[name]
        return arrays

    # -- schedules --------------------------------------------------------------------------

    def run(
        self,
        schedules: Sequence[Schedule],
        images: Sequence[int] | None = None,
        chunk: int = 8,
        labels: Sequence[dict] | None = None,
        resume_from: Schedule | None = None,
    ) -> SweepResult:
        """Per-sample SSIM/PSNR of every schedule against the baseline.

        Args:
            schedules: the schedules; their names label the rows (they must be unique).
            images: sample indices whose images to keep (in ``result.images``).
            chunk: schedules computed per batched run, one unit of work (each result stored as
                soon as it arrives). The grouping decides the batches the Unet sees, so results
                are the same bits only for the same ``chunk``.
            labels: per schedule, extra columns for the table (e.g. ``{"t_start": 60, "nb": 8}``).
            resume_from: a schedule the given ones extend: what must be sampled resumes from its
                trajectory (kept in memory) at the first step where each differs from it, instead
                of from the full run's. Results are the same up to float rounding.
        """
        return self.run_many([(schedules, labels)], images, chunk, resume_from)[0]

    def run_many(
        self,
        families: Sequence[tuple[Sequence[Schedule], Sequence[dict] | None]],
        images: Sequence[int] | None = None,
        chunk: int = 8,
        resume_from: Schedule | None = None,
    ) -> list[SweepResult]:
        """:meth:`run` of several families at once: one result per ``(schedules, labels)`` pair
        (what :func:`~unetdyn.paper.families.drop_blocks_family` and its kin return; labels may be None).

        Every family is grouped into units as its own :meth:`run` would group it, and a schedule
        that an earlier family computes is read from it, as a later :meth:`run` would read it
        from the store: the results are those of calling :meth:`run` per family in turn, to the
        bit. But the units of all families are handed out together, so Ray workers do not wait
        for the end of one family before the next begins.
        """
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk={chunk!r} must be an integer >= 1")
        img_cols = [int(i) for i in (images or [])]
        n = len(self.seeds)
        if any(not 0 <= i < n for i in img_cols):
            raise ValueError(f"images={img_cols} must be sample indices in 0..{n - 1}")
        families = [(list(s), None if lab is None else list(lab)) for s, lab in families]
        for schedules, labels in families:
            names = [s.name for s in schedules]
            if len(set(names)) != len(names) or not all(names):
                raise ValueError("every schedule of a sweep needs a unique, non-empty name")
            if labels is not None and len(labels) != len(schedules):
                raise ValueError(f"labels has {len(labels)} entries for {len(schedules)} schedules")

        def key(sched: Schedule, what: str) -> str:
            extra = {"interventions": sched.to_dict()["interventions"]}
            return self.key(what, {**extra, "samples": img_cols} if what == "images" else extra)

        expect_m = {"ssim": (n,), "psnr": (n,)}
        expect_i = {"images": (len(img_cols), None, None, None)}
        results: list[dict[int, dict[str, np.ndarray]]] = [{} for _ in families]
        todo: list[list[int]] = [[] for _ in families]
        planned: dict[str, tuple[int, int]] = {}  # metrics key -> the (family, index) that computes it
        copies: list[tuple[int, int, int, int]] = []  # (family, index) that reads (family, index)'s result
        for f, (schedules, _) in enumerate(families):
            for k, sched in enumerate(schedules):
                metrics = self.cache.get(key(sched, "metrics"), expect_m) if self.cache is not None else None
                imgs = self.cache.get(key(sched, "images"), expect_i) if self.cache is not None and img_cols else None
                if metrics is not None and (imgs is not None or not img_cols):
                    results[f][k] = {**metrics, **(imgs or {})}
                elif key(sched, "metrics") in planned:
                    copies.append((f, k, *planned[key(sched, "metrics")]))
                else:
                    todo[f].append(k)
                    planned[key(sched, "metrics")] = (f, k)
        missing = sum(map(len, todo)) + len(copies)
        if missing and not self.computes:
            f = next(f for f in range(len(families)) if todo[f])
            first = families[f][0][todo[f][0]]
            total = sum(len(s) for s, _ in families)
            raise CacheMiss(
                f"{missing} of {total} schedules are not in the result store, first "
                f"{self._describe(repr(first.describe()))}"
            )
        if planned:
            base = self.full_trajectory
            start = self.trajectory_of(resume_from) if resume_from is not None else base
            units, where = [], []
            for f, (schedules, _) in enumerate(families):
                for i in range(0, len(todo[f]), chunk):
                    part = todo[f][i : i + chunk]
                    units.append(self._unit([schedules[k] for k in part], start.schedule))
                    where.append((f, part))
            shared = {**self._samples(), "start": start, "x0": base.x0, "images": img_cols}
            with UnitProgress(units, "schedules", disable=not self.progress) as bar, \
                    closing(self.executor.map(sweep_units.schedules_unit, units, shared)) as arrivals:
                for u, items, finished in arrivals:
                    f, part = where[u]
                    for j, arrays in items:
                        sched = families[f][0][part[j]]
                        results[f][part[j]] = arrays
                        info = {"schedule": sched.to_dict()}
                        if self.cache is not None:
                            self.cache.put(key(sched, "metrics"), {m: arrays[m] for m in ("ssim", "psnr")}, info)
                            if img_cols:
                                self.cache.put(key(sched, "images"), {"images": arrays["images"]}, info)
                    if finished:
                        bar.finished(units[u])
        for f, k, f0, k0 in copies:
            results[f][k] = results[f0][k0]
        return [self._result(schedules, labels, res) for (schedules, labels), res in zip(families, results)]

    def _result(self, schedules: list[Schedule], labels: list[dict] | None,
                results: dict[int, dict[str, np.ndarray]]) -> SweepResult:
        n = len(self.seeds)
        frames = [
            pd.DataFrame(
                {
                    "schedule": s.name,
                    "sample": np.arange(n),
                    "seed": self.seeds,
                    "prompt": [str(p) for p in self.prompts],
                    "ssim": results[k]["ssim"],
                    "psnr": results[k]["psnr"],
                    **(labels[k] if labels else {}),
                }
            )
            for k, s in enumerate(schedules)
        ]
        images_by = {schedules[k].interventions: results[k]["images"] for k in results if "images" in results[k]}
        return SweepResult(pd.concat(frames, ignore_index=True), images_by)

    def _unit(self, schedules: list[Schedule], start: Schedule) -> Unit:
        """The unit that samples ``schedules``, resumed from the run of ``start``, with its sample-steps:
        per schedule, its Unet calls from the first step where it differs from ``start``'s, times the samples."""
        k, blocks, skips = self.config.steps, len(self.unet.skips_popped), sum(self.unet.skips_pushed)
        steps = 0
        try:
            from_steps = {st.t: st for st in start.compile(k, blocks, skips)}
            for s in schedules:
                calls = s.compile(k, blocks, skips)
                first = next((st.t for st in calls if from_steps.get(st.t) != st), 0)
                steps += sum(1 for st in calls if st.t <= first) * len(self.seeds)
        except ScheduleError:  # a schedule that does not fit: the unit itself says so, naming it
            pass
        shown = ", ".join(repr(s.name) for s in schedules)
        shown = shown if len(shown) <= 200 else shown[:197] + "..."
        return Unit({"schedules": schedules}, self._describe(f"the schedules {shown}"), steps)

    def timing(
        self, schedules: Sequence[Schedule], samples: int, repeats: int = 3, refresh: bool = False
    ) -> pd.DataFrame:
        """Wall-clock of sampling the first ``samples`` samples from scratch under each schedule.

        ``repeats`` rounds after one warm-up run; each round runs every schedule once, so slow
        drifts of a shared machine hit all schedules alike. A timing is a measurement of the
        machine that made it (with Ray: one worker's), so it is cached like a result (with the
        machine, threads and date beside it) and shown as measured then; ``refresh=True``
        measures again.

        Returns columns ``schedule, seconds`` (median), ``low, high`` (fastest and slowest
        round), ``per_sample, samples, host, threads, date``.
        """
        if not 1 <= samples <= len(self.seeds):
            raise ValueError(f"samples={samples} must be in 1..{len(self.seeds)} (the sweep's samples)")
        if repeats < 1:
            raise ValueError(f"repeats={repeats} must be >= 1")
        key = self.key("timing", {"schedules": [s.to_dict()["interventions"] for s in schedules], "samples": samples,
                                  "repeats": repeats, "batch_size": self.batch_size})
        expect = {"seconds": (len(schedules), repeats), "meta": None}
        hit = None if (refresh or self.cache is None) else self.cache.get(key, expect)
        if hit is None and not self.computes:
            raise CacheMiss(f"{self._describe('the timings of ' + ', '.join(s.name for s in schedules))} would have to be measured")
        if hit is None:
            hit = self.executor.call(
                sweep_units.timing_unit, self._describe("the timings of " + ", ".join(s.name for s in schedules)),
                **{**self._samples(), "prompts": self.prompts[:samples], "seeds": self.seeds[:samples]},
                schedules=list(schedules), repeats=repeats)
            if self.cache is not None:
                self.cache.put(key, hit, {"what": "timing"})
        meta = json.loads(bytes(hit["meta"]).decode())
        med = np.median(hit["seconds"], axis=1)
        return pd.DataFrame({"schedule": [s.name for s in schedules], "seconds": med, "low": hit["seconds"].min(axis=1),
                             "high": hit["seconds"].max(axis=1), "per_sample": med / samples, "samples": samples, **meta})


# -- opening a sweep ----------------------------------------------------------------------------

IMAGENET_PROMPTS = (
    "goldfish", "great white shark", "tree frog", "loggerhead turtle", "king penguin", "flamingo", "pelican",
    "bald eagle", "barn owl", "peacock", "hummingbird", "toucan", "golden retriever", "border collie", "husky",
    "dalmatian", "pug", "red fox", "arctic fox", "tabby cat", "snow leopard", "lion", "tiger", "cheetah",
    "brown bear", "polar bear", "giant panda", "koala", "zebra", "hippopotamus", "elephant", "orangutan",
    "gorilla", "chimpanzee", "hamster", "squirrel", "beaver", "hedgehog", "ladybug", "monarch butterfly",
    "dragonfly", "bee", "jellyfish", "starfish", "sea anemone", "lobster", "snail", "scorpion", "tarantula",
    "chameleon", "iguana", "alligator", "rattlesnake", "ostrich", "airliner", "sports car", "school bus",
    "fire engine", "tractor", "steam locomotive", "sailboat", "canoe", "bicycle", "motor scooter", "hot air balloon",
    "lighthouse", "castle", "church", "barn", "windmill", "suspension bridge", "volcano", "alp", "coral reef",
    "lakeside", "sandbar", "daisy", "sunflower", "mushroom", "strawberry", "orange", "lemon", "banana",
    "pineapple", "pizza", "cheeseburger", "ice cream", "espresso", "teapot", "umbrella", "grand piano", "violin",
    "acoustic guitar", "pocket watch", "backpack", "cowboy hat", "sunglasses", "teddy bear", "soccer ball", "pretzel",
)


def default_samples(unet: Unet, model: str, n_samples: int) -> tuple[list[Any], list[int]]:
    """The samples of the book: one per prompt, seed = index (the paper: 100 prompts, one sample each).

    builtin: the class names in turn (100 samples: ten per class); glide and diffusers text
    models: ImageNet class names (the paper's prompts were randomly chosen ImageNet classes;
    ours are a fixed list of 100); unconditional models: no prompt (``None``).
    """
    if is_builtin(model):
        names = list(unet.config.class_names)  # type: ignore[attr-defined]
    elif unet.conditional:
        names = [f"a photo of a {p}" for p in IMAGENET_PROMPTS]
    else:
        names = [None]
    return [names[i % len(names)] for i in range(n_samples)], list(range(n_samples))


def open_sweep(
    spec: SweepSpec = SweepSpec(),
    *,
    compute: bool = True,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 16,
    progress: bool = True,
    precision: str = "fp32",
    executor: str | Executor = "local",
    address: str | None = None,
    workers: int | None = None,
) -> Sweep:
    """The sweep of ``spec`` over the result store (default ``data/cache``).

    ``compute=False`` opens the store read-only: nothing is sampled, a missing result raises
    :class:`CacheMiss` (building the book uses this). ``precision="bf16"`` reads and stores
    results of the bf16 sampler, keyed apart from the fp32 ones.

    ``executor="ray"`` computes what is missing on Ray workers (:class:`~unetdyn.paper.executors.RayExecutor`):
    each loads ``spec``'s model on ``device`` (None: a GPU each where the cluster has GPUs), this
    process loads it on the CPU to key and store the results. ``address``: the cluster (None: a
    local Ray); ``workers``: how many (None: one per GPU, or per CPU).
    """
    from unetdyn.backends import load_unet
    from unetdyn.paths import CACHE_DIR

    ray = executor == "ray" or getattr(executor, "kind", None) == "ray"
    unet = load_unet(spec.model, spec.weights, "cpu" if ray else device)
    if isinstance(executor, str):
        executor = make_executor(executor, unet, model=spec.model, weights=spec.weights, device=device, address=address,
                                 workers=workers)
    prompts, seeds = default_samples(unet, spec.model, spec.n_samples)
    cache = Cache(Path(cache_dir) if cache_dir is not None else CACHE_DIR, read_only=not compute)
    return Sweep(unet, prompts, seeds, spec.config, cache, batch_size, progress, precision, executor)
