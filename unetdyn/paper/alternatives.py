"""The paper's shortcut beside the speed-ups a user could pick instead.

Every method is data: a :class:`Method` is a schedule plus a sampler config. The families:

- ``full``: the 100-step sampler (the reference every other method is compared with);
- ``paper shortcut``: the paper's Fig. 11 schedule, and its two parts alone (block removal
  alone; early stop alone);
- ``fewer steps``: the same ancestral sampler respaced to K < 100 steps;
- ``DDIM``: deterministic DDIM (eta = 0) at the same K;
- ``dual depth``: DuoDiff-style, the network with its bottom ``nb`` decoder blocks dropped
  for the first steps and the full one after a switch point (DuoDiff trains its shallow
  network; here it is the truncated Unet itself, training-free);
- ``DeepCache``: the bottom ``nb`` decoder blocks reused from the last full step (the
  drop-blocks intervention with ``fill="cache"``), refreshed every ``k`` steps;
- ``guidance truncation``: classifier-free guidance's unconditional branch dropped in the
  last ``m`` steps.

:mod:`unetdyn.paper.fair` runs them on the same prompts and seeds (chapter 7's fair
comparison). :func:`glide_costs` gives GLIDE's FLOPs and a per-call timed cost for the same
methods (random weights suffice: cost does not depend on them).

Example:
    >>> ms = methods()
    >>> [m.name for m in ms][:3]
    ['full', 'paper shortcut', 'shortcut: blocks only']
    >>> next(m for m in ms if m.name == "DeepCache nb=12 k=3").schedule.interventions[0]
    DropBlocks(t_start=99, n=2, nb=12, fill='cache')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from unetdyn.cost import CallCost, timed
from unetdyn.interventions import DropBlocks, DropGuidance, EarlyStop, Schedule, preset
from unetdyn.metrics import compare
from unetdyn.sampler import RunOptions, SamplerConfig, sample
from unetdyn.unet import Unet

__all__ = [
    "FAMILIES",
    "Method",
    "methods",
    "dual_depth",
    "deepcache",
    "guidance_truncation",
    "glide_costs",
    "pareto",
    "ddim_diagnosis",
    "ddim_reading",
]

FAMILIES = ("full", "paper shortcut", "fewer steps", "DDIM", "dual depth", "DeepCache", "guidance truncation")


@dataclass(frozen=True)
class Method:
    """One way to sample: a schedule on a sampler config, with its family and strength.

    ``strength`` is the family's knob (K, the switch step, the refresh interval, the
    number of unguided steps), for labelling plots.
    """

    family: str
    name: str
    schedule: Schedule
    config: SamplerConfig
    strength: float = 0.0


def dual_depth(K: int, nb: int, switch: int) -> Schedule:
    """The bottom ``nb`` decoder blocks dropped (zeros) from step ``K`` down to ``switch + 1``."""
    if not 0 <= switch < K:
        raise ValueError(f"switch={switch} must be in 0..{K - 1}")
    return Schedule((DropBlocks(t_start=K, n=K - switch, nb=nb),), name=f"dual depth nb={nb} switch={switch}")


def deepcache(K: int, nb: int, k: int) -> Schedule:
    """Full step at ``K, K-k, K-2k, ...``; in between the bottom ``nb`` blocks come from the cache."""
    if k < 2:
        raise ValueError(f"deepcache refresh interval k={k} must be >= 2 (k=1 is the full sampler)")
    ivs = []
    for full in range(K, 0, -k):
        n = min(k - 1, full - 1)
        if n >= 1:
            ivs.append(DropBlocks(t_start=full - 1, n=n, nb=nb, fill="cache"))
    return Schedule(tuple(ivs), name=f"DeepCache nb={nb} k={k}")


def guidance_truncation(m: int) -> Schedule:
    """The last ``m`` steps without the unconditional branch (guidance scale 1 there)."""
    return Schedule((DropGuidance(t_start=m, n=m),), name=f"guidance truncated last {m}")


def methods(
    K: int = 100,
    guidance: float = 3.0,
    fewer: Sequence[int] = (50, 60, 70, 80, 90),
    dual: Sequence[tuple[int, int]] = ((4, 90), (8, 90), (8, 80)),
    cache: Sequence[tuple[int, int]] = ((8, 3), (12, 2), (12, 3), (12, 5)),
    truncate: Sequence[int] = (10, 20, 40),
) -> list[Method]:
    """Every method of the comparison, the reference (``full``) first.

    ``fewer``: the K of the respaced samplers (ancestral and DDIM; DDIM also at ``K``);
    ``dual``: (nb, switch) pairs; ``cache``: (nb, refresh interval k) pairs; ``truncate``:
    unguided final steps. The paper's shortcut is defined on 100 steps and is left out
    for other ``K``.
    """
    base = SamplerConfig(steps=K, guidance=guidance)
    shortcut = preset("paper-shortcut")
    blocks = tuple(iv for iv in shortcut.interventions if not isinstance(iv, EarlyStop))
    stop = tuple(iv for iv in shortcut.interventions if isinstance(iv, EarlyStop))
    out = [Method("full", "full", preset("full"), base, K)]
    if K == 100:
        out += [
            Method("paper shortcut", "paper shortcut", shortcut, base),
            Method("paper shortcut", "shortcut: blocks only", Schedule(blocks, name="shortcut: blocks only"), base),
            Method("paper shortcut", "shortcut: early stop only", Schedule(stop, name="shortcut: early stop only"), base),
        ]
    for k in fewer:
        out.append(Method("fewer steps", f"ancestral K={k}", preset("full"), replace(base, steps=k), k))
    for k in [*fewer, K]:
        out.append(Method("DDIM", f"DDIM K={k}", preset("full"), replace(base, steps=k, method="ddim"), k))
    for nb, sw in dual:
        s = dual_depth(K, nb, sw)
        out.append(Method("dual depth", s.name, s, base, sw))
    for nb, k in cache:
        s = deepcache(K, nb, k)
        out.append(Method("DeepCache", s.name, s, base, k))
    for m in truncate:
        s = guidance_truncation(m)
        out.append(Method("guidance truncation", s.name, s, base, m))
    return out


def timed_run(unet, prompts, seeds, m: Method, batch_size: int) -> float:
    """Seconds to sample ``prompts``/``seeds`` with ``m`` from scratch."""
    return timed(unet, lambda: sample(unet, prompts, seeds, m.schedule,
                                      RunOptions(m.config, batch_size=batch_size, progress=False)))


def glide_costs(unet: Unet, ms: Sequence[Method], prompt: str = "a photo of a corgi", repeats: int = 3,
                batch: int = 1, progress: bool = True) -> pd.DataFrame:
    """GLIDE's cost of every method: FLOPs, and seconds per sample summed from timed calls.

    Weights do not change cost, so random weights serve. The encoding is counted once per
    sample; ``flops_text_every_step`` adds it at every call, as GLIDE's notebook does, and the
    extra row ``text encoded every step`` is the full sampler so. Seconds: each distinct
    (surgery, rows) forward timed on ``batch`` samples, median of ``repeats`` after a warm-up
    (``repeats=0``: FLOPs only).
    """
    cc = CallCost(unet, prompt, batch=batch, repeats=repeats)
    ref = ms[0]
    ref_flops = cc.flops_per_sample(ref.schedule, ref.config)
    ref_sec = cc.seconds_per_sample(ref.schedule, ref.config) if repeats else float("nan")
    rows = []
    for m in tqdm(ms, desc="methods", unit="method", disable=not progress):
        flops = cc.flops_per_sample(m.schedule, m.config)
        sec = cc.seconds_per_sample(m.schedule, m.config) if repeats else float("nan")
        rows.append({
            "family": m.family,
            "method": m.name,
            "strength": m.strength,
            "steps": m.config.steps,
            "unet_calls": sum(cc.calls(m.schedule, m.config).values()),
            "flops": flops,
            "flops_text_every_step": cc.flops_per_sample(m.schedule, m.config, encode_every_step=True),
            "flop_saving": 1.0 - flops / ref_flops,
            "sec_per_sample": sec,
            "speedup": ref_sec / sec if repeats else float("nan"),
        })
    every = cc.flops_per_sample(ref.schedule, ref.config, encode_every_step=True)
    rows.append({
        "family": "full", "method": "text encoded every step", "strength": ref.config.steps,
        "steps": ref.config.steps, "unet_calls": sum(cc.calls(ref.schedule, ref.config).values()), "flops": every,
        "flops_text_every_step": every, "flop_saving": 1.0 - every / ref_flops,
        "sec_per_sample": float("nan"), "speedup": float("nan"),
    })
    return pd.DataFrame(rows)


def pareto(table: pd.DataFrame, x: str = "ssim_mean", y: str = "speedup") -> pd.DataFrame:
    """The rows no other row beats on both ``x`` and ``y`` (higher is better for both), by ``y``."""
    t = table.dropna(subset=[x, y])
    keep = []
    for i, r in t.iterrows():
        dominated = ((t[x] >= r[x]) & (t[y] >= r[y]) & ((t[x] > r[x]) | (t[y] > r[y]))).any()
        if not dominated:
            keep.append(i)
    return t.loc[keep].sort_values(y)


# -- the benchmarks' results, in the result store ----------------------------------------------

# Each benchmark script's results live in the content-keyed result store under a key made of
# the benchmark, the model's weights checksum (or, for cost on random weights, the
# architecture) and the script's parameters; chapter 7 asks for them by the same description.
BENCHMARK_SCRIPTS = {
    "alternatives": "benchmarks/alternatives.py",
    "efficiency": "benchmarks/sampler_efficiency.py",
    "book_times": "benchmarks/book_times.py",
    "other_unets": "benchmarks/other_unets.py",
    "ddim": "benchmarks/ddim_diagnosis.py",
    "fair": "benchmarks/fair_comparison.py",
}


def benchmark_key(name: str, model: str, params: dict) -> str:
    """The store key of a benchmark's record. ``model``: a weights checksum, or an architecture name."""
    from unetdyn.paper.cache import SCHEMA_VERSION, content_key

    if name not in BENCHMARK_SCRIPTS:
        raise ValueError(f"unknown benchmark {name!r}; benchmarks: {', '.join(BENCHMARK_SCRIPTS)}")
    return content_key({"v": SCHEMA_VERSION, "what": "benchmark", "name": name, "model": model, "params": params})


def load_benchmark(cache, name: str, model: str, params: dict, flags: str = "") -> dict:
    """The record a benchmark stored for ``model`` and ``params``; a miss names the command that makes it
    (``flags``: the script's options that are no parameters of the record, such as ``--model``)."""
    from unetdyn.paper.cache import CacheMiss

    rec = cache.get_record(benchmark_key(name, model, params))
    if rec is None:
        given = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in params.items() if not isinstance(v, bool)) + "".join(
            f" --{k.replace('_', '-')}" for k, v in params.items() if v is True)
        raise CacheMiss(f"the {name} benchmark for these parameters is not in {cache.root}: run "
                        f"`python {BENCHMARK_SCRIPTS[name]}{flags} {given}`")
    return rec


def ddim_diagnosis(
    unet: Unet,
    prompts: Sequence[Any],
    seeds: Sequence[int],
    judge: Callable[[torch.Tensor], np.ndarray],
    guidances: Sequence[float] = (1.0, 2.0, 3.0, 5.0),
    steps: Sequence[int] = (100, 50),
    batch_size: int = 16,
    progress: bool = True,
) -> pd.DataFrame:
    """Why DDIM loses class agreement: the ancestral sampler and DDIM at several guidance scales.

    Per (sampler, K, guidance): the share of samples the classifier sees as the prompted class
    (with its 95% bootstrap interval), the share of saturated pixels (``|x| >= 0.98``), and for
    DDIM at fewer steps its SSIM to its own output at the most steps (is DDIM self-consistent?).
    """
    from unetdyn.paper.readings import bootstrap_samples

    rows = []
    runs = [(m, k) for m in ("ancestral", "ddim") for k in sorted(steps, reverse=True) if m == "ddim" or k == max(steps)]
    bar = tqdm(total=len(runs) * len(guidances), desc="DDIM diagnosis", unit="run", disable=not progress)
    for g in guidances:
        own: torch.Tensor | None = None
        for method, k in runs:
            out = sample(unet, prompts, seeds, "full",
                         RunOptions(SamplerConfig(steps=k, guidance=g, method=method), batch_size=batch_size,
                                    progress=False)).images[0]
            agree = bootstrap_samples(np.mean, judge(out).astype(float), digits=2)
            row = {"sampler": method, "steps": k, "guidance": g, "samples": len(seeds), "agreement": agree.value, "agreement_lo": agree.lo,
                   "agreement_hi": agree.hi, "saturated": float((out.abs() >= 0.98).float().mean()),
                   "ssim_to_own_most_steps": float("nan")}
            if method == "ddim":
                if own is None:
                    own = out
                else:
                    row["ssim_to_own_most_steps"] = float(compare(own, out)["ssim"].mean())
            rows.append(row)
            bar.update(1)
    bar.close()
    return pd.DataFrame(rows)


def ddim_reading(table: pd.DataFrame) -> str:
    """The DDIM diagnosis in words, each comparison read from the 95% intervals (``below``/``above`` the
    ancestral sampler when they do not overlap, ``not apart from`` it otherwise)."""
    anc = table[table.sampler == "ancestral"].set_index("guidance")
    ddim = table[(table.sampler == "ddim") & (table.steps == table.steps.max())].set_index("guidance")
    own = table[table.ssim_to_own_most_steps.notna()]

    def versus(g: float) -> str:
        a, b = ddim.loc[g], anc.loc[g]
        where = "below" if a.agreement_hi < b.agreement_lo else "above" if a.agreement_lo > b.agreement_hi else "not apart from"
        return (f"at guidance {g:g}, {a.agreement:.0%} [{a.agreement_lo:.0%}, {a.agreement_hi:.0%}] against the ancestral "
                f"sampler's {b.agreement:.0%} [{b.agreement_lo:.0%}, {b.agreement_hi:.0%}] ({where} it), with {a.saturated:.0%} "
                f"of its pixels saturated against {b.saturated:.0%}")

    text = "DDIM's class agreement is " + "; ".join(versus(g) for g in ddim.index) + ". "
    if (ddim.agreement.diff().dropna() >= 0).all():
        text += "It rises with the guidance scale. "
    if (ddim.saturated > anc.saturated).all():
        text += "At every scale DDIM saturates more pixels than the ancestral sampler. "
    consistent = len(own) > 0 and own.ssim_to_own_most_steps.min() >= 0.95
    if len(own):
        text += (f"DDIM at {int(own.steps.iloc[0])} steps reproduces its own {int(table.steps.max())}-step output at SSIM "
                 f"{own.ssim_to_own_most_steps.min():.3f} to {own.ssim_to_own_most_steps.max():.3f}"
                 f"{', so it is self-consistent' if consistent else ''}. ")
    if consistent and (ddim.agreement < anc.agreement).any():
        text += ("Where DDIM's agreement is lower, an update that matches an independent implementation (the tests) "
                 "and converges on its own output points to a property of deterministic DDIM sampling on this model, "
                 "not a defect of the code. ")
    return text + (f"({int(table.samples.iloc[0])} samples per point; 95% bootstrap intervals over samples, compared "
                   "unpaired, so \"not apart\" is the cautious reading; the fair comparison's paired difference above "
                   "is the sharper test.)")
