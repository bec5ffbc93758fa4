"""Chapter 10, ``10_is_it_the_model``: every claim on every member of the family.

Is a finding a property of the Unet, or of the one small checkpoint the book studies? Each
member of the family (the shipped model, other seeds, other widths or lengths; ``unetdyn
models``) runs chapters 1-6 at the paper's 100 samples on declared coarser grids
(:data:`GRIDS`), so that a member's sweeps fit a CPU; a reading on a coarser grid has a wider
interval, which the verdict rule reads as imprecise where it reaches across a margin. A claim
whose own setting lies outside chapters 1-6 is read at its first judged setting in them. Each
claim then reads one of :data:`ACROSS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from unetdyn.builtin_model.family import in_training, training_losses
from unetdyn.builtin_model.family import members as family_members
from unetdyn.paper.cache import CacheMiss
from unetdyn.paper.chapters import (
    ch01_phases,
    ch02_skip_vs_deconv,
    ch03_nb_sweep,
    ch04_n_limit,
    ch05_relaxation,
    ch06_shortcut,
)
from unetdyn.paper.chapters.common import build, frozen, param
from unetdyn.paper.claims import CLAIMS
from unetdyn.paper.param_checks import check_values
from unetdyn.paper.verdicts import VERDICTS, Finding, claim_rows

__all__ = ["Params", "Members", "run", "GRIDS", "ACROSS", "across", "member_params"]

SWEEPS = {"01_phases": ch01_phases, "02_skip_vs_deconv": ch02_skip_vs_deconv, "03_nb_sweep": ch03_nb_sweep,
          "04_n_limit": ch04_n_limit, "05_relaxation": ch05_relaxation, "06_shortcut": ch06_shortcut}
# the coarser grids every member runs at (the book's own chapters use the notebooks' finer ones);
# chapter 6 reads FLOPs only: wall-clock timings of sweeps that run beside training say nothing
GRIDS = {
    "01_phases": {"t_stride": 10, "t_stride_fig18": 10, "eq4_variance": False},
    "02_skip_vs_deconv": {"t_stride": 10},
    "03_nb_sweep": {"t_stride": 10},
    "04_n_limit": {"n_values": [1, 3, 5, 7, 9, 12, 15], "fig8_t_stride": 10},
    "05_relaxation": {"relax": [0, 3, 6, 9, 12, 15, 18, 21, 24], "fig8_t_stride": 10},
    "06_shortcut": {"fig8_t_stride": 10, "timed": False},
}
# "so far": every member read agrees, but some member is not read yet (not in the store); a claim read on one
# member only says nothing across members yet
ACROSS = ("holds on every member", "holds so far", "differs on every member", "differs so far", "depends on the member",
          "imprecise", "imprecise so far", "one member read so far", "not run")
# the settings on a member's card that may set members apart ("depends on the member" names those that do)
CARD_SETTINGS = ("width", "image size", "training steps", "seed", "data seed")
# the readings whose spread across members is drawn beside their within-model intervals
KEY_CLAIMS = ("fig8-crossing", "n-limit", "relax-0.8", "shortcut-ssim", "blocks-redundant-late", "phase-dip")


@dataclass(frozen=True)
class Params:
    """Chapter 10's parameters."""

    members: tuple[str, ...] = param((), "models compared, e.g. [\"builtin\", \"builtin:seed1\"]; []: the shipped "
                                         "model and every member of the family (`unetdyn models`)")
    grids: dict[str, dict] = param(GRIDS, "per chapter, the parameters every member runs it at (over its notebook's "
                                          "defaults)")
    compute: bool = param(False, "False: read every result from the store (a missing one is reported, naming what "
                                 "to run); True: compute it")
    device: str | None = param(None, 'None: CPU; "cuda" where a GPU is present')
    batch_size: int = param(16, "samples per Unet call: fastest on a 2-core CPU")
    progress: bool = param(True, "progress bars while computing")
    cache_dir: str | None = param(None, "None: data/cache, the committed result store")


@dataclass(frozen=True)
class MemberResult:
    """One member's findings over chapters 1-6, its block-usage map, and what the store lacks."""

    model: str
    findings: tuple[Finding, ...]
    usage: ch03_nb_sweep.Usage | None = field(default=None, repr=False)  # chapter 3's block-usage maps
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class Members:
    """Chapter 10: the claims on every member.

    Attributes:
        members: per model, its :class:`MemberResult`.
        verdicts: one row per claim judged on any member: its verdict on each member (a column
            per model) and ``across``, the reading over members (:func:`across`).
            ``read on``: how many models gave it a verdict ("1 of 3": the across reading rests on one).
        spread: the key claims' own readings per member: ``claim, model, value, lo, hi``.
        losses: the training losses per step of each model and of each member still training.
    """

    members: dict[str, MemberResult]
    verdicts: pd.DataFrame
    spread: pd.DataFrame
    cards: pd.DataFrame  # per model: its CARD_SETTINGS and quality check
    # per model, and per member still training, its training losses per step (where they were kept)
    losses: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def text(self) -> str:
        """How the claims read across the members, computed from the verdicts."""
        if self.verdicts.empty:
            return "No member's claims are in the store yet."
        runs = {m: r for m, r in self.members.items() if r.findings}
        judged = {c: [m for m in runs if self.verdicts.at[c, m] in VERDICTS] for c in self.verdicts.index}
        partial = [c for c in self.verdicts.index if len(judged[c]) < len(self.members)]

        parts = []
        for reading in ACROSS[:-1]:
            ids = list(self.verdicts.index[self.verdicts.across == reading])
            if not ids:
                continue
            if reading == "depends on the member":
                named = []
                for c in ids:
                    holds, differs = ([m for m in runs if self.verdicts.at[c, m] == v] for v in ("holds", "differs"))
                    named.append(f"{CLAIMS[c].short} (holds on {', '.join(holds)}; differs on {', '.join(differs)}"
                                 f"{self._set_apart(holds, differs)})")
                parts.append(f"**{reading}** ({len(ids)}): {'; '.join(named)}.")
                continue
            # grouped by the models a claim was read on: every model first, unmarked; then "on a, b only: ..."
            groups: dict[tuple[str, ...], list[str]] = {}
            for c in sorted(ids, key=lambda c: -len(judged[c])):
                groups.setdefault(tuple(judged[c]) if c in partial else (), []).append(CLAIMS[c].short)
            named = [(f"on {', '.join(on)} only: " if on else "") + "; ".join(shorts) + "." for on, shorts in groups.items()]
            # one group inline; several, one nested item each
            parts.append(f"**{reading}** ({len(ids)}):" + (f" {named[0]}" if len(named) == 1 else
                                                          "".join(f"\n  - {g}" for g in named)))
        lead = f"Read on {len(runs)} of {len(self.members)} models ({', '.join(runs) or 'none'})."
        if partial:
            lead += (f" {len(partial)} of the {len(self.verdicts)} claims are so far read on fewer (the table above "
                     "says how many in their *across* cell; below, \"on ... only\" names them): where those members agree, the "
                     "claim reads *holds so far*, *differs so far* or *imprecise so far* until the others are in the "
                     "store; a claim read on one member only reads *one member read so far*, for it says nothing "
                     "across members yet.")
        compared = sum(len(judged[c]) >= 2 for c in self.verdicts.index)
        depends = self.depends()
        if depends:
            lead += (f" **{len(depends)} of the {compared} claims read on two or more members depend on the member** "
                     "(below: which members, and what sets them apart).")
        elif compared:
            lead += (f" **No claim depends on the member{' so far' if partial else ''}**: of the {compared} "
                     f"claim{'s' if compared != 1 else ''} read on two or more members, none holds on one and differs on another.")
        return lead + "\n\n" + "\n\n".join(f"- {x}" for x in parts)

    def _set_apart(self, one: list[str], other: list[str]) -> str:
        """What the cards say sets the members of ``one`` apart from those of ``other``: the settings (width,
        image size, training steps, seeds) in which the two groups share no value; "" where a card is missing."""
        if self.cards.empty or not set(one + other) <= set(self.cards.index):
            return ""
        apart = [col for col in CARD_SETTINGS
                 if not set(self.cards.loc[one, col]) & set(self.cards.loc[other, col])]
        if not apart:
            return ": no one setting on their cards sets the two groups apart"
        if set(apart) <= {"seed", "data seed"}:
            return ": only their seeds set the two groups apart, so the verdict moves with the training run"
        return f": they differ in {', '.join(apart)}"

    def usage_text(self) -> str:
        """How far each member's block-usage maps lie from the first model's, computed from the maps: the
        correlation of the x0 change (log scale, over every nb and t) and the difference of the input share
        from below (over every decoder and t)."""
        maps = {m: r.usage for m, r in self.members.items() if r.usage is not None}
        if len(maps) < 2:
            return ""
        (ref_name, ref), *others = maps.items()
        parts = []
        for m, u in others:
            if (u.nbs, u.steps) != (ref.nbs, ref.steps) or u.share.shape != ref.share.shape:
                parts.append(f"{m}: read on other blocks or steps, not compared")
                continue
            with np.errstate(invalid="ignore", divide="ignore"):  # a constant map has no correlation
                corr = np.corrcoef(np.log10(u.floored()).ravel(), np.log10(ref.floored()).ravel())[0, 1]
            diff = np.abs(u.share - ref.share)
            parts.append((f"{m}: r = {corr:.3f}" if np.isfinite(corr) else f"{m}: r undefined (a constant map)")
                         + f"; shares {diff.mean():.3f} apart on average, at most {diff.max():.2f}")
        floor = ch03_nb_sweep.USAGE_FLOOR
        return (f"Each member's maps against {ref_name}'s (the correlation of the x0 change on a log scale, values "
                f"below {floor:g} read as {floor:g}, as the maps draw them, over every nb and t; how "
                "far the input shares from below lie apart, over every decoder and t): " + "; ".join(parts) + ".")

    def depends(self) -> list[str]:
        """The claims whose verdict depends on the member."""
        return list(self.verdicts.index[self.verdicts.across == "depends on the member"])

    def missing_text(self) -> str:
        """What the store lacks, per member, with the command that computes it; and the members still training."""
        lines = [f"- **{m}**: {', '.join(r.missing)}" + ("" if r.usage is not None else " (and chapter 3's maps)")
                 for m, r in self.members.items() if r.missing]
        text = ("Not in the store yet, per member: the chapters some of whose runs on the member grids are missing. "
                "`python benchmarks/book_times.py steps --member-grids --model NAME` counts what is left of a member's "
                "runs, and `python benchmarks/book_times.py regenerate --member-grids --model NAME` computes them.\n\n"
                + "\n".join(lines)) if lines else "Every member's chapters 1-6 are in the store."
        training = in_training()
        if training:
            text += ("\n\nStill training, and not compared yet (their runs carry over between sessions in "
                     "`data/family/NAME/train/`): " + "; ".join(f"{m} at step {step:,}" for m, step in training) + ".")
        return text


def across(verdicts: Mapping[str, str]) -> str:
    """One claim's reading over members from its verdict on each (a member without a verdict, ``not run`` or
    ``-``, is not read).

    ``holds (differs) on every member`` where every member is read and agrees; ``holds (differs) so far`` where
    at least two are read, they agree, and some member is not read; ``one member read so far`` where only one
    is; ``depends on the member`` where one holds and another differs; otherwise ``imprecise`` (at least one
    member's interval reaches across the margin, and none contradicts the others), ``so far`` while some
    member is not read (it may yet differ where another holds)."""
    read = [v for v in verdicts.values() if v in VERDICTS]
    judged = set(read)
    if not judged:
        return "not run"
    if {"holds", "differs"} <= judged:
        return "depends on the member"
    every = len(read) == len(verdicts)
    if len(read) == 1 and not every:
        return "one member read so far"
    reading = "imprecise" if len(judged) > 1 else judged.pop()
    if every:
        return reading if reading == "imprecise" else f"{reading} on every member"
    return f"{reading} so far"


def member_params(name: str, model: str, grids: Mapping[str, Mapping], **runtime):
    """Chapter ``name``'s parameters for member ``model``: its defaults, its grid, then how to run, checked."""
    mod = SWEEPS[name]
    values = {k: frozen(v) for k, v in {**grids.get(name, {}), "model": model}.items()}
    problem = check_values(name, values, vars(mod.Params()), {k: f"grids.{name}.{k}" for k in values})
    if problem:
        raise ValueError(problem)
    return build(mod.Params, values, **runtime)


def _member(model: str, p: Params) -> MemberResult:
    findings, usage, missing = [], None, []
    runtime = {"compute": p.compute, "device": p.device, "batch_size": p.batch_size, "progress": p.progress,
               "cache_dir": p.cache_dir}
    try:  # the maps alone: they cost far less than the chapter's schedules, so they may be in the store before
        usage = ch03_nb_sweep.usage(member_params("03_nb_sweep", model, p.grids, **runtime))
    except CacheMiss:
        pass  # the chapter's own run below reports what is missing
    for name, mod in SWEEPS.items():
        try:
            rec = mod.run(member_params(name, model, p.grids, **runtime))
        except CacheMiss:
            missing.append(name)
            continue
        findings += rec.findings
    return MemberResult(model, tuple(findings), usage, tuple(missing))


def _first_judged(findings: list[Finding]) -> Finding | None:
    """A claim's first setting with a verdict: where its own setting lies outside chapters 1-6 (the shortcut's
    SSIM is the claim's on chapter 7's samples, its speed-up on GLIDE's architecture), a member reads it there."""
    return next((f for f in findings if f.verdict in VERDICTS), None)


def run(p: Params = Params()) -> Members:
    """Chapter 10: chapters 1-6 on each member, their verdicts side by side, and the key readings' spread."""
    models = p.members or tuple(m.model for m in family_members())
    results = {m: _member(m, p) for m in models}
    table: dict[str, dict[str, str]] = {}
    spread = []
    for m, res in results.items():
        for row in claim_rows(res.findings):
            own = row["own"] or _first_judged(row["detail"])
            table.setdefault(row["claim"].id, {})[m] = own.verdict if own is not None else row["verdict"]
            if row["claim"].id in KEY_CLAIMS and own is not None and np.isfinite([own.value, own.lo]).all():
                spread.append({"claim": row["claim"].id, "model": m, "value": own.value, "lo": own.lo, "hi": own.hi,
                               "ours": own.ours})
    ids = [cid for cid in CLAIMS if cid in table and CLAIMS[cid].judged]  # the claims that take a verdict
    verdicts = pd.DataFrame([{m: table[cid].get(m, "not run") for m in models} for cid in ids], index=pd.Index(ids, name="claim"))
    if len(verdicts):
        verdicts["across"] = [across(row) for row in verdicts.to_dict("records")]
        # how many of the models gave the claim a verdict (a member not yet computed gives none)
        verdicts["read on"] = [f"{sum(v in VERDICTS for v in table[cid].values())} of {len(models)}" for cid in ids]
    cards = pd.DataFrame([{"model": m.model, "width": m.width, "image size": m.image_size, "training steps": m.steps,
                           "seed": m.seed,
                           "data seed": m.data_seed,
                           "class agreement": "-" if m.agreement is None else f"{m.agreement:.1%}",
                           "Fréchet": "-" if m.frechet is None else f"{m.frechet:.2f}"}
                          for m in family_members() if m.model in results])
    cards = cards.set_index("model") if len(cards) else cards
    losses = {m: df for m in (*models, *(m for m, _ in in_training())) if (df := training_losses(m)) is not None}
    return Members(members=results, verdicts=verdicts, spread=pd.DataFrame(spread), cards=cards, losses=losses)
