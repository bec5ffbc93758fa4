"""How long the book takes: regenerating its results, and building it from the cache.

    python benchmarks/book_times.py regenerate --cache-dir data/cache   # from an empty cache, in book order
    python benchmarks/book_times.py regenerate --only 05_relaxation     # one figure alone, empty temp cache
    python benchmarks/book_times.py regenerate --cache-dir data/cache --continue --only 04_n_limit ...  # resume in order
    python benchmarks/book_times.py build                               # `unetdyn book` with the committed cache

``regenerate`` executes the notebooks with the book's parameters (``book/params.yaml``)
against a cache folder that must be empty (default: a new temporary folder), writing the
rendered notebooks into ``book/`` only when the cache is the book's own (``data/cache``).
Within one run, later figures reuse what earlier ones computed (02 reuses 03's nb = 2 curve
or the reverse, 04-06 read the Fig. 8 thresholds); ``--only`` times one figure alone.
``build`` times the whole ``unetdyn book`` (execution from the cache and the HTML build).
Prints a table and writes JSON (default benchmarks/results/book_times-<mode>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from unetdyn.paper.book import NOTEBOOKS, execute, load_params, make_book
from unetdyn.fileio import atomic_write
from unetdyn.paths import BOOK_DIR, CACHE_DIR, REPO_ROOT


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["regenerate", "build"])
    ap.add_argument("--cache-dir", default=None, help="regenerate: an empty or absent folder (default: a temp folder)")
    ap.add_argument("--only", nargs="*", default=None, help=f"regenerate: these notebooks ({', '.join(NOTEBOOKS)})")
    ap.add_argument("--params", default=None, help="parameters file (default book/params.yaml)")
    ap.add_argument("--continue", dest="cont", action="store_true",
                    help="regenerate: allow a cache that earlier figures of the same run already filled (with --only)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    rows, meta = [], {"mode": args.mode, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                      "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    if args.mode == "regenerate":
        names = args.only or list(NOTEBOOKS)
        bad = [n for n in names if n not in NOTEBOOKS]
        if bad:
            ap.error(f"--only: unknown notebook(s) {bad}; notebooks: {', '.join(NOTEBOOKS)}")
        tmp = None
        if args.cache_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="unetdyn-cache-")
            cache = Path(tmp.name)
        else:
            cache = Path(args.cache_dir)
            if cache.exists() and any(cache.iterdir()) and not args.cont:
                ap.error(f"--cache-dir {cache} is not empty: regeneration times need an empty cache")
        own = cache.resolve() == CACHE_DIR.resolve()
        out_dir = BOOK_DIR if own else Path(tempfile.mkdtemp(prefix="unetdyn-book-"))
        params = load_params(args.params)
        for name in names:
            t0 = time.perf_counter()
            execute(name, {**params[name], "cache_dir": str(cache), "compute": True}, out_dir)
            rows.append({"notebook": name, "seconds": time.perf_counter() - t0})
            print(f"{name:<20} {rows[-1]['seconds'] / 60:6.1f} min", flush=True)
        meta.update(cache=str(cache), rendered_into=str(out_dir), continued=args.cont)
        if tmp is not None:
            tmp.cleanup()
    else:
        t0 = time.perf_counter()
        index = make_book(args.params, log=lambda *_: None)
        rows.append({"notebook": "all (execute from cache + build)", "seconds": time.perf_counter() - t0})
        meta["index"] = str(index)
    total = sum(r["seconds"] for r in rows)
    print(f"{'total':<20} {total / 60:6.1f} min")
    path = Path(args.json or REPO_ROOT / "benchmarks" / "results" / f"book_times-{args.mode}.json")
    blob = json.dumps({"meta": meta, "rows": rows, "total_seconds": total}, indent=1)
    atomic_write(path, lambda tmp_path: tmp_path.write_text(blob))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
