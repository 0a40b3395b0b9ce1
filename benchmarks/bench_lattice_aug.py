"""Benchmark of lattice augmentation: patterns/s of the training collate with and without it.

Usage (from the repository root):
    python -m benchmarks.bench_lattice_aug                    # built-in set, 20 batches of 64
    python -m benchmarks.bench_lattice_aug --data_dir D --batches 50 --threads 1

The two variants alternate batch by batch in one process, on the same items, so the ratio does
not depend on what else the machine is doing. Also reports the one-time cost of deriving the
reflection families from the stored structures (``datasets.synthesis.families``), uncached.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> dict:
    from datasets.readers.peak_lists import build_peaks_bundle
    from datasets.synthesis.families import derive_families

    root = Path(__file__).resolve().parents[1] / "data" / "xrd_mp_default"
    p = argparse.ArgumentParser("bench_lattice_aug")
    p.add_argument("--data_dir", default=str(root))
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch threads (a DataLoader worker uses 1)")
    p.add_argument("--families_n", type=int, default=200, help="structures timed for the uncached derivation")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    on = build_peaks_bundle(a.data_dir, seed=0)
    off = build_peaks_bundle(a.data_dir, seed=0, lattice_aug=False)
    if on.train_collate.lattice is None:
        raise SystemExit(f"{a.data_dir} carries no structures: lattice augmentation is off")
    rng = np.random.default_rng(0)
    t_on = t_off = t_sticks = 0.0
    n = 0
    for b in range(a.batches):
        idx = rng.choice(len(on.train), a.batch_size, replace=False)
        items_on = [on.train[int(i)] for i in idx]
        items_off = [off.train[int(i)] for i in idx]
        for c in (on.train_collate, off.train_collate):
            c.set_epoch(b)
        t0 = time.perf_counter()
        on.train_collate(items_on)
        t1 = time.perf_counter()
        off.train_collate(items_off)
        t2 = time.perf_counter()
        for k, it in enumerate(items_on):
            on.train_collate.lattice.sticks(it, k + 1000 * b, on.train.wavelength)
        t3 = time.perf_counter()
        t_on, t_off, t_sticks = t_on + t1 - t0, t_off + t2 - t1, t_sticks + t3 - t2
        n += a.batch_size
    st = on.train.table.structures.subset(np.arange(min(a.families_n, len(on.train))))
    t0 = time.perf_counter()
    derive_families(st, on.train.wavelength, 90.0, workers=1)
    t_fam = (time.perf_counter() - t0) / len(st)
    fam = on.train.table.families
    row = {"patterns_per_s_lattice": n / t_on, "patterns_per_s_files": n / t_off, "ratio": t_off / t_on,
           "strained_sticks_per_s": n / t_sticks, "families_per_pattern": len(fam.hkl) / len(fam),
           "derive_ms_per_structure": 1e3 * t_fam}
    print(f"| torch threads | batch | patterns/s with lattice aug | patterns/s files only | ratio | "
          f"strained stick lists/s | families/pattern | derive families ms/structure |\n"
          f"|---|---|---|---|---|---|---|---|\n"
          f"| {a.threads} | {a.batch_size} | {row['patterns_per_s_lattice']:.0f} | "
          f"{row['patterns_per_s_files']:.0f} | {row['ratio']:.2f} | {row['strained_sticks_per_s']:.0f} | "
          f"{row['families_per_pattern']:.0f} | {row['derive_ms_per_structure']:.1f} |")
    return row


if __name__ == "__main__":
    main()
