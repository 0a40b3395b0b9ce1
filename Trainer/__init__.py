"""Layer 3: the training loop. Method-specific trainers override ``train_step`` only."""

from Trainer.base import NonFiniteLossError, Trainer, freeze_except
from Trainer.evaluator import Evaluator
from Trainer.registry import TRAINERS
from Trainer.schedule import LRSchedule

__all__ = ["Evaluator", "LRSchedule", "NonFiniteLossError", "TRAINERS", "Trainer", "freeze_except"]
