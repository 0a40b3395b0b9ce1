"""Train a long-tailed XRD space-group classifier (ICL by default).

    python train.py                                   # ICL, short recipe, built-in default data
    python train.py --use_processed_npy --processed_data_dir D --rule_matrix_path F ...  # the seed
    python train.py --method ce --resume auto         # another plug-in / continue the last run
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from loguru import logger

import builders
import index_method
import reports
from config.args import apply_overrides, describe_choices, get_args_parser, parse_args, pattern_counts
from loss import LOSSES, loss_kwargs
from Trainer import TRAINERS, LRSchedule
from utils import distributed as ddp
from utils.checkpoint import find_resume, load_checkpoint
from utils.errors import XRDError, exit_message
from utils.logging import setup_logging
from utils.runlock import release_all
from utils.seed import seed_everything

AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DATA_FLAGS = ("--use_processed_npy", "--processed_data_dir", "--data_dir", "--config")


def with_default_preset(argv: list[str]) -> list[str]:
    """On the built-in default data (no data flag, no --config) the short CPU recipe
    ``config/presets/quick.yaml`` supplies the defaults; explicit flags still win. The seed's
    commands name their data, so they keep the seed's defaults (e.g. 100 epochs)."""
    if any(a.split("=")[0] in DATA_FLAGS for a in argv):
        return argv
    return ["--config", "quick", *argv]


def method_summaries() -> dict[str, str]:
    """``{name: one-line summary}`` of every registered method, the default (icl) first."""
    names = sorted(LOSSES.names(), key=lambda n: (n != "icl", n))
    return {n: LOSSES.get(n).summary for n in names}


def get_parser(argv: list[str] | None) -> argparse.ArgumentParser:
    """The base parser plus the chosen method's own flags (``--method X --help`` lists them)."""
    parser = get_args_parser()
    describe_choices(parser, "method", method_summaries())
    # pre-parse without -h so that `--method X --help` lists X's own flags too
    method = get_args_parser(add_help=False).parse_known_args(argv)[0].method
    if method in LOSSES:  # an unknown name is left to the full parse ("invalid choice")
        LOSSES.get(method).add_args(parser)
    return parser


def main(argv: list[str] | None = None) -> dict:
    """Train (see the module docstring); the run folder's lock is released on return."""
    try:
        return run(argv)
    finally:
        release_all()


def run(argv: list[str] | None = None) -> dict:
    # ---- phase 1: configuration -------------------------------------------------------------
    argv = with_default_preset(list(sys.argv[1:] if argv is None else argv))
    args = parse_args(argv, parser := get_parser(argv))
    setup_logging(None, args.log_level)  # once, before anything logs: one format for the whole run
    callbacks = []
    if os.environ.get("NNI_PLATFORM"):  # an NNI trial: the tuner's {flag: value} override the flags
        from Trainer.callbacks import NniCallback
        callbacks.append(nni_cb := NniCallback())
        args = parser.validate(apply_overrides(args, nni_cb.parameters, parser))
        args.run_dir = os.path.join(args.output_dir, "nni", nni_cb.experiment_id, nni_cb.trial_id)
    seed_everything(args.seed)
    device = builders.init_distributed(builders.resolve_device(args.device))  # torchrun: see README

    # ---- phase 2: data, rules, model, loss ----------------------------------------------------
    bundle = builders.build_data(args)
    loaders = builders.make_loaders(bundle, args.batch_size, args.num_workers, args.seed, device,
                                    num_replicas=ddp.world_size(), rank=ddp.rank())
    rules = builders.load_rules(args.rule_matrix_path)
    model_cfg = builders.model_kwargs(args, bundle.class_counts, bundle.grid.n_points, bundle.grid)
    model = builders.build_model(model_cfg).to(device)
    if args.compile:  # in place: state_dict keys (checkpoints) stay those of the bare model
        model.compile()
    loss_fn = LOSSES.build(args.method, **loss_kwargs(args.method, args, bundle.class_counts, rules))
    loss_fn = loss_fn.to(device)
    optimizer, base_lr = builders.build_optimizer(args, model)
    model = ddp.wrap_ddp(model, device, args.ddp_find_unused_parameters)  # no-op in one process

    # ---- phase 3: run directory and logging ---------------------------------------------------
    run_dir = builders.open_run_dir(args, model_cfg)  # locked; under torchrun rank 0 writes
    reports.log_data_profile(bundle)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(f"run dir {run_dir} | model {model_cfg['name']} ({n_params / 1e6:.2f} M params) | "
                f"device {device}")
    if args.adjust_lr_strategy and args.early_decay_target_lr > base_lr:
        logger.warning(f"--early_decay_target_lr {args.early_decay_target_lr} exceeds the base lr "
                       f"{base_lr}: the early phase ramps the lr up (as in the seed's recipe)")

    schedule = LRSchedule(base_lr=base_lr, epochs=args.epochs, steps_per_epoch=len(loaders["train"]),
                          warmup_epochs=args.warmup_epochs, adjust_lr_strategy=args.adjust_lr_strategy,
                          early_decay_ratio=args.early_decay_ratio,
                          early_decay_target_lr=args.early_decay_target_lr,
                          lr_restart_enabled=args.lr_restart_enabled,
                          restart_patience=args.lr_restart_patience)
    if args.use_wandb and ddp.is_main():
        from Trainer.callbacks import WandbCallback
        callbacks.append(WandbCallback(args.wandb_project, run_dir, vars(args), run_dir.name))
    if args.snapshot_patterns and ddp.is_main():
        from Trainer.callbacks import SnapshotCallback
        callbacks.append(SnapshotCallback(pattern_counts(args.snapshot_patterns), run_dir))
    trainer_cls = TRAINERS.get(getattr(LOSSES.get(args.method), "trainer", "default"))
    trainer = trainer_cls(
        model=model, loss_fn=loss_fn, optimizer=optimizer, schedule=schedule, loaders=loaders,
        class_counts=bundle.class_counts, run_dir=run_dir if ddp.is_main() else None,
        epochs=args.epochs, device=device,
        max_grad_norm=args.max_grad_norm,
        grad_warn_threshold=None if args.disable_grad_warn else args.grad_warn_threshold,
        skip_nonfinite=args.skip_nonfinite, early_stop_patience=args.early_stop_patience,
        amp_dtype=AMP[args.amp], callbacks=callbacks,
        show_progress=args.progress if ddp.is_main() else "none", progress_interval=args.progress_interval,
        stop_after_epoch=args.stop_after_epoch,
        extra_state={"args": vars(args), "model_config": model_cfg, "data_spec": bundle.spec},
        evidence=index_method.evidence_source(args, bundle.grid, len(bundle.class_counts)))

    # ---- phase 4: resume ----------------------------------------------------------------------
    # rank 0 decides (a node that cannot see the file then fails loudly instead of starting afresh)
    ckpt = ddp.broadcast_object(find_resume(run_dir) if args.resume == "auto" else (args.resume or None))
    if ckpt:  # another model's checkpoint: a one-line error naming the flags, not a size mismatch
        state = load_checkpoint(ckpt, map_location=device)
        builders.check_resume(state, args.method, model_cfg, ckpt)
        trainer.load_state_dict(state)
        logger.info(f"resumed from {ckpt} at epoch {trainer.start_epoch}")

    # ---- phase 5: train, then test the best checkpoint ----------------------------------------
    test_metrics = trainer.fit()
    if test_metrics is None:  # --stop_after_epoch: checkpointed, nothing to report yet
        return {"run_dir": str(run_dir), "test": None, "best_epoch": trainer.best_epoch}
    if not ddp.is_main():  # (finish() evaluated on every rank under torchrun; rank 0 reports)
        return {"run_dir": str(run_dir), "test": test_metrics, "best_epoch": trainer.best_epoch}
    reports.write_variant_reports(run_dir, trainer.test_predictions["test"], bundle.class_counts,
                                  test_metrics)
    reports.plot_run(run_dir, schedule)
    for cb in callbacks:
        if hasattr(cb, "log_images"):
            cb.log_images(sorted(run_dir.glob("*.png")))
        if hasattr(cb, "finish"):
            cb.finish()
    print(f"\nRun: {run_dir}\n" + reports.results_table(test_metrics, "test (best.pt)"))
    print(json.dumps({"run_dir": str(run_dir), "best_epoch": trainer.best_epoch}))
    return {"run_dir": str(run_dir), "test": test_metrics, "best_epoch": trainer.best_epoch}


if __name__ == "__main__":
    from Trainer.interrupt import TrainingInterrupted

    try:
        main()
    except (XRDError, OSError) as exc:  # documented errors, full disk, read-only...: one clear line
        if (line := exit_message(exc)) is None:
            raise
        raise SystemExit(line) from None
    except TrainingInterrupted as exc:  # SIGTERM/SIGINT: state saved, exit 143/130
        logger.warning(str(exc))
        raise SystemExit(exc.exit_code) from None
