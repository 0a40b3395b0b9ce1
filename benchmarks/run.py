"""One-run benchmark of the default recipe: every speed option as a ratio against a baseline
measured in the same run, data supply against model consumption, epoch-time scaling, peak memory.

Usage (from the repository root, venv active):
    python -m benchmarks.run                      # everything (~5 min on 2 CPU cores)
    python -m benchmarks.run --parts model --steps 4
    python -m benchmarks.run --device cuda        # the same on a GPU

Parts (each prints a markdown table):
* ``model``: ICL ResTcn-MoE (width 0.25, batch 64, L = 8,500) training step (forward, ICL loss,
  backward, AdamW) and inference step on pre-rendered batches, for: fp32 eager (the baseline),
  bf16 autocast, Conv1d run as Conv2d(1, k) in channels-last layout, ``torch.compile``
  (inductor), and compile + bf16. Ratio = variant samples/s / baseline samples/s; "max |Δ logit|"
  compares the variant's eval logits with the baseline's on the same batch (is it safe?).
* ``data``: what the data side supplies (render + augment collate in the main process; memory-mapped
  NPY reading) against what the model consumes in training (samples/s), as a ratio.
* ``scaling``: one full training epoch (loader + render + step) on 1×, 2×, 4× a base subset of the
  training split; seconds per epoch and seconds per sample relative to 1× (1.00 = linear).
* ``memory``: peak RSS of one training process (a fresh subprocess, one epoch of the 1× subset) and
  of the simulator generating a tiny dataset (a fresh subprocess).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets import READERS  # noqa: E402
from loss import LOSSES  # noqa: E402
from models import create_model  # noqa: E402
from utils.rule_matrix import build_rule_matrix  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "xrd_mp_default"


class Conv1dAs2d(nn.Module):
    """A Conv1d evaluated as Conv2d with kernel (1, k) on a channels-last (B, C, 1, L) tensor —
    the layout oneDNN prefers on CPUs; same weights (kept 3-D, so the model's length-1 shortcut
    ``conv_same`` still reads them), same result up to rounding."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = conv.kernel_size, conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x4 = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        w4 = self.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        y = F.conv2d(x4, w4, self.bias, (1, self.stride[0]), (0, self.padding[0]),
                     (1, self.dilation[0]), self.groups)
        return y.squeeze(2)


def conv2d_layout(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every Conv1d replaced by :class:`Conv1dAs2d`."""
    model = copy.deepcopy(model)
    for mod in list(model.modules()):
        for cname, child in list(mod.named_children()):
            if isinstance(child, nn.Conv1d):
                setattr(mod, cname, Conv1dAs2d(child))
    return model


def _median_step(fn, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def part_model(a, bundle, device) -> float:
    counts = bundle.class_counts
    rules = torch.as_tensor(build_rule_matrix(), dtype=torch.float32)
    torch.manual_seed(0)
    base = create_model("icl_moe", frontend="restcn", frontend_kwargs={"width_mult": a.width},
                        class_counts=counts.tolist()).to(device)
    loss_fn = LOSSES.build("icl", class_counts=counts, rule_matrix=rules, use_contrast=True).to(device)
    items = [bundle.train[i] for i in range(a.batch)]
    batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in bundle.train_collate(items).items()}
    x_eval = bundle.eval_collate([bundle.test[i] for i in range(a.batch)])["x"].to(device)
    base.eval()
    with torch.no_grad():
        ref = base(x_eval)["logits"].float()
    variants = [("fp32 eager (baseline)", lambda m: m, None),
                ("bf16 autocast", lambda m: m, torch.bfloat16),
                ("Conv2d(1,k) channels-last", conv2d_layout, None),
                ("torch.compile", torch.compile, None),
                ("torch.compile + bf16", torch.compile, torch.bfloat16)]
    if a.variants:  # the baseline always runs: every ratio is against this run's baseline
        variants = [variants[0]] + [v for v in variants[1:] if any(s in v[0] for s in a.variants)]
    print(f"\n### Model: icl_moe ResTcn width {a.width}, batch {a.batch}, L = {x_eval.shape[-1]}, "
          f"device {device}, threads {torch.get_num_threads()}\n")
    print("| variant | train samples/s | ratio | inference samples/s | ratio | max abs diff of logits "
          "vs fp32 | first-call overhead (s) |\n|---|---|---|---|---|---|---|")
    base_rate: dict[str, float] = {}
    for name, transform, dtype in variants:
        model = transform(copy.deepcopy(base))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def train_step(model=model, opt=opt, dtype=dtype) -> None:
            model.train()
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = loss_fn(model(batch["x"]), batch)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        @torch.no_grad()
        def infer(model=model, dtype=dtype) -> torch.Tensor:
            model.eval()
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                return model(x_eval)["logits"].float()

        t0 = time.perf_counter()
        try:
            diff = float((infer() - ref).abs().max())  # before training: same weights as baseline
            train_step()
        except Exception as exc:  # e.g. no C++ compiler for inductor: report, keep going
            print(f"| {name} | failed: {type(exc).__name__}: {str(exc)[:80]} | | | | | |")
            continue
        first = time.perf_counter() - t0
        tr = a.batch / _median_step(lambda f=train_step: (f(), _sync(device)), a.warmup, a.steps)
        inf = a.batch / _median_step(lambda f=infer: (f(), _sync(device)), a.warmup, a.steps)
        base_rate.setdefault("train", tr)
        base_rate.setdefault("inf", inf)
        print(f"| {name} | {tr:,.0f} | {tr / base_rate['train']:.2f}× | {inf:,.0f} | "
              f"{inf / base_rate['inf']:.2f}× | {diff:.1e} | {first:.1f} |", flush=True)
    return base_rate["train"]


def part_data(a, bundle, model_rate: float) -> None:
    print("\n### Data supply against model consumption (training samples/s of the baseline model: "
          f"{model_rate:,.0f})\n")
    print("| source | samples/s | supply / consumption |\n|---|---|---|")
    coll = bundle.train_collate
    coll.set_epoch(0)
    idx = [[(k * a.batch + i) % len(bundle.train) for i in range(a.batch)] for k in range(a.steps + 2)]
    it = iter(idx)
    t = _median_step(lambda: coll([bundle.train[i] for i in next(it)]), 1, a.steps)
    rate = a.batch / t
    print(f"| peak lists → render + augment (collate, main process) | {rate:,.0f} | "
          f"{rate / model_rate:.1f}× |")
    from datasets.readers.npy import NpyDataset
    from datasets.readers.npy_format import write_npy  # local: only this part needs it
    with tempfile.TemporaryDirectory() as tmp:
        n, length = 2048, bundle.grid.n_points
        rng = np.random.default_rng(0)
        path = Path(tmp) / "x.npy"
        write_npy(path, rng.random((n, length), dtype=np.float32), rng.integers(1, 231, n))
        ds = NpyDataset(path)
        loader = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=0)
        t0 = time.perf_counter()
        seen = sum(len(b["y_sg"]) for b in loader)
        rate = seen / (time.perf_counter() - t0)
    print(f"| memory-mapped NPY ({n}×{length}) | {rate:,.0f} | {rate / model_rate:.1f}× |")


def _epoch_seconds(a, n: int, device) -> float:
    """One training epoch (loader, render + augment, ICL step) on the first ``n`` training samples."""
    bundle = READERS.build("peaks", root=a.data, name="xrd_mp", augment=True, seed=0)
    counts = bundle.class_counts
    sub = torch.utils.data.Subset(bundle.train, list(range(n)))
    loader = torch.utils.data.DataLoader(sub, batch_size=a.batch, shuffle=True,
                                         collate_fn=bundle.train_collate,
                                         generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = create_model("icl_moe", frontend="restcn", frontend_kwargs={"width_mult": a.width},
                         class_counts=counts.tolist()).to(device)
    rules = torch.as_tensor(build_rule_matrix(), dtype=torch.float32)
    loss_fn = LOSSES.build("icl", class_counts=counts, rule_matrix=rules, use_contrast=True).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    t0 = time.perf_counter()
    for batch in loader:
        batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        loss = loss_fn(model(batch["x"]), batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def part_scaling(a, device) -> None:
    print(f"\n### Time per epoch as the training set grows (base subset {a.base_n} samples)\n")
    print("| training samples | s/epoch | s per sample relative to 1× (1.00 = linear) |\n|---|---|---|")
    per = None
    for mult in (1, 2, 4):
        n = a.base_n * mult
        s = _epoch_seconds(a, n, device)
        per = per or s / n
        print(f"| {n:,} ({mult}×) | {s:.1f} | {s / n / per:.2f} |", flush=True)


def _peak_child_rss(cmd: list[str]) -> float:
    """Peak RSS (MiB) of ``cmd`` and its own children: it runs under a fresh wrapper process, whose
    RUSAGE_CHILDREN then holds only this command (this process's would keep earlier maxima)."""
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
               "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 1024


def part_memory(a) -> None:
    print("\n### Peak memory (each command in a fresh process; the largest RSS of the command or any "
          "of its workers)\n")
    print("| process | peak RSS (MiB) |\n|---|---|")
    sim = [sys.executable, "-m", "datasets.simulate", "--groups", "225,2,14,62", "--scale", "0.003",
           "--val_per_class", "1", "--test_per_class", "1", "--workers", "1", "--seed", "0"]
    with tempfile.TemporaryDirectory() as tmp:
        rss = _peak_child_rss([*sim, "--out", str(Path(tmp) / "sim")])
    print(f"| simulator (`{' '.join(sim[1:])}`), 1 worker | {rss:,.0f} |", flush=True)
    code = ("import sys; sys.argv=['x']; import benchmarks.run as r; import torch; "
            f"a=r.parse(['--width','{a.width}','--batch','{a.batch}','--base_n','{a.base_n}']); "
            "r._epoch_seconds(a, a.base_n, torch.device('cpu'))")
    rss = _peak_child_rss([sys.executable, "-c", code])
    print(f"| training, icl_moe width {a.width}, batch {a.batch}, one epoch of {a.base_n} | {rss:,.0f} |")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="model,data,scaling,memory")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--base_n", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", nargs="*", default=None,
                    help="model part: only the variants whose name contains one of these (e.g. bf16 "
                         "Conv2d compile); the fp32 baseline always runs")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    parts = set(a.parts.split(","))
    bundle = READERS.build("peaks", root=a.data, name="xrd_mp", augment=True, seed=0)
    print(f"torch {torch.__version__}, {a.threads} threads, device {device}")
    rate = part_model(a, bundle, device) if parts & {"model", "data"} else 0.0
    if "data" in parts:
        part_data(a, bundle, rate)
    if "scaling" in parts:
        part_scaling(a, device)
    if "memory" in parts:
        part_memory(a)


if __name__ == "__main__":
    main()
