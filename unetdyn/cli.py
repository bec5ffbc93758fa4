"""``unetdyn``: the command line.

    unetdyn sample --schedule full paper-shortcut --seeds 0-7 --out out/
    unetdyn cost --model glide --random-weights --schedule paper-shortcut --json
    unetdyn train --out runs/builtin
    unetdyn export --run runs/builtin
    unetdyn book
    unetdyn figure 03_nb_sweep -p n_samples 16 -p nbs "[2, 4]"
    unetdyn figure 03_nb_sweep --executor ray --address auto
    unetdyn search --budget "ssim>=0.8" --out found.yaml
    unetdyn models
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from unetdyn.paths import is_builtin

__all__ = ["main", "parse_seeds"]

MAX_SEEDS = 100_000


def parse_seeds(spec: str) -> list[int]:
    """``"0-7"`` -> 0..7, ``"1,5,9"`` -> [1, 5, 9]; both may be mixed: ``"0-3,10"``.

    Example:
        >>> parse_seeds("0-3,10")
        [0, 1, 2, 3, 10]
    """
    seeds: list[int] = []
    try:
        for part in spec.split(","):
            if "-" in part.strip()[1:]:
                lo, hi = part.split("-", 1)
                if int(hi) < int(lo):
                    raise argparse.ArgumentTypeError(f"--seeds range {part!r} runs backwards")
                if int(hi) - int(lo) + 1 + len(seeds) > MAX_SEEDS:
                    raise argparse.ArgumentTypeError(f"--seeds {spec[:40]!r}: at most {MAX_SEEDS} seeds")
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {spec!r}: expected e.g. 0-7 or 1,5,9") from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"--seeds {spec[:40]!r}: seeds must be >= 0")
    if len(seeds) > MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"--seeds {spec[:40]!r}: at most {MAX_SEEDS} seeds")
    return seeds


def _model_args(p: argparse.ArgumentParser, meta: bool = False) -> None:
    p.add_argument("--model", type=_model_name, default="builtin",
                   help="Unet backend: builtin (default), builtin:NAME (a member of its family: `unetdyn models`), glide, diffusers:PATH (a diffusers pipeline folder)")
    p.add_argument("--weights", help="weights file (builtin: safetensors; glide: base.pt); default: shipped/auto")
    p.add_argument("--device", help="cpu (default), cuda or cuda:N, mps (where torch has it)" + (", meta" if meta else ""))
    p.add_argument("--steps", type=int, default=100, help="sampling steps K (default 100)")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale (default 3.0)")


def _model_name(value: str) -> str:
    from unetdyn.backends import check_model

    try:
        return check_model(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check_device(value: str | None, meta: bool = False) -> None:
    """A ValueError unless ``--device`` names a device the command can run on (meta, shapes
    without data, only where ``meta``: ``cost``); whether it is present is checked when the
    model is loaded."""
    from unetdyn.backends.registry import check_device

    check_device(value, allow_meta=meta)


def _executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="where missing results are computed: local (this process, the default) or ray (Ray workers: "
                        "one per GPU, or per CPU; needs `pip install unetdyn[ray]`)")
    p.add_argument("--address", help="--executor ray: the Ray cluster to join (e.g. auto, or ray://HOST:10001); "
                                     "default: a local Ray on this machine")


def _check_executor(args) -> None:
    """A ValueError for ``--address`` without ``--executor ray``."""
    if args.address is not None and args.executor not in (None, "ray"):
        raise ValueError(f"--address {args.address}: applies to --executor ray only, not --executor {args.executor}")
    if args.address is not None and not args.address.strip():
        raise ValueError("--address is empty; give a Ray cluster (e.g. auto, or ray://HOST:10001) or leave it out")


@contextlib.contextmanager
def _reading(what: str, path) -> Iterator[None]:
    """Turn any failure while reading a user's file into one ValueError naming the file.

    Errors that already name it (schedule and weights errors, the checks' ValueErrors) pass
    unchanged; anything else (a TypeError or KeyError deep in a reader) is wrapped.
    """
    from unetdyn.backends.builtin_weights import WeightsError
    from unetdyn.interventions import ScheduleError

    try:
        yield
    except (ScheduleError, WeightsError, ValueError, OSError, ImportError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - a user's file can break a reader in any way
        text = " ".join(str(exc).split())[:300] or "no message"
        raise ValueError(f"cannot read {what} {path}: {type(exc).__name__}: {text}") from exc


def _sampler_config(args):
    from unetdyn.sampler import SamplerConfig

    return SamplerConfig(steps=args.steps, guidance=args.guidance)


def _writable_folder(path: str) -> Path:
    """``path`` as an output folder that exists and takes files (checked before long work)."""
    if not str(path).strip():
        raise ValueError("--out is empty; give a folder (e.g. --out out/sample)")
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"--out {out} cannot be written: {exc.strerror or exc}") from None
    return out


def cmd_sample(args) -> None:
    import numpy as np

    _check_device(args.device)

    from unetdyn.backends import load_unet
    from unetdyn.interventions import ScheduleError, load_schedule
    from unetdyn.metrics import compare
    from unetdyn.viz import save_grid

    schedules = []
    for spec in args.schedule:
        with _reading("schedule file", spec):
            schedules.append(load_schedule(spec))
    config = _sampler_config(args)
    with _reading("weights", args.weights or f"of --model {args.model}"):
        unet = load_unet(args.model, args.weights, args.device)
    seeds = args.seeds
    if args.prompts:
        base = args.prompts
    elif args.classes:
        base = [int(c) if c.isdigit() else c for c in args.classes]
    elif is_builtin(args.model):
        base = list(unet.config.class_names)
    elif not unet.conditional:
        base = [None]
    else:
        raise SystemExit(f"--prompts is required for --model {args.model}")
    prompts = [base[k % len(base)] for k in range(len(seeds))]
    # everything that can fail is checked before any sampling
    for spec, s in zip(args.schedule, schedules):
        try:
            s.validate(config.steps, len(unet.skips_popped), sum(unet.skips_pushed))
        except ScheduleError as exc:
            raise ScheduleError(f"{spec}: {exc}") from None
    names = [s.name or f"schedule{k}" for k, s in enumerate(schedules)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ScheduleError(f"two schedules are named {twice[0]!r}: their images would overwrite each other; rename one")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size} must be >= 1")
    out = _writable_folder(args.out)

    res = _sample_with_progress(unet, prompts, seeds, schedules, names, config, args)
    for name, row in zip(names, res.images):
        for seed, prompt, img in zip(seeds, prompts, row):
            save_grid(img[None], out / name / f"seed{seed:04d}_{str(prompt).replace(' ', '_')[:40]}.png", nrow=1, scale=1, pad=0)
    save_grid(res.images.flatten(0, 1), out / "grid.png", nrow=len(seeds), scale=4 if unet.image_shape[-1] <= 32 else 2)
    np.savez_compressed(
        out / "samples.npz",
        images=res.images.numpy(),
        seeds=np.asarray(seeds),
        prompts=np.asarray([str(p) for p in prompts]),
        schedules=np.asarray([s.to_json() for s in schedules]),
    )
    lines = [f"wrote {len(schedules)} x {len(seeds)} images to {out}/ (grid.png: one row per schedule: {', '.join(names)})"]
    # the reference is the schedule without interventions, whatever its name
    full = [k for k, s in enumerate(schedules) if not s.interventions]
    if full and len(names) > 1:
        ref = res.images[full[0]]
        import csv

        with open(out / "metrics.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["schedule", "seed", "prompt", "ssim", "psnr"])
            for name, row in zip(names, res.images):
                m = compare(ref, row)
                for k, seed in enumerate(seeds):
                    w.writerow([name, seed, prompts[k], f"{m['ssim'][k]:.4f}", f"{m['psnr'][k]:.2f}"])
                lines.append(f"  {name:>20s}: SSIM to {names[full[0]]} {m['ssim'].mean():.3f} +- {m['ssim'].std():.3f}")
    print("\n".join(lines))


def _sample_with_progress(unet, prompts, seeds, schedules, names, config, args):
    """``sample`` with a progress bar that stays on the terminal (stderr), after a line saying what runs."""
    from tqdm import tqdm

    from unetdyn.sampler import RunOptions, sample

    n_blocks, n_skips = len(unet.skips_popped), sum(unet.skips_pushed)
    calls = [len(s.compile(config.steps, n_blocks, n_skips)) for s in schedules]
    total = sum(calls) * len(seeds)
    quiet = getattr(args, "quiet", False)
    if not quiet:
        print(f"sampling {len(seeds)} sample(s) under {len(schedules)} schedule(s) ({', '.join(names)[:200]}) on "
              f"{unet.device}: {total} sample-steps, batches of {args.batch_size}", file=sys.stderr, flush=True)
    # a terminal gets a live bar; a log file (make's output piped, CI) a line every 30 s
    interval = 0.5 if sys.stderr.isatty() else 30.0
    with tqdm(total=total, desc="sampling", unit="step", disable=quiet, mininterval=interval, file=sys.stderr) as bar:
        return sample(unet, prompts, seeds, schedules,
                      RunOptions(config, batch_size=args.batch_size, progress=False, precision=args.precision,
                                 callback=lambda t, jobs, x, x0: bar.update(len(jobs))))


def cmd_cost(args) -> None:
    from unetdyn.backends import load_unet
    from unetdyn.cost import schedule_cost
    from unetdyn.interventions import load_schedule

    _check_device(args.device, meta=True)
    # random weights are counted on the meta device: FLOPs depend on shapes only
    device = args.device or ("meta" if args.random_weights else None)
    with _reading("weights", args.weights or f"of --model {args.model}"):
        unet = load_unet(args.model, args.weights, device, random_weights=args.random_weights, arch=args.arch)
    with _reading("schedule file", args.schedule):
        schedule = load_schedule(args.schedule)
    cost = schedule_cost(unet, schedule, _sampler_config(args))
    d = cost.to_dict()
    if args.json:
        print(json.dumps(d))
    else:
        print(f"schedule {d['schedule']}: {d['unet_calls']} Unet calls ({d['truncated_calls']} truncated)")
        print(f"  GFLOP per sample: {d['flops_per_sample'] / 1e9:.1f} of {d['full_flops_per_sample'] / 1e9:.1f}")
        print(f"  saving: {100 * d['saving']:.1f}%")


def cmd_search(args) -> None:
    import yaml

    from unetdyn.fileio import atomic_write
    from unetdyn.interventions import Schedule
    from unetdyn.paper.search import Budget, BudgetNotMet, candidate_moves, open_search_sweep, sweep_search

    _check_device(args.device)
    budget = Budget.parse(args.budget, args.min_saving)
    out = Path(args.out)
    if out.suffix not in (".yaml", ".yml"):
        raise ValueError(f"--out {out}: the found schedule is written as YAML; give a .yaml file")
    _writable_folder(out.parent)
    _check_executor(args)
    sweep = open_search_sweep(args.model, args.weights, args.per_class, args.steps, args.guidance, device=args.device,
                              cache_dir=args.cache_dir, batch_size=args.batch_size, progress=not args.quiet,
                              executor=args.executor or "local", address=args.address)
    moves = candidate_moves(args.steps, len(sweep.unet.skips_popped), window=args.window)
    try:
        res = sweep_search(sweep, budget, moves, progress=not args.quiet)
    except BudgetNotMet as exc:
        raise SystemExit(f"unetdyn search: {exc}") from None
    best = res.best
    found = Schedule(best.schedule.interventions, name=out.stem)
    header = (f"# found by `unetdyn search --budget '{budget}'` on {len(sweep.seeds)} search samples ({args.model}, "
              f"K={args.steps}, guidance {args.guidance}): saves {best.saving:.1%} of the FLOPs per sample; "
              f"{budget.metric} = {best.value:.3f} there. {res.trials} schedules measured.\n")
    text = header + yaml.safe_dump(found.to_dict(), sort_keys=False)
    atomic_write(out, lambda tmp: tmp.write_text(text))
    print(f"{best.schedule.describe()}\n  saves {best.saving:.1%} of the FLOPs ({1 / (1 - best.saving):.2f}x) at "
          f"{budget.metric} = {best.value:.3f} on the search samples; written to {out}")


def cmd_book(args) -> None:
    from unetdyn.paper.book import make_book

    index = make_book(args.params, only=args.only, execute_notebooks=not args.no_execute, compute=args.compute)
    print(f"the book is at {index}")


def cmd_figure(args) -> None:
    import time

    from unetdyn.paper.book import NOTEBOOKS_DIR, build, execute, load_params, notebook_parameters, parse_value

    # a figure computes what the store lacks and shows its progress, unless -p says otherwise
    declared = notebook_parameters(NOTEBOOKS_DIR / f"{args.name}.ipynb")
    overrides = {k: v for k, v in {"compute": True, "progress": not args.quiet}.items() if k in declared}
    _check_executor(args)
    executor = "ray" if args.address is not None else args.executor
    if executor == "ray" and "executor" not in declared:
        raise ValueError(f"--executor ray: {args.name} computes nothing on a sweep (it reads the store and benchmark "
                         "records); run it without --executor")
    if executor is not None and "executor" in declared:
        address = args.address
        if executor == "ray" and address is None:
            # a local Ray started here, which the notebook's kernel joins: the kernel then leaves it
            # in a moment when it ends, and this process takes the cluster down after
            from unetdyn.paper.executors import connect

            address = connect().get_runtime_context().gcs_address
        overrides.update({"executor": executor, "address": address})
    overrides.update({name: parse_value(name, value) for name, value in args.p or []})
    params = load_params(args.params, [args.name], overrides)[args.name]
    start = time.perf_counter()
    print(f"{args.name} ...", flush=True)
    out = execute(args.name, params, log_output=not args.quiet)
    print(f"{args.name}: {time.perf_counter() - start:.0f} s, executed {out}")
    if args.build:
        print(f"the book is at {build()}")


def cmd_models(args) -> None:
    from unetdyn.builtin_model.family import in_training, members
    from unetdyn.paths import member_name

    found = members()
    print(f"{len(found)} built-in model(s); select one with --model (or -p model) as named in the first column:")
    for m in found:
        print(f"  {m.summary()}")
    for model, step in in_training():  # no weights yet: not selectable
        print(f"  {model:<16} still training: its checkpoint is at step {step:,} "
              f"(data/family/{member_name(model)}/train/)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetdyn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sample", help="generate images under one or more schedules")
    _model_args(p)
    p.add_argument("--schedule", nargs="+", default=["full"], help="presets (full, paper-shortcut, searched, searched-mean) or JSON/YAML files")
    p.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-7"), help="e.g. 0-7 or 1,5,9 (default 0-7)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--classes", nargs="+", help="builtin: class names or indices, cycled over the seeds")
    g.add_argument("--prompts", nargs="+", help="glide: text prompts, cycled over the seeds")
    p.add_argument("--batch-size", type=int, default=16, help="samples per Unet call (16: fastest on a 2-core CPU; more on a GPU)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="the Unet in float32, or under bfloat16 autocast (faster on CPUs with AVX512-BF16/AMX)")
    p.add_argument("--out", default="out/sample", help="output folder (default out/sample)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("cost", help="FLOPs of a schedule, counted under torch's FLOP counter")
    _model_args(p, meta=True)
    p.add_argument("--schedule", default="paper-shortcut", help="a preset (full, paper-shortcut, searched, searched-mean) or a JSON/YAML schedule file")
    p.add_argument("--random-weights", action="store_true",
                   help="random weights (no checkpoint needed; counted on the meta device unless --device is given)")
    p.add_argument("--arch", choices=["sd15", "ddpm32"],
                   help="--model diffusers --random-weights: Stable Diffusion 1.5's or DDPM's 32x32 Unet")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser("search", help="the cheapest schedule found that meets a quality budget (written as YAML)")
    _model_args(p)
    p.add_argument("--budget", default="ssim>=0.8", help="METRIC>=VALUE on the search samples; METRIC: ssim (mean), "
                   "ssim_lcb (95%% lower confidence bound of the mean), ssim_p5 (5th percentile), psnr "
                   "(default ssim>=0.8)")
    p.add_argument("--min-saving", type=float, default=0.0, help="fail unless the found schedule saves this FLOP share")
    p.add_argument("--per-class", type=int, default=4, help="search samples per class (builtin: 5 classes; default 4)")
    p.add_argument("--window", type=int, default=10, help="steps per window of the search space (default 10)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--cache-dir", help="the result store the measurements go to (default data/cache)")
    p.add_argument("--out", default="out/found.yaml", help="the found schedule (YAML; default out/found.yaml)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _executor_args(p)
    p.set_defaults(func=cmd_search)

    from unetdyn.paper.book import NOTEBOOKS

    p = sub.add_parser("book", help="execute every notebook (papermill) on the stored results and build the book (offline, strict)")
    p.add_argument("--params", help="parameters YAML (default book/params.yaml)")
    p.add_argument("--only", nargs="+", choices=NOTEBOOKS, help="execute only these notebooks")
    p.add_argument("--no-execute", action="store_true", help="only build the HTML from the executed notebooks")
    p.add_argument("--compute", action="store_true", help="compute results missing from the store (default: a miss is an error)")
    p.set_defaults(func=cmd_book)
    p = sub.add_parser("figure", help="rerun one notebook with changed parameters (-p NAME VALUE), computing what is missing")
    p.add_argument("name", choices=NOTEBOOKS)
    p.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"), help="a parameter (VALUE read as YAML)")
    p.add_argument("--params", help="parameters YAML the -p values override (default book/params.yaml)")
    p.add_argument("--build", action="store_true", help="rebuild the book afterwards")
    p.add_argument("--quiet", action="store_true", help="hide the notebook's output (progress, warnings) while it runs")
    _executor_args(p)
    p.set_defaults(func=cmd_figure)

    from unetdyn.builtin_model.train import add_export_args, add_train_args, run_export, run_train

    p = sub.add_parser("train", help="train the built-in model (resumes from the run folder's checkpoint)")
    add_train_args(p)
    p.set_defaults(func=run_train)
    p = sub.add_parser("export", help="export a training run's EMA weights as the shipped safetensors")
    add_export_args(p)
    p.set_defaults(func=run_export)
    p = sub.add_parser("models", help="the family of built-in models: builtin and builtin:NAME, with their cards' numbers")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    from unetdyn.backends.builtin_weights import WeightsError
    from unetdyn.interventions import ScheduleError
    from unetdyn.sampler import NonFiniteError

    args = build_parser().parse_args(argv)
    debug = args.debug
    try:
        args.func(args)
        return 0
    except KeyboardInterrupt as exc:  # the store and checkpoints keep what was finished
        if debug:
            raise
        print(f"unetdyn {args.command}: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130
    except (ScheduleError, ValueError, OSError, ImportError, WeightsError, MemoryError, NonFiniteError) as exc:
        if debug:
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"unetdyn {args.command}: error: {text[:500]}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - anything else is one line too; --debug shows where it came from
        if debug:
            raise
        text = " ".join(str(exc).split())[:400] or "no message"
        print(f"unetdyn {args.command}: error: {type(exc).__name__}: {text} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
