"""Seeded image augmentations in torch for the CIFAR-LT reader (no torchvision, no PIL).

Every random number is ``datasets.rendering.instrument.hash_uniform(seeds, stream, n)``: a pure
function of the
per-sample seed, so an image's augmentation does not depend on its batch, worker or device, and a
resumed run replays it (the framework's rule for patterns, applied to images).

* :func:`crop_flip`: the standard CIFAR training augmentation (He et al., CVPR 2016; LDAM-DRW,
  MiSLAS, ARB-Loss, GLMC): zero-pad 4 pixels, random 32×32 crop, horizontal flip with p = 0.5.
  Padding is black (0 in [0, 1] space, before normalisation), as torchvision's RandomCrop does.
* :func:`simclr_view`: the SimCLR CIFAR augmentation used by the contrastive long-tail code bases
  (SDCLR, GH): random resized crop (area 0.08–1, aspect 3/4–4/3), horizontal flip, colour jitter
  (brightness, contrast, saturation 0.4, hue 0.1) with p = 0.8, grayscale with p = 0.2.
  Differences from torchvision, by design: the crop box is clipped to the image instead of being
  re-drawn up to 10 times, and is resampled bilinearly without antialiasing; the jitter is applied
  in a fixed order (brightness, contrast, saturation, hue) and hue is a rotation of the chroma
  plane in YIQ space instead of a shift in HSV.

All functions take and return float images (B, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from datasets.rendering.instrument import hash_uniform

# ITU-R BT.601 luma (torchvision's grayscale) and the RGB ↔ YIQ transforms.
LUMA = (0.299, 0.587, 0.114)
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def _u(seeds: torch.Tensor, stream: int, device: torch.device) -> torch.Tensor:
    """(B,) uniforms in (0, 1) for one purpose."""
    return hash_uniform(seeds, stream, 1)[:, 0].to(device)


def gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) → (B, 1, H, W) luma."""
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def crop_flip(x: torch.Tensor, seeds: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Zero-pad ``pad`` pixels, random crop back to (H, W), flip with p = 0.5.

    Args:
        x: (B, C, H, W) images in [0, 1].
        seeds: (B,) int64 per-sample seeds.
        pad: padding on each side.
    """
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = (_u(seeds, 201, x.device) * (2 * pad + 1)).long().clamp_max(2 * pad)
    ox = (_u(seeds, 202, x.device) * (2 * pad + 1)).long().clamp_max(2 * pad)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(b, c, h, w + 2 * pad)
    out = torch.gather(xp, 2, rows)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(b, c, h, w)
    out = torch.gather(out, 3, cols)
    flip = _u(seeds, 203, x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def resized_crop_flip(x: torch.Tensor, seeds: torch.Tensor, scale: tuple[float, float] = (0.08, 1.0),
                      ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Random resized crop back to (H, W) (bilinear) and a horizontal flip with p = 0.5."""
    b = x.shape[0]
    dev = x.device
    area = scale[0] + (scale[1] - scale[0]) * _u(seeds, 211, dev)
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * _u(seeds, 212, dev)
    r = torch.exp(log_r)
    cw, ch = torch.sqrt(area * r).clamp(max=1.0), torch.sqrt(area / r).clamp(max=1.0)   # fractions
    cx = cw / 2 + (1 - cw) * _u(seeds, 213, dev)
    cy = ch / 2 + (1 - ch) * _u(seeds, 214, dev)
    sign = torch.where(_u(seeds, 215, dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = cw * sign, 2 * cx - 1
    theta[:, 1, 1], theta[:, 1, 2] = ch, 2 * cy - 1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def color_jitter(x: torch.Tensor, seeds: torch.Tensor, strength: tuple[float, float, float, float] =
                 (0.4, 0.4, 0.4, 0.1), p: float = 0.8) -> torch.Tensor:
    """Brightness, contrast, saturation factors in [1 − s, 1 + s] and a hue rotation of up to
    ±hue·2π, applied together with probability ``p`` per image."""
    dev, dt = x.device, x.dtype
    fb, fc, fs = ((1 - s) + 2 * s * _u(seeds, 221 + i, dev) for i, s in enumerate(strength[:3]))
    fh = (2 * _u(seeds, 224, dev) - 1) * strength[3]
    y = (x * fb.view(-1, 1, 1, 1)).clamp(0, 1)
    m = gray(y).mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - m) * fc.view(-1, 1, 1, 1) + m).clamp(0, 1)
    g = gray(y)
    y = ((y - g) * fs.view(-1, 1, 1, 1) + g).clamp(0, 1)
    ang = 2 * math.pi * fh
    cos, sin = torch.cos(ang), torch.sin(ang)
    rot = torch.zeros(x.shape[0], 3, 3, device=dev, dtype=dt)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    mat = _YIQ2RGB.to(dev, dt) @ rot @ _RGB2YIQ.to(dev, dt)                      # (B, 3, 3)
    y = torch.einsum("bij,bjhw->bihw", mat, y).clamp(0, 1)
    apply = _u(seeds, 225, dev) < p
    return torch.where(apply[:, None, None, None], y, x)


def random_grayscale(x: torch.Tensor, seeds: torch.Tensor, p: float = 0.2) -> torch.Tensor:
    apply = _u(seeds, 231, x.device) < p
    return torch.where(apply[:, None, None, None], gray(x).expand_as(x), x)


def simclr_view(x: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """SimCLR CIFAR view: resized crop + flip, colour jitter (p 0.8), grayscale (p 0.2)."""
    return random_grayscale(color_jitter(resized_crop_flip(x, seeds), seeds), seeds)


VIEW_AUGMENTS = {"standard": crop_flip, "simclr": simclr_view}
