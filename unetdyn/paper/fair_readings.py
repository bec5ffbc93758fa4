"""Chapter 7's fair comparison, read: every method's qualities with 95% intervals, and at equal cost.

:func:`summarize` reads :func:`~unetdyn.paper.fair.outcomes` with 95% intervals from one paired
bootstrap over samples (the same resampled samples for every method), so differences between
methods, and values interpolated along a family's curve, carry intervals too. Without a quality
classifier the comparison reads faithfulness only: the table has no ``agreement`` or
``frechet`` columns, and every reading skips them. :func:`equal_cost` reads each family's curve
at the shortcut's cost; :func:`verdict_text` and :func:`ddim_text` say what the intervals say.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from unetdyn.paper.alternatives import FAMILIES, Method
from unetdyn.paper.cache import SCHEMA_VERSION, Cache, array_digest, content_key
from unetdyn.paper.fair import Classifier
from unetdyn.paper.readings import interval, resample

__all__ = ["Fair", "summarize", "summarize_stored", "equal_cost", "equal_cost_verdict", "in_short", "verdict_text",
           "ddim_text", "QUALITY_NAMES", "ADVANTAGE_FORMAT", "AXIS_NAMES"]


@dataclass(frozen=True)
class Fair:
    """The fair comparison's readings.

    Attributes:
        table: one row per method: ``family, method, strength, flops, flop_speedup,
            sec_per_sample, speedup``, and per quality ``q`` in ``ssim, ssim_p5, psnr,
            ssim_own`` and, with a classifier, ``agreement, frechet`` the columns ``q, q_lo,
            q_hi`` (95% interval); ``frechet`` is bias-corrected (see :func:`_read`;
            ``frechet_plugin``: the plain estimate).
        boot: method -> quality -> bootstrap replicates (the same resampled samples for every
            method, so replicates of two methods can be subtracted).
        samples: samples per method.
        frechet_real: the floor: the Fréchet distance between two independent real sets of
            the same size, bias-corrected the same way (nan without a classifier).
    """

    table: pd.DataFrame
    boot: dict[str, dict[str, np.ndarray]]
    samples: int
    frechet_real: float

    @property
    def classified(self) -> bool:
        """Whether a quality classifier read the outputs (the table has ``agreement`` and ``frechet``)."""
        return "agreement" in self.table.columns


PIVOTAL = ("frechet",)  # bias-corrected, with the basic bootstrap interval (see _read)
HIGHER_IS_BETTER = {"ssim": True, "ssim_p5": True, "psnr": True, "ssim_own": True, "agreement": True, "frechet": False}


def _read(estimate: float, reads: np.ndarray, pivotal: bool) -> tuple[float, float, float]:
    """A number and its 95% interval from bootstrap replicates: ``(value, lo, hi)``.

    Not pivotal: the estimate and the percentile interval. Pivotal (the Fréchet distance): the
    estimate of a finite sample is biased upward (a resample, which repeats samples, is more so),
    so the replicates sit above it, often all of them; the value is then the bias-corrected
    ``2 estimate - mean(replicates)`` and the interval the basic bootstrap interval
    ``2 estimate - q_hi, 2 estimate - q_lo``, which corrects for the same shift. Either can fall
    below zero where the two distributions cannot be told apart at this sample size.
    """
    r = reads[np.isfinite(reads)]
    if r.size == 0:
        return float(estimate), float("nan"), float("nan")
    lo, hi = interval(r)
    if not pivotal:
        return float(estimate), lo, hi
    return 2 * estimate - float(r.mean()), 2 * estimate - hi, 2 * estimate - lo


def summarize(
    outs: dict[str, dict[str, np.ndarray]],
    ms: Sequence[Method],
    flops: dict[str, float],
    seconds: dict[str, Sequence[float]],
    classifier: Classifier | None = None,
    strata: Sequence[int] | None = None,
    n_boot: int = 2000,
    n_boot_frechet: int = 500,
    seed: int = 0,
) -> Fair:
    """Every method's qualities with their 95% intervals, from one paired bootstrap over samples.

    Args:
        flops: per method, FLOPs per sample.
        seconds: per method, seconds per sample in each timing round (the same rounds for every
            method). The wall-clock speed-up is the median over rounds of the full sampler's time
            over the method's in the same round (``speedup_low``/``_high``: the range over rounds).
        classifier: the quality classifier the outcomes were read with (its real sets are the
            Fréchet reference and the floor); None: faithfulness only.
        strata: the class of each sample; resamples keep every class's count (the design is
            class-balanced; the real images' classes are the classifier's ``real_labels``).
            None: one stratum.
        n_boot_frechet: the Fréchet interval uses the first resamples only (each costs a matrix
            square root); the real sets are resampled too, so the bias correction covers both.

    PSNR is averaged over samples that differ from the reference.
    """
    n = len(next(iter(outs.values()))["ssim"])
    if n < 2:
        raise ValueError(f"a bootstrap needs at least 2 samples, got {n}")
    if any(len(o["ssim"]) != n for o in outs.values()):
        raise ValueError("every method needs the same samples")
    rng = np.random.default_rng(seed)
    idx = resample(np.zeros(n, int) if strata is None else strata, n_boot, rng)
    clf = classifier
    ridx = resample(clf.real_labels, n_boot_frechet, rng) if clf else None
    ref = ms[0].name
    rounds = {k: np.asarray(v, dtype=float) for k, v in seconds.items()}
    rows, boot = [], {}
    for m in ms:
        o = outs[m.name]
        psnr = np.where(np.isfinite(o["psnr"]), o["psnr"], np.nan)
        stats = {
            "ssim": (o["ssim"].mean(), o["ssim"][idx].mean(1)),
            "ssim_p5": (np.percentile(o["ssim"], 5), np.percentile(o["ssim"][idx], 5, axis=1)),
            "psnr": (_nanmean(psnr), _nanmean(psnr[idx], axis=1)),
            "ssim_own": (o["ssim_own"].mean(), o["ssim_own"][idx].mean(1)),
        }
        if clf:
            stats["agreement"] = (o["agree"].mean(), o["agree"][idx].mean(1))
            stats["frechet"] = (clf.frechet(o["feat"], clf.real_feat),
                                np.array([clf.frechet(o["feat"][i], clf.real_feat[j])
                                          for i, j in zip(idx[:n_boot_frechet], ridx)]))
        ratio = rounds[ref] / rounds[m.name]
        row = {"family": m.family, "method": m.name, "strength": m.strength, "flops": flops[m.name],
               "flop_speedup": flops[ref] / flops[m.name], "sec_per_sample": float(np.median(rounds[m.name])),
               "speedup": float(np.median(ratio)), "speedup_low": float(ratio.min()), "speedup_high": float(ratio.max())}
        for q, (v, reads) in stats.items():
            row[q], row[f"{q}_lo"], row[f"{q}_hi"] = _read(float(v), reads, q in PIVOTAL)
            if q in PIVOTAL:
                row[f"{q}_plugin"] = float(v)
        rows.append(row)
        boot[m.name] = {q: reads for q, (_, reads) in stats.items()}
    if not clf:
        return Fair(pd.DataFrame(rows), boot, n, float("nan"))
    bidx = resample(clf.real_labels, n_boot_frechet, rng)
    floor = _read(clf.frechet(clf.real_feat_b, clf.real_feat),
                  np.array([clf.frechet(clf.real_feat_b[i], clf.real_feat[j]) for i, j in zip(bidx, ridx)]), True)
    return Fair(pd.DataFrame(rows), boot, n, floor[0])


def summarize_stored(cache: Cache, outs, ms: Sequence[Method], flops, seconds, classifier: Classifier | None = None, *,
                     strata=None, store: bool = False, **kw) -> Fair:
    """:func:`summarize`, read from the store when it holds the summary of the same inputs.

    The bootstrap takes minutes (every Fréchet replicate is a matrix square root), so its result
    is a derived entry of the store, keyed by a digest of everything it is computed from: every
    outcome array, the FLOPs, the timing rounds, the real features, the strata and the bootstrap
    settings. A miss computes it, and stores it where ``store`` is set and the store is writable.
    """
    clf = classifier
    arrays = {f"{m.name}|{q}": np.asarray(outs[m.name][q]) for m in ms for q in sorted(outs[m.name])}
    if clf:
        arrays |= {"real": np.asarray(clf.real_feat), "real_b": np.asarray(clf.real_feat_b)}
    key = content_key({"kind": "fair-summary", "schema": SCHEMA_VERSION, "inputs": array_digest(arrays),
                       "methods": [m.name for m in ms], "flops": {k: float(v) for k, v in flops.items()},
                       "seconds": {k: np.asarray(v, float).tolist() for k, v in seconds.items()},
                       "strata": None if strata is None else list(map(int, strata)),
                       "real_strata": list(map(int, clf.real_labels)) if clf else None, "options": kw})
    hit = cache.get(key)
    if hit is not None and "record" in hit:
        rec = json.loads(bytes(hit.pop("record")).decode())
        boot: dict[str, dict[str, np.ndarray]] = {}
        for name, reads in hit.items():
            method, q = name.split("|", 1)
            boot.setdefault(method, {})[q] = reads
        return Fair(pd.DataFrame(rec["rows"], columns=rec["columns"]), boot, rec["samples"], rec["frechet_real"])
    fair = summarize(outs, ms, flops, seconds, clf, strata=strata, **kw)
    if store and not cache.read_only:
        rec = {"columns": list(fair.table.columns), "rows": fair.table.to_dict("records"), "samples": fair.samples,
               "frechet_real": fair.frechet_real}
        blob = np.frombuffer(json.dumps(rec, allow_nan=True).encode(), dtype=np.uint8)
        cache.put(key, {"record": blob, **{f"{m}|{q}": r for m, qs in fair.boot.items() for q, r in qs.items()}},
                  {"what": "chapter 7's bootstrap summary", "samples": fair.samples})
    return fair


def _nanmean(a: np.ndarray, axis=None):
    with warnings.catch_warnings():  # a resample where every sample equals the reference: nan
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def equal_cost(fair: Fair, axis: str = "flop_speedup", qualities: Sequence[str] = ("ssim", "agreement", "frechet"),
               at: str = "paper shortcut") -> pd.DataFrame:
    """Each family's quality at the speed-up of ``at``, read off its curve, against ``at``'s own.

    A family's curve is its own settings ordered by speed-up (``axis``: ``flop_speedup`` or the
    wall-clock ``speedup``), linearly interpolated between the two settings around ``at``'s
    speed-up: a point on the line between two settings one can run, not a setting itself. The
    same interpolation on every bootstrap replicate gives the interval. The full sampler is no
    point of any family's curve: every family changes the picture at its mildest setting
    already (fewer steps draw their noise on other steps), so a line from it would invent
    qualities no setting has. ``advantage`` is the family's quality minus ``at``'s, signed so
    that positive means the family is better (for the Fréchet distance, lower is better);
    ``verdict`` reads its interval (:func:`equal_cost_verdict`). A family whose settings do not
    span that speed-up gets no value (``reached = False``; its range is ``slowest .. fastest``).
    Qualities the comparison did not measure (without a classifier) are left out.
    """
    t = fair.table.set_index("method")
    qualities = [q for q in qualities if q in t.columns]
    if at not in t.index:
        raise ValueError(f"{at!r} is not among the measured methods")
    c = float(t.loc[at, axis])
    rows = []
    for fam in [f for f in FAMILIES if f in set(t.family) and f not in ("full", "paper shortcut")]:
        names = list(t.index[t.family == fam])
        xs = np.array([t.loc[m, axis] for m in names], dtype=float)
        order = np.argsort(xs, kind="stable")
        names, xs = [names[i] for i in order], xs[order]
        reached = bool(len(xs) >= 2 and xs[0] <= c <= xs[-1])
        for q in qualities:
            row = {"family": fam, "quality": q, "axis": axis, "at": c, "reached": reached, "slowest": float(xs[0]),
                   "fastest": float(xs[-1]), "value": np.nan, "lo": np.nan, "hi": np.nan, "advantage": np.nan,
                   "adv_lo": np.nan, "adv_hi": np.nan, "verdict": "outside its range", "read_between": ""}
            if reached:
                j = int(min(np.searchsorted(xs, c, side="right") - 1, len(xs) - 2))
                w = 0.0 if xs[j + 1] == xs[j] else (c - xs[j]) / (xs[j + 1] - xs[j])
                a, b = names[j], names[j + 1]
                piv = q in PIVOTAL
                col = f"{q}_plugin" if piv else q  # the estimate itself; _read corrects a pivotal one
                estimate = (1 - w) * t.loc[a, col] + w * t.loc[b, col]
                reads = (1 - w) * fair.boot[a][q] + w * fair.boot[b][q]
                sign = 1.0 if HIGHER_IS_BETTER[q] else -1.0
                value, lo, hi = _read(float(estimate), reads, piv)
                advantage, alo, ahi = _read(float(sign * (estimate - t.loc[at, col])), sign * (reads - fair.boot[at][q]), piv)
                row.update(value=value, lo=lo, hi=hi, advantage=advantage, adv_lo=alo, adv_hi=ahi,
                           verdict=equal_cost_verdict(alo, ahi), read_between=f"{a} / {b}")
            rows.append(row)
    return pd.DataFrame(rows)


def equal_cost_verdict(lo: float, hi: float) -> str:
    """The verdict on a family's advantage over the shortcut from its 95% interval.

    Example:
        >>> equal_cost_verdict(0.01, 0.05), equal_cost_verdict(-0.05, -0.01), equal_cost_verdict(-0.01, 0.02)
        ('family better', 'shortcut better', 'inconclusive')
        >>> equal_cost_verdict(float("nan"), float("nan"))
        'n/a'
    """
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "n/a"
    if lo > 0:
        return "family better"
    if hi < 0:
        return "shortcut better"
    return "inconclusive"


QUALITY_NAMES = {"ssim": "SSIM to the full output", "ssim_p5": "5th percentile of SSIM", "psnr": "PSNR to the full output",
                 "ssim_own": "SSIM to its own family's full output", "agreement": "class agreement",
                 "frechet": "Fréchet distance to real images"}
ADVANTAGE_FORMAT = {"ssim": "+.3f", "ssim_p5": "+.3f", "psnr": "+.1f", "ssim_own": "+.3f", "agreement": "+.1%",
                    "frechet": "+.2f"}
AXIS_NAMES = {"flop_speedup": "FLOPs", "speedup": "wall-clock"}


def in_short(eq: pd.DataFrame) -> str:
    """One sentence per cost axis: which families do better or worse than the shortcut on which qualities.

    Example:
        >>> eq = pd.DataFrame({"family": ["A", "A", "B", "B"], "quality": ["ssim", "agreement"] * 2,
        ...                    "reached": [True] * 4, "verdict": ["family better"] * 2 + ["shortcut better", "inconclusive"]})
        >>> in_short(eq)
        'A does better on every quality (the shortcut is beaten at its own cost); B does worse on SSIM to the full output, and cannot be told apart on class agreement.'
    """
    words = {"family better": "better", "shortcut better": "worse", "inconclusive": "cannot be told apart"}
    parts = []
    for fam, d in eq[eq.reached].groupby("family", sort=False):
        v = dict(zip(d.quality, d.verdict))
        if set(v.values()) == {"family better"} and len(v) > 1:
            parts.append(f"{fam} does better on every quality (the shortcut is beaten at its own cost)")
            continue
        said = []
        for verdict, word in words.items():
            qs = [QUALITY_NAMES.get(q, q) for q, x in v.items() if x == verdict]
            if qs:
                said.append(f"{'does ' if word != 'cannot be told apart' else ''}{word} on "
                            f"{', '.join(qs[:-1]) + ' and ' + qs[-1] if len(qs) > 1 else qs[0]}")
        parts.append(f"{fam} " + (", ".join(said[:-1]) + ", and " + said[-1] if len(said) > 1 else said[0]))
    return "; ".join(parts) + "." if parts else "No family's settings span the shortcut's speed-up."


def verdict_text(fair: Fair, tables: dict[str, pd.DataFrame], at: str = "paper shortcut") -> str:
    """The chapter's verdict, one sentence per cost axis and quality, from :func:`equal_cost`'s intervals."""
    t = fair.table.set_index("method")
    s = t.loc[at]
    lead = (f"On {fair.samples} samples per method, the paper's shortcut runs **{s.speedup:.2f}x** as fast as the full "
            f"sampler by the wall-clock and **{s.flop_speedup:.2f}x** by FLOPs, at mean SSIM **{s.ssim:.3f}** "
            f"[{s.ssim_lo:.3f}, {s.ssim_hi:.3f}]")
    if fair.classified:
        lead += (f", class agreement {s.agreement:.1%} [{s.agreement_lo:.1%}, {s.agreement_hi:.1%}] and Fréchet "
                 f"distance {s.frechet:.2f} [{s.frechet_lo:.2f}, {s.frechet_hi:.2f}] (the full sampler: "
                 f"{t.iloc[0].frechet:.2f}; two real sets: {fair.frechet_real:.2f}).")
    else:
        lead += (". No quality classifier knows this model's prompts, so only faithfulness to the full output is "
                 "read: a method that draws another picture, as good, scores low here by construction.")
    out = [lead]
    for axis, eq in tables.items():
        out.append(f"\n\n**At the shortcut's {AXIS_NAMES.get(axis, axis)} speed-up ({eq['at'].iloc[0]:.2f}x)**: "
                   f"{in_short(eq)} Each family's curve read there against the shortcut (95% intervals):\n")
        missing = [f"{r.family} ({r.slowest:.2f}x..{r.fastest:.2f}x)" for r in eq[~eq.reached].drop_duplicates("family").itertuples()]
        for q, d in eq[eq.reached].groupby("quality", sort=False):
            f = ADVANTAGE_FORMAT.get(q, "+.3g")
            by = {v: [f"{r.family} ({r.advantage:{f}} [{r.adv_lo:{f}}, {r.adv_hi:{f}}])" for r in g.itertuples()]
                  for v, g in d.groupby("verdict", sort=False)}
            parts = [f"{v}: " + ", ".join(fams) for v, fams in by.items()]
            out.append(f"\n- {QUALITY_NAMES.get(q, q)}: " + "; ".join(parts) + ".")
        if missing:
            out.append(f"\n- no reading (the shortcut's speed-up is outside the family's settings): {', '.join(missing)}.")
    return "".join(out)


def ddim_text(fair: Fair) -> str:
    """How DDIM compares with its own full output and with the ancestral sampler, from the intervals."""
    t = fair.table.set_index("method")
    ddim = t[t.family == "DDIM"]
    if ddim.empty:
        return "DDIM was not among the measured methods."
    top = ddim.strength.astype(float).idxmax()
    full = fair.table.method.iloc[0]
    rest = ddim.drop(top)
    own = (f"DDIM reproduces its own {int(ddim.loc[top, 'strength'])}-step output at mean SSIM "
           f"{rest.ssim_own.min():.3f} to {rest.ssim_own.max():.3f} over K = "
           f"{', '.join(str(int(k)) for k in sorted(rest.strength))}, but the ancestral sampler's only at "
           f"{ddim.ssim.min():.3f} to {ddim.ssim.max():.3f}. " if len(rest) else "")
    if not fair.classified:
        return own + "Whether its outputs are as good as the ancestral sampler's needs a quality classifier, which this " \
                     "model has not."
    diff = fair.boot[top]["agreement"] - fair.boot[full]["agreement"]
    d, (lo, hi) = t.loc[top, "agreement"] - t.loc[full, "agreement"], _read(0.0, diff, False)[1:]
    where = "below" if hi < 0 else "above" if lo > 0 else "not distinguishable from"
    return (own + f"Its class agreement at K = {int(ddim.loc[top, 'strength'])} is {t.loc[top, 'agreement']:.1%} "
            f"[{t.loc[top, 'agreement_lo']:.1%}, {t.loc[top, 'agreement_hi']:.1%}], the full ancestral sampler's "
            f"{t.loc[full, 'agreement']:.1%} [{t.loc[full, 'agreement_lo']:.1%}, {t.loc[full, 'agreement_hi']:.1%}]: "
            f"a difference of {d:+.1%} [{lo:+.1%}, {hi:+.1%}], {where} zero ({fair.samples} samples).")
