"""Registry of objectives: ``LOSSES.build(name, class_counts=..., **hyperparameters)``."""

from utils.registry import Registry

LOSSES = Registry("loss")
