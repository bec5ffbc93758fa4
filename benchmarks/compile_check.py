"""Does torch.compile speed up the built-in Unet on this CPU? Eager against compiled, in one run.

Times one guided step (``--batch`` rows) of the built-in Unet three ways, each in a process of
its own (``--rounds`` calls after a warm-up, median; the processes alternate, ``--repeats``
times each): eager, as the sampler runs it (block by block);
each block compiled on its own (what the sampler could use: its interventions run the blocks
one by one); and the whole plain forward compiled as one graph (an upper bound for fusion
across blocks, which the interventions would not allow). Compilation time is reported apart.
A process of its own per way, because in one process the compiled kernels' OpenMP threads and
torch's own slow the eager calls down (by about 60% on a 2-core machine), which would flatter
the compiled ways.
It also prints the largest difference of the compiled outputs from the eager one (compiled
kernels round differently, so their results would be stored under keys of their own).

    python benchmarks/compile_check.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from unetdyn.backends import load_unet

WAYS = ("eager, block by block", "each block compiled", "whole forward compiled")


def one_way(way: str, batch: int, rounds: int) -> tuple[float, float, float]:
    """(first call, median call, max |difference| from eager) in seconds, for ``way`` in this process."""
    torch._dynamo.config.recompile_limit = 64  # one graph per distinct block shape
    unet = load_unet("builtin")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g)
    t = torch.full((batch,), 500)
    labels = torch.arange(batch) % 10

    def blocks(enc, mid, dec, out):
        def run():
            emb = unet.embed(t, labels)
            h, hs = x, []
            for b in enc:
                h = b(h, emb)
                hs.append(h)
            h = mid(h, emb)
            for b in dec:
                h = b(torch.cat([h, hs.pop()], 1), emb)
            return out(h)
        return run

    c = torch.compile
    eager = blocks(unet.input_blocks, unet.middle_block, unet.output_blocks, unet.out)
    run = {
        WAYS[0]: lambda: eager,
        WAYS[1]: lambda: blocks([c(b) for b in unet.input_blocks], c(unet.middle_block), [c(b) for b in unet.output_blocks],
                                c(unet.out)),
        WAYS[2]: lambda: (lambda f: lambda: f(x, t, labels))(c(unet.forward)),
    }[way]()
    with torch.no_grad():
        ref = eager() if way != WAYS[0] else None
        a = time.perf_counter()
        y = run()
        first = time.perf_counter() - a
        diff = 0.0 if ref is None else (y - ref).abs().max().item()
        run()
        secs = []
        for _ in range(rounds):
            a = time.perf_counter()
            run()
            secs.append(time.perf_counter() - a)
    return first, statistics.median(secs), diff


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32, help="rows per call (16 guided samples: 32)")
    ap.add_argument("--rounds", type=int, default=20, help="timed calls per process")
    ap.add_argument("--repeats", type=int, default=2, help="processes per way")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)  # one process's part
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.way:
        print(json.dumps(one_way(args.way, args.batch, args.rounds)))
        return 0
    res: dict[str, list[tuple[float, float, float]]] = {w: [] for w in WAYS}
    for _ in range(args.repeats):
        for way in WAYS:
            cmd = [sys.executable, __file__, "--way", way, "--batch", str(args.batch), "--rounds", str(args.rounds)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            res[way].append(tuple(json.loads(out.strip().splitlines()[-1])))
    base = statistics.median(r[1] for r in res[WAYS[0]])
    print(f"{args.threads or torch.get_num_threads()} threads, batch {args.batch}, median of {args.rounds} calls per "
          f"process, {args.repeats} processes per way (the median of their medians)")
    print("| way | ms per call | speed-up | first call (s) | max abs. difference from eager |\n|---|---|---|---|---|")
    for way, rs in res.items():
        m = statistics.median(r[1] for r in rs)
        print(f"| {way} | {1e3 * m:.0f} | {base / m:.2f}x | {max(r[0] for r in rs):.1f} | {max(r[2] for r in rs):.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
