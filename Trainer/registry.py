"""Registry of trainers: method-specific trainers override ``train_step`` only."""

from utils.registry import Registry

TRAINERS = Registry("trainer")
