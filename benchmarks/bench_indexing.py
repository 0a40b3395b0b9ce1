"""Indexing speed: CPU per pattern, one process vs parallel workers, cache hits.

    python -m benchmarks.bench_indexing --n 120 --workers 2

Indexes the sticks of the first ``--n`` test patterns (``indexing.cache.read_peaks_file``) three
ways in one run, on the same machine: one process, ``--workers`` local processes, and again from
the per-file cache (``indexing.cache.evidence_for_file``, a fresh cache folder). Prints wall time,
the CPU seconds per pattern (median, p90) and whether the rows are identical.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from indexing.cache import evidence_for_file, read_peaks_file
from indexing.parallel import index_many


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peaks", type=Path, default=Path("data/xrd_mp_default/peaks_test.npz"))
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    peaks, _ = read_peaks_file(args.peaks, limit=args.n)
    out = {}
    for label, workers in (("1 process", 1), (f"{args.workers} workers", args.workers)):
        t0 = time.perf_counter()
        rows = index_many(peaks, workers=workers)
        out[label] = (time.perf_counter() - t0, rows)
    cpu = np.array([r.cpu_s for r in out["1 process"][1]])
    same = all(a.bravais == b.bravais and np.allclose(a.cell, b.cell, equal_nan=True)
               and np.array_equal(a.vector, b.vector)
               for a, b in zip(out["1 process"][1], out[f"{args.workers} workers"][1]))
    with tempfile.TemporaryDirectory() as d:
        evidence_for_file(args.peaks, workers=args.workers, cache_dir=d, limit=args.n)
        t0 = time.perf_counter()
        evidence_for_file(args.peaks, workers=args.workers, cache_dir=d, limit=args.n)
        hit = time.perf_counter() - t0
    wall1, wall2 = out["1 process"][0], out[f"{args.workers} workers"][0]
    report = {"n": len(peaks), "wall_1_s": wall1, f"wall_{args.workers}_s": wall2,
              "speedup": wall1 / wall2, "cpu_median_s": float(np.median(cpu)),
              "cpu_p90_s": float(np.percentile(cpu, 90)), "identical_rows": same, "cache_hit_s": hit}
    print("| run | wall s | per pattern s |\n|---|---|---|")
    print(f"| 1 process | {wall1:.1f} | {wall1 / len(peaks):.3f} |")
    print(f"| {args.workers} workers (local) | {wall2:.1f} | {wall2 / len(peaks):.3f} |")
    print(f"| cache hit | {hit:.3f} | {hit / len(peaks):.5f} |")
    print(f"CPU per pattern (1 process): median {report['cpu_median_s']:.3f} s, p90 "
          f"{report['cpu_p90_s']:.3f} s; speed-up {report['speedup']:.2f}x; rows identical: {same}")
    return report


if __name__ == "__main__":
    main()
