"""ResTcn-Lite: a strided stem and four residual stages, the CPU default frontend.

The seed's ResTcn (``models.restcn``) runs its first residual blocks on the full 8,500-point
pattern with 8–16 channels (at width 0.25): little arithmetic, but many memory-bound passes
(conv, BatchNorm, activation, pooling, forward and backward) over B·C·8,500 values, followed by
13 blocks of nearly equal cost. This frontend reduces the pattern at once:

    x (B, 1, L) → input norm → stem → pool → 4 × [ResBlock1d → pool] → (B, C, T) → mean over T → h

* input norm: each pattern standardised on its own by default (see ``input_norm``).

* stem: a convolution with stride ``stem_stride`` and a kernel of ``stem_kernel`` strides
  (``stem_kernel·stem_stride`` grid points), computed as space-to-depth (each stride of the
  pattern becomes ``stem_stride`` input channels) followed by a stride-1 convolution — the same
  function as ``Conv1d(1, C, k·s, stride=s)``, but a shape CPU kernels run several times faster,
  forward and backward. Default stride 8, kernel 3: every output sees 24 points (0.24°) and
  steps by 0.08°; powder peaks are 0.05–0.3° wide (FWHM), so the 8 sub-samples of each step, which
  are separate input channels of the stem, tell the learned filters where inside a step a peak
  sits. Then BatchNorm, LeakyReLU and a stride-4 max pool.
* stages: a residual block and a stride-``pools[i]`` pool each (max pooling in the first,
  which keeps sharp peaks; average after). With the defaults L = 8,500 goes
  1,063 → 265 → 66 → 16 → 4 → 1, so the heads (e.g. ICL's layer3) see a length-1 map and take
  their matrix-product fast path (``models.layers.conv_same``).
* widths: stages 128, 256, 512, 1,024 channels at ``width_mult`` 1 (32 … 256 at the CPU recipe's
  0.25; the stem has half the first stage's), so ``out_dim`` equals ResTcn's at the same
  ``width_mult`` and every head fits both.

FLOPs, training/inference speed and the accuracy comparison with ResTcn: BENCHMARKS.md
(``python -m benchmarks.bench_frontends``).

Shapes: ``forward_features`` (B, in_channels, L) → (B, out_dim, T); ``pool`` (B, C, T) → (B, C);
``forward`` (B, in_channels, L) → (B, out_dim). Any L ≥ 1 works: the input is zero-padded to a
multiple of the stride, pools shrink their window to a shorter map and skip a length-1 one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import LogDResample, ResBlock1d, check_positive, input_norm_layer, jsonable, make_divisible
from models.registry import FRONTENDS
from utils.errors import ConfigError

BASE_CHANNELS = (128, 256, 512, 1024)   # stage widths at width_mult 1 (out_dim = ResTcn's 1024)
POOLS = (4, 4, 4, 4)
INPUT_AXES = ("two_theta", "log_d")


class Pool1d(nn.Module):
    """Stride-``k`` max or average pool over non-overlapping windows (a trailing remainder is
    dropped, as ``max_pool1d``'s floor mode does); a window longer than the map shrinks to it and a
    length-1 map passes. Reshape + ``amax``/``mean``: on CPU faster than ``max_pool1d``, which also
    builds an index tensor for its backward. Shapes: (B, C, T) → (B, C, T // k)."""

    def __init__(self, kind: str, k: int) -> None:
        super().__init__()
        if kind not in ("max", "avg") or int(k) < 1:
            raise ConfigError(f"Pool1d: kind must be 'max' or 'avg' and k >= 1, got {kind!r}, {k}")
        self.kind, self.k = kind, int(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = min(self.k, x.shape[-1])
        if k < 2:
            return x
        n = x.shape[-1] // k
        win = x[..., : n * k].unflatten(-1, (n, k))
        return win.amax(dim=-1) if self.kind == "max" else win.mean(dim=-1)

    def extra_repr(self) -> str:
        return f"{self.kind}, kernel={self.k}, stride={self.k}"


class StridedStem(nn.Module):
    """``Conv1d(C_in, C_out, kernel·stride, stride=stride)`` (zero padding of ``(kernel//2)``
    strides each side) as space-to-depth + stride-1 conv. Shapes: (B, C_in, L) →
    (B, C_out, ceil(L / stride))."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel: int) -> None:
        super().__init__()
        self.stride = int(stride)
        self.conv = nn.Conv1d(in_channels * self.stride, out_channels, kernel, padding=kernel // 2,
                              bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        s = self.stride
        if n % s:
            x = F.pad(x, (0, s - n % s))
        # (B, C, L/s, s) → (B, C·s, L/s): channel c·s + j holds sample j of every stride
        x = x.view(b, c, -1, s).transpose(2, 3).reshape(b, c * s, -1)
        return self.conv(x)


@FRONTENDS.register("restcn_lite")
class ResTcnLite(nn.Module):
    """Strided-stem residual TCN (see the module docstring).

    Args:
        in_channels: input channels (1 = intensity only).
        width_mult: multiplies the stage widths ``base_channels`` (rounded to multiples of 4).
        stem_stride: grid points per stem output (the early length reduction).
        stem_kernel: stem kernel, in strides (odd).
        stem_pool: max-pool factor after the stem.
        pools: pool factor after each stage (one per stage).
        base_channels: stage widths at ``width_mult`` 1 (as many as ``pools``); the stem has half
            the first stage's.
        n_max_pool: the first ``n_max_pool`` stage pools are max pools, the rest average pools.
        dropout: dropout before the last stage.
        position_channel: append the grid position (−1 … 1 from the first to the last point) as
            an input channel (CoordConv): convolutions are translation-equivariant, but in a
            diffraction pattern the absolute 2θ of a peak (its d-spacing) is the information.
        input_axis: ``"two_theta"`` (the grid as given) or ``"log_d"``: first resample onto a grid
            uniform in ln sin θ (:class:`models.layers.LogDResample`), where a change of the
            lattice scale is a shift; needs ``grid``.
        grid: ``(n_points, two_theta_min, two_theta_max)`` of the data (``input_axis="log_d"``).
        input_norm: ``"pattern"`` (each pattern standardised on its own,
            ``models.layers.PatternNorm``; the default), ``"batch"`` (BatchNorm1d on the raw input,
            as ResTcn) or ``"none"``. Why pattern: training renders every pattern with noise and
            background and evaluation renders them clean, so an input BatchNorm normalises clean
            patterns with the running statistics of augmented ones; measured in BENCHMARKS.md
            ("Input normalisation").
    """

    def __init__(self, in_channels: int = 1, width_mult: float = 1.0, stem_stride: int = 8,
                 stem_kernel: int = 3, stem_pool: int = 4, pools: Sequence[int] = POOLS,
                 base_channels: Sequence[int] = BASE_CHANNELS, n_max_pool: int = 1,
                 dropout: float = 0.1, input_norm: str = "pattern", position_channel: bool = False,
                 input_axis: str = "two_theta", grid: Sequence[float] | None = None) -> None:
        super().__init__()
        where = "ResTcnLite"
        for name, val in (("width_mult", width_mult), ("in_channels", in_channels),
                          ("stem_stride", stem_stride), ("stem_kernel", stem_kernel),
                          ("stem_pool", stem_pool)):
            check_positive(name, val, where)
        if stem_kernel % 2 == 0:
            raise ConfigError(f"{where}: stem_kernel must be odd, got {stem_kernel}. Fix: use 1, 3, 5, ...")
        if len(pools) != len(base_channels) or not pools or min(pools) < 1:
            raise ConfigError(f"{where}: pools {list(pools)} and base_channels {list(base_channels)} must "
                              "be non-empty, of equal length, pools >= 1. Fix: one pool factor per stage")
        self.config = jsonable(dict(
            in_channels=in_channels, width_mult=width_mult, stem_stride=stem_stride,
            stem_kernel=stem_kernel, stem_pool=stem_pool, pools=list(pools),
            base_channels=list(base_channels), n_max_pool=n_max_pool, dropout=dropout,
            input_norm=input_norm, position_channel=bool(position_channel), input_axis=input_axis,
            grid=list(grid) if grid is not None else None))
        self.position_channel = bool(position_channel)
        if input_axis not in INPUT_AXES:
            raise ConfigError(f"{where}: input_axis must be one of {INPUT_AXES}, got {input_axis!r}")
        if input_axis == "log_d" and (grid is None or len(grid) != 3):
            raise ConfigError(f"{where}: input_axis 'log_d' needs grid = (n_points, two_theta_min, "
                              f"two_theta_max), got {grid!r}. Fix: build it through builders.model_kwargs")
        self.resample = (LogDResample(int(grid[0]), float(grid[1]), float(grid[2]))
                         if input_axis == "log_d" else nn.Identity())
        chans = [make_divisible(c * width_mult) for c in base_channels]
        stem_ch = make_divisible(chans[0] / 2)
        self.channels = (stem_ch, *chans)
        self.out_dim = chans[-1]
        self.input_norm = input_norm_layer(input_norm, in_channels, where)
        stem_in = in_channels + int(self.position_channel)
        self.stem = nn.Sequential(StridedStem(stem_in, stem_ch, stem_stride, stem_kernel),
                                  nn.BatchNorm1d(stem_ch), nn.LeakyReLU(inplace=True),
                                  Pool1d("max", stem_pool))
        layers: list[nn.Module] = []
        prev = stem_ch
        for i, (c, p) in enumerate(zip(chans, pools, strict=True)):
            if i == len(chans) - 1 and dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers += [ResBlock1d(prev, c), Pool1d("max" if i < n_max_pool else "avg", p)]
            prev = c
        self.blocks = nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, L) → feature map (B, out_dim, T); T = 1 for L = 8,500."""
        x = self.input_norm(self.resample(x))
        if self.position_channel:  # where on the grid each point lies: -1 (first) .. 1 (last)
            ramp = torch.linspace(-1.0, 1.0, x.shape[-1], device=x.device, dtype=x.dtype)
            x = torch.cat([x, ramp.expand(x.shape[0], 1, -1)], dim=1)
        return self.blocks(self.stem(x))

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        """Global average over length: (B, C, T) → (B, C)."""
        return fmap.mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(x))


def restcn_lite_kwargs(args) -> dict:
    """Keyword arguments of :class:`ResTcnLite` from the flags (``--width_mult``, ``--stem_stride``,
    ``--input_norm``)."""
    return dict(width_mult=args.width_mult, stem_stride=args.stem_stride, input_norm=args.input_norm,
                position_channel=getattr(args, "position_channel", False),
                input_axis=getattr(args, "input_axis", "two_theta"))


ResTcnLite.args_to_kwargs = staticmethod(restcn_lite_kwargs)
