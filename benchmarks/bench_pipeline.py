"""End-to-end throughput of the default recipe's pipeline: training samples/s (render + augment +
forward + ICL loss + backward + AdamW) and inference samples/s (nominal render + forward), for the
ICL ResTcn-MoE and the plain CE model, on the compact default set.

Usage (from the repository root):
    python -m benchmarks.bench_pipeline                      # width 0.25, batch 64, 2 threads
    python -m benchmarks.bench_pipeline --width 1.0 --batch 32 --steps 5

Each configuration runs ``--warmup`` steps, then ``--steps`` timed steps (median step time);
rendering happens in the main process as with ``--num_workers 0``. Peak RSS of the process is
printed at the end. Prints markdown rows.
"""

from __future__ import annotations

import argparse
import resource
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


def run_phases(model, loss_fn, b, a) -> list[tuple[str, float]]:
    """Median ms per step of a training step and of an inference step."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def items(k: int, ds) -> list:
        return [ds[(k * a.batch + i) % len(ds)] for i in range(a.batch)]

    def train_step(k: int) -> None:
        batch = b.train_collate(items(k, b.train))
        loss = loss_fn(model(batch["x"]), batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    @torch.no_grad()
    def infer_step(k: int) -> None:
        model(b.eval_collate(items(k, b.test))["x"])

    out = []
    for phase, fn, train_mode in (("train", train_step, True), ("inference", infer_step, False)):
        model.train(train_mode)
        for k in range(a.warmup):
            fn(k)
        times = []
        for k in range(a.steps):
            t0 = time.perf_counter()
            fn(a.warmup + k)
            times.append(time.perf_counter() - t0)
        out.append((phase, 1000 * statistics.median(times)))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "xrd_mp_default"))
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    b = READERS.build("peaks", root=a.data, name="xrd_mp", augment=True, seed=0)
    rules = torch.as_tensor(build_rule_matrix(), dtype=torch.float32)
    counts = b.class_counts
    print(f"threads {a.threads}, batch {a.batch}, ResTcn width {a.width}, L = {b.grid.n_points}\n")
    print("| model | phase | ms/step (median) | samples/s |\n|---|---|---|---|")
    for method, model_name, kw, loss_kw in (
            ("icl", "icl_moe", {"class_counts": counts.tolist()},
             {"class_counts": counts, "rule_matrix": rules, "use_contrast": True}),
            ("ce", "linear", {}, {"class_counts": counts})):
        model = create_model(model_name, frontend="restcn", frontend_kwargs={"width_mult": a.width}, **kw)
        for phase, ms in run_phases(model, LOSSES.build(method, **loss_kw), b, a):
            rate = 1000 * a.batch / ms
            print(f"| {model_name} ({method}) | {phase} | {ms:.0f} | {rate:,.0f} |", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
