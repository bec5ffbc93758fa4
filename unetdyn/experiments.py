"""Sweeps: many schedules against one baseline, as a cached table of per-sample metrics.

A sweep's result for one schedule is keyed by a hash of everything that determines it:
the model's weights checksum, the sampler config, the prompts and seeds, the schedule's
interventions (not its name) and :data:`SCHEMA_VERSION`. Entries are written atomically
and carry a checksum of their contents; a corrupted or truncated entry is detected,
reported and recomputed, never used. Each schedule is stored as soon as it is computed, so
an interrupted sweep keeps what it finished.

Example:
    >>> sw = Sweep(unet, prompts, seeds, cache=Cache("data/cache"))           # doctest: +SKIP
    >>> table = sw.run([Schedule((SkipSteps(t, 5),), name=f"t{t}") for t in range(6, 101)])  # doctest: +SKIP
    >>> table.groupby("schedule").ssim.mean()                                  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from .fileio import atomic_write
from .metrics import compare, psnr, ssim, to_uint8
from .plan import DropBlocks, EarlyStop, Schedule, SkipSteps, ZeroSkips
from .sampler import SamplerConfig, Trajectory, sample, trajectory
from .unet import Unet

__all__ = [
    "SCHEMA_VERSION",
    "Cache",
    "Sweep",
    "model_id",
    "open_sweep",
    "skip_steps_family",
    "zero_skips_family",
    "drop_blocks_family",
    "cut_relax_cut_family",
    "mean_sd",
    "first_reaching",
    "reach_t_starts",
    "phase_boundaries",
    "early_stop_t",
    "adapted_shortcut",
]

SCHEMA_VERSION = 1


def model_id(unet: Unet) -> str:
    """A checksum of the Unet's weights (what a cached result depends on)."""
    recorded = getattr(unet, "weights_sha256", None)
    if recorded:
        return str(recorded)
    h = hashlib.sha256()
    module = unet if hasattr(unet, "state_dict") else unet.model  # type: ignore[attr-defined]  # GlideUnet wraps one
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class Cache:
    """A folder of ``<key>.npz`` entries, each verified against its own checksum on load."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None if absent or corrupt (a corrupt one is reported)."""
        p = self.path(key)
        if not p.exists():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(bytes(arrays.pop("__meta__")).decode())
            if meta.get("digest") != _digest(arrays) or meta.get("schema") != SCHEMA_VERSION:
                raise ValueError("checksum mismatch")
        except Exception as exc:  # noqa: BLE001 - any failure means: do not trust it
            warnings.warn(f"cache entry {p} is corrupt ({exc}); recomputing it", stacklevel=2)
            return None
        return arrays

    def put(self, key: str, arrays: dict[str, np.ndarray], info: dict | None = None) -> Path:
        """Store ``arrays`` under ``key`` atomically (temporary file, then rename)."""
        meta = {"schema": SCHEMA_VERSION, "digest": _digest(arrays), "info": info or {}}
        buf = io.BytesIO()
        np.savez_compressed(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
        return atomic_write(self.path(key), lambda tmp: tmp.write_bytes(buf.getvalue()))


class Sweep:
    """Schedules run against the baseline of fixed samples; results cached per schedule.

    Args:
        unet: the backend.
        prompts, seeds: the samples (the paper: 100 prompts, one sample each).
        config: the sampler config shared by the baseline and every schedule.
        cache: where results live (None: no caching).
        batch_size: samples per Unet call.
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
    ):
        self.unet, self.config, self.cache = unet, config, cache
        self.prompts, self.seeds = list(prompts), [int(s) for s in seeds]
        self.batch_size, self.progress = batch_size, progress
        self._base: Trajectory | None = None
        self._ident = {
            "model": model_id(unet),
            "config": asdict(config),
            "prompts": [str(p) for p in self.prompts],
            "seeds": self.seeds,
        }

    def key(self, what: str, extra: Any = None) -> str:
        blob = json.dumps({"v": SCHEMA_VERSION, **self._ident, "what": what, "extra": extra}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _cached(self, key: str, compute) -> dict[str, np.ndarray]:
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        arrays = compute()
        if self.cache is not None:
            self.cache.put(key, arrays)
        return arrays

    # -- the baseline ---------------------------------------------------------------------

    @property
    def base(self) -> Trajectory:
        """The full-schedule trajectory (computed on first use; kept in memory, not cached)."""
        if self._base is None:
            self._base = trajectory(self.unet, self.prompts, self.seeds, self.config, self.batch_size, self.progress)
        return self._base

    def baseline(self) -> dict[str, np.ndarray]:
        """The untouched outputs and their per-step trajectory metrics (cached).

        Returns ``x0`` (uint8 images ``[N, H, W, C]``), ``psnr_xt[t, i]`` (PSNR of ``x_t`` to
        ``x_0``, the paper's Fig. 16) and ``ssim_x0hat[t, i]`` (SSIM of the x0 estimate at
        ``t`` to ``x_0``, Fig. 17), for ``t = 0..K`` (row 0 compares ``x_0`` with itself).
        """

        def compute():
            b = self.base
            x_t = b.xs.clamp(-1, 1)  # PSNR on the picture x_t would show
            return {
                "x0": to_uint8(b.x0),
                "psnr_xt": psnr(x_t, b.x0.expand_as(x_t)),
                "ssim_x0hat": ssim(b.x0_hat, b.x0.expand_as(b.x0_hat)),
            }

        return self._cached(self.key("baseline"), compute)

    # -- schedules --------------------------------------------------------------------------

    def run(
        self,
        schedules: Sequence[Schedule],
        images: Sequence[int] | None = None,
        chunk: int = 8,
        labels: Sequence[dict] | None = None,
    ) -> pd.DataFrame:
        """Per-sample SSIM/PSNR of every schedule against the baseline, as a long table.

        Args:
            schedules: the schedules; their names label the rows (they must be unique).
            images: sample indices whose images to keep: uint8 ``[len(images), H, W, C]`` per
                schedule name in ``table.attrs["images"]``.
            chunk: schedules computed per batched run (each stored as soon as its run ends).
            labels: per schedule, extra columns for the table (e.g. ``{"t_start": 60, "nb": 8}``).

        Returns:
            columns ``schedule, sample, seed, prompt, ssim, psnr`` and the label columns.
        """
        names = [s.name for s in schedules]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError("every schedule of a sweep needs a unique, non-empty name")
        img_cols = list(images or [])

        def key(sched: Schedule, what: str) -> str:
            extra = {"interventions": sched.to_dict()["interventions"]}
            return self.key(what, {**extra, "samples": img_cols} if what == "images" else extra)

        results: dict[int, dict[str, np.ndarray]] = {}
        for k, sched in enumerate(schedules):
            metrics = self.cache.get(key(sched, "metrics")) if self.cache is not None else None
            imgs = self.cache.get(key(sched, "images")) if self.cache is not None and img_cols else None
            if metrics is not None and (imgs is not None or not img_cols):
                results[k] = {**metrics, **(imgs or {})}
        todo = [k for k in range(len(schedules)) if k not in results]
        if todo:
            x0 = self.base.x0
            bar = tqdm(total=len(todo), desc="schedules", unit="sched", disable=not self.progress)
            for i in range(0, len(todo), chunk):
                part = todo[i : i + chunk]
                res = sample(
                    self.unet, self.prompts, self.seeds, [schedules[k] for k in part], self.config,
                    baseline=self.base, batch_size=self.batch_size, progress=False,
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
                    "sample": np.arange(len(self.seeds)),
                    "seed": self.seeds,
                    "prompt": [str(p) for p in self.prompts],
                    "ssim": results[k]["ssim"],
                    "psnr": results[k]["psnr"],
                    **(labels[k] if labels else {}),
                }
            )
            for k in range(len(schedules))
        ]
        table = pd.concat(frames, ignore_index=True)
        table.attrs["images"] = {names[k]: results[k]["images"] for k in results if "images" in results[k]}
        return table


    def timing(
        self, schedules: Sequence[Schedule], samples: int, repeats: int = 3, refresh: bool = False
    ) -> pd.DataFrame:
        """Wall-clock of sampling the first ``samples`` samples from scratch under each schedule.

        Median of ``repeats`` runs after one warm-up run. A timing is a measurement of the
        machine that made it, so it is cached like a result (with the machine, threads and
        date beside it) and shown as measured then; ``refresh=True`` measures again.

        Returns columns ``schedule, seconds, per_sample, host, threads, date``.
        """
        import datetime
        import platform
        import time

        import torch

        if not 1 <= samples <= len(self.seeds):
            raise ValueError(f"samples={samples} must be in 1..{len(self.seeds)} (the sweep's samples)")
        if repeats < 1:
            raise ValueError(f"repeats={repeats} must be >= 1")
        key = self.key("timing", {"schedules": [s.to_dict()["interventions"] for s in schedules], "samples": samples,
                                  "repeats": repeats, "batch_size": self.batch_size})
        hit = None if (refresh or self.cache is None) else self.cache.get(key)
        if hit is None:
            prompts, seeds = self.prompts[:samples], self.seeds[:samples]

            def run(s: Schedule) -> float:
                t0 = time.perf_counter()
                sample(self.unet, prompts, seeds, s, self.config, batch_size=self.batch_size, progress=False)
                return time.perf_counter() - t0

            run(schedules[0])  # warm-up
            secs = np.array([np.median([run(s) for _ in range(repeats)]) for s in schedules])
            meta = {"host": platform.node(), "threads": torch.get_num_threads(), "date": datetime.date.today().isoformat()}
            hit = {"seconds": secs, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
            if self.cache is not None:
                self.cache.put(key, hit)
        meta = json.loads(bytes(hit["meta"]).decode())
        return pd.DataFrame({"schedule": [s.name for s in schedules], "seconds": hit["seconds"],
                             "per_sample": hit["seconds"] / samples, **meta})


# -- the paper's experiments as schedule families -------------------------------------------


def skip_steps_family(t_starts: Sequence[int], n: int) -> tuple[list[Schedule], list[dict]]:
    """Time-step removal (Figs. 3, 4, 18): jump from each ``t_start`` to ``t_start - n``."""
    scheds = [Schedule((SkipSteps(t_start=t, n=n),), name=f"skip n={n} t={t}") for t in t_starts]
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


def mean_sd(table: pd.DataFrame, by: str | list[str], metric: str = "ssim") -> pd.DataFrame:
    """Mean and standard deviation of ``metric`` over samples, per group (inf PSNR dropped)."""
    vals = table.replace([np.inf, -np.inf], np.nan)
    return vals.groupby(by)[metric].agg(["mean", "std", "count"]).reset_index()


def first_reaching(curve: pd.DataFrame, x: str, threshold: float, from_high: bool = True) -> float | None:
    """Scanning ``x`` from high to low (time runs that way), the first x from which the mean stays at or
    above ``threshold`` for the rest of the scan (the paper's "SSIM >= 0.8 from t_start ~60 on").

    A curve that touches the threshold early and dips below it again does not count there.

    Example:
        >>> c = pd.DataFrame({"t": [100, 90, 80, 70], "mean": [0.9, 0.7, 0.85, 0.95]})
        >>> first_reaching(c, "t", 0.8)
        80.0
    """
    c = curve.sort_values(x, ascending=not from_high).reset_index(drop=True)
    below = np.flatnonzero(c["mean"].to_numpy() < threshold)
    start = 0 if below.size == 0 else int(below[-1]) + 1
    return None if start >= len(c) else float(c[x].iloc[start])


def reach_t_starts(
    sweep: Sweep, nbs: Sequence[int], n: int = 5, t_stride: int = 5, threshold: float = 0.8
) -> dict[int, int | None]:
    """Per ``nb``, the first ``t_start`` (from pure noise on) from which removing the blocks for ``n``
    steps keeps mean SSIM >= ``threshold`` at every later start: the paper's Fig. 8 reading, on the
    sweep's own model (cached)."""
    grid = list(range(sweep.config.steps, n - 1, -t_stride))
    out: dict[int, int | None] = {}
    for nb in nbs:
        scheds, labels = drop_blocks_family(grid, n, nb)
        hit = first_reaching(mean_sd(sweep.run(scheds, labels=labels), "t_start"), "t_start", threshold)
        out[nb] = None if hit is None else int(hit)
    return out


def phase_boundaries(curve: pd.DataFrame, x: str = "t_start", smooth: int = 5) -> tuple[float, float]:
    """The paper's three phases read off the skip-steps SSIM curve (Fig. 4).

    Coming from pure noise (high ``t_start``), phase 1 (composition) ends at the first
    peak of the smoothed mean SSIM; phase 2 (composition to denoising) ends at the lowest
    point after it, where the curve turns up for good into phase 3 (denoising). Returns the
    two ``t_start`` values (phase 1/2, phase 2/3). This is our operationalisation: the paper
    marks the phases by eye.
    """
    c = curve.sort_values(x, ascending=False).reset_index(drop=True)
    m = c["mean"].rolling(smooth, center=True, min_periods=1).mean().to_numpy()
    xs = c[x].to_numpy()
    half = len(m) // 2
    peak = int(np.argmax(m[: max(half, 1) + 1]))
    trough = peak + int(np.argmin(m[peak:]))
    return float(xs[peak]), float(xs[trough])


def early_stop_t(ssim_x0hat: np.ndarray, threshold: float) -> int | None:
    """The first step (from pure noise on) at which the mean SSIM of the x0 estimate to the
    output reaches ``threshold`` (``ssim_x0hat[t, i]`` as in :meth:`Sweep.baseline`), or None."""
    mean = np.asarray(ssim_x0hat).mean(axis=1)
    return next((t for t in range(len(mean) - 1, 0, -1) if mean[t] >= threshold), None)


def adapted_shortcut(reach: dict[int, int | None], stop_t: int | None, name: str = "adapted shortcut") -> Schedule:
    """The paper's Fig. 11 pattern placed at a model's own thresholds.

    The paper removes nb = 6 blocks for 5 steps from where Fig. 8 says that keeps SSIM 0.8
    (t = 65), then nb = 8 for 2 steps (from t = 60, where nb = 8 does), relaxes 11 steps, cuts
    nb = 8 for 7, relaxes 9, cuts 7 again, and stops early where the x0 estimate is accurate.
    Here the same pattern starts at ``reach[6]`` and ``reach[8]`` (e.g. from
    :func:`reach_t_starts`) and stops at ``stop_t``; a cut is dropped when its threshold was
    never reached or when it would run into the early stop.

    Example (the paper's thresholds give the paper's schedule):
        >>> from unetdyn.plan import preset
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


# -- opening a sweep from notebook parameters ------------------------------------------------

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

    builtin: the class names in turn; glide: ImageNet class names (the paper's prompts were
    randomly chosen ImageNet classes; ours are a fixed list of 100).
    """
    if model == "glide":
        names = [f"a photo of a {p}" for p in IMAGENET_PROMPTS]
    else:
        names = list(unet.config.class_names)  # type: ignore[attr-defined]
    return [names[i % len(names)] for i in range(n_samples)], list(range(n_samples))


def open_sweep(
    model: str = "builtin",
    weights: str | None = None,
    n_samples: int = 100,
    steps: int = 100,
    guidance: float = 3.0,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> Sweep:
    """The sweep a notebook works with, from its parameters (the default cache: ``data/cache``)."""
    from .models import load_unet
    from .paths import CACHE_DIR

    unet = load_unet(model, weights, device)
    prompts, seeds = default_samples(unet, model, n_samples)
    cache = Cache(Path(cache_dir) if cache_dir is not None else CACHE_DIR)
    return Sweep(unet, prompts, seeds, SamplerConfig(steps=steps, guidance=guidance), cache, batch_size, progress)
