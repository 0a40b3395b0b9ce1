"""Projection head and the GH model (frontend + linear classifier + projector).

The projector is the SimCLR-style MLP of the Geometric Harmonization code base (Y. Zhou et al.,
"Combating Representation Learning Disparity with Geometric Harmonization", NeurIPS 2023; spec
docs/methods/gh.md §2): Linear(D→D) → BN → ReLU → Linear(D→d, no bias) → BN(d), output not
normalised (the GH loss normalises what it needs).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import as_model_input, check_positive, jsonable
from models.registry import FRONTENDS, MODELS
from utils.crystal import N_SG
from utils.errors import ConfigError


class Projector(nn.Module):
    """Linear(D→D) → BN → ReLU → Linear(D→d, no bias) → BN(d).  Shapes: (B, D) → (B, d)."""

    def __init__(self, in_dim: int, out_dim: int = 128) -> None:
        super().__init__()
        check_positive("in_dim", in_dim, "Projector")
        check_positive("out_dim", out_dim, "Projector")
        self.net = nn.Sequential(nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim), nn.ReLU(inplace=True),
                                 nn.Linear(in_dim, out_dim, bias=False), nn.BatchNorm1d(out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


@MODELS.register("gh_linear")
class GHLinear(nn.Module):
    """Frontend f → h; linear classifier on h; projector g on h (training only).

    Args:
        frontend: FRONTENDS name. frontend_kwargs: its keyword arguments.
        num_classes: classifier outputs C (230 space groups; 10/100 on CIFAR).
        proj_dim: projection dimension d (must be ≥ the GH target dimension K, see loss/gh.py).
        detach_classifier: the classifier sees h.detach() — an online linear probe, so that in
            GH's label-free mode the encoder is trained by the self-supervised losses only.

    Shapes: x (B, 1, L) / (B, L) patterns or (B, 3, H, W) images → {"logits": (B, C), "features":
    (B, D) unit-norm h, "proj": (B, d) (in training mode only; evaluation needs logits only)}.
    """

    name = "gh_linear"

    def __init__(self, frontend: str = "restcn", frontend_kwargs: dict | None = None,
                 num_classes: int = N_SG, proj_dim: int = 128, detach_classifier: bool = False) -> None:
        super().__init__()
        check_positive("num_classes", num_classes, "GHLinear")
        self.frontend = FRONTENDS.build(frontend, **(frontend_kwargs or {}))
        self.config = jsonable(dict(name=self.name, frontend=frontend, frontend_kwargs=self.frontend.config,
                                    num_classes=num_classes, proj_dim=proj_dim,
                                    detach_classifier=detach_classifier))
        self.h_dim = self.frontend.out_dim
        self.detach_classifier = bool(detach_classifier)
        self.fc = nn.Linear(self.h_dim, num_classes)
        self.projector = Projector(self.h_dim, proj_dim)

    def classifier_parameters(self) -> list[nn.Parameter]:
        return list(self.fc.parameters())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = as_model_input(x, self.frontend, self.name)
        h = self.frontend(x)
        out = {"logits": self.fc(h.detach() if self.detach_classifier else h),
               "features": F.normalize(h, dim=-1)}
        if self.training:
            out["proj"] = self.projector(h)
        return out


def gh_model_kwargs(args: argparse.Namespace) -> dict:
    """Head kwargs of :class:`GHLinear` from the ``gh`` flag group (declared by ``loss/gh.py``)."""
    try:
        return dict(proj_dim=args.gh_proj_dim, detach_classifier=args.gh_mode == "ssl")
    except AttributeError as exc:
        raise ConfigError(f"model 'gh_linear' reads the gh flags ({exc}). Fix: train it with --method gh, "
                          "which declares them") from exc


GHLinear.args_to_kwargs = staticmethod(gh_model_kwargs)
