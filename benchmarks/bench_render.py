"""Benchmark of the peak renderer: fast (windowed + FFT tails) vs dense, augmentation on/off.

Usage (from the repository root):
    python -m benchmarks.bench_render                       # B=128, L=8500, 1 thread, CPU
    python -m benchmarks.bench_render --threads 2 --repeats 5
    python -m benchmarks.bench_render --device cuda

Input: B random stick patterns with ~110 peaks each (Poisson count; positions uniform in 5–90°,
heavy-tailed intensities, like pymatgen peak lists of ~30-atom cells); Cu Kα2 doubles them.
Both methods render the same batch with the same seeds in the same run; each row gives the best
of ``--repeats`` timings (patterns/s), the speed ratio fast/dense and max |fast − dense| over
the whole max-normalised batch. One thread is what a DataLoader worker gets (torch sets it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.rendering.instrument import sample_seeds  # noqa: E402
from datasets.rendering.renderer import PeakRenderer, pad_peaks  # noqa: E402
from utils.grid import GridSpec  # noqa: E402


def make_batch(b: int, mean_peaks: int = 110, seed: int = 0):
    rng = np.random.default_rng(seed)
    counts = np.maximum(rng.poisson(mean_peaks, b), 1)
    tts = [np.sort(rng.uniform(5, 90, n)).astype(np.float32) for n in counts]
    its = [(rng.pareto(1.0, n) * 10 + 0.5).clip(max=1e4).astype(np.float32) for n in counts]
    return pad_peaks(tts, its), float(counts.mean())


def best_time(fn, repeats: int, sync, warm_up: bool = True) -> tuple[float, torch.Tensor]:
    if warm_up:  # kernel spectra, allocator
        fn()
        sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return min(ts), out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--points", type=int, default=8500)
    ap.add_argument("--peaks", type=int, default=110, help="mean Kα1 peaks per pattern")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="fast timings (best of); dense runs once")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    grid = GridSpec(n_points=a.points)
    (tt, it, m), mean = make_batch(a.batch, a.peaks)
    tt, it, m = tt.to(dev), it.to(dev), m.to(dev)
    seeds = sample_seeds(0, 0, torch.arange(a.batch)).to(dev)
    r = PeakRenderer(grid)
    print(f"B={a.batch}, L={a.points}, {mean:.0f} peaks/pattern (x2 with Kα2), device={dev}, "
          f"threads={a.threads}, torch {torch.__version__}\n")
    print("| method | augment | s/batch | patterns/s | fast/dense speed | max abs diff |")
    print("|---|---|---|---|---|---|")
    for aug in (False, True):
        t_fast, y_fast = best_time(lambda aug=aug: r.render(tt, it, m, augment=aug, seeds=seeds),
                                   a.repeats, sync)
        t_dense, y_dense = best_time(lambda aug=aug: r.render(tt, it, m, augment=aug, seeds=seeds,
                                                              method="dense"), 1, sync, False)
        diff = float((y_fast - y_dense).abs().max())
        print(f"| dense | {'on' if aug else 'off'} | {t_dense:.3f} | {a.batch / t_dense:.0f} | 1 | |")
        print(f"| fast | {'on' if aug else 'off'} | {t_fast:.3f} | {a.batch / t_fast:.0f} | "
              f"{t_dense / t_fast:.0f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
