"""Benchmark of the ICL model: batched experts vs a naive loop, training throughput, peak memory.

Usage (from the repository root):
    python -m benchmarks.bench_moe                        # everything, CPU, 2 threads
    python -m benchmarks.bench_moe --part experts --device cuda
    python -m benchmarks.bench_moe --part throughput --widths 1.0 0.5 0.25 --batch 32

Parts (each prints markdown rows):
* ``experts``: the expert stage alone (feature map (B, C, 1) → (B, K, 230)), forward + backward,
  batched implementation against K separate expert modules called in a Python loop (the same
  math), both timed in the same run; ratio = naive / batched. Both expert modes.
* ``throughput``: one training step (forward, a loss using every output, backward, AdamW step)
  of ``icl_moe`` at B×1×L for ResTcn widths and the ViT frontend, in samples/s.
* ``memory``: peak memory of one such training step, each configuration in a fresh subprocess
  (CPU: peak RSS from ``resource.getrusage`` and its increase over the built model; CUDA:
  ``torch.cuda.max_memory_allocated``).

On a CPU shared with other jobs, libgomp's spin-waiting threads make 2-thread runs collapse
(10-50x slower); measure with ``--threads 1`` or ``OMP_WAIT_POLICY=PASSIVE`` there. Large
one-piece allocations (the batched original experts' 100 MB weight gradients) page-fault on every
step with glibc's default malloc; ``MALLOC_MMAP_THRESHOLD_=2000000000`` removes that effect.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import create_model  # noqa: E402
from models.experts import LightweightExperts, OriginalExperts  # noqa: E402
from models.layers import CosineClassifier, ResBlock1d  # noqa: E402
from utils.crystal import N_SG, sg_to_cs  # noqa: E402


class NaiveLightweight(nn.Module):
    """Shared layer3 + K separate CosineClassifier modules, looped."""

    def __init__(self, channels: int, k: int, proj_dim: int) -> None:
        super().__init__()
        self.layer3 = ResBlock1d(channels, channels)
        self.heads = nn.ModuleList([CosineClassifier(proj_dim, N_SG, 30.0) for _ in range(k)])

    def forward(self, fmap, proj):
        v = proj(self.layer3(fmap).mean(-1))
        return torch.stack([head(v) for head in self.heads], dim=1)


class NaiveOriginal(nn.Module):
    """K separate (ResBlock1d, Linear, CosineClassifier) experts, looped."""

    def __init__(self, channels: int, k: int, expert_dim: int, kernel: int = 3) -> None:
        super().__init__()
        self.experts = nn.ModuleList([
            nn.ModuleDict({"layer3": ResBlock1d(channels, channels, kernel),
                           "fc": nn.Linear(channels, expert_dim),
                           "cls": CosineClassifier(expert_dim, N_SG, 30.0)}) for _ in range(k)])

    def forward(self, fmap, proj=None):
        return torch.stack([e["cls"](e["fc"](e["layer3"](fmap).mean(-1))) for e in self.experts], dim=1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _times(fn, device, warmup: int, repeat: int) -> list[float]:
    """Seconds of each of ``repeat`` calls of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _time(fn, device, warmup: int, repeat: int) -> float:
    """Median seconds of ``fn()`` after warm-up."""
    return statistics.median(_times(fn, device, warmup, repeat))


def bench_experts(args, device) -> None:
    c, k, b = args.channels, args.num_experts, args.batch
    print(f"\n### Expert stage, fwd+bwd, B={b}, C={c}, K={k}, device={device}, "
          f"threads={torch.get_num_threads()}\n")
    print("| mode | layer3 kernel | naive loop (ms) | batched (ms) | speed-up (naive / batched) |")
    print("|---|---|---|---|---|")
    proj = nn.Linear(c, 256).to(device)
    fmap = torch.randn(b, c, 1, device=device, requires_grad=True)
    for mode, kernel in (("lightweight", 3), ("original", 3), ("original", 1)):
        if mode == "lightweight":
            batched, naive = LightweightExperts(c, k, 256, N_SG, 30.0), NaiveLightweight(c, k, 256)
        else:
            batched = OriginalExperts(c, k, 32, N_SG, 30.0, kernel)
            naive = NaiveOriginal(c, k, 32, kernel)
        batched, naive = batched.to(device).train(), naive.to(device).train()
        w = torch.randn(b, k, N_SG, device=device)

        def step(m, w=w):
            m.zero_grad(set_to_none=True)
            (m(fmap, proj) * w).sum().backward()

        # interleave the two so that background load hits both alike
        tn, tb = [], []
        for _ in range(args.rounds):
            tn.append(_time(lambda m=naive: step(m), device, 2, args.repeat))
            tb.append(_time(lambda m=batched: step(m), device, 2, args.repeat))
        n_ms, b_ms = 1e3 * statistics.median(tn), 1e3 * statistics.median(tb)
        print(f"| {mode} | {kernel} | {n_ms:.2f} | {b_ms:.2f} | {n_ms / b_ms:.2f}x |", flush=True)


def _train_step(model, opt, x, y):
    out = model(x)
    y_cs = sg_to_cs(y)
    loss = (F.cross_entropy(out["ensemble_logits"], y) + F.cross_entropy(out["cs_logits"], y_cs)
            + F.cross_entropy(out["expert_logits"].flatten(0, 1), y.repeat_interleave(out["gate"].shape[1]))
            + out["features"].sum() * 0.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _configs(args):
    for w in args.widths:
        yield f"restcn w={w}", dict(frontend="restcn", frontend_kwargs={"width_mult": w})
    if not args.no_vit:
        yield "vit (256x6, patch 50)", dict(frontend="vit", frontend_kwargs={"seq_len": args.length})


def _build(cfg, args, device):
    torch.manual_seed(0)
    model = create_model("icl_moe", expert_mode=args.expert_mode, **cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    x = torch.rand(args.batch, 1, args.length, device=device)
    y = torch.randint(0, N_SG, (args.batch,), device=device)
    return model, opt, x, y


def bench_throughput(args, device) -> None:
    print(f"\n### icl_moe ({args.expert_mode}) training step, B={args.batch}, L={args.length}, "
          f"device={device}, threads={torch.get_num_threads()}\n")
    print("| frontend | params (M) | step, median (s) | samples/s (median) | samples/s (best) |")
    print("|---|---|---|---|---|")
    for name, cfg in _configs(args):
        model, opt, x, y = _build(cfg, args, device)
        n_par = sum(p.numel() for p in model.parameters()) / 1e6
        # the best time is the robust statistic on a machine shared with other jobs
        times = _times(lambda m=model, o=opt, x=x, y=y: _train_step(m, o, x, y), device, 1, args.repeat)
        t, t_best = statistics.median(times), min(times)
        print(f"| {name} | {n_par:.1f} | {t:.3f} | {args.batch / t:.1f} | {args.batch / t_best:.1f} |",
              flush=True)


def _memory_worker(cfg, args, device_str, queue) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device(device_str)
    model, opt, x, y = _build(cfg, args, device)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _train_step(model, opt, x, y)
    _train_step(model, opt, x, y)        # 2nd step: optimizer state exists
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    queue.put((base, peak, gpu))


def bench_memory(args, device) -> None:
    print(f"\n### Peak memory of a training step (icl_moe {args.expert_mode}), B={args.batch}, "
          f"L={args.length}, device={device}\n")
    print("| frontend | peak RSS (MiB) | RSS increase over built model (MiB) | CUDA max allocated (MiB) |")
    print("|---|---|---|---|")
    ctx = mp.get_context("spawn")
    for name, cfg in _configs(args):
        q = ctx.Queue()
        p = ctx.Process(target=_memory_worker, args=(cfg, args, str(device), q))
        p.start()
        base, peak, gpu = q.get()
        p.join()
        print(f"| {name} | {peak:.0f} | {peak - base:.0f} | {gpu:.0f} |", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["all", "experts", "throughput", "memory"], default="all")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=8500)
    p.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    p.add_argument("--no_vit", action="store_true")
    p.add_argument("--expert_mode", default="lightweight", choices=["lightweight", "original"])
    p.add_argument("--channels", type=int, default=1024, help="C of the expert stage benchmark")
    p.add_argument("--num_experts", type=int, default=8)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the expert benchmark")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.part in ("all", "experts"):
        bench_experts(args, device)
    if args.part in ("all", "throughput"):
        bench_throughput(args, device)
    if args.part in ("all", "memory"):
        bench_memory(args, device)


if __name__ == "__main__":
    main()
