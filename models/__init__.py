"""models package: frontends (x → h) and models (x → outputs dict), built by name.

Explicit imports so that every member registers itself on ``import models``.
"""

from models import glmc, linear, moe, restcn, restcn_lite, vit  # noqa: F401  (registration side effects)
from models.factory import create_frontend, create_model
from models.gate import gate_prior
from models.registry import FRONTENDS, MODELS

__all__ = ["FRONTENDS", "MODELS", "create_frontend", "create_model", "gate_prior"]
from models import ncl, projector, resnet_cifar  # noqa: E402,F401  (NCL, GH models; CIFAR ResNets)
