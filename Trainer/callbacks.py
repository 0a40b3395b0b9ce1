"""Callbacks: wandb and NNI (optional, imported lazily) — the Trainer never imports wandb or
nni itself."""

from __future__ import annotations

import netrc
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from loguru import logger

from metrics import gate_usage_by_cs
from utils import distributed as ddp
from utils.crystal import CRYSTAL_SYSTEMS, N_SG, SG_TO_CS

WANDB_HOST = "https://api.wandb.ai"


def _has_login(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(urlparse(host).hostname or "") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _reachable(host: str, timeout: float = 2.0) -> bool:
    url = urlparse(host)
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def choose_wandb_mode(environ: dict[str, str] | None = None) -> str:
    """``WANDB_MODE`` when the user set it; otherwise ``online`` only with a login (env key or
    ~/.netrc) and a reachable server within 2 s, else ``offline`` (never blocks on a login
    prompt or a dead network; ``wandb sync RUN_DIR/wandb/offline-run-*`` uploads later)."""
    env = os.environ if environ is None else environ
    if env.get("WANDB_MODE"):
        return env["WANDB_MODE"]
    host = env.get("WANDB_BASE_URL", WANDB_HOST)
    if not _has_login(host):
        logger.info("wandb: no login found, logging offline (wandb sync later)")
        return "offline"
    if not _reachable(host):
        logger.info(f"wandb: {host} not reachable, logging offline (wandb sync later)")
        return "offline"
    return "online"


def gate_by_cs_scalars(pred: dict[str, np.ndarray]) -> dict[str, float]:
    """``gate_by_cs/<system>/e<k>``: mean gate weight of expert k on the samples of each true
    crystal system (the numbers of the gate heatmap), from stacked predictions."""
    if "gate" not in pred or "y_sg" not in pred or pred["logits"].shape[1] != N_SG:
        return {}
    mean, n = gate_usage_by_cs(pred["gate"], SG_TO_CS[pred["y_sg"]])
    return {f"gate_by_cs/{cs}/e{e}": float(mean[i, e]) for i, cs in enumerate(CRYSTAL_SYSTEMS)
            if n[i] for e in range(mean.shape[1])}


class WandbCallback:
    """Logs, per epoch: every numeric key of the epoch record (each loss component ``train_l_*``,
    ``lr``, ``train_grad_norm``, validation accuracies incl. ``val_many_acc``/``val_medium_acc``/
    ``val_few_acc``, gate usage per expert ``val_gate_e*``), the gate usage per crystal system
    (``gate_by_cs/...``); at the end the test metrics as summary and the run's PNG plots.

    The mode comes from :func:`choose_wandb_mode`; ``WANDB_MODE=disabled`` turns it off (tests).
    """

    def __init__(self, project: str, run_dir: str | Path, config: dict[str, Any], name: str | None = None):
        import wandb  # optional dependency, imported only when --use_wandb is given

        mode = choose_wandb_mode()
        self.wandb = wandb
        self.run = wandb.init(project=project, dir=str(run_dir), config=config, name=name, mode=mode,
                              settings=wandb.Settings(silent=True, init_timeout=60))
        self.run_dir = Path(run_dir)
        self.step = 0

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        data = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        data.update(gate_by_cs_scalars(getattr(trainer, "last_pred", {}) or {}))
        self.step = int(record["epoch"])
        self.run.log(data, step=self.step)

    def log_images(self, paths: list[Path], step: int | None = None) -> None:
        imgs = {f"plots/{p.stem}": self.wandb.Image(str(p)) for p in paths if p.is_file()}
        if imgs:
            self.run.log(imgs, step=self.step if step is None else step)

    def on_fit_end(self, trainer: Any, test_metrics: dict[str, float]) -> None:
        self.run.summary.update({f"test_{k}": v for k, v in test_metrics.items()})

    def finish(self) -> None:
        self.run.finish()


def flatten_nni_parameters(params: dict[str, Any] | None) -> dict[str, Any]:
    """``{flag: value}`` from an NNI parameter dict. A nested choice arrives as
    ``{flag: {"_name": value, other_flag: value, ...}}`` (used where flags must change together,
    e.g. ``num_experts`` with ``head_experts``/``tail_experts``) and is flattened."""
    flat: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if isinstance(value, dict) and "_name" in value:
            rest = {k: v for k, v in value.items() if k != "_name"}
            flat.update({key: value["_name"], **flatten_nni_parameters(rest)})
        else:
            flat[key] = value
    return flat


def _finite_or_zero(value: Any) -> float:
    value = float(value)
    return value if np.isfinite(value) else 0.0


class NniCallback:
    """Reports an NNI trial's metric; ``import nni`` happens here, only when a trial runs.

    Metric: **validation SG top-1** (the Trainer's ``monitor`` on the split that selects
    ``best.pt``; the test split only when there is no validation split). Intermediate result: that
    epoch's value; final result: the best value of the run (``trainer.best``, i.e. best.pt's). Both
    are Python floats in [0, 1]; a non-finite value is reported as 0.0 (the worst score) because
    NNI cannot parse NaN. The test split never reaches the tuner.

    Attributes:
        parameters: the tuner's ``{flag: value}`` for this trial (nested choices flattened).
        experiment_id, trial_id: NNI's ids (``STANDALONE`` outside an experiment).
    """

    def __init__(self):
        import nni  # optional dependency, imported only inside an NNI trial

        self.nni = nni
        self.parameters = flatten_nni_parameters(nni.get_next_parameter())
        self.experiment_id, self.trial_id = nni.get_experiment_id(), nni.get_trial_id()

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        monitor = getattr(trainer, "monitor", "sg_top1")
        key = next((k for k in (f"val_{monitor}", f"test_{monitor}") if k in record), None)
        if key is not None and ddp.is_main():  # under torchrun one report per trial, from rank 0
            self.nni.report_intermediate_result(_finite_or_zero(record[key]))

    def on_fit_end(self, trainer: Any, test_metrics: dict[str, float]) -> None:
        if ddp.is_main():
            self.nni.report_final_result(_finite_or_zero(trainer.best))


class SnapshotCallback:
    """Keep the weights at given numbers of training patterns seen (``--snapshot_patterns``), for
    learning curves: at the end of the first epoch whose cumulative count reaches a milestone, the
    trainer's full state is written atomically to ``seen_<count>.pt`` in the run directory (the
    same format as ``best.pt``: ``test.py --ckpt`` reads it). Milestones are crossed at epoch ends,
    so the file name carries the exact count reached, not the milestone."""

    def __init__(self, milestones: list[int], run_dir: str | Path | None):
        self.milestones = sorted(int(m) for m in milestones if int(m) > 0)
        self.run_dir = Path(run_dir) if run_dir is not None else None

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        from utils.checkpoint import atomic_save
        now = int(record.get("patterns_seen", 0))
        prev = now - int(record.get("epoch_patterns", 0))
        due = [m for m in self.milestones if prev < m <= now]
        if due and self.run_dir is not None:
            path = self.run_dir / f"seen_{now}.pt"
            atomic_save(trainer.state_dict(), path)
            logger.info(f"snapshot for the learning curve ({', '.join(map(str, due))} patterns): {path}")
