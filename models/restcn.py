"""ResTcn: the 13-block residual 1-D CNN frontend of the XRD ICL code (phys-moe, "CODE").

Pattern (B, 1, L) → 13 × [ResBlock1d → stride-2 pool] → (B, C_last, T) → mean over T → h (B, C_last).
With L = 8500 the length goes 8500 → 4250 → … → 2 → 1, so T = 1 and the final mean is a no-op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import ResBlock1d, check_positive, jsonable, make_divisible
from models.registry import FRONTENDS

# Output channels of the 13 residual blocks at width_mult = 1 (CODE's ResTcn).
BASE_CHANNELS = (32, 32, 64, 128, 128, 256, 256, 512, 512, 1024, 1024, 1024, 1024)
N_MAX_POOL = 4          # the first four pools are max pools (keep sharp peaks), the rest average
DROPOUT_BEFORE = (10, 11, 12)   # 0-based indices of the blocks preceded by dropout (last three)


class _Pool(nn.Module):
    """Stride-2 pool (kernel 2, floor) that leaves a length-1 map alone.

    Floor pooling takes 8500 to exactly 1 after 13 pools; skipping length-1 maps lets any input
    length through (short inputs reach length 1 early, long ones are averaged by ``pool``).
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < 2:
            return x
        if self.kind == "max":
            return F.max_pool1d(x, 2, 2)
        return F.avg_pool1d(x, 2, 2)

    def extra_repr(self) -> str:
        return f"{self.kind}, kernel=2, stride=2"


@FRONTENDS.register("restcn")
class ResTcn(nn.Module):
    """Residual temporal CNN frontend (CODE's ResTcn without its final Linear).

    Args:
        in_channels: input channels (1 = intensity only).
        width_mult: multiplies every block's channels (rounded to multiples of 4); the output
            dimension ``out_dim`` = round(1024·width_mult). 1.0 = the original 32…1024 net.
        dropout: dropout before each of the last three blocks (CODE: 0.1).
        input_norm: apply BatchNorm1d on the raw input, as CODE does (learned affine; on top of the
            dataset's own intensity scaling, which is a dataset property).

    Shapes:
        ``forward_features``: (B, in_channels, L) → (B, out_dim, T) with T = 1 for L ≤ 16383.
        ``pool``: (B, C, T) → (B, C) (mean over T).
        ``forward``: (B, in_channels, L) → (B, out_dim).
    """

    def __init__(self, in_channels: int = 1, width_mult: float = 1.0, dropout: float = 0.1,
                 input_norm: bool = True) -> None:
        super().__init__()
        check_positive("width_mult", width_mult, "ResTcn")
        check_positive("in_channels", in_channels, "ResTcn")
        self.config = jsonable(dict(in_channels=in_channels, width_mult=width_mult, dropout=dropout,
                                    input_norm=input_norm))
        chans = [make_divisible(c * width_mult) for c in BASE_CHANNELS]
        self.channels = tuple(chans)
        self.out_dim = chans[-1]
        self.input_norm = nn.BatchNorm1d(in_channels) if input_norm else nn.Identity()
        layers: list[nn.Module] = []
        prev = in_channels
        for i, c in enumerate(chans):
            if i in DROPOUT_BEFORE:
                layers.append(nn.Dropout(dropout))
            layers.append(ResBlock1d(prev, c))
            layers.append(_Pool("max" if i < N_MAX_POOL else "avg"))
            prev = c
        self.blocks = nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, L) → feature map (B, out_dim, T) before the final global pooling."""
        return self.blocks(self.input_norm(x))

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        """Global average over length: (B, C, T) → (B, C)."""
        return fmap.mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(x))
