"""Interventions as data: small frozen records, schedules of them, presets and validation.

Nothing here needs torch. A :class:`Schedule` is a tuple of interventions; compiling it
against a number of sampling steps ``K`` and a Unet's block counts gives the list of
:class:`Step` records the sampler executes, one per Unet call::

    >>> sched = Schedule((DropBlocks(t_start=65, n=5, nb=6), EarlyStop(t=18)))
    >>> steps = sched.compile(num_steps=100, n_blocks=16, n_skips=16)
    >>> len(steps), steps[35]
    (83, Step(t=65, next_t=64, zero_skips=0, drop_blocks=6, fill='zeros', stop=False, guided=True, one_step_variance=False))

Step numbering is the paper's: ``t = K ... 1``, ``t = K`` starts from pure noise (see
:mod:`unetdyn.noise` for the mapping to GLIDE's indices).
"""

from __future__ import annotations

import json
import re
import reprlib
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar, Union

__all__ = [
    "SkipSteps",
    "ZeroSkips",
    "DropBlocks",
    "EarlyStop",
    "DropGuidance",
    "Intervention",
    "Schedule",
    "Step",
    "ScheduleError",
    "PRESETS",
    "preset",
    "load_schedule",
]

FILL_MODES = ("zeros", "cache")
VARIANCES = ("jump", "one-step")
MAX_INTERVENTIONS = 1000  # K <= 1000 steps: more cannot all fit without overlapping
MAX_NAME = 80
# a name is also a folder name (``unetdyn sample --out``): no separators, no leading dot
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9 _.,:=@+()-]*")
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlevel = 2
_short = _repr.repr  # user input quoted in a message, cut short (a YAML alias bomb expands to gigabytes)


class ScheduleError(ValueError):
    """An intervention or schedule is malformed; the message names the field and its allowed range."""


def _check_int(owner: str, name: str, value, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScheduleError(f"{owner}.{name} must be an integer, got {_short(value)}")
    if high is None and value < low:
        raise ScheduleError(f"{owner}.{name}={value} must be >= {low}")
    if high is not None and not low <= value <= high:
        raise ScheduleError(f"{owner}.{name}={value} is out of range {low}..{high}")


@dataclass(frozen=True)
class SkipSteps:
    """Skip whole time steps (paper Eq. 4): at ``t_start`` jump straight to ``t_start - n``.

    The Unet is called once at ``t_start``; steps ``t_start-1 .. t_start-n+1`` are not run
    (``n - 1`` calls saved). ``n = 1`` is the plain step.

    ``variance`` is the noise added by the jump: ``"jump"`` interpolates (with the model's
    learned weight) between the beta and the posterior variance of the whole stride, as a
    sampler respaced to that stride would; ``"one-step"`` keeps the one-step sigma_t of Eq. 4
    read literally. The mean is the jump's in both.
    """

    t_start: int
    n: int
    variance: str = "jump"
    kind: ClassVar[str] = "skip_steps"

    def __post_init__(self):
        _check_int("skip_steps", "t_start", self.t_start, 1)
        _check_int("skip_steps", "n", self.n, 1)
        if self.variance not in VARIANCES:
            raise ScheduleError(f"skip_steps.variance={_short(self.variance)} is not one of {', '.join(VARIANCES)}")
        if self.n > self.t_start:
            raise ScheduleError(
                f"skip_steps.n={self.n} is out of range 1..{self.t_start}: a jump from t_start={self.t_start} "
                "cannot land below t=0"
            )

    def window(self) -> range:
        return range(self.t_start, self.t_start - 1, -1)


@dataclass(frozen=True)
class ZeroSkips:
    """For steps ``t_start .. t_start-n+1`` zero the top ``ns`` skip connections.

    The top skips are the first ones the encoder pushes (from its first blocks); they are
    consumed by the last decoder blocks. This saves no compute.
    """

    t_start: int
    n: int
    ns: int
    kind: ClassVar[str] = "zero_skips"

    def __post_init__(self):
        _check_int("zero_skips", "t_start", self.t_start, 1)
        _check_int("zero_skips", "n", self.n, 1, self.t_start)
        _check_int("zero_skips", "ns", self.ns, 1)

    def window(self) -> range:
        return range(self.t_start, self.t_start - self.n, -1)


@dataclass(frozen=True)
class DropBlocks:
    """For steps ``t_start .. t_start-n+1`` remove the bottom ``nb`` decoder blocks.

    The output of the ``nb``-th decoder block from the bottom is replaced by ``fill``:
    ``"zeros"`` (the paper) or ``"cache"`` (its value from the last step in which it was
    computed, as DeepCache does). The middle block, the bottom ``nb`` decoder blocks and
    the encoder blocks that only feed them are not computed.
    """

    t_start: int
    n: int
    nb: int
    fill: str = "zeros"
    kind: ClassVar[str] = "drop_blocks"

    def __post_init__(self):
        _check_int("drop_blocks", "t_start", self.t_start, 1)
        _check_int("drop_blocks", "n", self.n, 1, self.t_start)
        _check_int("drop_blocks", "nb", self.nb, 1)
        if self.fill not in FILL_MODES:
            raise ScheduleError(f"drop_blocks.fill={self.fill!r} is not one of {', '.join(FILL_MODES)}")

    def window(self) -> range:
        return range(self.t_start, self.t_start - self.n, -1)


@dataclass(frozen=True)
class EarlyStop:
    """Stop after the Unet call at step ``t`` and return that step's x0 estimate."""

    t: int
    kind: ClassVar[str] = "early_stop"

    def __post_init__(self):
        _check_int("early_stop", "t", self.t, 1)

    def window(self) -> range:
        return range(self.t, self.t - 1, -1)


@dataclass(frozen=True)
class DropGuidance:
    """For steps ``t_start .. t_start-n+1`` skip classifier-free guidance's unconditional branch.

    Those steps use the conditional eps alone (guidance scale 1), one Unet row per sample
    instead of two: the "guidance truncation" that later samplers use in the last steps.
    """

    t_start: int
    n: int
    kind: ClassVar[str] = "drop_guidance"

    def __post_init__(self):
        _check_int("drop_guidance", "t_start", self.t_start, 1)
        _check_int("drop_guidance", "n", self.n, 1, self.t_start)

    def window(self) -> range:
        return range(self.t_start, self.t_start - self.n, -1)


Intervention = Union[SkipSteps, ZeroSkips, DropBlocks, EarlyStop, DropGuidance]
KINDS: dict[str, type] = {c.kind: c for c in (SkipSteps, ZeroSkips, DropBlocks, EarlyStop, DropGuidance)}


@dataclass(frozen=True)
class Step:
    """What the sampler does at one Unet call: go from ``x_t`` to ``x_{next_t}`` with this surgery."""

    t: int
    next_t: int
    zero_skips: int = 0
    drop_blocks: int = 0
    fill: str = "zeros"
    stop: bool = False  # return this step's x0 estimate instead of stepping on
    guided: bool = True  # False: the conditional branch alone (drop_guidance)
    one_step_variance: bool = False  # a jump that adds the one-step sigma_t (skip_steps variance="one-step")

    @property
    def surgery(self) -> tuple[int, int, str, bool]:
        """The Unet configuration of this step; steps with equal surgery share one batched call."""
        return (self.zero_skips, self.drop_blocks, self.fill if self.drop_blocks else "zeros", self.guided)


def intervention_from_dict(d: dict) -> Intervention:
    """Build one intervention from ``{"kind": ..., **fields}``, naming any bad key."""
    if not isinstance(d, dict):
        raise ScheduleError(f"an intervention must be a mapping with a 'kind', got {_short(d)}")
    kind = d.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ScheduleError(f"kind={_short(kind)} is not one of {', '.join(KINDS)}")
    cls = KINDS[kind]
    names = {f.name for f in fields(cls)}
    extra = set(d) - names - {"kind"}
    if extra:
        raise ScheduleError(f"{kind} has no field(s) {_short(sorted(map(str, extra)))}; its fields are {sorted(names)}")
    missing = {f.name for f in fields(cls) if f.default is MISSING} - set(d)
    if missing:
        raise ScheduleError(f"{kind} is missing field(s) {sorted(missing)}")
    return cls(**{k: v for k, v in d.items() if k != "kind"})


def _record(iv: Intervention) -> dict:
    """``{"kind": ..., **fields}``; a jump's default variance is left out, so that records (and
    the result keys made from them) name only what differs from a plain jump."""
    fields_ = asdict(iv)
    if isinstance(iv, SkipSteps) and iv.variance == "jump":
        del fields_["variance"]
    return {"kind": iv.kind, **fields_}


@dataclass(frozen=True)
class Schedule:
    """A set of interventions applied during one sampling run (hashable; JSON/YAML round-trip).

    Example:
        >>> s = Schedule((SkipSteps(t_start=60, n=5),), name="skip5@60")
        >>> Schedule.from_dict(s.to_dict()) == s
        True
    """

    interventions: tuple[Intervention, ...] = ()
    name: str = ""

    def __post_init__(self):
        if not isinstance(self.interventions, tuple):
            object.__setattr__(self, "interventions", tuple(self.interventions))
        if len(self.interventions) > MAX_INTERVENTIONS:
            raise ScheduleError(f"a schedule holds at most {MAX_INTERVENTIONS} interventions, got {len(self.interventions)}")
        for iv in self.interventions:
            if not isinstance(iv, tuple(KINDS.values())):
                raise ScheduleError(f"schedule entry {_short(iv)} is not an intervention ({', '.join(KINDS)})")
        if not isinstance(self.name, str):
            raise ScheduleError(f"schedule.name must be a string, got {_short(self.name)}")
        if self.name and (len(self.name) > MAX_NAME or not _NAME.fullmatch(self.name)):
            raise ScheduleError(
                f"schedule.name={_short(self.name)} must be at most {MAX_NAME} characters of letters, digits, spaces "
                "and _ . , : = @ + ( ) -, not starting with a space, dot or dash (it names a folder of images)"
            )

    # -- (de)serialisation --------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "interventions": [_record(iv) for iv in self.interventions],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Schedule:
        if not isinstance(d, dict) or "interventions" not in d:
            raise ScheduleError("a schedule must be a mapping with a list 'interventions' (and an optional 'name')")
        extra = set(d) - {"name", "interventions"}
        if extra:
            raise ScheduleError(f"schedule has unknown field(s) {sorted(extra)}; allowed: name, interventions")
        ivs = d["interventions"]
        if not isinstance(ivs, list):
            raise ScheduleError(f"schedule.interventions must be a list, got {type(ivs).__name__}")
        if len(ivs) > MAX_INTERVENTIONS:
            raise ScheduleError(f"a schedule holds at most {MAX_INTERVENTIONS} interventions, got {len(ivs)}")
        name = d.get("name", "")
        if not isinstance(name, str):
            raise ScheduleError(f"schedule.name must be a string, got {_short(name)}")
        return cls(tuple(intervention_from_dict(x) for x in ivs), name=name)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    # -- compilation --------------------------------------------------------------------

    def first_step(self) -> int | None:
        """The first (largest) t at which this schedule differs from plain sampling, or None."""
        return max((iv.window()[0] for iv in self.interventions), default=None)

    def validate(self, num_steps: int, n_blocks: int, n_skips: int) -> None:
        """Raise :class:`ScheduleError` if the schedule does not fit ``K`` steps and this Unet."""
        self.compile(num_steps, n_blocks, n_skips)

    def compile(self, num_steps: int, n_blocks: int, n_skips: int) -> tuple[Step, ...]:
        """The Unet calls of one sampling run, in order (t descending).

        Raises :class:`ScheduleError` for windows outside ``1..K``, block counts beyond the
        Unet, overlapping windows of one kind, interventions on steps that a skip or an
        early stop removes, and more than one early stop.
        """
        K = num_steps
        per_step: dict[int, dict] = {t: {} for t in range(1, K + 1)}
        jumps: dict[int, int] = {}
        one_step: set[int] = set()  # jumps that add the one-step sigma_t
        stops = [iv for iv in self.interventions if isinstance(iv, EarlyStop)]
        if len(stops) > 1:
            raise ScheduleError(f"a schedule may hold one early_stop, got {len(stops)} (t={[s.t for s in stops]})")

        for iv in self.interventions:
            _check_int(iv.kind, "t_start" if not isinstance(iv, EarlyStop) else "t", iv.window()[0], 1, K)
            if isinstance(iv, ZeroSkips):
                _check_int("zero_skips", "ns", iv.ns, 1, n_skips)
            if isinstance(iv, DropBlocks):
                _check_int("drop_blocks", "nb", iv.nb, 1, n_blocks)
                if iv.fill == "cache" and iv.t_start == K:
                    raise ScheduleError(
                        f"drop_blocks fill='cache' at t={K}: the first step has no earlier step to reuse; "
                        f"t_start must be in 1..{K - 1} or fill='zeros'"
                    )
            if isinstance(iv, SkipSteps):
                if iv.t_start in jumps:
                    raise ScheduleError(f"two skip_steps windows start at t={iv.t_start}")
                jumps[iv.t_start] = iv.t_start - iv.n
                if iv.variance == "one-step":
                    one_step.add(iv.t_start)
                continue
            if isinstance(iv, EarlyStop):
                continue
            for t in iv.window():
                if iv.kind in per_step[t]:
                    raise ScheduleError(
                        f"{iv.kind} windows overlap at t={t}: {per_step[t][iv.kind]} and {iv} "
                        "(give each step one value)"
                    )
                per_step[t][iv.kind] = iv

        stop_t = stops[0].t if stops else None
        steps: list[Step] = []
        t = K
        while t >= 1:
            cfg = per_step[t]
            nxt = jumps.get(t, t - 1)
            zs = cfg.get("zero_skips")
            db = cfg.get("drop_blocks")
            dg = cfg.get("drop_guidance")
            steps.append(
                Step(
                    t=t,
                    next_t=nxt,
                    zero_skips=zs.ns if zs else 0,
                    drop_blocks=db.nb if db else 0,
                    fill=db.fill if db else "zeros",
                    stop=(t == stop_t),
                    guided=dg is None,
                    one_step_variance=t in one_step,
                )
            )
            if steps[-1].fill == "cache" and steps[-1].drop_blocks:
                nb = steps[-1].drop_blocks
                if not any(s.drop_blocks < nb for s in steps[:-1]):
                    raise ScheduleError(
                        f"drop_blocks(t_start={db.t_start}, nb={nb}, fill='cache') at t={t}: no earlier step computes "
                        f"decoder block {nb} to reuse; let a step before t={t} keep it, or use fill='zeros'"
                    )
            if t == stop_t:
                later = [iv for iv in self.interventions if iv.window()[-1] < t and not isinstance(iv, EarlyStop)]
                if later:
                    raise ScheduleError(f"{later[0]} acts after early_stop.t={t}, when sampling has already stopped")
                break
            for gone in range(t - 1, nxt, -1):
                hit = next((iv for iv in self.interventions if gone in iv.window()), None)
                if hit is not None or gone in jumps or gone == stop_t:
                    what = hit or (f"skip_steps at t={gone}" if gone in jumps else f"early_stop.t={gone}")
                    raise ScheduleError(
                        f"{what} acts at t={gone}, a step that skip_steps(t_start={t}, n={t - nxt}) removes"
                    )
            t = nxt
        return tuple(steps)

    def describe(self) -> str:
        if not self.interventions:
            return "full (no intervention)"
        return "; ".join(
            f"{iv.kind}(" + ", ".join(f"{k}={v}" for k, v in _record(iv).items() if k != "kind") + ")"
            for iv in self.interventions
        )


# -- presets ------------------------------------------------------------------------------

# The paper's Fig. 11 shortcut, read from its text (see docs in the book, "What differs"):
#   "starting at t_start = 65, we ... remove nb = 6 blocks over n = 5 steps"   -> t = 65..61
#   "we prune nb = 8 deconvolutional blocks over n = 2 steps until t = 58"     -> t = 60..59
#   "a relaxation period r for ten steps for t in (58, 47)"                     -> t = 58..48 plain
#   "then remove nb = 8 blocks over n = 7 steps for t in [47, 41]"             -> t = 47..41
#   "iterating through this relax-cut process another time for t in (41, 25]" -> relax 40..32,
#                                                                                cut nb=8 at 31..25
#   "around t = 18 this estimate proved reasonably accurate, leading us to skip the final 17
#    time steps"                                                                 -> early stop at t=18
# Ambiguities resolved: the two n=5/n=2 windows are read as back to back (the text's "n = 7
# minimal impact"), so t=58 is the first relaxed step and the first relaxation lasts 11 steps
# where the text says ten; the second cut keeps the stated length n = 7 and ends at t = 25 as
# "(41, 25]" says, leaving 9 relaxed steps. 83 Unet calls remain, 21 of them truncated.
PAPER_SHORTCUT = Schedule(
    (
        DropBlocks(t_start=65, n=5, nb=6),
        DropBlocks(t_start=60, n=2, nb=8),
        DropBlocks(t_start=47, n=7, nb=8),
        DropBlocks(t_start=31, n=7, nb=8),
        EarlyStop(t=18),
    ),
    name="paper-shortcut",
)

# The schedules the book's chapter 8 search found on the built-in model (20 search samples): under
# its budget, the 95% lower confidence bound of the mean SSIM at least 0.8 ("searched"), and under
# the plain mean at least 0.8 ("searched-mean", which missed 0.8 on the samples the search never
# saw). Listed in sampling order; a test checks them against the search in the committed store.
_WINDOWS = tuple(DropBlocks(t_start=t, n=10, nb=12, fill="cache") for t in (60, 50, 40, 30))
SEARCHED = Schedule(
    (DropGuidance(t_start=60, n=41), *_WINDOWS, SkipSteps(t_start=20, n=3), DropGuidance(t_start=17, n=17)),
    name="searched",
)
SEARCHED_MEAN = Schedule(
    (SkipSteps(t_start=70, n=3), DropGuidance(t_start=60, n=41), *_WINDOWS, SkipSteps(t_start=20, n=3),
     DropGuidance(t_start=17, n=17), DropBlocks(t_start=10, n=10, nb=12, fill="cache")),
    name="searched-mean",
)

PRESETS: dict[str, Schedule] = {
    "full": Schedule((), name="full"),
    "paper-shortcut": PAPER_SHORTCUT,
    "searched": SEARCHED,
    "searched-mean": SEARCHED_MEAN,
}


def preset(name: str) -> Schedule:
    """A named schedule: ``full``, ``paper-shortcut``, ``searched`` or ``searched-mean`` (chapter 8's)."""
    if name not in PRESETS:
        raise ScheduleError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def load_schedule(spec: str | Path) -> Schedule:
    """A preset name, or a path to a JSON/YAML schedule file (read by :mod:`unetdyn.schedule_files`:
    regular files only, parsed once under bounds on size, nesting and nodes, duplicate keys refused).

    Example file (YAML)::

        name: nb8-at-60
        interventions:
          - {kind: drop_blocks, t_start: 60, n: 5, nb: 8}
          - {kind: early_stop, t: 18}
    """
    from unetdyn.schedule_files import load_schedule as load  # it imports this module

    return load(spec)
