"""ICL with the indexing evidence inside (issue 23, part 2): train the evidence inputs of a trained
ICL run — the crystal-system branch combined with the evidence, the gate with the evidence as its
prior (``models.evidence_inputs``) — with the rest of the model frozen.

    python train_evidence.py Log/sg/RUN [--inputs cs,gate] [--pool 300]
    bash scripts/default/evaluate_run.sh Log/sg/RUN/evidence_cs_gate      # test split, lab, real

Training patterns with evidence: ``--pool`` new crystals of the run's training distribution (the
stream's profile with a seed of its own, or a random part of a file set's training split), each
rendered as in training (augmented: lab-like) and clean, with their evidence computed the way it
is at test time (peaks picked on the rendering, then indexed; cached per pattern under
``Log/index_cache/patterns``). Indexing every training crystal of the stream would cost ~7.5× the
training itself (RESULTS.md, "Evidence fusion"), hence this smaller pool and a second stage.

Then the evidence inputs are fitted (``Trainer.evidence_inputs``, selected on the validation
split), the fusion is re-fitted on the validation split with them, and ``OUT/best.pt`` is written
(``test.py --ckpt`` and ``predict.py --ckpt`` use it like any checkpoint), with
``OUT/evidence_inputs.json`` (history, pool, times).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from loguru import logger

import builders
import index_method
from models.evidence_inputs import parse_parts
from Trainer import Evaluator
from Trainer.evidence import fit_on_split, predict_with_inputs
from Trainer.evidence_inputs import as_tensors, frozen_outputs, train_evidence_inputs
from utils.checkpoint import atomic_save, atomic_writer, load_checkpoint
from utils.errors import CheckpointError, ConfigError
from utils.logging import setup_logging

POOL_SEED_SALT = 7919     # the pool's crystals: a seed of their own, never the run's training crystals
KEEP = ("model", "model_config", "data_spec", "args", "epoch", "best", "best_epoch")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("train_evidence.py", description=__doc__.splitlines()[0])
    p.add_argument("run", help="a training run folder (with best.pt) or a checkpoint file")
    p.add_argument("--inputs", default="cs,gate", help="evidence inputs to train: cs, gate or cs,gate")
    p.add_argument("--pool", type=int, default=300, help="training crystals whose patterns are indexed")
    p.add_argument("--renderings", default="train,clean",
                   help="renderings of each pool crystal: train (augmented, as in training), clean")
    p.add_argument("--epochs", type=int, default=300, help="full-batch steps of the evidence inputs")
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--weight_decay", type=float, default=1e-3)
    p.add_argument("--evidence_workers", type=int, default=2, help="indexing processes")
    p.add_argument("--out_dir", default=None, help="default: RUN/evidence_<inputs>")
    p.add_argument("--log_level", default="INFO")
    return p


def load_run(path: Path) -> tuple[dict, Path]:
    ckpt_path = path / "best.pt" if path.is_dir() else path
    if not ckpt_path.is_file():
        raise CheckpointError(f"{ckpt_path}: no such checkpoint. Fix: pass a run folder with best.pt")
    ckpt = load_checkpoint(ckpt_path)
    cfg = ckpt.get("model_config") or {}
    if cfg.get("name") != "icl_moe":
        raise ConfigError(f"{ckpt_path}: a '{cfg.get('name')}' model; evidence inputs exist for ICL "
                          "(icl_moe) only. Fix: pass an ICL run (other methods use the fusion alone)")
    return ckpt, ckpt_path


def pool_patterns(args: argparse.Namespace, n: int, renderings: list[str]) -> tuple[dict, dict, float]:
    """Pool crystals of the run's training distribution, rendered; (x per rendering, labels, s)."""
    t0 = time.perf_counter()
    pool_args = argparse.Namespace(**vars(args))
    pool_args.seed = int(args.seed) + POOL_SEED_SALT
    if args.data_source == "stream":
        pool_args.stream_structures, pool_args.stream_reuse, pool_args.epochs = n, 1, 1
    bundle = builders.build_data(pool_args)
    ds = bundle.train
    idx = np.arange(len(ds)) if args.data_source == "stream" else \
        np.sort(np.random.default_rng(pool_args.seed).permutation(len(ds))[:n])
    items = [ds[int(i)] for i in idx]
    if hasattr(ds, "close"):
        ds.close()
    collates = {"train": bundle.train_collate, "clean": bundle.eval_collate}
    xs: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for name in renderings:
        if name not in collates:
            raise ConfigError(f"--renderings: unknown '{name}'. Fix: use train, clean")
        parts = [collates[name](items[i:i + 256]) for i in range(0, len(items), 256)]
        xs[name] = torch.cat([b["x"] for b in parts]).numpy()
        labels = {"y_sg": torch.cat([b["y_sg"] for b in parts]).numpy(),
                  "y_cs": torch.cat([b["y_cs"] for b in parts]).numpy()}
    return xs, labels, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    a = get_parser().parse_args(argv)
    setup_logging(None, a.log_level)
    parts = list(parse_parts(a.inputs))
    if not parts:
        raise ConfigError(f"--inputs {a.inputs!r}: nothing to train. Fix: --inputs cs, gate or cs,gate")
    ckpt, ckpt_path = load_run(Path(a.run))
    args = argparse.Namespace(**ckpt["args"])
    out_dir = Path(a.out_dir or ckpt_path.parent / f"evidence_{'_'.join(sorted(parts))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu")
    torch.manual_seed(int(args.seed))

    # the model: the run's weights, evidence inputs added (they start at zero = the run's model)
    cfg = dict(ckpt["model_config"], evidence_inputs=",".join(parts))
    model = builders.build_model(cfg)
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if unexpected or any(not k.startswith("evidence_inputs.") for k in missing):
        raise CheckpointError(f"{ckpt_path}: weights do not fit ICL with evidence inputs (missing "
                              f"{missing[:3]}, unexpected {unexpected[:3]})")
    model.to(device)

    bundle = builders.build_data(args, augment=False)  # val/test files
    loaders = builders.make_loaders(bundle, 256, 0, int(args.seed), device)
    source = index_method.index_evidence(bundle.grid, a.evidence_workers, args.output_dir,
                                         index_method.shipped_bundles(args))
    evaluator = Evaluator(model, np.asarray(bundle.class_counts), device)

    # training patterns with evidence
    renderings = [r.strip() for r in a.renderings.split(",") if r.strip()]
    xs, labels, render_s = pool_patterns(args, a.pool, renderings)
    t0 = time.perf_counter()
    train_parts = []
    for name, x in xs.items():
        ev = source(x, f"evidence pool ({name})")
        out = frozen_outputs(model, torch.as_tensor(x).reshape(len(x), 1, -1))
        train_parts.append({**{k: v.numpy() for k, v in out.items()}, "evidence": ev, **labels})
    index_s = time.perf_counter() - t0
    train = as_tensors({k: np.concatenate([p[k] for p in train_parts]) for k in train_parts[0]})

    # validation split (selection)
    vpred, vx = predict_with_inputs(evaluator, loaders["val"])
    vout = frozen_outputs(model, torch.as_tensor(vx).reshape(len(vx), 1, -1))
    val = as_tensors({**{k: v.numpy() for k, v in vout.items()}, "evidence": source(vx, "val"),
                      "y_sg": vpred["y_sg"], "y_cs": vpred["y_cs"]})
    t1 = time.perf_counter()
    hist = train_evidence_inputs(model, train, val, a.epochs, a.lr, a.weight_decay, int(args.seed))
    fit_s = time.perf_counter() - t1

    # the fusion on top, re-fitted with the evidence inputs on; the checkpoint
    fusion = fit_on_split(evaluator, loaders["val"], source)
    state = {k: ckpt[k] for k in KEEP if k in ckpt}
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    state.update(model=weights, model_config=model.config,
                 fusion=fusion.to_dict(), args=dict(ckpt["args"], evidence="index"),
                 evidence_inputs={"source_checkpoint": str(ckpt_path), "inputs": parts, "pool": a.pool,
                                  "renderings": renderings, "best_epoch": hist["best_epoch"],
                                  "val_start": hist["val_start"], "val_best": hist["val_best"]})
    atomic_save(state, out_dir / "best.pt")
    n_pool = sum(len(x) for x in xs.values())
    report = {"command": "python train_evidence.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "source_checkpoint": str(ckpt_path), "inputs": parts, "pool_crystals": a.pool,
              "pool_patterns": n_pool, "renderings": renderings, "seconds": {
                  "render": round(render_s, 1), "index_and_forward": round(index_s, 1),
                  "fit": round(fit_s, 1)},
              "fusion": fusion.to_dict(), **hist}
    with atomic_writer(out_dir / "evidence_inputs.json", "w") as fh:
        json.dump(report, fh, indent=1)
    logger.info(f"wrote {out_dir / 'best.pt'} (pool {n_pool} patterns: render {render_s:.0f} s, index + "
                f"forward {index_s:.0f} s, fit {fit_s:.0f} s)")
    return report


if __name__ == "__main__":
    from utils.errors import XRDError, exit_message

    try:
        main()
    except (XRDError, OSError) as exc:
        if (line := exit_message(exc)) is None:
            raise
        raise SystemExit(line) from None
