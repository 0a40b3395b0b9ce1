"""Objectives ``(outputs, batch) -> {"loss", components...}``, one file per method.

Members are imported explicitly so that ``@LOSSES.register`` runs on ``import loss``.
"""

import argparse
import inspect
from typing import Any

from loss.ce import CELoss, ce_kwargs
from loss.glmc import GLMCLoss, glmc_kwargs
from loss.icl import ICLLoss, icl_kwargs
from loss.registry import LOSSES


def build_loss(name: str, **kwargs: Any) -> Any:
    """``LOSSES.build(name, **kwargs)``: explicit keyword arguments, never an argparse namespace."""
    return LOSSES.build(name, **kwargs)


def loss_kwargs(name: str, args: argparse.Namespace, class_counts: Any, rule_matrix: Any) -> dict[str, Any]:
    """Explicit constructor kwargs of loss ``name``: its own flags (``args_to_kwargs``) plus the
    shared inputs it declares in its signature (``class_counts``, ``rule_matrix``, ``epochs``)."""
    cls = LOSSES.get(name)
    kwargs = dict(cls.args_to_kwargs(args))
    shared = {"class_counts": class_counts, "rule_matrix": rule_matrix, "epochs": args.epochs}
    params = inspect.signature(cls.__init__).parameters
    kwargs.update({k: v for k, v in shared.items() if k in params})
    return kwargs


__all__ = ["loss_kwargs", "LOSSES", "CELoss", "GLMCLoss", "ICLLoss", "build_loss", "ce_kwargs", "glmc_kwargs",
           "icl_kwargs"]
from loss.arb import ARBLoss, arb_kwargs  # noqa: E402,F401
from loss.gh import GHLoss, gh_kwargs  # noqa: E402,F401
from loss.ncl import NCLLoss, ncl_kwargs  # noqa: E402,F401
