"""Throughput of the peak-list loaders (peak tables in .npz and LMDB), raw reads and with
on-the-fly rendering, on the compact default set — the loader feeding the model.

Usage (from the repository root):
    python -m benchmarks.bench_loader_peaks                  # batch 128, workers 0 and 2

The default set's train split is written to a temporary LMDB with ``datasets.readers.lmdb_store``; each
setting runs one warm-up epoch and then one timed epoch (the framework re-creates loader workers
every epoch, so worker start-up is counted). Prints markdown rows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.peaks import PeakTable  # noqa: E402
from datasets.readers.lmdb_store import LmdbPeakDataset, release_envs, write_lmdb  # noqa: E402
from datasets.readers.peak_lists import PeakCollate, PeakListDataset  # noqa: E402
from datasets.rendering.instrument import RenderConfig  # noqa: E402
from utils.grid import GridSpec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def rate(ds, collate, batch: int, workers: int) -> float:
    def run() -> int:
        loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                            collate_fn=collate, persistent_workers=False,
                            generator=torch.Generator().manual_seed(0))
        return sum(len(b["y_sg"]) if isinstance(b, dict) else len(b) for b in loader)

    run()
    t0 = time.perf_counter()
    n = run()
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT / "data" / "xrd_mp_default"))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    a = ap.parse_args(argv)
    table = PeakTable.load(Path(a.data) / "peaks_train.npz")
    grid = GridSpec()
    with tempfile.TemporaryDirectory() as tmp:
        write_lmdb(Path(tmp) / "train", table)
        sources = {"peak table (.npz)": PeakListDataset(table), "LMDB": LmdbPeakDataset(Path(tmp) / "train")}
        print(f"torch threads {torch.get_num_threads()}, N = {len(table)}, batch {a.batch}, "
              f"L = {grid.n_points}\n")
        print("| source | collate | workers | samples/s |\n|---|---|---|---|")
        for name, ds in sources.items():
            for label, collate in (("none (read only)", list),
                                   ("render, eval", PeakCollate(grid, RenderConfig(), False, 0)),
                                   ("render + augment", PeakCollate(grid, RenderConfig(), True, 0))):
                for w in a.workers:
                    print(f"| {name} | {label} | {w} | {rate(ds, collate, a.batch, w):,.0f} |", flush=True)
        release_envs()


if __name__ == "__main__":
    main()
