"""Plain classifier: frontend → dropout → Linear(h_dim → num_classes), the cross-entropy baseline's
model (and the backbone of the re-weighting / logit-adjustment baselines)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import as_model_input, check_positive, jsonable
from models.registry import FRONTENDS, MODELS
from utils.crystal import N_SG
from utils.errors import ConfigError


@MODELS.register("linear")
class LinearClassifier(nn.Module):
    """Frontend + linear head.

    Args:
        frontend: FRONTENDS name. frontend_kwargs: its keyword arguments.
        num_classes: output classes (230 space groups).
        dropout: dropout on h before the linear layer.

    Shapes: x (B, 1, L) (or (B, L); images (B, 3, H, W) with an image frontend such as resnet32)
    → {"logits": (B, num_classes), "features": (B, h_dim) h with unit norm (for contrastive
    baselines and embeddings plots)}.
    """

    name = "linear"

    def __init__(self, frontend: str = "restcn", frontend_kwargs: dict | None = None,
                 num_classes: int = N_SG, dropout: float = 0.0) -> None:
        super().__init__()
        check_positive("num_classes", num_classes, "LinearClassifier")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"LinearClassifier: dropout must be in [0, 1), got {dropout}. "
                              "Fix: pass a probability")
        self.frontend = FRONTENDS.build(frontend, **(frontend_kwargs or {}))
        self.config = jsonable(dict(name=self.name, frontend=frontend,
                                    frontend_kwargs=self.frontend.config, num_classes=num_classes,
                                    dropout=dropout))
        self.h_dim = self.frontend.out_dim
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.h_dim, num_classes)

    def classifier_parameters(self) -> list[nn.Parameter]:
        """The linear head's parameters (for classifier re-training with the rest frozen)."""
        return list(self.fc.parameters())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = as_model_input(x, self.frontend, self.name)
        h = self.frontend(x)
        return {"logits": self.fc(self.dropout(h)), "features": F.normalize(h, dim=-1)}
