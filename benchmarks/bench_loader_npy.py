"""Throughput of the memory-mapped NPY reader through a DataLoader.

Usage (from the repository root):
    python -m benchmarks.bench_loader_npy                      # 4000 × 8500, batch 128, workers 0 and 2
    python -m benchmarks.bench_loader_npy --n 20000 --workers 0 2 4 --epochs 3

A random dataset is written in a temporary folder with ``datasets.readers.npy_format.write_npy``; then
the time to open and validate it (NaN/inf scan in chunks, labels) and the samples/s of shuffled
epochs (``NpyDataset`` + torch's default collate) are measured. The first epoch of each setting is
a warm-up (page cache, worker start-up is still counted in the timed epochs because the framework's
loaders re-create their workers every epoch). Prints markdown rows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.readers.npy import NpyDataset  # noqa: E402
from datasets.readers.npy_format import read_npy, write_npy  # noqa: E402


def epoch_rate(ds: NpyDataset, batch: int, workers: int, epochs: int, seed: int) -> float:
    """Samples/s over ``epochs`` shuffled epochs after one warm-up epoch."""
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, generator=g,
                        persistent_workers=False)
    for _ in loader:  # warm-up
        pass
    t0 = time.perf_counter()
    n = 0
    for _ in range(epochs):
        for b in loader:
            n += len(b["idx"])
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--length", type=int, default=8500)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_sg_train" / "train_bench_sg.npy"
        x = rng.random((a.n, a.length), dtype=np.float32)
        sg = rng.integers(1, 231, a.n)
        t0 = time.perf_counter()
        write_npy(path, x, sg)
        t_write = time.perf_counter() - t0
        del x
        mb = path.stat().st_size / 2**20
        t0 = time.perf_counter()
        read_npy(path)
        t_check = time.perf_counter() - t0
        ds = NpyDataset(path, check_values=False)
        print(f"file {a.n}×{a.length} float32 ({mb:.0f} MiB): write {t_write:.2f} s, "
              f"open + validate {t_check:.2f} s ({mb / t_check:.0f} MiB/s)\n")
        print("| N × L | batch | workers | samples/s | MiB/s |")
        print("|---|---|---|---|---|")
        for w in a.workers:
            r = epoch_rate(ds, a.batch, w, a.epochs, 0)
            print(f"| {a.n}×{a.length} | {a.batch} | {w} | {r:,.0f} | {r * 4 * a.length / 2**20:,.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
