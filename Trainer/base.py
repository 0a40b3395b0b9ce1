"""The training loop (DESIGN.md layer 3): model, loss, optimiser and loaders are injected.

Method-specific trainers override :meth:`Trainer.train_step` only (e.g. GLMC's two mixed views).
Every epoch appends one JSON line to ``log.jsonl`` and writes ``last.pt`` atomically; ``best.pt``
is written when the monitored validation metric improves. Resuming restores model, optimiser,
scaler, loss buffers, schedule state, epoch, best metric and RNG states, and data order/augment
randomness are functions of (seed, epoch, index), so "2 epochs" == "1 epoch + resume + 1 epoch".

Under ``torchrun`` the model may arrive wrapped in ``DistributedDataParallel`` and the loaders
sharded: checkpoints store the bare model, training meters are reduced over ranks, evaluation
gathers every rank's predictions (the same metrics, hence the same decisions, on every rank), a
non-finite loss is skipped on all ranks or none, and only the rank given a ``run_dir`` writes.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger
from torch import nn

from metrics.batch import batch_accuracy
from Trainer.evaluator import Evaluator, to_device
from Trainer.evidence import EvidenceMixin, EvidenceSource
from Trainer.interrupt import StopFlag, TrainingInterrupted, meters_from_state, meters_state
from Trainer.progress import Progress
from Trainer.registry import TRAINERS
from Trainer.schedule import LRSchedule
from utils.checkpoint import atomic_save, load_checkpoint
from utils.distributed import all_reduce_max, all_reduce_sum, all_true, broadcast_module, is_main, unwrap
from utils.errors import StorageError, XRDError
from utils.logging import JsonlWriter
from utils.meters import MeterDict
from utils.seed import get_rng_state, set_rng_state


class NonFiniteLossError(XRDError, FloatingPointError):
    """Raised when a loss component is NaN/inf and skipping is off."""


@TRAINERS.register("default")
class Trainer(EvidenceMixin):
    """Epoch loop, evaluation, checkpoints, early stopping.

    Args:
        model: ``nn.Module`` mapping ``x`` (B,1,L) to an outputs dict with ``logits`` (B,230).
        loss_fn: ``nn.Module`` with ``forward(outputs, batch) -> {'loss', ...}`` and
            ``on_epoch_start(epoch)``.
        optimizer: a torch optimiser over the trainable parameters.
        schedule: :class:`LRSchedule` (lr as a function of epoch and step).
        loaders: dict with ``train`` and ``test`` loaders and optionally ``val``.
        class_counts: (230,) training counts (many/medium/few).
        run_dir: where checkpoints and logs go (None: nothing is written).
        epochs: total epochs.
        device: torch device.
        max_grad_norm: clip threshold (<= 0: no clipping).
        grad_warn_threshold: warn when the pre-clip norm exceeds it (None: never), from the end of
            the first epoch and of the lr warm-up on: at initialisation the norm of a healthy
            network is routinely far above it (docs/methods/icl.md, "Optimisation").
        skip_nonfinite: skip a batch whose loss is not finite (counted) instead of stopping.
        early_stop_patience: epochs without improvement before stopping (0: off).
        amp_dtype: ``torch.bfloat16``/``torch.float16`` for autocast, None for fp32.
        callbacks: objects with optional ``on_epoch_end(trainer, record)`` / ``on_fit_end``.
        extra_state: JSON-able things stored in every checkpoint (args, model config, data spec).
        show_progress: ``auto``/``bar``/``log``/``none`` (True/False: auto/none), see
            :mod:`Trainer.progress`; ``progress_interval``: seconds between log-mode lines.
        evidence: ``source(x, split) -> (N, 110)`` indexing evidence (``--evidence index``), or None.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                 schedule: LRSchedule, loaders: dict[str, Iterable], class_counts: np.ndarray,
                 run_dir: str | Path | None, epochs: int, device: torch.device | str = "cpu",
                 max_grad_norm: float = 1.0, grad_warn_threshold: float | None = 100.0,
                 skip_nonfinite: bool = False, early_stop_patience: int = 0,
                 amp_dtype: torch.dtype | None = None, monitor: str = "sg_top1",
                 callbacks: list[Any] | None = None, extra_state: dict[str, Any] | None = None,
                 show_progress: bool | str = True, stop_after_epoch: int = 0,
                 progress_interval: float = 30.0, evidence: EvidenceSource | None = None) -> None:
        self.model, self.loss_fn, self.optimizer, self.schedule = model, loss_fn, optimizer, schedule
        self.loaders = loaders
        self.class_counts = np.asarray(class_counts)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.epochs = epochs
        self.device = torch.device(device)
        self.max_grad_norm = max_grad_norm
        self.grad_warn_threshold = grad_warn_threshold
        self.skip_nonfinite = skip_nonfinite
        self.early_stop_patience = early_stop_patience
        self.amp_dtype = amp_dtype
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp_dtype == torch.float16)
        self.monitor = monitor
        self.callbacks = callbacks or []
        self.extra_state = extra_state or {}
        self.progress = Progress(show_progress, epochs, progress_interval)  # bar, log lines or none
        self.stop_after_epoch = stop_after_epoch
        self.start_epoch = 0
        self.best = -math.inf
        self.best_epoch = -1
        self.stale_epochs = 0
        self.skipped_batches = 0
        self.patterns_seen = 0  # training patterns over all epochs (all ranks), for learning curves
        self.wall_s = 0.0  # seconds of training + validation over all epochs (across resumes)
        self._grad_warns: list[tuple[int, float]] = []
        self.evaluator = Evaluator(model, self.class_counts, self.device, amp_dtype, False)
        self.last_pred: dict[str, np.ndarray] = {}
        self.stop = StopFlag()
        self._partial: dict[str, Any] | None = None  # a mid-epoch checkpoint being resumed
        self.writer = JsonlWriter(self.run_dir / "log.jsonl") if self.run_dir else None
        self.evidence, self.fusion, self.test_predictions = evidence, None, {}

    # ------------------------------------------------------------------ one step
    def forward_loss(self, batch: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            outputs = self.model(batch["x"])
            losses = self.loss_fn(outputs, batch)
        return outputs, losses

    def train_step(self, batch: dict[str, Any], epoch: int, step: int) -> dict[str, float]:
        """One optimisation step; the single override point of method-specific trainers."""
        outputs, losses = self.forward_loss(batch)
        return self.with_train_accuracy(self.backward_step(losses, epoch, step), outputs, batch)

    @staticmethod
    def with_train_accuracy(stats: dict[str, float], outputs: dict[str, Any], batch: dict[str, Any],
                            y_mix: torch.Tensor | None = None, lam: float = 1.0) -> dict[str, float]:
        """``stats`` plus the batch's training accuracy (``sg_top1``, ``cs_acc``, ``cs_head_acc``;
        logged as ``train_*``), from the outputs the loss saw, before the optimiser step.

        The first ``len(batch["y_sg"])`` rows of ``outputs["logits"]`` are scored (a step that
        stacks views, e.g. GH's, puts view 0 first). A mixed batch scores
        ``lam·[pred = y] + (1 − lam)·[pred = y_mix]`` (``metrics.batch.batch_accuracy``); ARB's
        mixup batch carries ``mix_index``/``mix_lam`` and is scored that way automatically.
        A skipped step (empty ``stats``) stays empty.
        """
        if not stats or not isinstance(outputs, dict) or "logits" not in outputs:
            return stats
        y = batch["y_sg"]
        if y_mix is None and "mix_index" in batch:
            y_mix, lam = y[batch["mix_index"]], float(batch["mix_lam"])
        n = len(y)
        cs = outputs.get("cs_logits")
        stats.update(batch_accuracy(outputs["logits"][:n], y, cs[:n] if cs is not None else None,
                                    y_mix, lam))
        return stats

    def backward_step(self, losses: dict[str, torch.Tensor], epoch: int, step: int) -> dict[str, float]:
        """Check finiteness, backward, clip, warn, step; returns the components as floats."""
        loss = losses["loss"]
        # collective under DDP: a batch skipped on one rank is skipped on all (else backward hangs)
        if not all_true(bool(torch.isfinite(loss))):
            bad = [k for k, v in losses.items() if torch.is_tensor(v) and not torch.isfinite(v).all()]
            msg = (f"non-finite loss at epoch {epoch + 1} step {step + 1} (components: "
                   f"{', '.join(bad) or 'loss'})")
            if not self.skip_nonfinite:
                raise NonFiniteLossError(msg + ". Fix: lower the lr / check the data; the last good "
                                         "checkpoint is kept; --skip_nonfinite skips such batches")
            self.skipped_batches += 1
            logger.warning(msg + "; batch skipped")
            self.optimizer.zero_grad(set_to_none=True)
            return {}
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        clip = self.max_grad_norm if self.max_grad_norm and self.max_grad_norm > 0 else float("inf")
        gnorm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        sched = self.schedule  # past the first epoch and the warm-up: the network left its initialisation
        settled = epoch + step / max(sched.steps_per_epoch, 1) >= max(1.0, sched.warmup_epochs)
        if self.grad_warn_threshold is not None and gnorm > self.grad_warn_threshold and settled:
            # counted here, reported once per epoch (a warning per step drowns the log)
            self._grad_warns.append((step, gnorm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        out = {k: float(v.detach()) for k, v in losses.items() if torch.is_tensor(v) and v.numel() == 1}
        out["grad_norm"] = gnorm
        return out

    # ------------------------------------------------------------------ epochs
    def _set_epoch(self, loader: Iterable, epoch: int) -> None:
        for obj in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                    getattr(loader, "collate_fn", None), getattr(loader, "dataset", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        loader = self.loaders["train"]
        self._set_epoch(loader, epoch)
        part, self._partial = self._partial or {}, None  # resuming a mid-epoch checkpoint
        skip = int(part.get("step", 0))
        meters = meters_from_state(part.get("meters"))
        self._grad_warns: list[tuple[int, float]] = [tuple(w) for w in part.get("grad_warns", [])]
        n_steps = len(loader)  # type: ignore[arg-type]
        t0, seen = time.perf_counter() - float(part.get("elapsed", 0.0)), int(part.get("seen", 0))
        progress = self.progress.epoch(epoch, n_steps, start_step=skip)
        for step, batch in enumerate(loader):
            if step < skip:  # replay the data order only (no compute): the steps already done
                self.skip_step(batch, epoch, step)
                continue
            if step == skip and "rng" in part:  # the RNG exactly as it was after step skip-1
                set_rng_state(part["rng"])
            lr = self.schedule.lr(epoch, step)
            for g in self.optimizer.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
            batch = to_device(batch, self.device)
            stats = self.train_step(batch, epoch, step)
            bs = len(batch["y_sg"])
            seen += bs
            if stats:
                meters.update(stats, bs)
            progress.update(bs, **({"loss": stats["loss"]} if stats else {}), lr=lr)
            if self._stop_requested() and step + 1 < n_steps:
                self._save_partial(epoch, step + 1, meters, seen, time.perf_counter() - t0)
        progress.close()
        if self._grad_warns and is_main():  # norms are of the all-reduced gradient: warn once
            worst = max(self._grad_warns, key=lambda t: t[1])
            logger.warning(f"epoch {epoch + 1}: pre-clip grad norm above {self.grad_warn_threshold} in "
                           f"{len(self._grad_warns)}/{n_steps} steps (max {worst[1]:.1f} at step "
                           f"{worst[0]}); "
                           "clipped to --max_grad_norm (silence: --disable_grad_warn)")
        # under DDP: sample-weighted means over all ranks, samples/s of the whole group
        tot = all_reduce_sum({**{f"s/{k}": m.sum for k, m in meters.meters.items()},
                              **{f"n/{k}": m.count for k, m in meters.meters.items()}, "seen": seen})
        avg = {f"train_{k}": tot[f"s/{k}"] / max(tot[f"n/{k}"], 1) for k in meters.meters}
        avg["grad_warn_steps"] = len(self._grad_warns)
        avg["lr"] = self.schedule.lr(epoch, max(n_steps - 1, 0))
        elapsed = all_reduce_max({"t": time.perf_counter() - t0})["t"]
        avg["train_samples_per_s"] = tot["seen"] / max(elapsed, 1e-9)
        avg["epoch_time_s"] = elapsed
        self.patterns_seen += int(tot["seen"])
        avg["patterns_seen"], avg["epoch_patterns"] = self.patterns_seen, int(tot["seen"])
        return avg

    def predict(self, loader: Iterable, keep_inputs: bool = False) -> dict[str, np.ndarray]:
        return self.evaluator.predict(loader, keep_inputs)

    def evaluate(self, loader: Iterable) -> dict[str, float]:
        """Metrics of ``loader``; the stacked predictions stay in ``self.last_pred`` for callbacks
        (e.g. wandb's gate usage per crystal system)."""
        self.last_pred = self.predict(loader)
        return self.evaluator.summarize(self.last_pred)

    def fit(self) -> dict[str, Any] | None:
        """Train from ``start_epoch`` to ``epochs``; returns the final test metrics of best.pt, or
        None when ``stop_after_epoch`` ended this invocation early (resume to continue)."""
        sel = "val" if self.loaders.get("val") is not None else "test"
        if sel == "test":
            logger.warning("no validation split: model selection uses the test split (as the "
                           "long-tail papers do); reported test numbers are optimistic")
        with self.stop.installed():
            return self._fit(sel)

    def _fit(self, sel: str) -> dict[str, Any] | None:
        for epoch in range(self.start_epoch, self.epochs):
            self.loss_fn.on_epoch_start(epoch)
            if self._partial:  # epoch-derived settings recomputed, buffers as they were mid-epoch
                self.loss_fn.load_state_dict(self._partial["loss"])
            record: dict[str, Any] = {"epoch": epoch + 1}
            t_start = time.perf_counter() - float((self._partial or {}).get("elapsed", 0.0))
            record.update(self.train_one_epoch(epoch))
            metrics = self.evaluate(self.loaders[sel])
            self.wall_s += time.perf_counter() - t_start  # incl. waiting for data and validation
            record["wall_s"] = round(self.wall_s, 2)
            record.update({f"{sel}_{k}": v for k, v in metrics.items()})
            score = metrics[self.monitor]
            improved = score > self.best
            if improved:
                self.best, self.best_epoch, self.stale_epochs = score, epoch + 1, 0
            else:
                self.stale_epochs += 1
            self.schedule.observe(epoch, score)
            record.update(best=self.best, best_epoch=self.best_epoch, skipped_batches=self.skipped_batches)
            logger.info(f"epoch {epoch + 1}/{self.epochs} loss {record.get('train_loss', float('nan')):.4f}"
                        f" train top1 {record.get('train_sg_top1', float('nan')):.4f} cs "
                        f"{record.get('train_cs_acc', float('nan')):.4f} | {sel} top1 {score:.4f} cs "
                        f"{metrics.get('cs_acc', float('nan')):.4f} (best {self.best:.4f} @ "
                        f"{self.best_epoch}) {record['train_samples_per_s']:.0f} samples/s | "
                        f"{self.progress.end_epoch(epoch)}")
            if self.writer:
                self.writer.write(record)
            self.start_epoch = epoch + 1
            if self.run_dir:  # best.pt first: a kill between the two writes then only repeats
                self._save_epoch(epoch, improved)  # this epoch, never leaves last.pt ahead of best.pt
            for cb in self.callbacks:
                if hasattr(cb, "on_epoch_end"):
                    cb.on_epoch_end(self, record)
            if self._stop_requested() and epoch + 1 < self.epochs:
                raise TrainingInterrupted(self.stop.signum or 15, f"stopped by signal after epoch "
                                          f"{epoch + 1}; last.pt saved. Continue with --resume auto")
            if self.early_stop_patience and self.stale_epochs >= self.early_stop_patience:
                logger.info(f"early stop: no improvement for {self.stale_epochs} epochs")
                break
            if self.stop_after_epoch and epoch + 1 >= self.stop_after_epoch and epoch + 1 < self.epochs:
                logger.info(f"stopping after epoch {epoch + 1} (--stop_after_epoch); continue with "
                            "--resume auto")
                return None
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Evaluate the test split with the best weights (the last ones if none was saved); with a
        ``test_lab`` loader (the same patterns in a seeded lab-realistic rendering) its metrics
        join as ``lab_*``. With an evidence source the fusion is fitted on the validation split
        first and each split is reported three ways (``Trainer.evidence``)."""
        if self.run_dir and (self.run_dir / "best.pt").is_file():
            best = load_checkpoint(self.run_dir / "best.pt", map_location=self.device)
            unwrap(self.model).load_state_dict(best["model"])
        broadcast_module(unwrap(self.model))  # under DDP only rank 0 (the writer) has a run_dir
        lab_loader = self.loaders.get("test_lab")
        self.prepare_fusion()
        lab = self.final_metrics(lab_loader, "test_lab") if lab_loader is not None else {}
        test = self.final_metrics(self.loaders["test"], "test")  # last: last_pred holds the clean ones
        test.update({f"lab_{k}": v for k, v in lab.items()})
        for cb in self.callbacks:
            if hasattr(cb, "on_fit_end"):
                cb.on_fit_end(self, test)
        return test

    def _save_epoch(self, epoch: int, improved: bool) -> None:
        """``best.pt`` (on improvement), then ``last.pt``. When the disk refuses (full, read-only),
        the log row of this epoch is taken back, so that ``log.jsonl`` never holds an epoch that
        ``last.pt`` does not, and the error says what was kept and how to go on."""
        state = self.state_dict()
        try:
            if improved:
                atomic_save(state, self.run_dir / "best.pt")
            atomic_save(state, self.run_dir / "last.pt")
        except StorageError as exc:
            if self.writer:
                with contextlib.suppress(OSError):  # a later --resume auto repairs the log anyway
                    self.writer.keep_epochs_upto(epoch)
            raise StorageError(exc.errno, f"{exc.strerror}; training stopped after epoch {epoch + 1}, "
                               + (f"last.pt holds epoch {epoch}. Continue with --resume auto" if epoch else
                                  "nothing to resume yet. Then run again")) from exc

    # ------------------------------------------------------------------ interruption
    def skip_step(self, batch: dict[str, Any], epoch: int, step: int) -> None:
        """Called instead of :meth:`train_step` for the steps a mid-epoch resume skips; trainers
        that draw from other iterators per step (GLMC's re-weighted loader) advance them here."""

    def _stop_requested(self) -> bool:
        """A SIGTERM/SIGINT arrived (on any rank: the ranks agree, so they stop together)."""
        return all_reduce_max({"stop": float(self.stop.signum is not None)})["stop"] > 0

    def _save_partial(self, epoch: int, next_step: int, meters: MeterDict, seen: int,
                      elapsed: float) -> None:
        """Write ``last.pt`` in the middle of epoch ``epoch`` (``next_step`` steps done) and raise."""
        if self.run_dir:
            state = self.state_dict()  # epoch == the unfinished epoch; RNG after step next_step-1
            state["partial"] = {"step": next_step, "meters": meters_state(meters), "seen": seen,
                                "elapsed": elapsed, "grad_warns": [list(w) for w in self._grad_warns]}
            atomic_save(state, self.run_dir / "last.pt")
        raise TrainingInterrupted(self.stop.signum or 15, f"stopped by signal in epoch {epoch + 1} after "
                                  f"step {next_step}; last.pt saved. Continue with --resume auto")

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
                "loss": self.loss_fn.state_dict(), "epoch": self.start_epoch,
                "best": {"value": self.best, "epoch": self.best_epoch, "stale": self.stale_epochs},
                "rng": get_rng_state(), "skipped_batches": self.skipped_batches,
                "patterns_seen": self.patterns_seen, "wall_s": self.wall_s, **self.extra_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.loss_fn.load_state_dict(state["loss"])
        self.start_epoch = int(state["epoch"])
        self.best = float(state["best"]["value"])
        self.best_epoch = int(state["best"]["epoch"])
        self.stale_epochs = int(state["best"]["stale"])
        self.skipped_batches = int(state.get("skipped_batches", 0))
        self.patterns_seen = int(state.get("patterns_seen", 0))
        self.wall_s = float(state.get("wall_s", 0.0))
        set_rng_state(state["rng"])
        if self.writer:  # rows of epochs after the checkpoint (killed before last.pt) are redone
            self.writer.keep_epochs_upto(self.start_epoch)
        self._partial = state.get("partial")
        if self._partial:
            self._partial = {**self._partial, "rng": state["rng"], "loss": state["loss"]}


def freeze_except(model: nn.Module, keep: Callable[[str], bool]) -> int:
    """Freeze every parameter whose name fails ``keep`` (classifier re-training); returns #frozen."""
    n = 0
    for name, p in model.named_parameters():
        if not keep(name):
            p.requires_grad_(False)
            n += 1
    return n
