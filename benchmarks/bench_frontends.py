"""Frontends compared in one run: FLOPs per pattern, training and inference samples/s of the ICL
model built on each, and the fraction of the CPU's measured matmul peak that training reaches.

Usage (from the repository root, venv active):
    python -m benchmarks.bench_frontends                   # 2 threads, batch 64, 8 rounds
    python -m benchmarks.bench_frontends --threads 1 --rounds 3 --only restcn_w0.25 restcn_lite_w0.25

For every configuration (the ICL model ``icl_moe``, lightweight experts, on that frontend):

* FLOPs/pattern, counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and
  convolutions; element-wise ops are not counted): the frontend's forward, the whole model's
  forward, and one training step (forward + ICL loss + backward), per pattern;
* training samples/s: forward + ICL loss + backward + AdamW on pre-rendered batches of real
  patterns (the compact default set's training split, rendered with the train-time augmentation
  once, before timing), so only what the model consumes is timed; and the same step with the
  batch rendered on the fly in the main process (``--num_workers 0``, what ``train.py`` does);
* inference samples/s: eval-mode forward without gradients;
* data supply: the training collate alone (render + augment, + lattice augmentation where the
  data carry structures), the ceiling of "train incl. rendering" with ``--num_workers 0``;
* peak: the FLOP/s of a float32 2048×2048 matmul on the same threads, measured before, in every
  round and after the configurations (the largest is used); "of peak" = training FLOP/s / peak.

Configurations run interleaved, one step of each per round, and each number is the *fastest*
round (the least disturbed by other processes on a shared machine; the median is printed too).
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets import READERS  # noqa: E402
from loss import LOSSES  # noqa: E402
from models import create_model  # noqa: E402
from utils.rule_matrix import build_rule_matrix  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "restcn_w0.25": ("restcn", {"width_mult": 0.25}),        # the old CPU recipe's frontend
    "restcn_w1.0": ("restcn", {"width_mult": 1.0}),          # the seed's model
    "vit": ("vit", {"seq_len": 8500}),                        # the seed's ViT flags (patch 50, 256, 6)
    "restcn_lite_w0.25": ("restcn_lite", {"width_mult": 0.25}),
    "restcn_lite_w0.5": ("restcn_lite", {"width_mult": 0.5}),
}


def matmul_peak(threads: int, n: int = 2048, reps: int = 8) -> float:
    """Best float32 FLOP/s of an n×n matmul (2n³ FLOPs) on the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n ** 3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


class Case:
    """One configuration: model, loss, optimiser, and its timings."""

    def __init__(self, name: str, frontend: str, kw: dict, counts, rules, batch: int) -> None:
        torch.manual_seed(0)
        self.name = name
        self.model = create_model("icl_moe", frontend=frontend, frontend_kwargs=kw,
                                  class_counts=counts.tolist())
        self.loss = LOSSES.build("icl", class_counts=counts, rule_matrix=rules, use_contrast=True)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.t_train: list[float] = []
        self.t_render_train: list[float] = []
        self.t_infer: list[float] = []
        self.batch = batch

    def train_step(self, batch: dict) -> None:
        self.model.train()
        loss = self.loss(self.model(batch["x"]), batch)["loss"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()

    @torch.no_grad()
    def infer(self, x: torch.Tensor) -> None:
        self.model.eval()
        self.model(x)

    def flops(self, batch: dict) -> dict[str, float]:
        """Per-pattern FLOPs: frontend forward, model forward (eval), training step."""
        one = batch["x"][:1]
        self.model.eval()
        with torch.no_grad():
            fe = count_flops(lambda: self.model.frontend(one))
            fwd = count_flops(lambda: self.model(one))
        n = 8
        small = {k: (v[:n] if torch.is_tensor(v) else v) for k, v in batch.items()}
        self.model.train()
        train = count_flops(lambda: self.loss(self.model(small["x"]), small)["loss"].backward())
        self.opt.zero_grad(set_to_none=True)
        return {"frontend": fe, "forward": fwd, "train": train / n}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "xrd_mp_default"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--only", nargs="*", default=None, help=f"subset of {list(CONFIGS)}")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    b = READERS.build("peaks", root=a.data, name="xrd_mp", augment=True, seed=0)
    counts = b.class_counts
    rules = torch.as_tensor(build_rule_matrix(), dtype=torch.float32)
    n_pool = 4
    items = [[b.train[(k * a.batch + i) % len(b.train)] for i in range(a.batch)] for k in range(n_pool)]
    batches = [b.train_collate(it) for it in items]   # pre-rendered (augmented) batches
    names = a.only or list(CONFIGS)
    cases = [Case(n, *CONFIGS[n], counts, rules, a.batch) for n in names]
    peak0 = matmul_peak(a.threads)
    flops = {c.name: c.flops(batches[0]) for c in cases}
    for c in cases:  # warm-up: first calls allocate and pick kernels
        c.train_step(batches[0])
        c.infer(batches[0]["x"])
    t_collate: list[float] = []
    peaks = [peak0]
    for r in range(a.rounds):
        t_collate.append(_timed(lambda r=r: b.train_collate(items[r % n_pool])))
        peaks.append(matmul_peak(a.threads, reps=3))
        for c in cases:
            c.t_train.append(_timed(lambda c=c, r=r: c.train_step(batches[r % n_pool])))
            c.t_render_train.append(_timed(lambda c=c, r=r: c.train_step(b.train_collate(items[r % n_pool]))))
            c.t_infer.append(_timed(lambda c=c, r=r: c.infer(batches[r % n_pool]["x"])))
    peak = max(*peaks, matmul_peak(a.threads))  # the least disturbed measurement
    print(f"threads {a.threads}, batch {a.batch}, L = {b.grid.n_points}, {a.rounds} rounds; matmul peak "
          f"{peak / 1e9:.1f} GFLOP/s (before {peak0 / 1e9:.1f}); data supply (render + augment "
          f"{'+ lattice ' if getattr(b.train_collate, 'lattice', None) is not None else ''}collate, main "
          f"process) {a.batch / min(t_collate):,.0f} patterns/s\n")
    print("| frontend (ICL model) | params (M) | frontend fwd MFLOP/pattern | model fwd MFLOP/pattern | "
          "train step MFLOP/pattern | train samples/s (median) | train incl. rendering samples/s | "
          "inference samples/s (median) | training FLOP/s, % of peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = None
    for c in cases:
        f = flops[c.name]
        tr, tri, inf = (a.batch / min(t) for t in (c.t_train, c.t_render_train, c.t_infer))
        tr_med, inf_med = a.batch / statistics.median(c.t_train), a.batch / statistics.median(c.t_infer)
        base = base or (tr, tri, inf)
        params = sum(p.numel() for p in c.model.parameters()) / 1e6
        print(f"| {c.name} | {params:.2f} | {f['frontend'] / 1e6:,.1f} | {f['forward'] / 1e6:,.1f} | "
              f"{f['train'] / 1e6:,.1f} | {tr:,.0f} ({tr_med:,.0f}) ×{tr / base[0]:.2f} | "
              f"{tri:,.0f} ×{tri / base[1]:.2f} | {inf:,.0f} ({inf_med:,.0f}) ×{inf / base[2]:.2f} | "
              f"{100 * f['train'] * tr / peak:.1f} % |", flush=True)
    print("\nratios (×) are against the first row, measured in this run")


if __name__ == "__main__":
    main()
