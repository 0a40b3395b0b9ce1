"""Small building blocks shared by the frontends and heads: the 1-D residual block, cosine
classifiers, channel rounding and JSON-able configs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import ConfigError, DataError


def make_divisible(value: float, divisor: int = 4, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of ``divisor`` (never below ``min_value``,
    never more than 10 % below ``value``), the usual habit for width multipliers (MobileNet)."""
    min_value = divisor if min_value is None else min_value
    out = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out


def jsonable(obj: Any) -> Any:
    """Turn tuples/numpy scalars/tensors in a config into plain JSON types (lists, int, float)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        return [jsonable(v) for v in obj]
    return obj


def check_positive(name: str, value: float, where: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` > 0 (a clear message beats a shape error later)."""
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ConfigError(f"{where}: {name} must be a positive number, got {value!r}. "
                          f"Fix: pass a positive {name}")


def conv_same(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a stride-1 "same"-padded conv, with a fast path for length-1 maps.

    On a length-1 map, zero padding leaves only the centre tap, so the conv is a (grouped) matrix
    product. CPU conv kernels handle this shape poorly (a grouped conv at C=1024, K=8 runs ~2x
    slower than the matmul); the weight's other taps still receive an (all-zero) gradient, exactly
    as in the conv. Shapes: (B, C_in, T) → (B, C_out, T).
    """
    if x.shape[-1] != 1:
        return conv(x)
    k = conv.kernel_size[0]
    # (C_out, C_in / groups); squeeze is a view, so kernel 1 has no zero-filled gradient to build
    w = conv.weight.squeeze(-1) if k == 1 else conv.weight[:, :, k // 2]
    g = conv.groups
    if g == 1:
        out = F.linear(x.squeeze(-1), w, conv.bias)
    else:
        b = x.shape[0]
        # (G, O, I) @ (G, I, B): the weight's gradient comes out of bmm in the weight's own layout
        # (an einsum over "bgi,goi" returned it transposed and paid a 4·G·O·I-byte copy per step)
        out = torch.bmm(w.view(g, -1, w.shape[1]), x.view(b, g, -1).permute(1, 2, 0))
        out = out.permute(2, 0, 1).reshape(b, -1)
        if conv.bias is not None:
            out = out + conv.bias
    return out.unsqueeze(-1)


class ResBlock1d(nn.Module):
    """Residual 1-D block: (1×1 conv if channels change) → [conv3-BN-LeakyReLU-conv3-BN] + skip →
    LeakyReLU. Length is preserved (padding 1).

    Shapes: (B, C_in, T) → (B, C_out, T).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ConfigError(f"ResBlock1d: kernel_size must be odd for 'same' padding, got {kernel_size}. "
                              "Fix: use 1, 3, 5, ...")
        pad = kernel_size // 2
        self.pre = (nn.Identity() if in_channels == out_channels
                    else nn.Conv1d(in_channels, out_channels, 1, bias=False))
        self.conv1 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        out = F.leaky_relu(self.bn1(conv_same(self.conv1, x)), inplace=True)
        out = self.bn2(conv_same(self.conv2, out))
        return F.leaky_relu(out + x, inplace=True)


class GroupedResBlock1d(nn.Module):
    """K independent :class:`ResBlock1d` (C → C) applied to the SAME input, as one batched op.

    The first conv of every expert reads the same x, so the K first convs are ONE dense conv
    C → K·C (weights stacked along output channels; no K-fold copy of the input); the second
    convs are one grouped conv (groups=K); BatchNorm over K·C channels equals K separate BNs.
    Expert k owns output channels ``[k·C, (k+1)·C)`` of every weight.

    Shapes: (B, C, T) → (B, K, C, T).
    """

    def __init__(self, channels: int, num_blocks: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ConfigError(f"GroupedResBlock1d: kernel_size must be odd, got {kernel_size}. "
                              "Fix: use 1, 3, 5, ...")
        c, k, pad = channels, num_blocks, kernel_size // 2
        self.channels, self.num_blocks = c, k
        self.conv1 = nn.Conv1d(c, k * c, kernel_size, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(k * c)
        self.conv2 = nn.Conv1d(k * c, k * c, kernel_size, padding=pad, groups=k, bias=False)
        self.bn2 = nn.BatchNorm1d(k * c)
        # Same init as K separate ResBlock1d (PyTorch's default init depends on fan-in only, and
        # conv1's fan-in is C like a single block's), so both modes start alike.

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        out = F.leaky_relu(self.bn1(conv_same(self.conv1, x)), inplace=True)
        out = self.bn2(conv_same(self.conv2, out)).view(b, self.num_blocks, c, t)
        return F.leaky_relu(out + x.unsqueeze(1), inplace=True)


def cosine_logits(x: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    """Scaled cosine similarity ``s·cos(x, w_c)`` (Gidaris & Komodakis 2018, "Dynamic few-shot
    visual learning without forgetting"; the NormedLinear of LDAM/RIDE).

    Args:
        x: (B, D) features.
        weight: (D, C) class weights (one column per class).
        scale: s.

    Returns:
        (B, C) logits in [−s, s].
    """
    return scale * (F.normalize(x, dim=-1) @ F.normalize(weight, dim=0))


class CosineClassifier(nn.Module):
    """``s·cos(x, W)`` with a (D, C) weight. Shapes: (B, D) → (B, C)."""

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0) -> None:
        super().__init__()
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.randn(in_features, num_classes) / math.sqrt(in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cosine_logits(x, self.weight, self.scale)


def as_model_input(x: torch.Tensor, frontend: nn.Module, where: str) -> torch.Tensor:
    """(B, L) → (B, 1, L); accept (B, C, L), and (B, C, H, W) only for image frontends
    (``takes_images = True``, CIFAR-LT); anything else is a DataError naming the fix."""
    if x.dim() == 2:
        x = x.unsqueeze(1)
    if x.dim() == 3 or (x.dim() == 4 and getattr(frontend, "takes_images", False)):
        return x
    raise DataError(f"{where}: input must be (B, 1, L) or (B, L) (images (B, C, H, W) with an image "
                    f"frontend), got shape {tuple(x.shape)}. Fix: batch patterns as batch['x'] (B, 1, L)")


class PatternNorm(nn.Module):
    """Per-pattern standardisation: each sample's (x − mean) / (std + eps) over its channels and
    length. No statistics are carried between batches (BatchNorm's running mean/var are what made a
    model trained on augmented patterns — background, noise — see shifted inputs on clean ones), so
    training and evaluation apply the same transform. Shapes: (B, C, L) → (B, C, L)."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        std = x.std(dim=dims, keepdim=True, unbiased=False)
        return (x - mean) / (std + self.eps)


class LogDResample(nn.Module):
    """Resample patterns from a grid uniform in 2θ onto one uniform in ln sin θ (= ln(λ/2) − ln d):
    a change of the lattice scale, which multiplies every d-spacing by one factor, becomes a
    translation — the symmetry convolutions already have — and the ratios of d-spacings that
    define a crystal system become fixed distances. Linear interpolation at precomputed positions
    (buffers: stored in the checkpoint, no grid needed at load time). With ``n_out = n_in`` on the
    default grid (5–90°, 8,500 points) the high angles are sampled every ~0.04° 2θ and 5–10° is
    upsampled, each octave of d getting a quarter of the points.

    Shapes: (B, C, n_in) → (B, C, n_out).
    """

    def __init__(self, n_in: int, two_theta_min: float, two_theta_max: float,
                 n_out: int | None = None) -> None:
        super().__init__()
        if not (0.0 < two_theta_min < two_theta_max < 180.0) or n_in < 2:
            raise ConfigError(f"LogDResample: needs 0 < two_theta_min < two_theta_max < 180 and n_in >= 2, "
                              f"got {two_theta_min}, {two_theta_max}, {n_in}. Fix: pass the data's 2θ grid")
        n_out = int(n_out or n_in)
        step = (two_theta_max - two_theta_min) / n_in  # utils.grid.GridSpec's points
        theta = np.deg2rad((two_theta_min + step * np.arange(n_in)) / 2.0)
        u_in = np.log(np.sin(theta))
        pos = np.interp(np.linspace(u_in[0], u_in[-1], n_out), u_in, np.arange(n_in, dtype=np.float64))
        i0 = np.clip(np.floor(pos).astype(np.int64), 0, n_in - 2)
        self.n_in = int(n_in)
        self.register_buffer("i0", torch.from_numpy(i0), persistent=False)
        self.register_buffer("w", torch.from_numpy((pos - i0).astype(np.float32)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.n_in:
            raise ConfigError(f"LogDResample: built for {self.n_in} grid points, got {x.shape[-1]}. Fix: "
                              "evaluate on the grid the model was trained on")
        a, b = x[..., self.i0], x[..., self.i0 + 1]
        return a + (b - a) * self.w.to(x.dtype)


def input_norm_layer(kind: str | bool, channels: int, where: str) -> nn.Module:
    """The input normalisation of a frontend: ``"batch"`` (BatchNorm1d, the seed's), ``"pattern"``
    (:class:`PatternNorm`) or ``"none"``; ``True``/``False`` mean "batch"/"none"."""
    kind = {True: "batch", False: "none"}.get(kind, kind) if isinstance(kind, bool) else kind
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    if kind == "pattern":
        return PatternNorm()
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"{where}: input_norm must be 'batch', 'pattern' or 'none', got {kind!r}. "
                      "Fix: use one of them")
