"""Callbacks: wandb (optional, imported lazily) — the Trainer never imports wandb itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from loguru import logger


class WandbCallback:
    """Logs every epoch record (losses, lr, grad norm, accuracies) and the run's PNG plots.

    Offline mode is chosen automatically when there is no API key (never blocks on a login);
    ``WANDB_MODE=disabled`` turns it off completely (tests).
    """

    def __init__(self, project: str, run_dir: str | Path, config: dict[str, Any], name: str | None = None):
        import wandb  # optional dependency, imported only when --use_wandb is given

        if not os.environ.get("WANDB_API_KEY") and os.environ.get("WANDB_MODE") is None:
            os.environ["WANDB_MODE"] = "offline"
            logger.info("wandb: no API key found, logging offline (wandb sync later)")
        self.wandb = wandb
        self.run = wandb.init(project=project, dir=str(run_dir), config=config, name=name,
                              settings=wandb.Settings(silent=True))
        self.run_dir = Path(run_dir)

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        self.run.log({k: v for k, v in record.items() if isinstance(v, (int, float))},
                     step=int(record["epoch"]))

    def log_images(self, paths: list[Path], step: int | None = None) -> None:
        imgs = {p.stem: self.wandb.Image(str(p)) for p in paths if p.is_file()}
        if imgs:
            self.run.log(imgs, step=step)

    def on_fit_end(self, trainer: Any, test_metrics: dict[str, float]) -> None:
        self.run.summary.update({f"test_{k}": v for k, v in test_metrics.items()})

    def finish(self) -> None:
        self.run.finish()
