"""How long the book takes: regenerating its results, and building it from the store.

    python benchmarks/book_times.py regenerate                          # every chapter at its notebook's defaults (the paper's resolution)
    python benchmarks/book_times.py regenerate --device cuda --batch-size 1024
    python benchmarks/book_times.py regenerate --only 03_nb_sweep --cache-dir /tmp/empty   # one chapter from an empty store
    python benchmarks/book_times.py regenerate --params book/params.yaml   # the values the book is built with
    python benchmarks/book_times.py regenerate --executor ray --address auto   # on a Ray cluster: a worker per GPU
    python benchmarks/book_times.py steps                               # guided sample-steps each chapter needs
    python benchmarks/book_times.py regenerate --member-grids --model builtin:seed1   # chapter 10's runs of one member
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
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from unetdyn.paper import chapters
from unetdyn.paper.alternatives import benchmark_key
from unetdyn.paper.book import load_params, make_book
from unetdyn.paper.cache import Cache
from unetdyn.paper.chapters import SweepParams
from unetdyn.paper.chapters.ch06_shortcut import shortcut_parts
from unetdyn.paper.chapters.ch10_is_it_the_model import GRIDS
from unetdyn.paths import CACHE_DIR

# the chapters that sample (7 and 9 read benchmark records; 8's search has its own command)
SAMPLING = [name for name, mod in chapters.CHAPTERS.items() if issubclass(mod.Params, SweepParams) and name != "08_beyond"]


def chapter_params(name: str, params_file: str | None, model: str | None = None, member_grids: bool = False,
                   **more) -> SweepParams:
    """The chapter's defaults, then the parameters file's ``all`` and its entry for ``name`` (None: book/params.yaml),
    then (``member_grids``) the grid chapter 10 runs every member at, then ``--model``, checked as the book checks
    them; then ``more`` (how to run)."""
    overrides = {**(GRIDS.get(name, {}) if member_grids else {}), **({"model": model} if model is not None else {})}
    return chapters.params(name, load_params(params_file, [name], overrides, override_source="--")[name], **more)


def regenerate(p: SweepParams, timings: bool) -> None:
    """Compute what chapter ``p`` needs and the store lacks."""
    if isinstance(p, chapters.ch06_shortcut.Params) and not timings:
        opened = p.open()
        parts, _, _ = shortcut_parts(p, opened)
        sweep = opened.sweep
        sweep.run(list(parts.values()), images=list(range(p.n_samples)))
        return
    chapters.run(p)


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


def sample_steps(name: str, params_file: str | None, root: Path, model: str | None = None,
                 member_grids: bool = False) -> dict:
    """The guided sample-steps chapter ``name`` costs at its parameters, counted from the store entries it reads."""
    from unetdyn.backends import load_unet
    from unetdyn.interventions import Schedule

    p = chapter_params(name, params_file, model, member_grids, compute=False, progress=False, cache_dir=str(root))
    spec = p.spec
    with _recording_reads() as keys:
        chapters.run(p)
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
    ap.add_argument("--only", nargs="+", default=None, choices=SAMPLING, help="regenerate: these chapters")
    ap.add_argument("--params", default=None, help="parameters YAML over the notebooks' defaults (build: default book/params.yaml)")
    ap.add_argument("--model", default=None, help="every chapter's model (e.g. builtin:len12k, a member of the family)")
    ap.add_argument("--member-grids", action="store_true",
                    help="the coarser grids chapter 10 runs every member of the family at (its GRIDS)")
    ap.add_argument("--cache-dir", default=None, help="regenerate: the result store (default data/cache)")
    ap.add_argument("--device", default=None, help="regenerate: cpu (default) or cuda")
    ap.add_argument("--batch-size", type=int, default=16, help="regenerate: samples per Unet call (16 suits a 2-core CPU)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="regenerate: the sampler's precision (bf16 results are stored under keys of their own; "
                         "they move the readings of small interventions, see benchmarks/precision_check.py)")
    ap.add_argument("--executor", default="local", choices=["local", "ray"],
                    help="regenerate: compute in this process (local) or on Ray workers, one per GPU or CPU (ray)")
    ap.add_argument("--address", default=None,
                    help="regenerate --executor ray: the Ray cluster (e.g. auto, or ray://HOST:10001; default: a local Ray)")
    ap.add_argument("--timings", action="store_true", help="regenerate: also take chapter 6's timings (on this machine)")
    ap.add_argument("--no-record", action="store_true", help="regenerate: do not store the table as a benchmark record")
    args = ap.parse_args(argv)
    if args.batch_size < 1:
        ap.error(f"--batch-size {args.batch_size} must be >= 1")
    if args.address is not None and args.executor != "ray":
        ap.error(f"--address {args.address}: applies to --executor ray only")

    rows = []
    if args.mode == "steps":
        root = Path(args.cache_dir) if args.cache_dir else CACHE_DIR
        for name in args.only or SAMPLING:
            rows.append(sample_steps(name, args.params, root, args.model, args.member_grids))
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
                   "precision": args.precision, "compute": True}
        if args.executor == "ray":  # each chapter's sweeps compute on the cluster; this process writes the store
            runtime.update({"executor": "ray", "address": args.address})
        for name in args.only or SAMPLING:
            p = chapter_params(name, args.params, args.model, args.member_grids, **runtime)
            before, t0 = _entries(root), time.perf_counter()
            print(f"{name}: {p.n_samples} samples ...", flush=True)
            regenerate(p, args.timings)
            rows.append({"chapter": name, "seconds": time.perf_counter() - t0, "new entries": _entries(root) - before,
                         "n_samples": p.n_samples})
            print(f"{name:<20} {rows[-1]['seconds']:8.1f} s  {rows[-1]['new entries']:5d} new entries", flush=True)
    total = sum(r["seconds"] for r in rows)
    print(f"{'total':<20} {total:8.1f} s")

    if args.mode == "regenerate" and not args.no_record:
        dev = torch.device(args.device or "cpu")
        local = args.executor == "local"
        meta = {
            "device": (torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine())
            if local else "Ray workers",
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "batch_size": args.batch_size, "precision": args.precision, "params": args.params,
            "date": datetime.date.today().isoformat(),
            "tf32": False if dev.type == "cuda" else None,
        }
        which = {"only": args.only, "params": args.params, "device": dev.type}
        if not local:  # the workers' (host, device, threads), as the last chapter's pool had them
            from unetdyn.paper.executors import live_workers

            meta["workers"] = [list(w) for w in live_workers()]
            which.update({"executor": "ray", "address": args.address})
        if args.precision != "fp32":
            which["precision"] = args.precision
        key = benchmark_key("book_times", "regenerate", which)
        Cache(root).put_record(key, {"meta": meta, "rows": rows, "total_seconds": total}, {"what": "benchmark book_times"})
        print(f"stored the table under {key[:12]} in {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
