"""1-D Vision Transformer frontend (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words") on
patches of the diffraction pattern, as in the XRD ICL code's ViT_Frontend.

Length handling (decision): the input is zero-padded on the right (after input normalisation,
where 0 is the batch mean) to a multiple of ``patch_size``; 8500 / 50 = 170 patches need no
padding. The learned position embedding has ``ceil(seq_len / patch_size)`` entries; an input with
another number of patches gets the embedding linearly interpolated (so any length works, but the
model is best used at the length it was trained on).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import check_positive, jsonable
from models.registry import FRONTENDS
from utils.errors import ConfigError


class _Block(nn.Module):
    """Pre-norm transformer block; attention through ``scaled_dot_product_attention`` so CUDA picks
    a fused (flash / memory-efficient) kernel. Shapes: (B, N, D) → (B, N, D)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)          # each (B, H, N, D/H)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, n, d)))
        return x + self.mlp(self.norm2(x))


@FRONTENDS.register("vit")
class ViT1d(nn.Module):
    """ViT frontend: patches → transformer → CLS token or mean of patch tokens → LayerNorm →
    Linear → h.

    Args:
        in_channels: input channels.
        seq_len: the input length the position embedding is made for (8500 for the default grid).
        patch_size / embed_dim / depth / num_heads / mlp_ratio: as in ViT (defaults: the XRD
            documentation's 50 / 256 / 6 / 8 / 4).
        use_cls_token: pool with a CLS token (else mean over patch tokens; the CLI's default).
        dropout: dropout in attention, MLP and residual branches.
        out_dim: dimension of h (1024 to match ResTcn).
        input_norm: BatchNorm1d on the raw input (as ResTcn; CODE's ViT has none).

    Shapes:
        ``forward_features``: (B, in_channels, L) → (B, out_dim, 1) (h as a length-1 map, so the
        experts' residual stage applies to every frontend alike).
        ``pool``: (B, C, T) → (B, C). ``forward``: (B, in_channels, L) → (B, out_dim).
    """

    def __init__(self, in_channels: int = 1, seq_len: int = 8500, patch_size: int = 50,
                 embed_dim: int = 256, depth: int = 6, num_heads: int = 8, mlp_ratio: float = 4.0,
                 use_cls_token: bool = False, dropout: float = 0.1, out_dim: int = 1024,
                 input_norm: bool = True) -> None:
        super().__init__()
        for name, val in dict(in_channels=in_channels, seq_len=seq_len, patch_size=patch_size,
                              embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                              mlp_ratio=mlp_ratio, out_dim=out_dim).items():
            check_positive(name, val, "ViT1d")
        if embed_dim % num_heads:
            raise ConfigError(f"ViT1d: embed_dim {embed_dim} is not divisible by num_heads "
                              f"{num_heads}. Fix: choose --vit_embed_dim a multiple of --vit_num_heads")
        self.config = jsonable(dict(
            in_channels=in_channels, seq_len=seq_len, patch_size=patch_size, embed_dim=embed_dim,
            depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, use_cls_token=use_cls_token,
            dropout=dropout, out_dim=out_dim, input_norm=input_norm))
        self.patch_size = patch_size
        self.out_dim = out_dim
        self.use_cls_token = use_cls_token
        self.input_norm = nn.BatchNorm1d(in_channels) if input_norm else nn.Identity()
        self.patch_embed = nn.Conv1d(in_channels, embed_dim, patch_size, stride=patch_size)
        n_patches = math.ceil(seq_len / patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if use_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[_Block(embed_dim, num_heads, mlp_ratio, dropout)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, out_dim)

    def _pos(self, n: int) -> torch.Tensor:
        """(1, n, D) position embedding, interpolated when n differs from the trained length."""
        if n == self.pos_embed.shape[1]:
            return self.pos_embed
        return F.interpolate(self.pos_embed.transpose(1, 2), size=n, mode="linear",
                             align_corners=False).transpose(1, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(x)
        rem = x.shape[-1] % self.patch_size
        if rem:
            x = F.pad(x, (0, self.patch_size - rem))
        tok = self.patch_embed(x).transpose(1, 2)               # (B, N, D)
        tok = tok + self._pos(tok.shape[1])
        if self.use_cls_token:
            tok = torch.cat([self.cls_token.expand(tok.shape[0], -1, -1), tok], dim=1)
        tok = self.norm(self.blocks(self.pos_drop(tok)))
        pooled = tok[:, 0] if self.use_cls_token else tok.mean(dim=1)
        return self.head(pooled).unsqueeze(-1)                  # (B, out_dim, 1)

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(x))
