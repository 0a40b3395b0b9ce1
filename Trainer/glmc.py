"""GLMC training step: two loaders, two views each, one λ, a global (MixUp) and a local (CutMix) mix.

F. Du et al., "Global and Local Mixture Consistency Cumulative Learning for Long-tailed Visual
Recognitions", CVPR 2023; spec docs/methods/glmc.md §2. Per step:

1. a uniform batch (the ``train`` loader: x^a_1, x^a_2, y^a) and a re-weighted batch (the
   ``train_rb`` loader, per-sample weight n_y^(−q) with replacement: x^b_1, x^b_2, y^b), the latter
   truncated to the uniform batch's size; the re-weighted iterator is re-created when exhausted and
   the epoch length is the uniform loader's;
2. one λ ~ Beta(α_mix, α_mix) shared by both mixes;
3. x_G = λ x^a_1 + (1−λ) x^b_1 (MixUp) and x_L = x^a_2 with one region replaced by x^b_2 (CutMix);
4. the model's training outputs on x_G and x_L go to the ``glmc`` loss (α_e·L_bal + (1−α_e)·L_rb
   + λ_MC·L_MC, α_e set by the loss's ``on_epoch_start``); one optimiser step.

Training accuracy (``train_sg_top1`` / ``train_cs_acc`` in ``log.jsonl``) is measured on the
global (MixUp) batch x_G as λ·[pred = y^a] + (1−λ)·[pred = y^b], the expected accuracy against a
label drawn with the mixing weights; it is lower than a clean batch's would be (a MixUp of two
patterns is harder to call), so compare it with validation only as a trend.

Changed for 1-D XRD patterns: the CutMix region of a (B, 1, L) batch is one 2θ segment of
ceil(L·(1−λ)) points with a uniform centre, clipped at the ends (the image version cuts a box of
side ratio sqrt(1−λ) per axis; kept for (B, C, H, W) inputs so CIFAR-LT runs follow the paper).
As in the paper's code the label weight stays λ even when the region is clipped;
``--area_corrected_lambda`` uses 1 − |region|/|pattern| for the local mix instead.
The views come from the loaders (``batch["views"]``, see ``datasets.views``): pattern
augmentations (2θ shift, intensity scale, noise, peak-width jitter) replace the image ones.

Determinism: λ and the CutMix centre come from torch's global CPU generator, whose state is in
every checkpoint; the re-weighted loader is re-seeded per epoch (``set_epoch(epoch)``, restart r of
an epoch: ``epoch + r·RESTART_STRIDE``), so resuming at an epoch boundary replays the same steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from Trainer.base import Trainer
from Trainer.evaluator import to_device
from Trainer.registry import TRAINERS
from utils.errors import ConfigError

RESTART_STRIDE = 1_000_003  # sampler "epochs" of the re-created iterators never meet real epochs


def mixup(xa: torch.Tensor, xb: torch.Tensor, lam: float) -> torch.Tensor:
    """Global mix λ·xa + (1−λ)·xb; any shape."""
    return lam * xa + (1.0 - lam) * xb


def cutmix_segment(length: int, lam: float, centre: int) -> tuple[int, int]:
    """1-D CutMix region [lo, hi): ceil(L·(1−λ)) points centred at ``centre``, clipped to [0, L]."""
    # 1e-9 absorbs float error: L = 10, λ = 0.7 gives 10·(1 − λ) = 3.0000000000000004 → 3, not 4
    cut = math.ceil(length * (1.0 - lam) - 1e-9)
    lo = centre - cut // 2
    return min(max(lo, 0), length), min(max(lo + cut, 0), length)


def cutmix(xa: torch.Tensor, xb: torch.Tensor, lam: float,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, float]:
    """Local mix: ``xa`` with one region (the same for the whole batch) taken from ``xb``.

    Args:
        xa, xb: (B, 1, L) patterns (1-D segment) or (B, C, H, W) images (box of side ratio
            sqrt(1−λ), half-widths by integer division, as in the CutMix reference code).
        lam: λ, the weight of ``xa``.
        generator: CPU generator for the centre (None: torch's global one).

    Returns:
        the mixed batch and the area-corrected λ (1 − region / size).
    """
    out = xa.clone()
    if xa.dim() == 4:
        h, w = xa.shape[-2:]
        ratio = math.sqrt(1.0 - lam)
        ch, cw = int(h * ratio), int(w * ratio)
        cy = int(torch.randint(h, (1,), generator=generator))
        cx = int(torch.randint(w, (1,), generator=generator))
        y0, y1 = min(max(cy - ch // 2, 0), h), min(max(cy + ch // 2, 0), h)
        x0, x1 = min(max(cx - cw // 2, 0), w), min(max(cx + cw // 2, 0), w)
        out[..., y0:y1, x0:x1] = xb[..., y0:y1, x0:x1]
        return out, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    n = xa.shape[-1]
    lo, hi = cutmix_segment(n, lam, int(torch.randint(n, (1,), generator=generator)))
    out[..., lo:hi] = xb[..., lo:hi]
    return out, 1.0 - (hi - lo) / n


def two_views(batch: dict[str, Any], loader: str) -> tuple[torch.Tensor, torch.Tensor]:
    views = batch.get("views")
    if not isinstance(views, list | tuple) or len(views) < 2:
        raise ConfigError(f"glmc: the '{loader}' loader gives no two views per sample. Fix: build the "
                          "loaders with builders.make_loaders and the glmc loss's plan (n_views = 2)")
    return views[0], views[1]


@TRAINERS.register("glmc")
class GLMCTrainer(Trainer):
    """:class:`Trainer` whose step is GLMC's (needs ``loaders["train_rb"]``, the re-weighted loader).

    Reads ``mix_alpha`` and ``area_corrected_lambda`` from the ``glmc`` loss.
    """

    def train_step(self, batch: dict[str, Any], epoch: int, step: int) -> dict[str, float]:
        rb = self._rb_batch(epoch, step)
        n = min(len(batch["y_sg"]), len(rb["y_sg"]))  # the re-weighted batch is truncated
        xa1, xa2 = (v[:n] for v in two_views(batch, "train"))
        xb1, xb2 = (v[:n] for v in two_views(rb, "train_rb"))
        a = self.loss_fn.mix_alpha
        lam = float(torch.distributions.Beta(torch.tensor(a), torch.tensor(a)).sample())
        x_g = mixup(xa1, xb1, lam)
        x_l, lam_area = cutmix(xa2, xb2, lam)
        lam_l = lam_area if self.loss_fn.area_corrected_lambda else lam
        targets = {"y_sg": batch["y_sg"][:n], "y_mix": rb["y_sg"][:n],
                   "lam_global": torch.tensor(lam, device=self.device),
                   "lam_local": torch.tensor(lam_l, device=self.device)}
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            outputs = {"global": self.model(x_g), "local": self.model(x_l)}
            losses = self.loss_fn(outputs, targets)
        stats = self.backward_step(losses, epoch, step)
        if stats:
            stats["lam"] = lam
        # training accuracy of the global (MixUp) view: λ·[pred = y^a] + (1 − λ)·[pred = y^b]
        return self.with_train_accuracy(stats, outputs["global"], targets, targets["y_mix"], lam)

    def skip_step(self, batch: dict[str, Any], epoch: int, step: int) -> None:
        """A mid-epoch resume replays the re-weighted draws of the skipped steps too."""
        self._rb_batch(epoch, step)

    def _rb_batch(self, epoch: int, step: int) -> dict[str, Any]:
        """Next re-weighted batch; a fresh iterator at each epoch's first step and when exhausted."""
        loader = self.loaders.get("train_rb")
        if loader is None:
            raise ConfigError("glmc: no 'train_rb' loader. Fix: build the loaders with "
                              "builders.make_loaders for --method glmc (its loss declares extra_loaders)")
        if step == 0 or getattr(self, "_rb_epoch", None) != epoch:
            self._rb_epoch, self._rb_restarts = epoch, 0
            self._rb_iter = self._new_rb_iter(loader, epoch)
        try:
            b = next(self._rb_iter)
        except StopIteration:
            self._rb_restarts += 1
            self._rb_iter = self._new_rb_iter(loader, epoch + self._rb_restarts * RESTART_STRIDE)
            b = next(self._rb_iter)
        return to_device(b, self.device)

    def _new_rb_iter(self, loader: Any, sampler_epoch: int) -> Iterator[dict[str, Any]]:
        self._set_epoch(loader, sampler_epoch)
        return iter(loader)
