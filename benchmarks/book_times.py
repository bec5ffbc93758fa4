"""How long the book takes: regenerating its results, and building it from the store.

    python benchmarks/book_times.py regenerate                          # every chapter at its notebook's defaults (the paper's resolution)
    python benchmarks/book_times.py regenerate --device cuda --batch-size 1024
    python benchmarks/book_times.py regenerate --only 03_nb_sweep --cache-dir /tmp/empty   # one chapter from an empty store
    python benchmarks/book_times.py regenerate --params book/params.yaml   # the values the book is built with
    python benchmarks/book_times.py steps                               # guided sample-steps each chapter needs
    python benchmarks/book_times.py build                               # `unetdyn book` from the committed store

``regenerate`` calls each chapter's function (what its notebook calls) with the notebook's
defaults, overridden by ``--params``, computing whatever the store lacks and storing each
result as soon as it is computed: an interrupted run keeps its work, and a rerun continues.
Chapters run in book order, so later ones reuse what earlier ones stored (04-06 read the
Fig. 8 curves of 03). Chapter 6's timings are measurements of the machine and are taken only
with ``--timings`` (the book's are taken on the CPU it describes). Chapter 7 reads the
benchmark scripts' records (``alternatives.py``, ``sampler_efficiency.py``) and computes nothing.

Prints a table (seconds and new store entries per chapter) and stores it in the result store
as a benchmark record, so the book can cite how long its results took and where.

``steps`` reads each chapter from the store (computing nothing) and counts the guided
sample-steps its results cost: per schedule, the Unet calls from its first intervened step
on (the sampler resumes the rest from the baseline) times the samples, plus one baseline
trajectory. Divided by a machine's rate (``sampler_efficiency.py``) it predicts the
regeneration time there.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import inspect
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from unetdyn.paper import chapters
from unetdyn.paper.alternatives import benchmark_key
from unetdyn.paper.book import NOTEBOOKS, make_book, notebook_parameters, read_params_file
from unetdyn.paper.cache import Cache
from unetdyn.paper.sweeps import SweepSpec, open_sweep
from unetdyn.paths import CACHE_DIR, NOTEBOOKS_DIR

CHAPTER_FUNCTIONS = {
    "01_phases": chapters.phases,
    "02_skip_vs_deconv": chapters.skip_vs_blocks,
    "03_nb_sweep": chapters.block_sweep,
    "04_n_limit": chapters.n_limit,
    "05_relaxation": chapters.relaxation,
    "06_shortcut": chapters.shortcut,
}
SPEC_FIELDS = ("model", "weights", "n_samples", "steps", "guidance")
RUNTIME_FIELDS = ("compute", "device", "batch_size", "progress", "cache_dir", "precision")


def chapter_params(name: str, params_file: str | None) -> dict:
    """The notebook's defaults, then the parameters file's ``all`` and its entry for ``name``."""
    params = {k: v for k, v in notebook_parameters(NOTEBOOKS_DIR / f"{name}.ipynb").items()}
    if params_file is not None:
        _, raw = read_params_file(params_file)
        params.update({k: v for k, v in raw["all"].items() if k in params})
        params.update(raw["notebooks"].get(name, {}))
    return params


def _kwargs(fn, params: dict) -> dict:
    accepted = inspect.signature(fn).parameters
    return {k: v for k, v in params.items() if k in accepted and k not in SPEC_FIELDS + RUNTIME_FIELDS + ("spec", "base")}


def regenerate(name: str, params: dict, runtime: dict, timings: bool) -> None:
    """Compute what chapter ``name`` needs and the store lacks."""
    spec = SweepSpec(**{k: params[k] for k in SPEC_FIELDS})
    if name == "06_shortcut" and not timings:
        sweep = open_sweep(spec, compute=True, **runtime)
        parts, _, _ = chapters.shortcut_parts(spec, compute=True, base=sweep.baseline(),
                                              **_kwargs(chapters.shortcut_parts, params), **runtime)
        sweep.run(list(parts.values()), images=list(range(spec.n_samples)))
        return
    fn = CHAPTER_FUNCTIONS[name]
    fn(spec, compute=True, **_kwargs(fn, params), **runtime)


@contextlib.contextmanager
def _recording_reads():
    """Record the store keys read while the block runs (the patch ends with the block)."""
    keys: list[str] = []
    original = Cache.get

    def get(self, key, expect=None):
        keys.append(key)
        return original(self, key, expect)

    Cache.get = get
    try:
        yield keys
    finally:
        Cache.get = original


def sample_steps(name: str, params: dict, root: Path) -> dict:
    """The guided sample-steps chapter ``name`` costs at ``params``, counted from the store entries it reads."""
    from unetdyn.backends import load_unet
    from unetdyn.interventions import Schedule

    spec = SweepSpec(**{k: params[k] for k in SPEC_FIELDS})
    fn = CHAPTER_FUNCTIONS[name]
    with _recording_reads() as keys:
        fn(spec, compute=False, **_kwargs(fn, params), progress=False, cache_dir=str(root))
    unet = load_unet(spec.model, spec.weights)
    blocks, skips = len(unet.skips_popped), sum(unet.skips_pushed)
    cache, seen, steps, schedules = Cache(root, read_only=True), set(), spec.steps * spec.n_samples, 0
    for key in keys:
        path = cache.path(key)
        if key in seen or not path.exists():
            continue
        seen.add(key)
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
        sched = meta["info"].get("schedule")
        if sched is None or "ssim" not in meta["layout"]:
            continue  # the baseline, images, timings
        s = Schedule.from_dict(sched)
        first = s.first_step()
        calls = [st for st in s.compile(spec.steps, blocks, skips) if first is None or st.t <= first]
        steps += len(calls) * meta["layout"]["ssim"][0]
        schedules += 1
    return {"chapter": name, "schedules": schedules, "sample_steps": steps, "n_samples": spec.n_samples}


def _entries(root: Path) -> int:
    return sum(1 for _ in root.glob("*/*.npz")) if root.exists() else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["regenerate", "steps", "build"])
    ap.add_argument("--only", nargs="+", default=None, choices=list(CHAPTER_FUNCTIONS), help="regenerate: these chapters")
    ap.add_argument("--params", default=None, help="parameters YAML over the notebooks' defaults (build: default book/params.yaml)")
    ap.add_argument("--cache-dir", default=None, help="regenerate: the result store (default data/cache)")
    ap.add_argument("--device", default=None, help="regenerate: cpu (default) or cuda")
    ap.add_argument("--batch-size", type=int, default=16, help="regenerate: samples per Unet call (16 suits a 2-core CPU)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="regenerate: the sampler's precision (bf16 results are stored under keys of their own; "
                         "they move the readings of small interventions, see benchmarks/precision_check.py)")
    ap.add_argument("--timings", action="store_true", help="regenerate: also take chapter 6's timings (on this machine)")
    ap.add_argument("--no-record", action="store_true", help="regenerate: do not store the table as a benchmark record")
    args = ap.parse_args(argv)
    if args.batch_size < 1:
        ap.error(f"--batch-size {args.batch_size} must be >= 1")

    rows = []
    if args.mode == "steps":
        root = Path(args.cache_dir) if args.cache_dir else CACHE_DIR
        for name in args.only or list(CHAPTER_FUNCTIONS):
            rows.append(sample_steps(name, chapter_params(name, args.params), root))
            r = rows[-1]
            print(f"{name:<20} {r['schedules']:5d} schedules  {r['sample_steps']:>10,d} guided sample-steps", flush=True)
        total = sum(r["sample_steps"] for r in rows)
        print(f"{'total':<20} {'':5s}            {total:>10,d} (each chapter counts its own baseline)")
        return 0
    if args.mode == "build":
        t0 = time.perf_counter()
        make_book(args.params, log=lambda *_: None)
        rows.append({"chapter": "all (read the store, execute, build)", "seconds": time.perf_counter() - t0, "new entries": 0})
    else:
        root = Path(args.cache_dir) if args.cache_dir else CACHE_DIR
        runtime = {"device": args.device, "batch_size": args.batch_size, "progress": True, "cache_dir": str(root),
                   "precision": args.precision}
        for name in args.only or list(CHAPTER_FUNCTIONS):
            params = chapter_params(name, args.params)
            before, t0 = _entries(root), time.perf_counter()
            print(f"{name}: {params['n_samples']} samples ...", flush=True)
            regenerate(name, params, runtime, args.timings)
            rows.append({"chapter": name, "seconds": time.perf_counter() - t0, "new entries": _entries(root) - before,
                         "n_samples": params["n_samples"]})
            print(f"{name:<20} {rows[-1]['seconds']:8.1f} s  {rows[-1]['new entries']:5d} new entries", flush=True)
    total = sum(r["seconds"] for r in rows)
    print(f"{'total':<20} {total:8.1f} s")

    if args.mode == "regenerate" and not args.no_record:
        dev = torch.device(args.device or "cpu")
        meta = {
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "batch_size": args.batch_size, "precision": args.precision, "params": args.params,
            "date": datetime.date.today().isoformat(),
            "tf32": False if dev.type == "cuda" else None,
        }
        which = {"only": args.only, "params": args.params, "device": dev.type}
        if args.precision != "fp32":
            which["precision"] = args.precision
        key = benchmark_key("book_times", "regenerate", which)
        Cache(root).put_record(key, {"meta": meta, "rows": rows, "total_seconds": total}, {"what": "benchmark book_times"})
        print(f"stored the table under {key[:12]} in {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
