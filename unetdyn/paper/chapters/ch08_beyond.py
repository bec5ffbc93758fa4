"""Chapter 8, ``08_beyond``: beyond the paper, a schedule search. The searched schedule beside
the paper's shortcut, reported on held-out samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from unetdyn.cost import schedule_cost
from unetdyn.interventions import Schedule, preset
from unetdyn.paper import readings as rd
from unetdyn.paper.alternatives import deepcache as deepcache_schedule
from unetdyn.paper.architectures import ARCHITECTURES, load_architecture
from unetdyn.paper.cache import SCHEMA_VERSION, Cache, CacheMiss, content_key
from unetdyn.paper.chapters import ch07_alternatives
from unetdyn.paper.chapters.common import SweepParams, cost_table, over_rounds, param, relative_timings
from unetdyn.paper.readings import Reading, bootstrap
from unetdyn.paper.search import METRICS, Budget, candidate_moves, open_search_sweep, sweep_search
from unetdyn.paper.sweeps import SweepResult, SweepSpec
from unetdyn.paper.verdicts import Finding, finding, note
from unetdyn.paths import CACHE_DIR

__all__ = ["Params", "Beyond", "run"]


@dataclass(frozen=True)
class Params(SweepParams):
    """Chapter 8's parameters (``n_samples``: the held-out samples, the book's)."""

    budget: str = param("ssim_lcb>=0.8", "on the search samples: ssim (mean), ssim_lcb (its 95% lower bound), "
                                         "ssim_p5 or psnr")
    other_budgets: tuple[str, ...] = param(("ssim>=0.8",), "budgets also searched, their found schedules shown beside")
    per_class: int = param(4, "search samples per class (five classes)")
    window: int = param(10, "steps per window of the search space")
    references: tuple[str, ...] = param(("paper-shortcut",), "presets to compare with")
    deepcache: tuple[int, int] | None = param((12, 2), "a DeepCache-style schedule to compare with: nb, refresh "
                                                       "interval (chapter 7); None: none")
    timing_samples: int = param(16, "samples per timed run")
    timing_repeats: int = param(3, "timed rounds")
    image_samples: int = param(10, "samples whose images are kept")
    alternatives_samples: int = param(1000, "chapter 7's samples per method (its methods on the Pareto plot)")


@dataclass(frozen=True)
class Beyond:
    """Chapter 8: the searched schedule beside the paper's shortcut, reported on held-out samples.

    Attributes:
        search: the search's result on its own samples (:class:`~unetdyn.paper.search.SearchResult`).
        search_samples: (prompts, seeds) the search measured on.
        parts: the compared schedules by name (the paper's shortcut, the found one, references).
        result: their per-sample SSIM/PSNR on the book's samples (held out from the search).
        held_out_classes: the classes the search never saw.
        ssim: per schedule, its mean SSIM on all held-out samples and on the held-out classes.
        costs: FLOPs per schedule on this model; ``architectures``: the FLOP saving on other
            architectures (random weights), where they could be counted.
        timings: wall-clock of each schedule against the full sampler, one run.
    """

    spec: SweepSpec
    search: Any
    search_samples: tuple[list, list]
    parts: dict[str, Schedule]
    base: dict[str, np.ndarray]
    result: SweepResult
    held_out_classes: tuple[str, ...]
    ssim: dict[str, dict[str, Reading]]
    costs: pd.DataFrame
    architectures: pd.DataFrame
    timings: pd.DataFrame
    findings: tuple[Finding, ...]
    blocks: tuple[int, int] = (16, 16)  # the Unet's decoder blocks and skips (for drawing timelines)
    alternatives: ch07_alternatives.Alternatives | None = None  # chapter 7's table where the store has it
    others: dict[str, Any] = field(default_factory=dict)  # part name -> the search under another budget

    @property
    def found(self) -> dict[str, Schedule]:
        """The found schedules by part name: ``found`` (the chapter's budget) and one per other budget."""
        return {name: self.parts[name] for name in ("found", *self.others)}

    def description(self) -> str:
        """What the search did and found, in words."""
        best = self.search.best
        kinds = sorted({iv.kind.replace("_", " ") for iv in best.schedule.interventions})
        start = lambda iv: getattr(iv, "t_start", getattr(iv, "t", 0))  # noqa: E731
        in_time = Schedule(tuple(sorted(best.schedule.interventions, key=start, reverse=True)))
        return (f"The search measured {self.search.trials} schedules and kept {len(self.search.path) - 1} moves on its "
                f"path (a later move can replace an earlier one in the same window or ladder). The schedule it found "
                f"uses {', '.join(kinds) or 'nothing'}, in the order of sampling: `{in_time.describe()}`. On its own "
                f"search samples it "
                f"saves {best.saving:.1%} of the FLOPs ({1 / (1 - best.saving):.2f}x) at "
                f"{METRICS.get(self.search.budget.metric, self.search.budget.metric)} {best.value:.3f}.")

    GOALS = {"flops": 2.0, "wall": 1.8, "ssim": 0.8}  # the chapter's goals: speed-ups and held-out mean SSIM

    def goals_text(self) -> str:
        """The chapter's goals, each met or missed, read from the held-out interval and the measured costs."""
        g, tv = self.GOALS, self.timings.set_index("schedule")

        def against(name: str) -> str:
            flops, wall, m = self.costs["FLOP speed-up"][name], tv.speedup[name], self.ssim[name]["all held-out samples"]
            where = _side(m, g["ssim"])
            mean_side = "met" if m.value >= g["ssim"] else "missed"
            held = {"above": "met", "below": "missed"}.get(
                where, f"imprecise: {mean_side} on the mean, {'missed' if mean_side == 'met' else 'met'} on part of its interval")
            return (f"FLOP speed-up {flops:.2f}x ({'met' if flops >= g['flops'] else 'missed'}), wall-clock speed-up "
                    f"{wall:.2f}x ({'met' if wall >= g['wall'] else 'missed'}), held-out mean SSIM {m} "
                    f"({held}; its 95% interval lies {where} {g['ssim']:g})")

        text = (f"The goals: FLOP speed-up >= {g['flops']:g}x, wall-clock >= {g['wall']:g}x (median of the timing rounds) "
                f"and mean SSIM >= {g['ssim']:g} on the samples the search never saw.")
        for name, res in {"found": self.search, **self.others}.items():
            text += (f"\n\n- **{name}** (budget {res.budget}, {METRICS.get(res.budget.metric, res.budget.metric)} "
                     f"{res.best.value:.3f} on the search samples): {against(name)}.")
        return text

    def table(self) -> pd.DataFrame:
        """Per compared schedule: its held-out SSIM readings and its FLOP saving."""
        return pd.DataFrame([
            {"schedule": name, **{k: str(v) if v is not None else "-" for k, v in rs.items()},
             "FLOPs saved": f"{self.costs['FLOPs saved'][name]:.1%}", "FLOP speed-up": f"{self.costs['FLOP speed-up'][name]:.2f}x"}
            for name, rs in self.ssim.items()
        ])


def _side(r: Reading, threshold: float) -> str:
    """Where a reading's 95% interval lies against a threshold: ``above``, ``below`` or ``around``."""
    return "above" if r.lo >= threshold else "below" if r.hi < threshold else "around"


def _architecture_savings(parts: dict[str, Schedule], cache_dir, compute: bool) -> pd.DataFrame:
    """FLOPs saved by each schedule on GLIDE's, SD 1.5's and DDPM's architectures (random weights, meta
    device), stored; an architecture that cannot be built here (glide-text2im missing) is left out."""
    cache = Cache(cache_dir or CACHE_DIR, read_only=not compute)
    key = content_key({"v": SCHEMA_VERSION, "what": "architecture savings",
                       "schedules": {k: s.to_dict()["interventions"] for k, s in parts.items()}})
    rec = cache.get_record(key)
    if rec is None:
        if not compute:
            raise CacheMiss("the schedules' FLOP savings on other architectures are not stored: run `unetdyn figure 08_beyond`")
        rows = []
        for arch in ("glide", "sd15", "ddpm32"):
            try:
                unet = load_architecture(arch)
            except ImportError:
                continue
            for name, s in parts.items():
                rows.append({"architecture": ARCHITECTURES[arch][0], "schedule": name, "saving": schedule_cost(unet, s).saving})
        rec = {"rows": rows}
        cache.put_record(key, rec, {"what": "architecture savings"})
    table = pd.DataFrame(rec["rows"])
    return table.pivot(index="architecture", columns="schedule", values="saving") if len(table) else table


def _held_out_ssim(result: SweepResult, name: str, held_out_classes: tuple[str, ...]) -> dict[str, Reading | None]:
    """A schedule's mean SSIM on all held-out samples and on the held-out classes, and its 5th percentile."""
    t = result.table[result.table.schedule == name].sort_values("sample")
    v, cls = t.ssim.to_numpy(), np.unique(t.prompt.astype(str), return_inverse=True)[1]
    held = t.prompt.isin(held_out_classes).to_numpy()
    return {
        "all held-out samples": bootstrap(lambda m: float(m[0]), v[None, :], digits=3, strata=cls),
        "held-out classes": (bootstrap(lambda m: float(m[0]), v[held][None, :], digits=3, strata=cls[held])
                             if held.sum() > 1 else None),
        "5th percentile": rd.bootstrap_samples(lambda x: float(np.percentile(x, 5)), v, digits=3, strata=cls),
    }


def run(p: Params = Params()) -> Beyond:
    """Chapter 8: the schedule search (on its own samples) and the found schedule on the book's
    samples, which the search never saw (other seeds; half of them other classes). Schedules found
    under ``other_budgets`` are compared beside it (``found, METRIC at least THRESHOLD``)."""
    b = Budget.parse(p.budget)
    ssweep = open_search_sweep(p.model, p.weights, p.per_class, p.steps, p.guidance, compute=p.compute, **p.runtime)
    moves = candidate_moves(p.steps, len(ssweep.unet.skips_popped), window=p.window)
    res = sweep_search(ssweep, b, moves, progress=p.progress)
    others = {}
    for text in p.other_budgets:
        ob = Budget.parse(text)
        others[f"found, {ob.metric} at least {ob.threshold:g}"] = sweep_search(ssweep, ob, moves, progress=p.progress)
    parts = {name: Schedule(preset(name).interventions, name=name) for name in p.references}
    if p.deepcache is not None:
        dc = deepcache_schedule(p.steps, *p.deepcache)
        parts[dc.name] = dc
    parts["found"] = Schedule(res.best.schedule.interventions, name="found")
    for name, other in others.items():
        parts[name] = Schedule(other.best.schedule.interventions, name=name)

    sweep, base, _ = p.open()
    result = sweep.run(list(parts.values()), images=list(range(min(p.image_samples, p.n_samples))))
    search_classes = set(ssweep.prompts)
    held_out_classes = tuple(sorted({q for q in sweep.prompts if q not in search_classes}, key=sweep.prompts.index))
    ssim = {name: _held_out_ssim(result, name, held_out_classes) for name in parts}
    costs = cost_table(sweep, parts)
    timings = relative_timings(sweep.timing([Schedule((), name="full"), *parts.values()], p.timing_samples,
                                            p.timing_repeats))
    archs = _architecture_savings(parts, p.cache_dir, p.compute)

    found, paper = ssim["found"], ssim.get("paper-shortcut")
    tv = timings.set_index("schedule")
    g = Beyond.GOALS

    def held_out(name: str) -> str:
        m = ssim[name]["all held-out samples"]
        return f"{m} (interval {_side(m, g['ssim'])} {g['ssim']:g})"

    goal = lambda k: f"goal >= {g[k]:g}"  # noqa: E731
    findings = [
        note("search-goals", f"FLOP speed-up of the found schedule ({goal('flops')}x; the paper's shortcut: 1.3x)",
             f"{costs['FLOP speed-up']['found']:.2f}x ({costs['FLOPs saved']['found']:.1%} saved)", "found", own=True),
        note("search-goals", f"wall-clock speed-up of the found schedule, median and range over rounds ({goal('wall')}x)",
             over_rounds(tv.speedup["found"], tv.speedup_low["found"], tv.speedup_high["found"], ".2f", "x"), "timing"),
        note("search-goals", f"held-out mean SSIM of the found schedule, budget {b} on the search samples ({goal('ssim')})",
             held_out("found"), "held-out"),
    ]
    if found["held-out classes"] is not None:
        findings.append(note("search-goals", f"mean SSIM on the classes the search never saw ({goal('ssim')})",
                             str(found["held-out classes"]), "held-out"))
    for name, other in others.items():
        findings.append(note("search-goals", f"held-out mean SSIM of the schedule found under {other.budget}; its FLOP "
                                             f"speed-up ({goal('ssim')})",
                             f"{held_out(name)}; {costs['FLOP speed-up'][name]:.2f}x", "held-out"))
    if paper is not None:
        findings.append(finding("shortcut-ssim", f"chapter 8's {p.n_samples} samples (chapter 6's: the same seeds)",
                                paper["all held-out samples"], "held-out"))
    try:
        alt = ch07_alternatives.run(ch07_alternatives.Params(model=p.model, weights=p.weights,
                                                             samples=p.alternatives_samples, cache_dir=p.cache_dir))
    except CacheMiss:  # chapter 7's benchmark record is not in this store
        alt = None
    return Beyond(spec=p.spec, search=res, search_samples=(ssweep.prompts, ssweep.seeds), parts=parts, base=base,
                  result=result, held_out_classes=held_out_classes, ssim=ssim, costs=costs, architectures=archs,
                  timings=timings, findings=tuple(findings),
                  blocks=(len(sweep.unet.skips_popped), sum(sweep.unet.skips_pushed)), alternatives=alt, others=others)
