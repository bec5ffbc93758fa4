"""One member of the built-in model's family, from its training run to its claims in the store.

Each stage that is not done yet runs in order; each resumes where an interrupted one stopped,
so the same command carries a member over across sessions:

1. train    ``unetdyn train --out data/family/NAME/train --max-steps STEPS``: done at STEPS
2. export   the EMA weights as ``data/family/NAME/unet.safetensors``: done when they are of STEPS
3. quality  ``python -m unetdyn.builtin_model.quality`` on those weights: done when its record is theirs
4. card     ``MODEL_CARD.md``: done when it names their checksum
5. grids    chapter 10's runs of the member (``book_times.py regenerate --member-grids``): the
            store keeps each result as it lands; ``book_times.py steps --member-grids`` says what is left

    python benchmarks/family_member.py seed1 --steps 10000 --plan     # what is done and what is left
    python benchmarks/family_member.py seed1 --steps 10000            # run what is left
    python benchmarks/family_member.py width8 --steps 10000 --new "--width 8 --steps 12000 --seed 3 --data-seed 3"

``--new`` gives a member's training options when it has no checkpoint yet (a resumed run takes
them from its checkpoint). Stop with Ctrl-C, SIGINT or SIGTERM: it is passed on as SIGINT, so training writes its checkpoint first.
Nothing here commits: commit ``data/family/NAME`` and ``data/cache`` as stages finish.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from unetdyn.builtin_model.checkpoint import checkpoint_step
from unetdyn.builtin_model.family import WEIGHTS_NAME, members
from unetdyn.paths import FAMILY_DIR, member_dir

STAGES = ("train", "export", "quality", "card", "grids")


@dataclass(frozen=True)
class Stage:
    name: str
    done: bool
    state: str  # what the files say, e.g. "checkpoint at step 4,226 of 10,000"
    command: tuple[str, ...]


def plan(name: str, steps: int, *, threads: int = 1, new: str = "", device: str = "cpu", batch_size: int = 16,
         family: Path = FAMILY_DIR) -> list[Stage]:
    """The member's stages, each with whether it is done (read from its files) and the command that does it
    (on ``device``; ``batch_size`` samples per Unet call in chapter 10's runs)."""
    model = f"builtin:{name}"
    home = member_dir(model, family)
    run, weights = home / "train", home / WEIGHTS_NAME
    py = sys.executable
    at = checkpoint_step(run)
    member = next((m for m in members(family) if m.model == model), None)  # None until it has weights
    exported = member.steps if member else None
    if at is None and exported is None and not new:
        raise ValueError(f"{model}: no checkpoint in {run} and no weights; give --new with its training options "
                         "(e.g. --new \"--width 8 --steps 12000 --seed 3 --data-seed 3\")")
    if at is None and exported is not None and exported != steps:
        raise ValueError(f"{model}: its weights are of step {exported:,} and {run} holds no checkpoint to train on "
                         f"to --steps {steps:,}")
    trained = exported == steps if at is None else at >= steps  # a finished run's folder may have been removed
    train_cmd = (py, "-m", "unetdyn.cli", "train", "--out", str(run), "--max-steps", str(steps),
                 "--threads", str(threads), "--device", device, "--no-progress", *(shlex.split(new) if at is None else ()))
    checked = member is not None and member.agreement is not None  # a record of other weights reads as none
    card = home / "MODEL_CARD.md"
    carded = member is not None and card.exists() and member.sha256 in card.read_text()
    return [
        Stage("train", trained, f"checkpoint at step {at:,} of {steps:,}" if at is not None else
              ("no checkpoint; weights of step " + f"{exported:,}" if exported is not None else "not started"),
              train_cmd),
        Stage("export", exported == steps, "no weights" if exported is None else f"weights of step {exported:,}",
              (py, "-m", "unetdyn.cli", "export", "--run", str(run), "--to", str(weights), "--force")),
        Stage("quality", checked, "checked on these weights" if checked else "not checked on these weights",
              (py, "-m", "unetdyn.builtin_model.quality", "--weights", str(weights), "--out", str(home),
               "--threads", str(threads), "--device", device, "--no-progress")),
        Stage("card", carded, "names these weights" if carded else "missing or of other weights",
              (py, "-m", "unetdyn.builtin_model.card", "--weights", str(weights),
               *(("--run", str(run)) if run.is_dir() else ()))),
        Stage("grids", False, "resumes from the store (book_times.py steps --member-grids --model "
              f"{model} says what is left)",
              (py, str(Path(__file__).with_name("book_times.py")), "regenerate", "--member-grids", "--model", model,
               "--device", device, "--batch-size", str(batch_size), "--no-record")),
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name", help="the member's folder under data/family (selected as builtin:NAME)")
    ap.add_argument("--steps", type=int, required=True, help="training steps the member is trained to")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per stage (default 1)")
    ap.add_argument("--new", default="", help="training options of a member without a checkpoint yet")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda: where every stage runs")
    ap.add_argument("--batch-size", type=int, default=16,
                    help="samples per Unet call in chapter 10's runs (default 16: fastest on a 2-core CPU)")
    ap.add_argument("--until", choices=STAGES, default="grids", help="the last stage to run (default grids)")
    ap.add_argument("--plan", action="store_true", help="print the stages and run nothing")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error(f"--steps must be >= 1, got {args.steps}")
    if args.batch_size < 1:
        ap.error(f"--batch-size must be >= 1, got {args.batch_size}")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    # a stop request interrupts the wait below, whichever signal and however this was started (a background
    # job of a script starts with SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    for stage_name in STAGES[: STAGES.index(args.until) + 1]:
        # replanned before each stage: an earlier one changes what the files say
        try:
            stage = next(s for s in plan(args.name, args.steps, threads=args.threads, new=args.new, device=args.device,
                                          batch_size=args.batch_size) if s.name == stage_name)
        except ValueError as exc:
            sys.exit(f"error: {exc}")
        print(f"{stage.name:<8} {'done' if stage.done else 'to run'}: {stage.state}", flush=True)
        if stage.done:
            continue
        if args.plan:
            print(f"         {shlex.join(stage.command)}")
            continue
        proc = subprocess.Popen(stage.command, env=env)
        try:
            rc = proc.wait()
        except KeyboardInterrupt:  # passed on (a terminal's Ctrl-C reaches it too): training checkpoints, then stops
            proc.send_signal(signal.SIGINT)
            proc.wait()
            sys.exit(130)
        if rc:
            sys.exit(f"error: stage {stage.name} failed (exit status {rc}): {shlex.join(stage.command)}")


if __name__ == "__main__":
    main()
