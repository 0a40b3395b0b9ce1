"""Benchmark of the stream's epoch cache (``--stream_cache``): time to obtain E epochs of N crystals,
generated (and written to the cache) vs loaded from it.

Usage (from the repository root):
    OMP_NUM_THREADS=1 python -m benchmarks.bench_stream_cache                  # 3 epochs of 200
    OMP_NUM_THREADS=1 python -m benchmarks.bench_stream_cache --n 1000 --epochs 2 --process

Two streams of the same key, one after the other, each constructed (epoch 0) and advanced with
``set_epoch`` through the E epochs with no training in between (so the background prefetch is the
whole cost): the first generates every epoch and writes it, the second loads every epoch. MP
profile, the built-in set's generator settings, seed 0. Jobs run inline by default, so that the
process CPU time includes them (``--process``: one worker process, as ``train.py`` does; its CPU
is then not counted). Time spent in ``EpochCache.save`` / ``load`` is reported on its own, and the
two runs' tables are compared bitwise. Prints markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np

from benchmarks.bench_stream_job import OPTS


def _timed(cls, name: str, acc: dict) -> None:
    orig = getattr(cls, name)

    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return orig(*a, **kw)
        finally:
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - t0

    setattr(cls, name, wrapper)


def _run(cache: str, args: argparse.Namespace) -> tuple[dict, list]:
    from datasets.synthesis.stream import StructureStream
    from datasets.synthesis.structures import mp_table_path

    kw = {"workers": 1, "inline": not args.process}
    t0, c0 = time.perf_counter(), time.process_time()
    s = StructureStream(mp_table_path(), n_structures=args.n, reuse=1, seed=args.seed, profile="mp",
                        opts=OPTS, engine_kwargs=kw, epochs=args.epochs, progress=False, cache_dir=cache)
    tables = [s.table]
    for e in range(1, args.epochs):
        s.set_epoch(e)
        tables.append(s.table)
    s.close()
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "stats": dict(s.stats)}, tables


def _same(a, b) -> bool:
    pairs = [(a, b, ("offsets", "two_theta", "intensity", "sg")),
             (a.structures, b.structures, ("offsets", "z", "frac", "cell")),
             (a.families, b.families, ("offsets", "hkl", "mult", "sf", "z", "cell", "ff"))]
    return all(np.array_equal(getattr(x, k), getattr(y, k)) for x, y, keys in pairs for k in keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="crystals per epoch")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--process", action="store_true",
                    help="one worker process (as train.py) instead of inline")
    args = ap.parse_args()

    import datasets.synthesis.stream_cache as sc

    acc: dict[str, float] = {}
    _timed(sc.EpochCache, "save", acc)
    _timed(sc.EpochCache, "load", acc)
    with tempfile.TemporaryDirectory(prefix="bench_stream_cache_") as cache:
        gen, t_gen = _run(cache, args)
        saved = acc.pop("save", 0.0)
        acc.pop("load", None)  # the generating run's look-ups of absent files
        key_dir = next(p for p in os.scandir(cache) if p.is_dir()).path
        size = sum(os.path.getsize(os.path.join(key_dir, f)) for f in os.listdir(key_dir))
        got, t_got = _run(cache, args)
        loaded = acc.pop("load", 0.0)
    same = all(_same(a, b) for a, b in zip(t_gen, t_got, strict=True))
    n = args.n * args.epochs
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; {args.epochs} epochs x {args.n} crystals; jobs "
          f"{'in one worker process' if args.process else 'inline'}\n")
    print("| run | wall s | process CPU s | crystals/s (wall) | of which cache I/O s | generated | loaded |")
    print("|---|---|---|---|---|---|---|")
    for name, r, io in (("generate + write", gen, saved), ("load from cache", got, loaded)):
        print(f"| {name} | {r['wall']:.2f} | {r['cpu']:.2f} | {n / r['wall']:.1f} | {io:.3f} | "
              f"{int(r['stats']['generated'])} | {int(r['stats']['cached'])} epochs |")
    print(f"\nspeed-up (wall): {gen['wall'] / got['wall']:.0f}x; cache size {size / 1e6:.2f} MB "
          f"({size / n / 1e3:.1f} kB per crystal); tables identical: {same}")


if __name__ == "__main__":
    main()
