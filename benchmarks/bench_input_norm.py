"""Which input normalisation removes the train/eval mismatch: training renders every pattern with
noise, background and shifts, evaluation renders them clean, so an input BatchNorm normalises
clean patterns with running statistics of augmented ones.

Usage (from the repository root, venv active; ~3 min on 2 CPU cores):
    OMP_NUM_THREADS=1 python -m benchmarks.bench_input_norm
    python -m benchmarks.bench_input_norm --modes batch pattern --seeds 0 1 2 --frontends restcn_lite

Trains ICL through ``train.main`` on the separable 8-group fixture of ``tests/test_learning.py``
(24 training patterns per group, balanced held-out val/test; 8 epochs, batch 16, width 0.125) and
prints, per run, validation SG top-1 after every epoch (does evaluation follow training?) and the
test SG top-1 on the clean and on the seeded lab rendering. Modes:

* ``batch``: BatchNorm on the raw input (the seed's ResTcn), every training pattern augmented;
* ``pattern``: each pattern standardised on its own (``models.layers.PatternNorm``, restcn_lite);
* ``mix``: BatchNorm, but half of the training patterns (chosen per sample by a hash) rendered
  clean, so the running statistics see both distributions.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import sys
import tempfile
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import builders  # noqa: E402
import train  # noqa: E402
from datasets.rendering.instrument import hash_uniform, sample_seeds  # noqa: E402
from tests.conftest import TINY_GRID, _table  # noqa: E402
from tests.test_learning import CLASSES, N_EVAL, N_TRAIN  # noqa: E402


class MixCollate:
    """A training collate rendering a fraction ``clean`` of the samples without augmentation."""

    def __init__(self, base, clean: float = 0.5) -> None:
        self.base, self.frac = base, clean
        self.clean = copy.copy(base)
        self.clean.augment = False

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)
        self.clean.set_epoch(epoch)

    def __call__(self, items: list[dict]) -> dict:
        key = torch.tensor([int(d.get("aug_key", d["idx"])) for d in items])
        u = hash_uniform(sample_seeds(self.base.seed + 99, self.base.epoch, key), 7, 1)[:, 0].tolist()
        parts = [c([d for d, v in zip(items, u, strict=True) if (v < self.frac) == want])
                 for c, want in ((self.base, False), (self.clean, True))
                 if any((v < self.frac) == want for v in u)]
        return {k: torch.cat([p[k] for p in parts]) for k in ("x", "y_sg", "y_cs", "idx")}


def fixture(root: Path) -> Path:
    _table(dict.fromkeys(CLASSES, N_TRAIN), seed=10).save(root / "peaks_train.npz")
    _table(dict.fromkeys(CLASSES, N_EVAL), seed=11).save(root / "peaks_val.npz")
    _table(dict.fromkeys(CLASSES, N_EVAL), seed=12).save(root / "peaks_test.npz")
    (root / "dataset.json").write_text(json.dumps({"name": "separable", "grid": TINY_GRID}))
    return root


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=["batch", "pattern", "mix"])
    ap.add_argument("--frontends", nargs="+", default=["restcn_lite", "restcn"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs", type=int, default=8)
    a = ap.parse_args(argv)
    data = fixture(Path(tempfile.mkdtemp()))
    make_loaders = builders.make_loaders
    rows = []
    for mode in a.modes:
        for fe in a.frontends:
            if mode == "pattern" and fe != "restcn_lite":
                continue  # only restcn_lite has the option (the seed's ResTcn keeps BatchNorm)
            for seed in a.seeds:
                def loaders(bundle, *args, mode=mode, **kw):
                    if mode == "mix":
                        bundle.train_collate = MixCollate(bundle.train_collate)
                    return make_loaders(bundle, *args, **kw)

                builders.make_loaders = loaders
                norm = ["--input_norm", "pattern" if mode == "pattern" else "batch"]
                with contextlib.redirect_stdout(io.StringIO()):  # only this script's table on stdout
                    res = train.main([
                        "--data_dir", str(data), "--output_dir", tempfile.mkdtemp(), "--device", "cpu",
                        "--method", "icl", "--use_contrast_scheme2", "--frontend_type", fe, "--epochs",
                        str(a.epochs), "--batch_size", "16", "--width_mult", "0.125", "--use_adamw", "--lr",
                        "3e-3", "--warmup_epochs", "0.5", "--seed", str(seed), *norm])
                log = [json.loads(x) for x in open(Path(res["run_dir"]) / "log.jsonl")]
                t = res["test"]
                tr = " ".join(f"{r['train_sg_top1']:.2f}" for r in log)
                va = " ".join(f"{r['val_sg_top1']:.2f}" for r in log)
                rows.append(f"| {mode} | {fe} | {seed} | {tr} | {va} | {100 * t['sg_top1']:.1f} | "
                            f"{100 * t.get('lab_sg_top1', float('nan')):.1f} |")
    builders.make_loaders = make_loaders
    print("\n| input norm | frontend | seed | train SG top-1 per epoch | val SG top-1 per epoch | "
          "test clean % | test lab % |\n|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
