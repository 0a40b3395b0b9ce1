"""NCL objective: NIL (balanced softmax) + NBOD (online distillation) with Hard Category Mining.

Li, Zhan, Zhang, Hu, Tan, Hu, Ding, Yang, "Nested Collaborative Learning for Long-Tailed Visual
Recognition", CVPR 2022 (reference code: github.com/Bazinga699/NCL, ``NIL_NBOD``). Spec:
docs/methods/ncl.md §1. With expert logits z_k (B, C), labels y and train counts n:

    ẑ_k = z_k + log n                                           (balanced logits, NIL)
    S(x) = top-N_hcm of z_0 with z_0[y] := +∞                    (hard categories, from expert 0's
           RAW logits; always contains y; one mask m for all experts; no gradient role)
    z̃_k = ẑ_k ⊙ m               ("multiply", reference code: unselected logits become 0 and still
                                   enter the softmax)   or   ẑ_k on S(x) only ("restrict", paper)
    L_NIL  = Σ_k [ r_ce·CE(ẑ_k, y) + r_hcm·CE(z̃_k, y) ]          (batch-mean CE, summed over experts)
    D_α(u_1..u_K) = α/(K−1) · Σ_i Σ_{j≠i} KL(softmax(u_j) ‖ softmax(u_i))   (D = 0 for K = 1)
           KL batch-mean; the student's log-prob is log(softmax(u_i) + 1e-9); no temperature and
           no stop-gradient on either side (as in the reference)
    L_NBOD = D_α(ẑ) + D_α_hcm(z̃)
    L = L_NIL + L_NBOD (+ β_con·Σ_k InfoNCE_k with the optional MoCo branch of models/ncl.py)

Counts are clamped to ≥ 1 before the log (empty space groups would give log 0 = −∞).

Numerics (decision): the target's log-prob is ``log_softmax`` (KL's ``p log p`` computed as
``exp(lp)·lp``), equal to the reference's ``kl_div`` where p > 0 but without its ∞·0 = NaN gradient
when a probability underflows to 0; in "restrict" mode the classes outside S(x) are excluded from
the softmax and the KL sums (so their terms are exactly 0 with finite gradients).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from loss.registry import LOSSES
from utils.errors import ConfigError, fail

Tensors = dict[str, torch.Tensor]
HCM_MODES = ("multiply", "restrict")
STUDENT_EPS = 1e-9       # reference code: log(softmax + 1e-9) on the student side
DEFAULT_HCM_FRACTION = 0.3  # N_hcm ≈ 0.3·C (CIFAR-100: 30; C = 230 → 69)


def hcm_mask(z0: torch.Tensor, y: torch.Tensor, n_hcm: int) -> torch.Tensor:
    """Hard-category mask: the target plus the ``n_hcm − 1`` highest-scoring other classes.

    Args:
        z0: (B, C) raw logits of expert 0 (only their order is used; no gradient).
        y: (B,) int64 targets.
        n_hcm: |S(x)| (1..C).

    Returns:
        (B, C) bool, ``n_hcm`` True per row, always True at the target.
    """
    scores = z0.detach().float().scatter(1, y[:, None], float("inf"))
    idx = scores.topk(n_hcm, dim=1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter(1, idx, True)


def nil_ce(u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ_k CE(u_k, y), each CE a batch mean. u: (B, K, C); y: (B,) → scalar."""
    b, k, _ = u.shape
    return F.cross_entropy(u.transpose(1, 2), y[:, None].expand(b, k), reduction="none").sum(1).mean()


def _probs(u: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(p, log p) of softmax over the last dim; with a (B, C) mask only over the masked-in classes
    (outside: p = 0 and log p := 0, so that p·log p terms vanish with finite gradients)."""
    if mask is None:
        lp = F.log_softmax(u, dim=-1)
        return lp.exp(), lp
    m = mask[:, None, :]
    lp = torch.where(m, F.log_softmax(u.masked_fill(~m, float("-inf")), dim=-1), 0.0)
    return torch.where(m, lp.exp(), 0.0), lp


def nbod(u: torch.Tensor, alpha: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """D_α(u_1..u_K) = α/(K−1) Σ_i Σ_{j≠i} KL(p_j ‖ p_i), KL batch-mean, student log(p_i + 1e-9).

    Computed in O(B·K·C) instead of a K² loop: Σ_i Σ_{j≠i} Σ_c p_j (log p_j − log q_i)
    = Σ_j Σ_c p_j [(K−1)·log p_j − (Σ_i log q_i − log q_j)] with log q_i = log(p_i + 1e-9).

    Args:
        u: (B, K, C) logits of the K experts.
        alpha: the diversity factor α.
        mask: optional (B, C) bool: restrict every distribution to these classes ("restrict" HCM).

    Returns:
        Scalar (0 when K = 1).
    """
    b, k, _ = u.shape
    if k == 1:
        return u.new_zeros(())
    p, lp = _probs(u, mask)
    lq = torch.log(p + STUDENT_EPS)
    others = lq.sum(dim=1, keepdim=True) - lq                        # Σ_{i≠j} log q_i, (B, K, C)
    total = (p * ((k - 1) * lp - others)).sum()
    return alpha / (k - 1) * total / b


@LOSSES.register("ncl")
class NCLLoss(nn.Module):
    """NIL + NBOD with hard category mining over K experts (+ optional MoCo InfoNCE).

    Args:
        class_counts: (C,) training counts n (raw, clamped to ≥ 1 for the log).
        n_hcm: hard categories per sample N_hcm (None: round(0.3·C), 69 for C = 230).
        hcm_mode: "multiply" (reference code, default) or "restrict" (the paper's softmax on S(x)).
        alpha: α of D on the balanced logits (DIVERSITY_FACTOR, 0.6).
        alpha_hcm: α of D on the hard-category logits (DIVERSITY_FACTOR_HCM, 0.6).
        ce_ratio: r_ce (CE_RATIO, 1.0). hcm_ratio: r_hcm (HCM_RATIO, 1.0).
        con_ratio: β_con of the MoCo InfoNCE (CON_RATIO, 0 = off; needs the model's MoCo branch).
        temperature: τ of the InfoNCE (0.2).

    Forward inputs: outputs with "expert_logits" (B, K, C) (and "moco_logits" (B, K, 1 + Q)
    cosine similarities, positive first, when con_ratio > 0); batch with "y_sg" (B,).
    Returns: {"loss", "l_nil", "l_nil_ce", "l_nil_hcm", "l_nbod", "l_nbod_hcm", "l_con"} (components
    detached).
    """

    summary = "NCL (CVPR 2022): K full experts, balanced NIL + NBOD distillation, hard categories"
    default_model = "ncl"
    trainer = "ncl"

    def __init__(self, class_counts: Any, n_hcm: int | None = None, hcm_mode: str = "multiply",
                 alpha: float = 0.6, alpha_hcm: float = 0.6, ce_ratio: float = 1.0, hcm_ratio: float = 1.0,
                 con_ratio: float = 0.0, temperature: float = 0.2) -> None:
        super().__init__()
        counts = np.asarray(class_counts, dtype=np.float64).reshape(-1)
        if counts.size == 0 or not np.all(np.isfinite(counts)) or np.any(counts < 0):
            raise fail(ConfigError, "class_counts", f"{counts.size} values, not all finite and >= 0",
                       "pass the (C,) training counts of the data set")
        c = counts.size
        n_hcm = round(DEFAULT_HCM_FRACTION * c) if n_hcm is None or n_hcm <= 0 else int(n_hcm)
        if not 1 <= n_hcm <= c:
            raise fail(ConfigError, "--ncl_hcm_n", f"{n_hcm} hard categories for {c} classes",
                       f"pass a value in 1..{c} (0 = round(0.3·C))")
        if hcm_mode not in HCM_MODES:
            raise fail(ConfigError, "--ncl_hcm_mode", f"unknown mode '{hcm_mode}'",
                       f"use one of {', '.join(HCM_MODES)}")
        for flag, val in (("--ncl_alpha", alpha), ("--ncl_alpha_hcm", alpha_hcm),
                          ("--ncl_ce_ratio", ce_ratio), ("--ncl_hcm_ratio", hcm_ratio),
                          ("--ncl_con_ratio", con_ratio)):
            if not (np.isfinite(val) and val >= 0):
                raise fail(ConfigError, flag, f"{val} is not a finite value >= 0", "pass e.g. 0.6 or 1.0")
        if not temperature > 0:
            raise fail(ConfigError, "--ncl_temperature", f"{temperature} is not positive", "pass e.g. 0.2")
        log_counts = torch.as_tensor(np.log(np.maximum(counts, 1.0)), dtype=torch.float32)
        self.register_buffer("log_counts", log_counts)
        self.n_hcm, self.hcm_mode = n_hcm, hcm_mode
        self.alpha, self.alpha_hcm, self.ce_ratio, self.hcm_ratio = alpha, alpha_hcm, ce_ratio, hcm_ratio
        self.con_ratio, self.temperature = con_ratio, temperature

    def on_epoch_start(self, epoch: int) -> None:
        """NCL has no epoch-dependent schedule (the reference's ``update`` is a no-op)."""

    def hard_logits(self, balanced: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """z̃ from ẑ (B, K, C) and the (B, C) HCM mask."""
        if self.hcm_mode == "multiply":
            return balanced * mask[:, None, :].to(balanced.dtype)
        return balanced.masked_fill(~mask[:, None, :], float("-inf"))

    def contrastive(self, outputs: Tensors) -> torch.Tensor:
        """Σ_k InfoNCE_k = Σ_k CE(sims_k / τ, 0), batch mean."""
        sims = outputs.get("moco_logits")
        if sims is None:
            raise ConfigError("NCL: --ncl_con_ratio > 0 needs the model's MoCo similarities "
                              "('moco_logits'). Fix: train model 'ncl' (built with a MoCo branch when "
                              "--ncl_con_ratio > 0) with two views per sample, or set --ncl_con_ratio 0")
        # the positive key is entry 0 of every expert's similarity row
        target = torch.zeros(sims.shape[0], dtype=torch.long, device=sims.device)
        return nil_ce(sims.float() / self.temperature, target)

    def forward(self, outputs: Tensors, batch: Tensors) -> Tensors:
        z = outputs["expert_logits"].float()                                     # (B, K, C)
        if z.dim() != 3 or z.shape[-1] != self.log_counts.numel():
            raise ConfigError(f"NCL: expert_logits must be (B, K, {self.log_counts.numel()}), got "
                              f"{tuple(z.shape)}. Fix: use the 'ncl' model with the data's class count")
        y = batch["y_sg"]
        balanced = z + self.log_counts
        mask = hcm_mask(z[:, 0], y, self.n_hcm)
        hard = self.hard_logits(balanced, mask)
        l_ce, l_hcm = nil_ce(balanced, y), nil_ce(hard, y)
        l_nbod = nbod(balanced, self.alpha)
        l_nbod_hcm = nbod(hard, self.alpha_hcm, mask if self.hcm_mode == "restrict" else None)
        l_nil = self.ce_ratio * l_ce + self.hcm_ratio * l_hcm
        loss = l_nil + l_nbod + l_nbod_hcm
        l_con = self.contrastive(outputs) if self.con_ratio > 0 else loss.new_zeros(())
        loss = loss + self.con_ratio * l_con
        return {"loss": loss, "l_nil": l_nil.detach(), "l_nil_ce": l_ce.detach(), "l_nil_hcm": l_hcm.detach(),
                "l_nbod": l_nbod.detach(), "l_nbod_hcm": l_nbod_hcm.detach(), "l_con": l_con.detach()}

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("ncl")
        g.add_argument("--ncl_num_experts", type=int, default=3, help="K experts (full backbones)")
        g.add_argument("--ncl_share_frontend", action="store_true",
                       help="deviation: one backbone shared by the experts (they differ in classifiers)")
        g.add_argument("--ncl_classifier", default="linear", choices=["linear", "cosine"],
                       help="experts' classifier (CIFAR: linear; large-scale configs: cosine)")
        g.add_argument("--ncl_cosine_scale", type=float, default=16.0, help="scale of the cosine classifier")
        g.add_argument("--ncl_hcm_n", type=int, default=0,
                       help="hard categories N_hcm per sample (0 = round(0.3·C): 69 for 230 classes)")
        g.add_argument("--ncl_hcm_mode", default="multiply", choices=list(HCM_MODES),
                       help="multiply: reference code (unselected logits → 0); restrict: softmax on S(x)")
        g.add_argument("--ncl_alpha", type=float, default=0.6, help="NBOD factor α on all classes")
        g.add_argument("--ncl_alpha_hcm", type=float, default=0.6, help="NBOD factor α on hard categories")
        g.add_argument("--ncl_ce_ratio", type=float, default=1.0, help="weight r_ce of the NIL CE")
        g.add_argument("--ncl_hcm_ratio", type=float, default=1.0, help="weight r_hcm of the hard CE")
        g.add_argument("--ncl_con_ratio", type=float, default=0.0,
                       help="weight of the MoCo InfoNCE (0 = off; > 0 builds the MoCo branch, two views)")
        g.add_argument("--ncl_temperature", type=float, default=0.2, help="InfoNCE temperature τ")
        g.add_argument("--ncl_moco_dim", type=int, default=64, help="MoCo projection dimension d")
        g.add_argument("--ncl_moco_queue", type=int, default=1024, help="MoCo queue length Q per expert")
        g.add_argument("--ncl_moco_momentum", type=float, default=0.999, help="EMA momentum of key backbones")
        g.add_argument("--ncl_moco_key_mlp", default="frozen", choices=["frozen", "ema"],
                       help="key MLP: frozen random copy (reference code) or EMA-updated")


def ncl_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Explicit NCLLoss keyword arguments (the root adds ``class_counts``)."""
    return {"n_hcm": args.ncl_hcm_n, "hcm_mode": args.ncl_hcm_mode, "alpha": args.ncl_alpha,
            "alpha_hcm": args.ncl_alpha_hcm, "ce_ratio": args.ncl_ce_ratio, "hcm_ratio": args.ncl_hcm_ratio,
            "con_ratio": args.ncl_con_ratio, "temperature": args.ncl_temperature}


def ncl_n_views(args: argparse.Namespace) -> int:
    """Views per training sample: 2 (query + key) for the MoCo variant, else 1 (builders.loader_plan)."""
    return 2 if args.ncl_con_ratio > 0 else 1


NCLLoss.args_to_kwargs = staticmethod(ncl_kwargs)
NCLLoss.n_views = staticmethod(ncl_n_views)
