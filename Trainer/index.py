"""The trainer of methods that learn nothing (``--method index``): one evaluation pass, no steps."""

from __future__ import annotations

import math
import time
from typing import Any

from loguru import logger

from Trainer.base import Trainer
from Trainer.registry import TRAINERS


@TRAINERS.register("index")
class EvaluateOnlyTrainer(Trainer):
    """``fit`` trains nothing: it evaluates the validation split once (one ``log.jsonl`` row, the
    monitored metric as ``best``), writes ``best.pt``/``last.pt`` (the model's state and the run's
    settings: a checkpoint that ``test.py --ckpt`` re-evaluates) and returns the test metrics of
    :meth:`Trainer.finish` (with ``lab_*`` when a lab rendering exists)."""

    def fit(self) -> dict[str, Any] | None:
        t0 = time.perf_counter()
        record: dict[str, Any] = {"epoch": 1}
        val = self.loaders.get("val")
        if val is not None:
            metrics = self.evaluate(val)
            record.update({f"val_{k}": v for k, v in metrics.items()})
            self.best = float(metrics.get(self.monitor, math.nan))
            logger.info(f"val {self.monitor} {self.best:.4f} cs {metrics.get('cs_acc', math.nan):.4f} "
                        "(no training: evaluation only)")
        self.best_epoch, self.start_epoch = 1, self.epochs  # nothing left to train or resume
        self.wall_s = time.perf_counter() - t0
        record.update(epoch_time_s=self.wall_s, wall_s=round(self.wall_s, 2), best=self.best,
                      best_epoch=1, patterns_seen=0, skipped_batches=0)
        if self.writer:
            self.writer.write(record)
        if self.run_dir:
            self._save_epoch(0, True)
        return self.finish()
