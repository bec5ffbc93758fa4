"""Sweeps: many schedules against one baseline, as a cached table of per-sample metrics.

A sweep's result for one schedule is stored in the :class:`~unetdyn.paper.cache.Cache` under
a key derived from everything that determines it: the model's weights checksum, the sampler
config, the prompts and seeds, the schedule's interventions (not its name) and the schema
version. Each schedule is stored as soon as it is computed, so an interrupted sweep keeps
what it finished. A sweep opened with ``compute=False`` never samples: a missing result
raises :class:`~unetdyn.paper.cache.CacheMiss` naming it.

Example:
    >>> sw = open_sweep(SweepSpec(n_samples=10))                                       # doctest: +SKIP
    >>> res = sw.run([Schedule((SkipSteps(t, 5),), name=f"t{t}") for t in range(6, 101)])  # doctest: +SKIP
    >>> res.table.groupby("schedule").ssim.mean()                                      # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from unetdyn.backends.registry import check_model
from unetdyn.interventions import DropBlocks, EarlyStop, Schedule, SkipSteps, ZeroSkips
from unetdyn.metrics import compare, psnr, ssim, to_uint8
from unetdyn.paper.cache import SCHEMA_VERSION, Cache, CacheMiss, content_key, model_id
from unetdyn.paths import is_builtin
from unetdyn.sampler import PRECISIONS, SamplerConfig, Trajectory, sample, trajectory, x0_change
from unetdyn.unet import Unet

__all__ = [
    "Cache",
    "CacheMiss",
    "Sweep",
    "SweepResult",
    "SweepSpec",
    "model_id",
    "open_sweep",
    "skip_steps_family",
    "zero_skips_family",
    "drop_blocks_family",
    "cut_relax_cut_family",
    "adapted_shortcut",
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
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}")
        self.unet, self.config, self.cache = unet, config, cache
        self.prompts, self.seeds = list(prompts), [int(s) for s in seeds]
        self.batch_size, self.progress, self.precision = batch_size, progress, precision
        self._base: Trajectory | None = None
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

    # -- the baseline ---------------------------------------------------------------------

    @property
    def base(self) -> Trajectory:
        """The full-schedule trajectory (computed on first use; kept in memory, not cached)."""
        if self._base is None:
            if not self.computes:
                raise CacheMiss(f"{self._describe('the baseline trajectory')} would have to be sampled")
            self._base = trajectory(self.unet, self.prompts, self.seeds, self.config, self.batch_size, self.progress,
                                    precision=self.precision)
        return self._base

    def trajectory_of(self, schedule: Schedule) -> Trajectory:
        """The trajectory of ``schedule`` on the sweep's samples (resumed from the full run's; kept
        in memory, the last one only)."""
        if not schedule.interventions:
            return self.base
        if self._resumed is None or self._resumed.schedule.interventions != schedule.interventions:
            if not self.computes:
                raise CacheMiss(f"{self._describe('the trajectory of ' + repr(schedule.describe()))} would have to be sampled")
            self._resumed = trajectory(self.unet, self.prompts, self.seeds, self.config, self.batch_size, False,
                                       schedule=schedule, baseline=self.base, precision=self.precision)
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
        b = self.base
        # PSNR on the picture x_t would show (a latent model: x_t against the final latent)
        x_t = b.xs.clamp(-1, 1)
        arrays = {
            "x0": to_uint8(b.x0),
            "psnr_xt": psnr(x_t, b.xs[0].clamp(-1, 1).expand_as(x_t)),
            "ssim_x0hat": ssim(b.x0_hat, b.x0.expand_as(b.x0_hat)),
        }
        if self.cache is not None:
            self.cache.put(key, arrays, {"what": "baseline"})
        return arrays

    def block_usage(self, nbs: Sequence[int], steps: Sequence[int], samples: int) -> dict[str, np.ndarray]:
        """``change[i, j]``: how far the step from ``x_t`` (``t = steps[j]``) of the baseline moves
        its x0 estimate when the bottom ``nbs[i]`` decoder blocks are removed from that one call,
        the mean over the first ``samples`` samples (:func:`~unetdyn.sampler.x0_change`; cached)."""
        n = min(samples, len(self.seeds))
        key = self.key("block-usage-x0", {"nbs": list(map(int, nbs)), "steps": list(map(int, steps)), "samples": n})
        hit = self.cache.get(key, {"change": (len(nbs), len(steps))}) if self.cache is not None else None
        if hit is not None:
            return hit
        if not self.computes:
            raise CacheMiss(f"{self._describe(f'the block usage on {n} samples')} is not in the store")
        if self._base is not None:
            b = self._base
            first = Trajectory(b.prompts[:n], b.seeds[:n], b.config, b.xs[:, :n], b.x0_hat[:, :n])
        else:  # the noise derives from (seed, t): the first samples' run is the full baseline's first columns
            first = trajectory(self.unet, self.prompts[:n], self.seeds[:n], self.config, self.batch_size, self.progress,
                               precision=self.precision)
        arrays = {"change": x0_change(self.unet, first, nbs, steps, self.batch_size).numpy()}
        if self.cache is not None:
            self.cache.put(key, arrays, {"what": "block usage"})
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
            chunk: schedules computed per batched run (each stored as soon as its run ends).
            labels: per schedule, extra columns for the table (e.g. ``{"t_start": 60, "nb": 8}``).
            resume_from: a schedule the given ones extend: what must be sampled resumes from its
                trajectory (kept in memory) at the first step where each differs from it, instead
                of from the full run's. Results are the same up to float rounding.
        """
        names = [s.name for s in schedules]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError("every schedule of a sweep needs a unique, non-empty name")
        if labels is not None and len(labels) != len(schedules):
            raise ValueError(f"labels has {len(labels)} entries for {len(schedules)} schedules")
        img_cols = [int(i) for i in (images or [])]
        n = len(self.seeds)
        if any(not 0 <= i < n for i in img_cols):
            raise ValueError(f"images={img_cols} must be sample indices in 0..{n - 1}")

        def key(sched: Schedule, what: str) -> str:
            extra = {"interventions": sched.to_dict()["interventions"]}
            return self.key(what, {**extra, "samples": img_cols} if what == "images" else extra)

        expect_m = {"ssim": (n,), "psnr": (n,)}
        expect_i = {"images": (len(img_cols), None, None, None)}
        results: dict[int, dict[str, np.ndarray]] = {}
        for k, sched in enumerate(schedules):
            metrics = self.cache.get(key(sched, "metrics"), expect_m) if self.cache is not None else None
            imgs = self.cache.get(key(sched, "images"), expect_i) if self.cache is not None and img_cols else None
            if metrics is not None and (imgs is not None or not img_cols):
                results[k] = {**metrics, **(imgs or {})}
        todo = [k for k in range(len(schedules)) if k not in results]
        if todo and not self.computes:
            first = schedules[todo[0]]
            raise CacheMiss(
                f"{len(todo)} of {len(schedules)} schedules are not in the result store, first "
                f"{self._describe(repr(first.describe()))}"
            )
        if todo:
            x0 = self.base.x0
            start = self.trajectory_of(resume_from) if resume_from is not None else self.base
            bar = tqdm(total=len(todo), desc="schedules", unit="sched", disable=not self.progress)
            for i in range(0, len(todo), chunk):
                part = todo[i : i + chunk]
                res = sample(
                    self.unet, self.prompts, self.seeds, [schedules[k] for k in part], self.config,
                    baseline=start, batch_size=self.batch_size, progress=False, precision=self.precision,
                )
                for k, out in zip(part, res.images):
                    m = compare(x0, out)
                    results[k] = {"ssim": m["ssim"], "psnr": m["psnr"]}
                    info = {"schedule": schedules[k].to_dict()}
                    if self.cache is not None:
                        self.cache.put(key(schedules[k], "metrics"), results[k], info)
                    if img_cols:
                        results[k]["images"] = to_uint8(out[img_cols])
                        if self.cache is not None:
                            self.cache.put(key(schedules[k], "images"), {"images": results[k]["images"]}, info)
                bar.update(len(part))
            bar.close()
        frames = [
            pd.DataFrame(
                {
                    "schedule": names[k],
                    "sample": np.arange(n),
                    "seed": self.seeds,
                    "prompt": [str(p) for p in self.prompts],
                    "ssim": results[k]["ssim"],
                    "psnr": results[k]["psnr"],
                    **(labels[k] if labels else {}),
                }
            )
            for k in range(len(schedules))
        ]
        images_by = {schedules[k].interventions: results[k]["images"] for k in results if "images" in results[k]}
        return SweepResult(pd.concat(frames, ignore_index=True), images_by)


    def timing(
        self, schedules: Sequence[Schedule], samples: int, repeats: int = 3, refresh: bool = False
    ) -> pd.DataFrame:
        """Wall-clock of sampling the first ``samples`` samples from scratch under each schedule.

        ``repeats`` rounds after one warm-up run; each round runs every schedule once, so slow
        drifts of a shared machine hit all schedules alike. A timing is a measurement of the
        machine that made it, so it is cached like a result (with the machine, threads and
        date beside it) and shown as measured then; ``refresh=True`` measures again.

        Returns columns ``schedule, seconds`` (median), ``low, high`` (fastest and slowest
        round), ``per_sample, samples, host, threads, date``.
        """
        import datetime
        import platform

        import torch

        from unetdyn.cost import timed

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
            prompts, seeds = self.prompts[:samples], self.seeds[:samples]

            def run(s: Schedule) -> float:
                return timed(self.unet, lambda: sample(self.unet, prompts, seeds, s, self.config,
                                                       batch_size=self.batch_size, progress=False,
                                                       precision=self.precision))

            run(schedules[0])  # warm-up
            secs = np.array([[run(s) for s in schedules] for _ in range(repeats)]).T
            meta = {"host": platform.node(), "threads": torch.get_num_threads(), "date": datetime.date.today().isoformat()}
            hit = {"seconds": secs, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
            if self.cache is not None:
                self.cache.put(key, hit, {"what": "timing"})
        meta = json.loads(bytes(hit["meta"]).decode())
        med = np.median(hit["seconds"], axis=1)
        return pd.DataFrame({"schedule": [s.name for s in schedules], "seconds": med, "low": hit["seconds"].min(axis=1),
                             "high": hit["seconds"].max(axis=1), "per_sample": med / samples, "samples": samples, **meta})


# -- the paper's experiments as schedule families -------------------------------------------


def skip_steps_family(t_starts: Sequence[int], n: int, variance: str = "jump") -> tuple[list[Schedule], list[dict]]:
    """Time-step removal (Figs. 3, 4, 18): jump from each ``t_start`` to ``t_start - n``
    (``variance``: see :class:`~unetdyn.interventions.SkipSteps`)."""
    tag = "" if variance == "jump" else f" {variance}"
    scheds = [Schedule((SkipSteps(t_start=t, n=n, variance=variance),), name=f"skip n={n} t={t}{tag}") for t in t_starts]
    return scheds, [{"t_start": t, "n": n} for t in t_starts]


def zero_skips_family(t_starts: Sequence[int], n: int, ns: int) -> tuple[list[Schedule], list[dict]]:
    """Top-skip removal (Figs. 5, 7): ``ns`` skips zeroed for steps ``t_start .. t_start-n+1``."""
    scheds = [Schedule((ZeroSkips(t_start=t, n=n, ns=ns),), name=f"ns={ns} n={n} t={t}") for t in t_starts]
    return scheds, [{"t_start": t, "n": n, "ns": ns} for t in t_starts]


def drop_blocks_family(
    t_starts: Sequence[int], ns_steps: Sequence[int] | int, nb: int, fill: str = "zeros"
) -> tuple[list[Schedule], list[dict]]:
    """Bottom-block removal (Figs. 6-9): every (t_start, n) pair with ``nb`` decoder blocks removed."""
    n_list = [ns_steps] if isinstance(ns_steps, int) else list(ns_steps)
    scheds, labels = [], []
    for t in t_starts:
        for n in n_list:
            if n > t:
                continue
            scheds.append(Schedule((DropBlocks(t_start=t, n=n, nb=nb, fill=fill),), name=f"nb={nb} n={n} t={t} {fill}"))
            labels.append({"t_start": t, "n": n, "nb": nb})
    return scheds, labels


def cut_relax_cut_family(t_start: int, nb: int, n: int, relax: Sequence[int]) -> tuple[list[Schedule], list[dict]]:
    """Cut-relax-cut (Figs. 10, 21): cut ``n`` steps, relax ``r``, cut ``n`` again."""
    scheds, labels = [], []
    for r in relax:
        second = t_start - n - r
        if second - n + 1 < 1:
            continue
        ivs = (DropBlocks(t_start=t_start, n=n, nb=nb), DropBlocks(t_start=second, n=n, nb=nb))
        scheds.append(Schedule(ivs, name=f"nb={nb} n={n} t={t_start} r={r}"))
        labels.append({"t_start": t_start, "n": n, "nb": nb, "r": r})
    return scheds, labels


def adapted_shortcut(reach: dict[int, int | None], stop_t: int | None, name: str = "adapted shortcut") -> Schedule:
    """The paper's Fig. 11 pattern placed at a model's own thresholds.

    The paper removes nb = 6 blocks for 5 steps from where Fig. 8 says that keeps SSIM 0.8
    (t = 65), then nb = 8 for 2 steps (from t = 60, where nb = 8 does), relaxes 11 steps, cuts
    nb = 8 for 7, relaxes 9, cuts 7 again, and stops early where the x0 estimate is accurate.
    Here the same pattern starts at ``reach[6]`` and ``reach[8]`` (e.g. from
    :func:`unetdyn.paper.chapters.fig8_crossings`) and stops at ``stop_t``; a cut is dropped when its threshold was
    never reached or when it would run into the early stop.

    Example (the paper's thresholds give the paper's schedule):
        >>> from unetdyn.interventions import preset
        >>> adapted_shortcut({6: 65, 8: 60}, 18).interventions == preset("paper-shortcut").interventions
        True
    """
    t6, t8 = reach.get(6), reach.get(8)
    floor = stop_t or 0
    ivs: list = []

    def cut(t_start: int, n: int, nb: int) -> None:
        if t_start - n + 1 > floor:
            ivs.append(DropBlocks(t_start=t_start, n=n, nb=nb))

    if t6 is not None:
        cut(t6, 5, 6)
    if t8 is not None:
        a = min(t6 - 5, t8) if t6 is not None else t8
        for start, n in ((a, 2), (a - 13, 7), (a - 29, 7)):  # relax 11 after the first, 9 after the second
            cut(start, n, 8)
    if stop_t is not None:
        ivs.append(EarlyStop(t=stop_t))
    return Schedule(tuple(ivs), name=name)



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
) -> Sweep:
    """The sweep of ``spec`` over the result store (default ``data/cache``).

    ``compute=False`` opens the store read-only: nothing is sampled, a missing result raises
    :class:`CacheMiss` (building the book uses this). ``precision="bf16"`` reads and stores
    results of the bf16 sampler, keyed apart from the fp32 ones.
    """
    from unetdyn.backends import load_unet
    from unetdyn.paths import CACHE_DIR

    unet = load_unet(spec.model, spec.weights, device)
    prompts, seeds = default_samples(unet, spec.model, spec.n_samples)
    cache = Cache(Path(cache_dir) if cache_dir is not None else CACHE_DIR, read_only=not compute)
    return Sweep(unet, prompts, seeds, spec.config, cache, batch_size, progress, precision)
