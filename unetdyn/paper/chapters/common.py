"""What every chapter shares: its parameters' common fields, the sweep it opens, and the
readings' small helpers (grids, strata, windows, timing and cost tables).

A chapter's parameters are one frozen dataclass, declared once with a default and a line of
doc per field (:func:`param`). The notebook's ``parameters`` cell is written from it
(:func:`unetdyn.paper.chapters.parameters_cell`), so papermill overrides each field, and the
cell after it builds the dataclass from those values (:func:`unetdyn.paper.chapters.params`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from unetdyn.cost import schedule_cost
from unetdyn.interventions import Schedule
from unetdyn.paper.sweeps import Sweep, SweepResult, SweepSpec, open_sweep

__all__ = [
    "param", "build", "frozen", "doc", "SweepParams", "Opened", "IMAGE_SAMPLES", "THRESHOLD", "X0_THRESHOLD", "X0_THRESHOLDS",
    "RISE_FACTORS", "EARLY_WINDOWS", "LATE_WINDOWS", "CROSSING_THRESHOLDS", "t_grid", "strata", "window",
    "image_samples", "run_family", "over_rounds", "relative_timings", "cost_table",
]

IMAGE_SAMPLES = 6  # every sweep keeps the images of its first six samples (six classes)
THRESHOLD = 0.8  # the paper's SSIM threshold for "no visible change in global semantics" (Fig. 8)
X0_THRESHOLD = 0.8  # ours: the paper gives no threshold for "accurate"; we reuse its Fig. 8 threshold
# declared ranges over which the readings that rest on a choice of ours are redone
X0_THRESHOLDS = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
RISE_FACTORS = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
EARLY_WINDOWS = (60, 65, 70, 75, 80, 85, 90)
LATE_WINDOWS = (20, 25, 30, 40, 50, 60)
CROSSING_THRESHOLDS = (0.7, 0.75, 0.8, 0.85, 0.9)


def param(default: Any, doc: str = "") -> Any:
    """A parameter field: its default (a dict is copied per instance) and the comment its notebook cell shows."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


def frozen(value: Any) -> Any:
    """A value as a frozen dataclass holds it: lists (papermill's, YAML's) as tuples, and a mapping
    whose keys all spell integers with integer keys (JSON, through which papermill passes a nested
    mapping, writes ``{2: 70}`` as ``{"2": 70}``)."""
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    if isinstance(value, dict):
        ints = value and all(isinstance(k, str) and k.lstrip("-").isdigit() for k in value)
        return {(int(k) if ints else k): (frozen(v) if isinstance(v, dict) else v) for k, v in value.items()}
    return value


def build(cls: type, values: Mapping[str, Any] = {}, **more: Any):
    """``cls`` (a chapter's ``Params``) from the fields found in ``values`` and ``more``; other names are ignored."""
    given = {**values, **more}
    return cls(**{f.name: frozen(given[f.name]) for f in dataclasses.fields(cls) if f.name in given})


def doc(cls: type, name: str) -> str:
    """The one-line doc of parameter ``name`` of ``cls``."""
    return next(f.metadata.get("doc", "") for f in dataclasses.fields(cls) if f.name == name)


@dataclass(frozen=True)
class SweepParams:
    """The fields every sweep chapter shares: the model and samples (:class:`SweepSpec`), and how it runs."""

    model: str = param("builtin", '"glide" reruns this chapter on GLIDE (glide-text2im and its weights needed); '
                                  '"builtin:NAME" a member of the family (`unetdyn models`)')
    weights: str | None = param(None, "None: the model's own weights (the shipped built-in ones / glide-text2im's loader)")
    n_samples: int = param(100, "the paper: 100 prompts, one sample each (builtin: ten seeds per class)")
    steps: int = param(100, "sampling steps (GLIDE's base model: 100)")
    guidance: float = param(3.0, "classifier-free guidance scale")
    compute: bool = param(False, "False: read every result from the store (a missing one is an error naming it); "
                                 "True: compute it")
    device: str | None = param(None, 'None: CPU; "cuda" where a GPU is present')
    batch_size: int = param(16, "samples per Unet call: fastest on a 2-core CPU")
    precision: str = param("fp32", 'the sampler\'s precision: "fp32", or "bf16" (stored under keys of its own)')
    progress: bool = param(True, "progress bars while computing")
    cache_dir: str | None = param(None, "None: data/cache, the committed result store")
    executor: str = param("local", '"local": compute in this process; "ray": on Ray workers, one per GPU or CPU')
    address: str | None = param(None, 'the Ray cluster for executor "ray" (e.g. "auto"); None: a local Ray')

    @property
    def spec(self) -> SweepSpec:
        """The model and samples, as the store keys them."""
        return SweepSpec(self.model, self.weights, self.n_samples, self.steps, self.guidance)

    @property
    def runtime(self) -> dict[str, Any]:
        """How to run, as :func:`~unetdyn.paper.sweeps.open_sweep` takes it."""
        return {"device": self.device, "batch_size": self.batch_size, "precision": self.precision,
                "progress": self.progress, "cache_dir": self.cache_dir, "executor": self.executor, "address": self.address}

    @classmethod
    def of(cls, spec: SweepSpec, **fields):
        """The parameters of ``spec``'s model and samples, with ``fields`` set."""
        return cls(model=spec.model, weights=spec.weights, n_samples=spec.n_samples, steps=spec.steps,
                   guidance=spec.guidance, **fields)

    def sweep(self) -> Sweep:
        """The sweep over the store (read-only unless ``compute``)."""
        return open_sweep(self.spec, compute=self.compute, **self.runtime)

    def open(self) -> Opened:
        """The sweep, its baseline's metrics, and its samples' strata: how every sweep chapter begins."""
        sweep = self.sweep()
        return Opened(sweep, sweep.baseline(), strata(sweep))


class Opened(NamedTuple):
    sweep: Sweep
    base: dict[str, np.ndarray]
    strata: np.ndarray


def over_rounds(value: float, low: float, high: float, fmt: str, unit: str = "") -> str:
    """A timing median with its range over rounds (not a confidence interval)."""
    return f"{value:{fmt}}{unit} (range over rounds {low:{fmt}}{unit} to {high:{fmt}}{unit})"


def t_grid(steps: int, stride: int, low: int = 1, extra: Sequence[int] = ()) -> list[int]:
    """``t_start`` values ``steps, steps - stride, ...`` down to ``low``, plus ``extra``, high to low."""
    if stride < 1:
        raise ValueError(f"t_stride={stride} must be >= 1")
    return sorted({t for t in range(steps, low - 1, -stride)} | {int(t) for t in extra if low <= t <= steps}, reverse=True)


def strata(sweep: Sweep) -> np.ndarray:
    """The class of each of the sweep's samples: bootstrap resamples keep every class's count."""
    return np.unique(np.asarray(sweep.prompts, dtype=object).astype(str), return_inverse=True)[1]


def window(keep: np.ndarray):
    """The mean of a mean curve over the grid points ``keep`` (NaN where the window is empty)."""
    return lambda m: float(np.nanmean(m[keep])) if keep.any() else np.nan


def image_samples(sweep: Sweep, k: int = IMAGE_SAMPLES) -> list[int]:
    """The samples whose images a sweep keeps: its first ``k``."""
    return list(range(min(k, len(sweep.seeds))))


def run_family(sweep: Sweep, family: tuple[list[Schedule], list[dict]], images: Sequence[int] | None = None,
               **labels) -> SweepResult:
    """Run a family of schedules with its labels (plus ``labels``, the same on every row)."""
    schedules, rows = family
    return sweep.run(schedules, images=images, labels=[{**row, **labels} for row in rows])


def relative_timings(timings: pd.DataFrame) -> pd.DataFrame:
    """A timing table (its first row the full sampler) with each schedule's time saved and speed-up
    against it, as medians and as ranges over rounds."""
    full = timings.seconds.iloc[0]
    return timings.assign(saved=1 - timings.seconds / full, saved_low=1 - timings.high / full,
                          saved_high=1 - timings.low / full, speedup=full / timings.seconds,
                          speedup_low=full / timings.high, speedup_high=full / timings.low)


def cost_table(sweep: Sweep, parts: dict[str, Schedule]) -> pd.DataFrame:
    """Per schedule, on the sweep's model: its Unet calls, truncated calls, FLOPs saved and FLOP speed-up."""
    rows = []
    for name, s in parts.items():
        c = schedule_cost(sweep.unet, s, sweep.config)
        rows.append({"schedule": name, "Unet calls": c.unet_calls, "truncated calls": c.truncated_calls,
                     "FLOPs saved": c.saving, "FLOP speed-up": 1 / (1 - c.saving)})
    return pd.DataFrame(rows).set_index("schedule")
