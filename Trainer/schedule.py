"""Learning-rate schedule: the intent of the original code, as a pure function of (epoch, step).

The original XRD code warmed up to a hard-coded 0.15 (300× the stated lr), had a negative lr in
epoch 0, decayed on a fixed 180-epoch horizon whatever ``--epochs`` was, and could not switch
restarts off (docs/methods/icl.md, "Optimisation"). Here:

* linear warm-up from ``base_lr/warmup_steps`` to ``base_lr`` over ``warmup_epochs``;
* without ``adjust_lr_strategy``: cosine from ``base_lr`` to ``min_lr`` at the last epoch;
* with ``adjust_lr_strategy`` ("delay early decay"): cosine from ``base_lr`` to
  ``early_decay_target_lr`` until ``early_decay_ratio·epochs``, then cosine to ``min_lr`` at the
  last epoch. When the target exceeds ``base_lr`` phase 1 ramps *up* (the seed's AdamW recipe has
  base 5e-4 and target 1e-3); this is reported once by the composition root, not silently changed;
* with ``lr_restart_enabled``: after ``restart_patience`` epochs without a validation improvement
  (counted from ``restart_after`` on), the lr restarts at ``restart_factor·base_lr`` and follows a
  cosine to ``min_lr`` over the remaining epochs. Restart epochs are the schedule's only state and
  are saved in the checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def _cos(a: float, b: float, t: float) -> float:
    """Cosine interpolation from a (t=0) to b (t=1)."""
    t = min(max(t, 0.0), 1.0)
    return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass
class LRSchedule:
    base_lr: float
    epochs: int
    steps_per_epoch: int
    warmup_epochs: float = 1.0
    adjust_lr_strategy: bool = False
    early_decay_ratio: float = 0.2
    early_decay_target_lr: float = 1e-3
    min_lr: float = 1e-6
    lr_restart_enabled: bool = False
    restart_patience: int = 20
    restart_after: int = 20
    restart_factor: float = 0.5
    restarts: list[int] = field(default_factory=list)
    _stale: int = 0
    _best: float = -math.inf

    def _base_curve(self, e: float) -> float:
        warm = self.warmup_epochs
        if warm > 0 and e < warm:
            steps = max(1, round(warm * self.steps_per_epoch))
            k = math.floor(e * self.steps_per_epoch) + 1
            return self.base_lr * min(k, steps) / steps
        end = float(self.epochs)
        if self.adjust_lr_strategy:
            mid = max(warm, self.early_decay_ratio * self.epochs)
            if e < mid:
                return _cos(self.base_lr, self.early_decay_target_lr, (e - warm) / max(mid - warm, 1e-9))
            return _cos(self.early_decay_target_lr, self.min_lr, (e - mid) / max(end - mid, 1e-9))
        return _cos(self.base_lr, self.min_lr, (e - warm) / max(end - warm, 1e-9))

    def lr(self, epoch: int, step: int = 0) -> float:
        """Learning rate at ``step`` of ``epoch`` (pure given the recorded restarts)."""
        e = epoch + step / max(self.steps_per_epoch, 1)
        if self.restarts and epoch >= self.restarts[-1]:
            r = self.restarts[-1]
            return _cos(self.restart_factor * self.base_lr, self.min_lr,
                        (e - r) / max(self.epochs - r, 1e-9))
        return self._base_curve(e)

    def observe(self, epoch: int, metric: float) -> bool:
        """Record the validation metric after ``epoch``; returns True when a restart is scheduled
        for the next epoch."""
        if metric > self._best:
            self._best, self._stale = metric, 0
            return False
        self._stale += 1
        if (self.lr_restart_enabled and epoch + 1 >= self.restart_after
                and self._stale >= self.restart_patience and epoch + 1 < self.epochs):
            self.restarts.append(epoch + 1)
            self._stale = 0
            return True
        return False

    def state_dict(self) -> dict:
        return {"restarts": list(self.restarts), "stale": self._stale, "best": self._best}

    def load_state_dict(self, d: dict) -> None:
        self.restarts = [int(x) for x in d.get("restarts", [])]
        self._stale = int(d.get("stale", 0))
        self._best = float(d.get("best", -math.inf))

    def curve(self) -> list[float]:
        """Per-step lr over the whole run with the recorded restarts (for the plot)."""
        return [self.lr(e, s) for e in range(self.epochs) for s in range(self.steps_per_epoch)]
