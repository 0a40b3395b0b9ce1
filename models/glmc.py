"""GLMC network: frontend → h, two linear classifiers and a projector/predictor pair.

F. Du et al., "Global and Local Mixture Consistency Cumulative Learning for Long-tailed Visual
Recognitions", CVPR 2023 (spec: docs/methods/glmc.md §2)::

    h = frontend(x)           (B, D)
    o    = fc(h)              (B, C)   conventional head, trained with the uniform-target loss
    o^cb = fc_cb(h)           (B, C)   re-balanced head, the ONLY head used at inference
    z = g(h)                  (B, 128) projector, one Linear (no BN / ReLU, as in the paper's code)
    p = q(z)                  (B, 128) predictor, one Linear

``logits`` is always o^cb (so the framework's evaluator, which reads ``logits`` only, scores the
inference head); training mode also returns ``logits_fc`` (o), ``proj`` (z) and ``pred`` (p).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import as_model_input, check_positive, jsonable
from models.registry import FRONTENDS, MODELS
from utils.crystal import N_SG


@MODELS.register("glmc")
class GLMCNet(nn.Module):
    """Frontend + fc + fc_cb + projector g + predictor q.

    Args:
        frontend: FRONTENDS name. frontend_kwargs: its keyword arguments.
        num_classes: C.
        proj_dim: width of z and p (128 in the paper).

    Shapes: x (B, 1, L) (or (B, L); (B, 3, H, W) for an image frontend) →
    eval: ``{"logits": (B, C), "features": (B, D) unit h}``; train: additionally ``logits_fc``
    (B, C), ``proj`` (B, proj_dim), ``pred`` (B, proj_dim).
    """

    name = "glmc"

    def __init__(self, frontend: str = "restcn", frontend_kwargs: dict | None = None,
                 num_classes: int = N_SG, proj_dim: int = 128) -> None:
        super().__init__()
        check_positive("num_classes", num_classes, "GLMCNet")
        check_positive("proj_dim", proj_dim, "GLMCNet")
        self.frontend = FRONTENDS.build(frontend, **(frontend_kwargs or {}))
        self.config = jsonable(dict(name=self.name, frontend=frontend, frontend_kwargs=self.frontend.config,
                                    num_classes=num_classes, proj_dim=proj_dim))
        self.h_dim = self.frontend.out_dim
        self.fc = nn.Linear(self.h_dim, num_classes)
        self.fc_cb = nn.Linear(self.h_dim, num_classes)
        self.projector = nn.Linear(self.h_dim, proj_dim)
        self.predictor = nn.Linear(proj_dim, proj_dim)

    def classifier_parameters(self) -> list[nn.Parameter]:
        """The inference head's parameters (for classifier re-training with the rest frozen)."""
        return list(self.fc_cb.parameters())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = as_model_input(x, self.frontend, self.name)
        h = self.frontend(x)
        out = {"logits": self.fc_cb(h), "features": F.normalize(h, dim=-1)}
        if self.training:  # fc, g and q are training-only (the paper infers with fc_cb alone)
            z = self.projector(h)
            out.update(logits_fc=self.fc(h), proj=z, pred=self.predictor(z))
        return out
