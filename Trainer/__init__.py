"""Layer 3: the training loop. Method-specific trainers override ``train_step`` only."""

from Trainer.base import NonFiniteLossError, Trainer, freeze_except
from Trainer.evaluator import Evaluator
from Trainer.glmc import GLMCTrainer
from Trainer.interrupt import TrainingInterrupted
from Trainer.moe import MoETrainer
from Trainer.registry import TRAINERS
from Trainer.schedule import LRSchedule

__all__ = ["Evaluator", "GLMCTrainer", "LRSchedule", "MoETrainer", "NonFiniteLossError", "TRAINERS",
           "Trainer", "TrainingInterrupted", "freeze_except"]
from Trainer.arb import ARBTrainer  # noqa: E402,F401
from Trainer.gh import GHTrainer  # noqa: E402,F401
from Trainer.index import EvaluateOnlyTrainer  # noqa: E402,F401
from Trainer.ncl import NCLTrainer  # noqa: E402,F401
