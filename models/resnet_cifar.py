"""CIFAR ResNets as frontends, for checking the baselines on CIFAR-10/100-LT against their papers.

* ``resnet32``: K. He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, §4.2:
  a 3×3 conv (16 channels) and three stages of 5 basic blocks with 16 / 32 / 64 channels (strides
  1, 2, 2), option-A shortcuts (stride-2 subsampling + zero-padded channels, no parameters),
  global average pooling → h (64). 0.46 M parameters, the backbone of LDAM-DRW, MiSLAS, ARB-Loss,
  GLMC and NCL on CIFAR-LT. Kaiming-normal conv init, as in those code bases.
* ``resnet18_cifar``: the ResNet-18 of the contrastive CIFAR code bases (SimCLR / SDCLR / GH):
  3×3 stem with stride 1 and no max-pool, four stages of 2 basic blocks with 64…512 channels,
  projection shortcuts → h (512). 11.2 M parameters.

Input shape: the framework's frontends take x (B, C, L); these take CIFAR batches
x (B, 3, 32, 32) as the CIFAR reader makes them (``datasets.cifar.cifar_lt``), and also accept the
flattened (B, 3, H·W) form of a square image and single-channel images (B, 1, H, W) / (B, 1, H·W),
replicated to RGB (a 1-D pattern of square length passes too, as a grayscale image, which is only
useful for shape tests). Models hand 4-D batches to frontends with ``takes_images = True``.
``forward_features`` returns the last feature map flattened to (B, out_dim, H'·W') so that
``pool`` (mean over the last axis) keeps the frontend contract (B, C, T) → (B, C).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import check_positive, jsonable, make_divisible
from models.registry import FRONTENDS
from utils.errors import DataError


def as_image(x: torch.Tensor, in_channels: int, where: str) -> torch.Tensor:
    """(B, C, H, W) unchanged; (B, C, H·W) with a square H·W reshaped to (B, C, H, H); a
    single-channel image is replicated to ``in_channels`` (grayscale → RGB, as torchvision's
    ``Grayscale(num_output_channels=3)``)."""
    if x.dim() == 3 and x.shape[1] in (1, in_channels):
        side = math.isqrt(x.shape[-1])
        if side * side == x.shape[-1]:
            x = x.reshape(x.shape[0], x.shape[1], side, side)
    if x.dim() == 4 and x.shape[1] == 1 and in_channels > 1:
        x = x.expand(-1, in_channels, -1, -1)
    if x.dim() == 4 and x.shape[1] == in_channels:
        return x
    raise DataError(f"{where}: expected images (B, {in_channels}, H, W) or (B, {in_channels}, H*W) with "
                    f"a square H*W, got shape {tuple(x.shape)}. Fix: use an image reader such as "
                    "--data_format cifar100_lt (1-D patterns need --frontend_type restcn or vit)")


def _kaiming(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)


class BasicBlock(nn.Module):
    """conv3-BN-ReLU-conv3-BN + shortcut → ReLU. ``shortcut``: "A" (parameter-free) or "B" (1×1 conv)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.pad = stride, c_out - c_in
        self.proj: nn.Module | None = None
        if (stride != 1 or c_in != c_out) and shortcut == "B":
            self.proj = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            return self.proj(x)
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.pad > 0:  # option A: new channels are zeros, split evenly on both sides
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _CifarResNet(nn.Module):
    """Stem + stages of basic blocks + global average pooling (shared by both registered nets)."""

    name = ""
    takes_images = True  # models pass 4-D (B, C, H, W) batches through to this frontend

    def _build(self, in_channels: int, stem: int, widths: list[int], blocks: int, shortcut: str) -> None:
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU())
        layers, prev = [], stem
        for i, c in enumerate(widths):
            for j in range(blocks):
                layers.append(BasicBlock(prev, c, 2 if (i > 0 and j == 0) else 1, shortcut))
                prev = c
        self.blocks = nn.Sequential(*layers)
        self.out_dim = prev
        _kaiming(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or (B, C, H·W) → (B, out_dim, H'·W') (the last map, flattened)."""
        fmap = self.blocks(self.stem(as_image(x, self.in_channels, self.name)))
        return fmap.flatten(2)

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        """Global average: (B, C, T) → (B, C)."""
        return fmap.mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(x))


@FRONTENDS.register("resnet32")
class ResNet32(_CifarResNet):
    """ResNet-32 for 32×32 images (3 stages × 5 blocks, 16/32/64 channels, option-A shortcuts).

    Args:
        in_channels: image channels (3).
        width_mult: multiplies the channels (rounded to multiples of 4); 1.0 = 16/32/64.
        depth: 6n+2 (32 = ResNet-32, 20, 44, 56, 110 also work).

    Shapes: x (B, 3, 32, 32) (or (B, 3, 1024)) → h (B, out_dim), out_dim = 64·width_mult.
    """

    name = "resnet32"

    def __init__(self, in_channels: int = 3, width_mult: float = 1.0, depth: int = 32) -> None:
        super().__init__()
        check_positive("width_mult", width_mult, "ResNet32")
        check_positive("in_channels", in_channels, "ResNet32")
        if depth < 8 or (depth - 2) % 6:
            raise DataError(f"ResNet32: depth must be 6n+2 (20, 32, 44, ...), got {depth}. Fix: pass 32")
        self.in_channels = in_channels
        self.config = jsonable(dict(in_channels=in_channels, width_mult=width_mult, depth=depth))
        widths = [make_divisible(c * width_mult) for c in (16, 32, 64)]
        self._build(in_channels, widths[0], widths, (depth - 2) // 6, "A")


@FRONTENDS.register("resnet18_cifar")
class ResNet18Cifar(_CifarResNet):
    """CIFAR ResNet-18 (3×3 stem, no max-pool; 2 blocks × 64/128/256/512; 1×1-conv shortcuts).

    Args:
        in_channels: image channels (3).
        width_mult: multiplies the channels (rounded to multiples of 4); 1.0 = 64…512.

    Shapes: x (B, 3, 32, 32) (or (B, 3, 1024)) → h (B, out_dim), out_dim = 512·width_mult.
    """

    name = "resnet18_cifar"

    def __init__(self, in_channels: int = 3, width_mult: float = 1.0) -> None:
        super().__init__()
        check_positive("width_mult", width_mult, "ResNet18Cifar")
        check_positive("in_channels", in_channels, "ResNet18Cifar")
        self.in_channels = in_channels
        self.config = jsonable(dict(in_channels=in_channels, width_mult=width_mult))
        widths = [make_divisible(c * width_mult) for c in (64, 128, 256, 512)]
        self._build(in_channels, widths[0], widths, 2, "B")
