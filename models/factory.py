"""``create_model`` / ``create_frontend``: build registered networks from explicit keyword arguments
(timm's habit), with unknown keyword arguments reported as :class:`ConfigError`.

A model's ``config`` holds its name and every constructor argument (JSON-able), so
``create_model(**model.config)`` followed by ``load_state_dict`` rebuilds it from a checkpoint.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from models.registry import FRONTENDS, MODELS
from utils.crystal import N_SG
from utils.errors import ConfigError


def _check_kwargs(kind: str, name: str, cls: Any, kwargs: dict[str, Any]) -> None:
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ConfigError(f"{kind} '{name}': unknown arguments {unknown}. Fix: use only "
                          f"{sorted(params)}")


def create_frontend(name: str, **kwargs: Any) -> nn.Module:
    """Build a frontend (x (B, C, L) → h (B, out_dim)) by registry name."""
    cls = FRONTENDS.get(name)
    _check_kwargs("frontend", name, cls, kwargs)
    return cls(**kwargs)


def create_model(name: str, frontend: str = "restcn", frontend_kwargs: dict[str, Any] | None = None,
                 num_classes: int = N_SG, **head_kwargs: Any) -> nn.Module:
    """Build a model (x → outputs dict) by registry name.

    Args:
        name: MODELS name ("icl_moe", "linear").
        frontend: FRONTENDS name ("restcn", "vit").
        frontend_kwargs: the frontend's keyword arguments (e.g. ``{"width_mult": 0.5}``).
        num_classes: number of classes.
        **head_kwargs: the model's own keyword arguments (e.g. ``num_experts``, ``mask_mode``).
    """
    cls = MODELS.get(name)
    FRONTENDS.get(frontend)  # unknown frontend → KeyError listing the valid names
    _check_kwargs("model", name, cls, head_kwargs)
    _check_kwargs("frontend", frontend, FRONTENDS.get(frontend), frontend_kwargs or {})
    return cls(frontend=frontend, frontend_kwargs=dict(frontend_kwargs or {}), num_classes=num_classes,
               **head_kwargs)
