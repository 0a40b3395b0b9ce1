"""Evaluate a checkpoint on a dataset; the model is rebuilt from the checkpoint alone.

    python test.py --ckpt Log/sg/RUN/best.pt                      # the data it was trained on
    python test.py --ckpt RUN/best.pt --data_dir other_peaks_dir   # or --use_processed_npy ...

Writes ``test_metrics.json``, ``per_class.csv`` and plots next to the checkpoint (or --out_dir).
Metrics are those of the clean (nominal) rendering; on peak-list data the test split is also
rendered as a laboratory would measure it (noise, background, shifts drawn once from a fixed seed:
``builders.lab_collate``), reported as ``lab_*``; prior baselines as ``baseline_*``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

import builders
import index_method
import reports
from config.args import HelpFormatter, get_args_parser
from config.validate import DATA_NEEDS, unread_flags
from datasets.readers.npy import read_sg_count
from Trainer import Evaluator
from Trainer.evidence import evaluate_split, fit_on_split
from Trainer.fusion import FusionParams
from utils.checkpoint import load_checkpoint
from utils.cli import Bounded, Parser
from utils.grid import GridSpec
from utils.logging import setup_logging
from utils.runlock import lock_run_dir, release_all

DATA_FLAGS = ("dataset", "data_format", "use_processed_npy", "processed_data_dir", "data_dir",
              "sg_count_path", "imbalance_factor", "lt_sampling", "evidence")


def get_parser() -> argparse.ArgumentParser:
    p = Parser("test.py", parents=[get_args_parser(add_help=False)],
                                conflict_handler="resolve", formatter_class=HelpFormatter,
                                usage="python test.py --ckpt CKPT [--data_dir DIR] [--split SPLIT] [...]",
                                description="Evaluate a checkpoint written by train.py; data flags "
                                            "default to the training run's.")
    p.add_argument("--ckpt", required=True, help="checkpoint (best.pt / last.pt) written by train.py")
    p.add_argument("--split", default="test", choices=["test", "val", "train"])
    p.add_argument("--out_dir", default=None, help="where reports go (default: the checkpoint's folder); "
                   "locked while test.py writes, like a training run's folder")
    p.add_argument("--eval_counts_path", default=None,
                   help="sg,count CSV whose counts define the many/medium/few groups, the per-class "
                        "plot and the prior baselines (default: the checkpoint's training counts); "
                        "e.g. data/xrd_mp_default/sg_count.csv to split a stream-trained model's "
                        "classes by their Materials Project frequency")
    p.add_argument("--target_prior", default=None, metavar="SG_COUNT_CSV",
                   help="move the model from its training prior to this one at inference (post-hoc "
                        "logit adjustment: + log π_target − log π_train), e.g. "
                        "data/xrd_mp_default/sg_count.csv for a balanced-stream model used on "
                        "Materials-Project-like data; the index alone then uses it as its prior")
    p.add_argument("--mask_mode", default=None, choices=["hard", "soft", "none"],
                   help="ICL: evaluate with this crystal-system masking at inference instead of the "
                        "one the model was trained with (an ablation that needs no training)")
    p.add_argument("--cs_posthoc_adjust", type=Bounded(float, 0), default=0.0, metavar="TAU",
                   help="ICL: shift the crystal-system logits by −τ·(log π_cs − log ν_cs), from the "
                        "checkpoint's training prior π_cs to the system prior of a test set balanced "
                        "over space groups (post-hoc logit adjustment, Menon et al. 2021); 0 = off")
    return p


def fusion_params(ckpt: dict, source: Any, evaluator: Evaluator, loaders: dict,
                  where: str) -> FusionParams | None:
    """The checkpoint's fusion weights (``--evidence index``), else fitted on its validation split."""
    if source is None:
        return None
    if (params := FusionParams.from_dict(ckpt.get("fusion"))) is not None:
        logger.info(f"evidence fusion from {where}: {params.describe()}")
        return params
    if loaders.get("val") is None:
        raise SystemExit(f"--evidence index: {where} holds no fusion weights and this data has no "
                         "validation split to fit them on. Fix: evaluate on data with a val split")
    return fit_on_split(evaluator, loaders["val"], source, "val")


def main(argv: list[str] | None = None) -> dict:
    """Evaluate (see the module docstring); the report folder's lock is released on return."""
    try:
        return run(argv)
    finally:
        release_all()


def run(argv: list[str] | None = None) -> dict:
    parser = get_parser()
    args = parser.parse_args(argv)
    setup_logging(None, args.log_level)
    ckpt = load_checkpoint(args.ckpt)
    train_args = ckpt.get("args", {})
    given = {k for k in DATA_FLAGS if getattr(args, k) != parser.get_default(k)}
    tokens = sys.argv[1:] if argv is None else argv
    given |= {"evidence"} & {t.split("=")[0].lstrip("-") for t in tokens}  # an explicit --evidence none wins
    for k in DATA_FLAGS:  # data flags default to the training run's unless given here
        if k not in given and k in train_args:
            setattr(args, k, train_args[k])
    args.seed = train_args.get("seed", args.seed)
    if (problem := unread_flags(args, parser, DATA_NEEDS)) is not None:  # with the run's data flags
        parser.error(problem)
    out_dir = lock_run_dir(Path(args.out_dir) if args.out_dir else Path(args.ckpt).resolve().parent,
                           "evaluation (test.py)")
    device = builders.resolve_device(args.device)

    bundle = builders.build_data(args, augment=False)
    model_grid = GridSpec.from_dict(ckpt.get("data_spec", {}).get("grid"))
    model_grid.check_compatible(bundle.grid, source=args.data_dir or args.processed_data_dir or "data")
    counts = np.asarray(ckpt.get("data_spec", {}).get("class_counts", bundle.class_counts))
    if args.eval_counts_path:
        counts = read_sg_count(args.eval_counts_path)
        if len(counts) != len(bundle.class_counts):
            raise SystemExit(f"--eval_counts_path {args.eval_counts_path}: {len(counts)} classes, the "
                             f"data has {len(bundle.class_counts)}. Fix: pass a count file of this label set")
    model = builders.model_from_checkpoint(ckpt, args.ckpt).to(device)
    if args.mask_mode is not None:
        if not hasattr(model, "mask_mode"):
            raise SystemExit(f"--mask_mode: the model in {args.ckpt} has no crystal-system masking "
                             "(only the ICL mixture of experts has). Fix: drop --mask_mode")
        model.mask_mode = args.mask_mode
    if args.cs_posthoc_adjust:
        if not hasattr(model, "set_cs_posthoc_adjust"):
            raise SystemExit(f"--cs_posthoc_adjust: the model in {args.ckpt} has no crystal-system "
                             "head (only the ICL mixture of experts has). Fix: drop the flag")
        train_counts = np.asarray(ckpt.get("data_spec", {}).get("class_counts", bundle.class_counts))
        shift = model.set_cs_posthoc_adjust(train_counts, args.cs_posthoc_adjust)
        logger.info(f"crystal-system logits shifted post hoc by {np.round(shift.cpu().numpy(), 3)}")
    loaders = builders.make_loaders(bundle, args.batch_size, args.num_workers, args.seed, device)
    loader = loaders[args.split]
    if loader is None:
        raise SystemExit(f"split '{args.split}' is not available in this dataset")

    evaluator = Evaluator(model, counts, device)
    train_counts = np.asarray(ckpt.get("data_spec", {}).get("class_counts", bundle.class_counts))
    target = read_sg_count(args.target_prior) if args.target_prior else None
    source = index_method.evidence_source(args, bundle.grid, len(bundle.class_counts))
    fusion = fusion_params(ckpt, source, evaluator, loaders, args.ckpt)
    # (a mixture of experts also reports its mean gate weight per expert, as in log.jsonl)
    metrics, preds = evaluate_split(evaluator, loader, source, fusion, train_counts, args.split, target)
    if args.mask_mode is not None:
        logger.info(f"evaluated with --mask_mode {args.mask_mode} at inference")
    lab = loaders.get(f"{args.split}_lab")  # the same patterns rendered as a lab measures them
    if lab is not None:
        lab_metrics, _ = evaluate_split(evaluator, lab, source, fusion, train_counts, f"{args.split}_lab",
                                        target)
        metrics.update({f"lab_{k}": v for k, v in lab_metrics.items() if not k.startswith("gate")})
    reports.write_variant_reports(out_dir, preds, counts, metrics, sg_confusion=True)
    logger.info(f"reports written to {out_dir}")
    print(reports.results_table(metrics, f"{args.split} ({Path(args.ckpt).name})"))
    print(json.dumps({"out_dir": str(out_dir), **{k: round(v, 6) for k, v in metrics.items()}}))
    return metrics


if __name__ == "__main__":
    from utils.errors import XRDError, exit_message

    try:
        main()
    except (XRDError, OSError) as exc:  # documented errors, full disk, read-only...: one clear line
        if (line := exit_message(exc)) is None:
            raise
        raise SystemExit(line) from None
