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
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .metrics import compare, psnr, ssim, to_uint8
from .plan import Schedule
from .sampler import SamplerConfig, Trajectory, sample, trajectory
from .unet import Unet

__all__ = ["SCHEMA_VERSION", "Cache", "Sweep", "model_id"]

SCHEMA_VERSION = 1


def model_id(unet: Unet) -> str:
    """A checksum of the Unet's weights (what a cached result depends on)."""
    recorded = getattr(unet, "weights_sha256", None)
    if recorded:
        return str(recorded)
    h = hashlib.sha256()
    for name, p in sorted(unet.state_dict().items()):  # type: ignore[attr-defined]
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
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return p


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
        batch_size: int = 128,
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
    ) -> pd.DataFrame:
        """Per-sample SSIM/PSNR of every schedule against the baseline, as a long table.

        Args:
            schedules: the schedules; their names label the rows (they must be unique).
            images: sample indices whose images to keep: uint8 ``[len(images), H, W, C]`` per
                schedule name in ``table.attrs["images"]``.
            chunk: schedules computed per batched run (and stored together per schedule).

        Returns:
            columns ``schedule, sample, seed, prompt, ssim, psnr``.
        """
        names = [s.name for s in schedules]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError("every schedule of a sweep needs a unique, non-empty name")
        img_cols = list(images or [])
        keys = [self.key("schedule", {"interventions": s.to_dict()["interventions"], "images": img_cols}) for s in schedules]
        results: dict[int, dict[str, np.ndarray]] = {}
        if self.cache is not None:
            for k, key in enumerate(keys):
                hit = self.cache.get(key)
                if hit is not None:
                    results[k] = hit
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
                for k, imgs in zip(part, res.images):
                    m = compare(x0, imgs)
                    arrays = {"ssim": m["ssim"], "psnr": m["psnr"]}
                    if img_cols:
                        arrays["images"] = to_uint8(imgs[img_cols])
                    results[k] = arrays
                    if self.cache is not None:
                        self.cache.put(keys[k], arrays, {"schedule": schedules[k].to_dict()})
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
                }
            )
            for k in range(len(schedules))
        ]
        table = pd.concat(frames, ignore_index=True)
        table.attrs["images"] = {names[k]: results[k]["images"] for k in results if "images" in results[k]}
        return table
