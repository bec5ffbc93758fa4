"""Chapter 7, ``07_alternatives``: is the shortcut worth it? The fair comparison and the
benchmarks' records, read from the result store (this chapter computes nothing itself:
``benchmarks/fair_comparison.py`` and the other benchmark scripts store what it reads)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from unetdyn.backends import load_unet
from unetdyn.cost import CallCost
from unetdyn.paper import fair as fair_outcomes
from unetdyn.paper import fair_readings as fr
from unetdyn.paper.alternatives import load_benchmark, methods
from unetdyn.paper.cache import Cache, CacheMiss, model_id
from unetdyn.paper.chapters.common import param
from unetdyn.paper.readings import Reading
from unetdyn.paper.sweeps import default_samples
from unetdyn.paper.verdicts import Finding, finding
from unetdyn.paths import CACHE_DIR

__all__ = ["Params", "Alternatives", "run", "EFFICIENCY", "DDIM"]

# the parameters the sampler-efficiency and DDIM-diagnosis benchmarks ran with, as the store keys them
EFFICIENCY = {"batches": "1,4,8,16,24,32,64,128,256", "steps": 10, "repeats": 3, "sweep_samples": 2, "t_stride": 10}
DDIM = {"samples": 50, "guidances": "1,2,3,5"}


@dataclass(frozen=True)
class Params:
    """Chapter 7's parameters: those the benchmarks ran with, by which the store keys their records."""

    model: str = param("builtin", "the model the benchmarks measured")
    weights: str | None = param(None, "None: the model's own weights")
    samples: int = param(1000, "samples per method (benchmarks/fair_comparison.py --samples): 100 per class")
    chunk: int = param(100, "samples per stored entry (--chunk)")
    timing_samples: int = param(8, "samples per timed run (--timing-samples)")
    repeats: int = param(3, "timing rounds after a warm-up (--repeats)")
    batch_size: int = param(16, "samples per Unet call of the timed runs (--batch-size)")
    timing_device: str = param("cpu", "where the timings ran (--device): cpu or cuda; the record is keyed by it")
    glide_repeats: int = param(2, "the GLIDE random-weights cost run's --repeats")
    store_summary: bool = param(False, "store the bootstrap summary on a miss (benchmarks/fair_comparison.py does; "
                                       "the book only reads)")
    cache_dir: str | None = param(None, "None: data/cache, the committed result store")


@dataclass(frozen=True)
class Alternatives:
    """Chapter 7: the fair comparison and the benchmarks' records, read from the result store.

    Attributes:
        meta: how the timings were measured (machine, threads, date) and the samples.
        table: one row per method (see :class:`~unetdyn.paper.fair_readings.Fair`; plus ``flop_saving``,
            ``ssim_mean``, ``psnr_mean`` for the plots).
        fair: the readings with their bootstrap replicates (for a model without a quality
            classifier, faithfulness only: ``fair.classified`` is False).
        equal_cost: cost axis (``flop_speedup``, ``speedup``) -> each family read at the
            shortcut's speed-up (:func:`~unetdyn.paper.fair_readings.equal_cost`).
        verdict: the sentence computed from those intervals.
    """

    meta: dict
    table: pd.DataFrame
    fair: fr.Fair
    equal_cost: dict[str, pd.DataFrame]
    verdict: str
    glide: dict | None
    efficiency: dict | None
    findings: tuple[Finding, ...]
    ddim: pd.DataFrame | None = None  # benchmarks/ddim_diagnosis.py: agreement and saturation against guidance
    ddim_fair: str = ""  # DDIM against its own full output and the ancestral sampler, from the fair comparison

    def measured_on(self) -> str:
        m = self.meta
        return (f"Measured on the **{m['model']}** model: {m.get('samples')} samples per method for quality, "
                f"{m.get('timing_samples')} per timed run, {m.get('threads', '?')} threads, {m.get('date', '?')}.")

    def efficiency_text(self) -> str:
        s, e = self.efficiency["sweep"], self.efficiency
        grid = f" (nb = 2..12, n = 5, t_start every {e['params']['t_stride']} steps)"
        return (f"Fig. 8 sweep, {s['configurations']} configurations{grid}: **{s['block_evals_per_sample_actual']:.0f}** block "
                f"evaluations per sample run against {s['block_evals_per_sample_naive']:.0f} naive (**{s['ratio']:.1f}x** "
                f"fewer). Matrix-product peak: {e['matmul_gflop_per_s']:.0f} GFLOP/s on {e['threads']} threads.")


def _optional(cache: Cache, name: str, model_key: str, params: dict) -> dict | None:
    try:
        return load_benchmark(cache, name, model_key, params)
    except CacheMiss:
        return None


def _fair(p: Params, unet, cache: Cache) -> tuple[pd.DataFrame, fr.Fair, dict, dict]:
    """The fair comparison of ``p.model``: its table, readings, equal-cost tables and how it was measured.
    A model without a quality classifier gets the same comparison, faithfulness only."""
    ms = methods()
    timing = fair_outcomes.timing_params(p.timing_samples, p.repeats, p.batch_size, p.timing_device)
    flags = fair_outcomes.model_flags(p.model, p.weights)
    rec = load_benchmark(cache, "fair", model_id(unet), timing, f"{flags} --timing-only")
    secs = dict(zip(rec["methods"], rec["seconds"]))  # per method, seconds per sample in each round
    if missing := [m.name for m in ms if m.name not in secs]:
        raise CacheMiss(f"the timing record has no {', '.join(missing)}: run `python benchmarks/fair_comparison.py"
                        f"{flags} --timing-only --timing-samples {p.timing_samples} --repeats {p.repeats}`")
    prompts, seeds = default_samples(unet, p.model, p.samples)
    clf = fair_outcomes.classifier_for(p.model, p.samples)
    outs = fair_outcomes.outcomes(unet, ms, prompts, seeds, cache, clf, chunk=p.chunk, batch_size=p.batch_size,
                                  progress=False, model=p.model, weights=p.weights)
    costs = CallCost(unet, prompts[0])
    fair = fr.summarize_stored(Cache(cache.root, read_only=not p.store_summary), outs, ms,
                               {m.name: costs.flops_per_sample(m.schedule, m.config) for m in ms}, secs, clf,
                               strata=fair_outcomes.strata_of(unet, prompts), store=p.store_summary)
    table = fair.table.assign(flop_saving=1 - 1 / fair.table.flop_speedup, ssim_mean=fair.table.ssim,
                              psnr_mean=fair.table.psnr)
    eq = {axis: fr.equal_cost(fair, axis) for axis in ("flop_speedup", "speedup")}
    meta = {**rec["meta"], "model": p.model, "samples": p.samples, "timing_samples": p.timing_samples}
    return table, fair, eq, meta


def _glide_findings(glide: dict) -> list[Finding]:
    """GLIDE's share: FLOPs do not depend on the weights, so GLIDE's architecture with random weights gives it."""
    g = {r["method"]: r for r in glide["rows"]}
    if "paper shortcut" not in g or "full" not in g:
        return []
    out = []
    for col, what, own in (("flops_text_every_step", "text encoded every step as its notebook does", True),
                           ("flops", "text encoded once", False)):
        v = 1 - g["paper shortcut"][col] / g["full"][col]
        out.append(finding("speedup", f"GLIDE's architecture, FLOPs, {what}", (v, v, f"{v:.1%}"), "glide", own=own))
    v = 1 - 1 / g["paper shortcut"]["speedup"]
    out.append(finding("speedup", "GLIDE's architecture, CPU seconds summed from timed calls", (v, v, f"{v:.1%}"), "glide"))
    return out


def run(p: Params = Params()) -> Alternatives:
    """Chapter 7: read every record it shows; a record missing from the store raises a
    :class:`~unetdyn.paper.cache.CacheMiss` naming the benchmark that makes it."""
    cache = Cache(p.cache_dir or CACHE_DIR, read_only=True)
    unet = load_unet(p.model, p.weights)
    table, fair, eq, meta = _fair(p, unet, cache)
    glide = _optional(cache, "alternatives", "glide-architecture",
                      {"random_weights": True, "repeats": p.glide_repeats, "quick": False})
    eff = _optional(cache, "efficiency", model_id(unet), EFFICIENCY)
    dd = _optional(cache, "ddim", model_id(unet), DDIM)
    findings = _glide_findings(glide) if glide is not None else []
    sc = table[table.method == "paper shortcut"]
    if len(sc):
        s = sc.iloc[0]
        v, lo, hi = 1 - 1 / s.speedup, 1 - 1 / s.speedup_low, 1 - 1 / s.speedup_high
        where = "this CPU" if p.timing_device == "cpu" else meta.get("device", p.timing_device)
        model = "built-in model" if p.model == "builtin" else p.model
        findings.append(finding("speedup", f"{model}, wall-clock on {where}, chapter 7's timing ({meta.get('timing_samples')} samples per "
                                           "run; the interval is the range over rounds)",
                                (lo, hi, f"{v:.1%} (range over rounds {lo:.1%} to {hi:.1%})"), "verdict"))
        which = ", ten seeds per class per 100" if fair.classified else ""
        findings.append(finding("shortcut-ssim", f"the fair comparison's samples ({fair.samples}{which}; the first 100 "
                                                 "are chapter 6's)",
                                Reading(s.ssim, s.ssim_lo, s.ssim_hi, digits=3, samples=fair.samples), "verdict", own=True))
    return Alternatives(meta=meta, table=table, fair=fair, equal_cost=eq, verdict=fr.verdict_text(fair, eq), glide=glide,
                        efficiency={**eff, "params": EFFICIENCY} if eff is not None else None, findings=tuple(findings),
                        ddim=pd.DataFrame(dd["rows"]) if dd else None, ddim_fair=fr.ddim_text(fair))
