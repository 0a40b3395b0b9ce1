"""Registries of the model package: frontends (x → features) and heads/models (x → outputs)."""

from utils.registry import Registry

FRONTENDS = Registry("frontend")
MODELS = Registry("model")
