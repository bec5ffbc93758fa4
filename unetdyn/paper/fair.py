"""Chapter 7's fair comparison: every method on many samples, two kinds of quality, at equal cost.

SSIM to the full output asks "is this the same picture?". A sampler that injects its noise on
other steps draws another picture, maybe as good, and scores low by construction. So every
method gets both kinds of quality, per sample:

- **faithfulness**, for every model: SSIM/PSNR to the full 100-step ancestral output of the
  same seed (``ssim``, ``psnr``), and to its own family's full output (``ssim_own``,
  ``psnr_own``: DDIM against 100-step DDIM; for every other method the family's full output is
  the ancestral sampler's, so the two coincide);
- **distribution quality**, where a quality classifier knows the model's classes (the built-in
  model and its family): whether it sees the prompted class (``agree``), and its features
  (``feat``) for the Fréchet distance to as many real images. A model without one (GLIDE, a
  diffusers pipeline) runs the same comparison with these fields absent.

:func:`outcomes` computes them chunk by chunk (chunk ``k`` holds samples ``k * chunk ...``);
each (method, chunk) is one entry of the result store, stored when done, so an interrupted run
keeps its work and a rerun computes only what is missing. :mod:`unetdyn.paper.fair_readings`
reads them with 95% intervals and at equal cost.

Example:
    >>> from unetdyn.paper.alternatives import methods
    >>> ms = methods()
    >>> own_config(next(m for m in ms if m.name == "DDIM K=70"), ms[0]).steps
    100
    >>> outcome_fields(None)
    ('ssim', 'psnr', 'ssim_own', 'psnr_own')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from unetdyn.metrics import compare
from unetdyn.paper.alternatives import Method, timed_run
from unetdyn.paper.cache import SCHEMA_VERSION, Cache, CacheMiss, content_key, model_id
from unetdyn.paper.executors import Executor, Unit, make_executor
from unetdyn.paths import is_builtin
from unetdyn.sampler import RunOptions, SamplerConfig, sample, trajectory
from unetdyn.unet import Unet

__all__ = ["FAITHFULNESS", "CLASSIFIED", "outcome_fields", "Classifier", "shape_classifier", "classifier_for",
           "own_config", "outcomes", "strata_of", "model_flags", "timing_params", "time_methods"]

# per-sample arrays of one (method, chunk) entry: always these, and with a classifier also CLASSIFIED (feat is [n, D])
FAITHFULNESS = ("ssim", "psnr", "ssim_own", "psnr_own")
CLASSIFIED = ("agree", "feat")


@dataclass(frozen=True)
class Classifier:
    """A quality classifier and its real reference images, for :func:`outcomes` and the readings.

    Attributes:
        classify: images ``[N, 3, H, W]`` -> (predicted class ``[N]``, features ``[N, D]``).
        id: its weights' checksum (part of every outcome's key).
        real_feat, real_feat_b: its features of two independent real sets of as many images as
            samples (the Fréchet reference, and the floor).
        real_labels: the classes of the real images (the same in both sets).
        frechet: ``frechet(a, b)``, the distance between two feature sets.
    """

    classify: Callable[[torch.Tensor], tuple[Any, Any]]
    id: str
    real_feat: np.ndarray
    real_feat_b: np.ndarray
    real_labels: np.ndarray
    frechet: Callable[[np.ndarray, np.ndarray], float]


def outcome_fields(classifier: Classifier | None) -> tuple[str, ...]:
    """The per-sample fields :func:`outcomes` gives with this classifier (None: faithfulness only)."""
    return FAITHFULNESS + (CLASSIFIED if classifier is not None else ())


def shape_classifier(n_real: int) -> Classifier:
    """The built-in model's quality classifier, with ``n_real`` images of each of its two real sets
    (images ``0 .. n_real - 1``; their classes are ``i % 10``)."""
    from unetdyn.builtin_model.classifier import REAL_SEEDS, frechet_distance, load_classifier, predict_features
    from unetdyn.builtin_model.data import make_batch

    clf = load_classifier(train_if_missing=False)
    real = [make_batch(seed, range(n_real)) for seed in REAL_SEEDS]
    feats = [predict_features(clf, x)[1] for x, _ in real]
    return Classifier((lambda images: predict_features(clf, images)), model_id(clf), feats[0], feats[1],
                      real[0][1].numpy(), frechet_distance)


def classifier_for(model: str, n_real: int) -> Classifier | None:
    """The quality classifier of ``model``: the shape classifier for the built-in model and its family
    (they draw the same ten classes), None for any other model."""
    return shape_classifier(n_real) if is_builtin(model) else None


def strata_of(unet: Unet, prompts: Sequence[Any]) -> list[int] | None:
    """Each sample's class, for a class-conditional model (the resamples keep every class's count); else None."""
    return [unet.class_index(p) for p in prompts] if hasattr(unet, "class_index") else None


def own_config(m: Method, ref: Method) -> SamplerConfig:
    """The sampler of ``m``'s own family at the reference's step count (DDIM K=70 -> DDIM K=100)."""
    return replace(m.config, steps=ref.config.steps)


def _key(mid: str, clf: str | None, m: Method, ref: Method, prompts: Sequence[Any], seeds: Sequence[int]) -> str:
    return content_key({
        "v": SCHEMA_VERSION, "what": "fair outcome", "model": mid, "classifier": clf,
        "config": asdict(m.config), "interventions": m.schedule.to_dict()["interventions"],
        "reference": asdict(ref.config), "own": asdict(own_config(m, ref)),
        "prompts": [str(p) for p in prompts], "seeds": [int(s) for s in seeds],
    })


def outcomes(
    unet: Unet,
    ms: Sequence[Method],
    prompts: Sequence[Any],
    seeds: Sequence[int],
    cache: Cache,
    classifier: Classifier | None,
    chunk: int = 100,
    batch_size: int = 16,
    progress: bool = True,
    executor: str | Executor = "local",
    address: str | None = None,
    model: str = "builtin",
    weights: str | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Per method, the per-sample outcomes over all samples (see the module's docstring).

    Args:
        ms: the methods; the first is the reference (a full schedule).
        classifier: the quality classifier (None: faithfulness only; its checksum keys every entry).
        cache: the store; read-only means nothing is computed (a miss raises :class:`CacheMiss`).
        chunk: samples per stored entry.
        executor, address: where the missing chunks are computed, one unit each (see
            :func:`~unetdyn.paper.executors.make_executor`; on Ray, the classifier is sent to the
            workers); this process stores every outcome as it arrives.
        model, weights: how the command a miss names loads the model.

    Returns:
        method name -> ``{field: array over all samples}`` for :func:`outcome_fields`.
    """
    ref = ms[0]
    if ref.schedule.interventions:
        raise ValueError(f"the first method is the reference and must be a full schedule, got {ref.name!r}")
    if len({m.name for m in ms}) != len(ms):
        raise ValueError("method names must be unique")
    if chunk < 1:
        raise ValueError(f"chunk={chunk} must be >= 1")
    n = len(seeds)
    if len(prompts) != n or n < 1:
        raise ValueError(f"need as many prompts as seeds (>= 1), got {len(prompts)} and {n}")
    if classifier is not None and not hasattr(unet, "class_index"):
        raise ValueError("a quality classifier needs a class-conditional model whose classes it knows (the built-in "
                         f"model), not {type(unet).__name__}; pass classifier=None for faithfulness only")
    mid, cid, fields = model_id(unet), classifier.id if classifier else None, outcome_fields(classifier)
    got: dict[int, dict[str, dict[str, np.ndarray]]] = {}
    keys: dict[int, dict[str, str]] = {}
    units: list[Unit] = []
    starts = range(0, n, chunk)
    bar = tqdm(total=len(ms) * len(starts), desc="fair comparison", unit="entry", disable=not progress, miniters=1)
    for s in starts:
        p, sd = list(prompts[s : s + chunk]), [int(x) for x in seeds[s : s + chunk]]
        expect = {f: (len(sd), None) if f == "feat" else (len(sd),) for f in fields}
        keys[s] = {m.name: _key(mid, cid, m, ref, p, sd) for m in ms}
        got[s] = {m.name: hit for m in ms if (hit := cache.get(keys[s][m.name], expect)) is not None}
        todo = [m for m in ms if m.name not in got[s]]
        if todo and cache.read_only:
            raise CacheMiss(f"{len(todo)} of {len(ms)} methods of the fair comparison are not in {cache.root} for "
                            f"samples {s}..{s + len(sd) - 1}, first {todo[0].name!r}: run "
                            f"`python benchmarks/fair_comparison.py{model_flags(model, weights)} --samples {n} "
                            f"--chunk {chunk}`")
        bar.update(len(ms) - len(todo))
        if todo:
            units.append(Unit({"todo": [m.name for m in todo], "prompts": p, "seeds": sd, "start": s},
                              f"the fair comparison's {', '.join(repr(m.name) for m in todo)[:200]} on samples "
                              f"{s}..{s + len(sd) - 1}"))
    if units:
        ex = make_executor(executor, unet, address=address)
        shared = {"ms": list(ms), "classify": classifier.classify if classifier else None, "batch_size": batch_size}
        with closing(ex.map(_fair_unit, units, shared)) as arrivals:
            for u, items, finished in arrivals:
                s = units[u].args["start"]
                for name, arrays in items:
                    m = next(m for m in ms if m.name == name)
                    cache.put(keys[s][name], arrays, {"what": "fair outcome", "method": m.name})
                    got[s][name] = arrays
                    bar.update(1)
                if finished and len(units) > 1:
                    bar.set_postfix_str(f"samples {s}..{s + len(units[u].args['seeds']) - 1} done")
    bar.close()
    return {m.name: {f: np.concatenate([got[s][m.name][f] for s in starts]) for f in fields} for m in ms}


def model_flags(model: str, weights: str | None) -> str:
    """``benchmarks/fair_comparison.py``'s flags that load ``model`` (none for the built-in model's defaults)."""
    return (f" --model {model}" if model != "builtin" else "") + (f" --weights {weights}" if weights else "")


def timing_params(timing_samples: int, repeats: int, batch_size: int, device: str | None = "cpu") -> dict:
    """The parameters that key the timing record (the benchmark stores, chapter 7 reads): a GPU's timings
    are keyed apart from the CPU's, whose key is the one it always was."""
    p = {"timing_samples": timing_samples, "repeats": repeats, "batch_size": batch_size}
    if device not in (None, "cpu"):
        p["device"] = device
    return p


def _fair_unit(unet, ms, classify, batch_size, todo, prompts, seeds, start):
    """One unit: the methods named ``todo`` on one chunk of samples (``start``: its first sample)."""
    yield from _compute_chunk(unet, ms, [m for m in ms if m.name in todo], prompts, seeds, classify, batch_size)


def _compute_chunk(unet, ms, todo, prompts, seeds, classify, batch_size) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """The outcomes of the methods ``todo`` on one chunk of samples, yielded as ``(name, arrays)``, each when done."""
    ref = ms[0]
    base = trajectory(unet, prompts, seeds, run=RunOptions(ref.config, batch_size=batch_size, progress=False))
    full = {ref.config: base.x0}

    def reference(cfg: SamplerConfig) -> torch.Tensor:
        if cfg not in full:
            full[cfg] = sample(unet, prompts, seeds, "full",
                               RunOptions(cfg, batch_size=batch_size, progress=False)).images[0]
        return full[cfg]

    target = np.array([unet.class_index(p) for p in prompts]) if classify is not None else None

    def finish(m: Method, out: torch.Tensor) -> dict[str, np.ndarray]:
        q, own = compare(base.x0, out), compare(reference(own_config(m, ref)), out)
        arrays = {"ssim": q["ssim"], "psnr": q["psnr"], "ssim_own": own["ssim"], "psnr_own": own["psnr"]}
        if classify is not None:
            pred, feat = classify(out)
            arrays |= {"agree": (np.asarray(pred) == target).astype(np.uint8), "feat": np.asarray(feat, np.float32)}
        return arrays

    # the reference's config: every schedule resumes from the full trajectory, all in one batched run
    same = [m for m in todo if m.config == ref.config]
    if same:
        res = sample(unet, prompts, seeds, [m.schedule for m in same],
                     RunOptions(ref.config, baseline=base, batch_size=batch_size, progress=False))
        for m, out in zip(same, res.images):
            yield m.name, finish(m, out)
    for m in todo:
        if m in same:
            continue
        out = full.get(m.config) if not m.schedule.interventions else None
        if out is None:
            out = sample(unet, prompts, seeds, m.schedule,
                         RunOptions(m.config, batch_size=batch_size, progress=False)).images[0]
            if not m.schedule.interventions:
                full[m.config] = out
        yield m.name, finish(m, out)


def time_methods(unet: Unet, ms: Sequence[Method], prompts: Sequence[Any], seeds: Sequence[int], repeats: int = 3,
                 batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """Seconds per sample ``[methods, repeats]`` of sampling ``prompts``/``seeds`` from scratch.

    One warm-up run, then ``repeats`` rounds; each round runs every method once, so slow
    drifts of a shared machine hit all methods alike.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be >= 1")

    def run(m: Method) -> float:
        return timed_run(unet, prompts, seeds, m, batch_size) / len(seeds)

    run(ms[0])
    rounds = tqdm(range(repeats), desc="timing rounds", unit="round", disable=not progress)
    return np.array([[run(m) for m in ms] for _ in rounds]).T
