"""ICL objective (scheme2) for the rule-gated mixture of experts on space groups.

Paper: "Enhancing Mixture of Experts with Independent and Collaborative Learning for Long-Tail
Visual Recognition", IJCAI 2025; XRD reference code github.com/w1u2d3i4/phys-moe ("CODE").
Spec: docs/methods/icl.md. Written from the formulas, not from that code.

    L = λ_dol·L_dol + λ_col·L_col + λ_hier·(L_sys + L_sg) + λ_scl·L_scl  (+ optional CIFAR extras)

* L_dol = (1/K) Σ_k ℓ_k(o_k, y): CE for head experts, focal (1−p_t)^γ·CE for tail experts.
* L_col = (1/K) Σ_k KL(softmax(o) ‖ softmax(o_k)), o the unmasked gate-weighted ensemble. CODE
  does not detach o, so L_col also pulls the ensemble (and the gate) towards the experts; that is
  the default here, ``col_detach_ensemble`` makes o a fixed target.
* L_sys = CE(cs_logits, y_cs); L_sg = CE(o with every group outside the TRUE crystal system set to
  −1e9, y). ``outputs["logits"]`` (masked by the PREDICTED system) is never trained on.
  Ablation switches (defaults = the method as published): ``train_mask_mode`` "soft" trains L_sg
  on the two-level distribution log p_cs + log softmax-within-system(o) (what ``--mask_mode soft``
  predicts with), "none" on the unmasked o; ``cs_logit_adjust`` τ trains L_sys with the
  logit-adjusted CE(cs_logits + τ·log π_cs, y_cs) of Menon et al., "Long-tail learning via logit
  adjustment", ICLR 2021 (τ = 1 is the balanced softmax of Ren et al., NeurIPS 2020), so that the
  raw CS scores used at inference estimate a class-balanced posterior; ``sg_logit_adjust`` does
  the same for L_sg with the space-group prior π (counts clamped at 1); ``tail_logit_adjust`` τ_t
  trains the tail experts with the logit-adjusted CE(o_k + τ_t·log π, y) instead of focal loss, so
  that their raw scores lean towards rare groups (τ_t = 2: the "inverse-prior" expert of SADE, Zhang
  et al. NeurIPS 2022, and of Balanced Product of Experts, Sanchez Aimar et al. CVPR 2023);
  ``dol_logit_adjust`` τ_d computes every expert's L_dol term (CE or focal) on o_k + τ_d·log π, so
  that the experts' raw scores, like the ensemble's under ``sg_logit_adjust``, are balanced.
* L_scl: physics-constrained contrastive loss (``loss.scl``), only with ``use_contrast``.

Only ``loss_scheme="scheme2"`` exists; CODE's other schemes are undocumented and are not guessed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from loss.components import (
    balanced_logits,
    ce_per_sample,
    focal_from_ce,
    kl_per_sample,
    mask_by_true_cs,
)
from loss.icl_extras import (
    HardNegativeMiner,
    add_extras_args,
    diversity_loss,
    extras_kwargs,
    mutual_distillation_loss,
    parallel_circuit_loss,
)
from loss.registry import LOSSES
from loss.scl import SCL_VARIANTS, scl_seed, scl_soft
from utils.crystal import N_SG, per_system, soft_cs_mask
from utils.errors import ConfigError, RuleMatrixError, fail

LOSS_SCHEMES = ("scheme2",)
TRAIN_MASK_MODES = ("hard", "soft", "none")
Tensors = dict[str, torch.Tensor]


def parse_id_list(text: str, flag: str) -> tuple[int, ...]:
    """``"0,1,2,3"`` → ``(0, 1, 2, 3)``; an empty string gives ``()``."""
    try:
        return tuple(int(t) for t in str(text).replace(" ", "").split(",") if t != "")
    except ValueError:
        raise fail(ConfigError, flag, f"'{text}' is not a comma-separated list of expert ids",
                   "pass e.g. 0,1,2,3") from None


@LOSSES.register("icl")
class ICLLoss(nn.Module):
    """Independent (L_dol) + collaborative (L_col) + hierarchical (L_sys + L_sg) + contrastive loss.

    Args:
        class_counts: (230,) training counts per space group (balanced-softmax re-training).
        rule_matrix: (230, 230) space-group similarity in [0, 1] (L_scl).
        lambda_dol, lambda_col, lambda_hier, lambda_scl: term weights (CODE defaults).
        disable_col: drop L_col (reported as 0).
        col_detach_ensemble: treat the ensemble as a constant target in L_col.
        use_contrast: add λ_scl·L_scl (the seed's ``--use_contrast_scheme2``); otherwise l_scl = 0.
        scl_variant: "seed" (CODE, unbounded below) or "soft" (bounded SupCon with weights R).
        scl_temperature, scl_threshold: τ and the R threshold for seed positives.
        head_experts, tail_experts: expert ids trained with CE / with focal loss; together they must
            be exactly {0..K−1} for the K experts the model outputs.
        focal_gamma: γ of the tail experts' focal loss.
        tail_logit_adjust: τ_t > 0 replaces the tail experts' focal loss by CE(o_k + τ_t·log π, y).
        dol_logit_adjust: τ_d > 0 computes each expert's CE / focal term on o_k + τ_d·log π
            (the tail experts' CE(o_k + τ_t·log π) when τ_t > 0 too).
        loss_scheme: only "scheme2".
        lambda_par, lambda_mutual, lambda_div, lambda_hnm: weights of the CIFAR extras (0 = off).
        div_epochs: the diversity term is active while epoch < div_epochs.
        hnm_momentum, hnm_topk, hnm_temperature: hard-negative mining settings.
        retrain_epochs: during the last N epochs (epoch ≥ epochs − N, 0-based) L_dol becomes the
            balanced-softmax CE(o_k + log n, y) for every expert; ``retrain_active`` tells
            ``Trainer.moe.MoETrainer`` to freeze everything but the expert classifiers.
        epochs: total number of epochs (required when retrain_epochs > 0).

    Forward inputs: outputs with "ensemble_logits" (B,230), "cs_logits" (B,7), "expert_logits"
    (B,K,230) and, for L_scl / hard negatives, "features" (B,D); hard negatives also read "logits"
    (B,230) for the confusion matrix (no gradient; :meth:`update_memory`, called by the training
    loop after each step, updates the miner). Batch with "y_sg" (B,), "y_cs" (B,).
    Returns {"loss", "l_dol", "l_col", "l_sys", "l_sg", "l_hier", "l_scl"} plus "l_par",
    "l_mutual", "l_div", "l_hnm" for each extra whose weight is > 0; components are detached.
    """

    summary = "ICL, the main method: crystal-system branch + rule-gated 8-expert mixture (IJCAI 2025)"
    default_model = "icl_moe"  # the model a method trains unless --model says otherwise
    trainer = "icl"  # Trainer.moe.MoETrainer: gate usage, update_memory, re-training freeze

    def __init__(self, class_counts: Any, rule_matrix: Any, lambda_dol: float = 0.5,
                 lambda_col: float = 0.3, disable_col: bool = False, col_detach_ensemble: bool = False,
                 lambda_hier: float = 1.5, lambda_scl: float = 0.2, use_contrast: bool = False,
                 scl_variant: str = "seed", scl_temperature: float = 0.07, scl_threshold: float = 0.8,
                 head_experts: Sequence[int] = (0, 1, 2, 3), tail_experts: Sequence[int] = (4, 5, 6, 7),
                 focal_gamma: float = 2.0, loss_scheme: str = "scheme2", lambda_par: float = 0.0,
                 lambda_mutual: float = 0.0, lambda_div: float = 0.0, div_epochs: int = 0,
                 lambda_hnm: float = 0.0, hnm_momentum: float = 0.9, hnm_topk: int = 7,
                 hnm_temperature: float = 0.07, retrain_epochs: int = 0, epochs: int | None = None,
                 train_mask_mode: str = "hard", cs_logit_adjust: float = 0.0,
                 sg_logit_adjust: float = 0.0, tail_logit_adjust: float = 0.0,
                 dol_logit_adjust: float = 0.0) -> None:
        super().__init__()
        if loss_scheme not in LOSS_SCHEMES:
            raise fail(ConfigError, "--loss_scheme", f"unknown loss scheme '{loss_scheme}'",
                       f"use one of: {', '.join(LOSS_SCHEMES)}")
        if train_mask_mode not in TRAIN_MASK_MODES:
            raise fail(ConfigError, "--train_mask_mode", f"unknown mode '{train_mask_mode}'",
                       f"use one of: {', '.join(TRAIN_MASK_MODES)}")
        if scl_variant not in SCL_VARIANTS:
            raise fail(ConfigError, "--scl_variant", f"unknown variant '{scl_variant}'",
                       f"use one of: {', '.join(SCL_VARIANTS)}")
        if scl_temperature <= 0 or hnm_temperature <= 0:
            raise fail(ConfigError, "--scl_temperature/--hnm_temperature", "temperatures must be > 0",
                       "pass a positive value such as 0.07")
        if focal_gamma < 0:
            raise fail(ConfigError, "--focal_gamma", f"γ = {focal_gamma} < 0", "pass γ ≥ 0 (0 = plain CE)")
        self.head_experts, self.tail_experts = tuple(head_experts), tuple(tail_experts)
        if set(self.head_experts) & set(self.tail_experts) or min(self.head_experts + self.tail_experts,
                                                                  default=0) < 0:
            raise fail(ConfigError, "--head_experts/--tail_experts",
                       f"head {self.head_experts} and tail {self.tail_experts} overlap or hold a negative id",
                       "give each expert id 0..K−1 to exactly one of the two lists")
        if retrain_epochs < 0 or (retrain_epochs > 0 and (epochs is None or retrain_epochs >= epochs)):
            raise fail(ConfigError, "--retrain_epochs",
                       f"{retrain_epochs} re-training epochs with {epochs} epochs in total",
                       "pass 0 (off) or fewer re-training epochs than --epochs (and pass epochs)")

        counts = torch.as_tensor(class_counts, dtype=torch.float32)
        if counts.shape != (N_SG,) or bool((counts < 0).any()) or not bool(torch.isfinite(counts).all()):
            raise fail(ConfigError, "class_counts", f"expected ({N_SG},) non-negative counts, got "
                       f"shape {tuple(counts.shape)}", "pass the training histogram of the 230 groups")
        rule = torch.as_tensor(rule_matrix, dtype=torch.float32)
        if rule.shape != (N_SG, N_SG) or not bool(torch.isfinite(rule).all()) \
                or bool(((rule < 0) | (rule > 1)).any()):
            raise fail(RuleMatrixError, "rule_matrix", f"expected a finite ({N_SG}, {N_SG}) matrix in "
                       f"[0, 1], got shape {tuple(rule.shape)}", "check --rule_matrix_path")
        self.register_buffer("class_counts", counts)
        self.register_buffer("rule_matrix", rule)
        self.register_buffer("current_epoch", torch.zeros((), dtype=torch.long))
        cs_counts = per_system(counts.float())
        self.register_buffer("cs_counts", cs_counts, persistent=False)  # derived: not in checkpoints
        self.train_mask_mode = train_mask_mode
        self.cs_logit_adjust, self.sg_logit_adjust = float(cs_logit_adjust), float(sg_logit_adjust)
        for flag, tau in (("--tail_logit_adjust", tail_logit_adjust),
                          ("--dol_logit_adjust", dol_logit_adjust)):
            if tau < 0:
                raise fail(ConfigError, flag, f"τ = {tau} < 0", "pass τ ≥ 0 (0 = the published loss)")
        self.tail_logit_adjust, self.dol_logit_adjust = float(tail_logit_adjust), float(dol_logit_adjust)

        self.lambda_dol, self.lambda_col, self.lambda_hier = lambda_dol, lambda_col, lambda_hier
        self.lambda_scl, self.use_contrast, self.disable_col = lambda_scl, use_contrast, disable_col
        self.col_detach_ensemble, self.focal_gamma = col_detach_ensemble, focal_gamma
        self.scl_variant, self.scl_temperature = scl_variant, scl_temperature
        self.scl_threshold = scl_threshold
        self.loss_scheme = loss_scheme
        self.lambda_par, self.lambda_mutual, self.lambda_div = lambda_par, lambda_mutual, lambda_div
        self.div_epochs, self.lambda_hnm = div_epochs, lambda_hnm
        self.retrain_epochs, self.epochs = retrain_epochs, epochs
        # Only built when used, so the default state_dict holds no prototype buffers.
        self.hnm = (HardNegativeMiner(N_SG, hnm_momentum, hnm_topk, hnm_temperature)
                    if lambda_hnm > 0 else None)

    # ---------------------------------------------------------------- epoch-dependent switches
    def on_epoch_start(self, epoch: int) -> None:
        """Record the (0-based) epoch; decides re-training and the diversity window."""
        self.current_epoch.fill_(int(epoch))

    @property
    def retrain_active(self) -> bool:
        """True during the last ``retrain_epochs`` epochs (the Trainer then freezes the backbone)."""
        return self.retrain_epochs > 0 and int(self.current_epoch) >= self.epochs - self.retrain_epochs

    @property
    def diversity_active(self) -> bool:
        return self.lambda_div > 0 and int(self.current_epoch) < self.div_epochs

    # ---------------------------------------------------------------- terms
    def _tail_mask(self, k: int, device: torch.device) -> torch.Tensor:
        ids = sorted(self.head_experts + self.tail_experts)
        if ids != list(range(k)):
            raise fail(ConfigError, "--head_experts/--tail_experts",
                       f"head {self.head_experts} + tail {self.tail_experts} do not cover the model's "
                       f"{k} experts exactly", f"list every id 0..{k - 1} once")
        mask = torch.zeros(k, dtype=torch.bool, device=device)
        mask[list(self.tail_experts)] = True
        return mask

    def dol(self, expert_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L_dol: (1/K) Σ_k batch-mean ℓ_k; balanced-softmax CE for every expert while re-training."""
        b, k, _ = expert_logits.shape
        yk = y[:, None].expand(b, k)
        if self.retrain_active:
            return ce_per_sample(balanced_logits(expert_logits, self.class_counts), yk).mean()
        z = expert_logits if self.dol_logit_adjust == 0 else balanced_logits(
            expert_logits, self.class_counts, self.dol_logit_adjust)
        ce = ce_per_sample(z, yk)  # (B, K)
        tail = self._tail_mask(k, ce.device)  # validates the id lists against K
        if not self.tail_experts:  # python checks: no device sync
            return ce.mean()
        if self.tail_logit_adjust > 0:
            tail_loss = ce_per_sample(balanced_logits(expert_logits, self.class_counts,
                                                      self.tail_logit_adjust), yk)
        else:
            tail_loss = focal_from_ce(ce, self.focal_gamma)  # γ = 0 gives ce itself
        return torch.where(tail[None, :], tail_loss, ce).mean()

    def col(self, ensemble_logits: torch.Tensor, expert_logits: torch.Tensor) -> torch.Tensor:
        """L_col: (1/K) Σ_k batch-mean KL(softmax(o) ‖ softmax(o_k))."""
        ref = ensemble_logits.detach() if self.col_detach_ensemble else ensemble_logits
        return kl_per_sample(ref[:, None, :], expert_logits).mean()

    def sys_logits(self, cs_logits: torch.Tensor) -> torch.Tensor:
        """The CS scores L_sys is computed on: + τ_cs·log π_cs when logit-adjusted."""
        if self.cs_logit_adjust == 0:
            return cs_logits
        return balanced_logits(cs_logits, self.cs_counts, self.cs_logit_adjust)

    def sg_loss_logits(self, ensemble: torch.Tensor, cs_logits: torch.Tensor,
                       y: torch.Tensor) -> torch.Tensor:
        """The (B, 230) scores L_sg is computed on (``train_mask_mode``, ``sg_logit_adjust``)."""
        o = ensemble if self.sg_logit_adjust == 0 else balanced_logits(ensemble, self.class_counts,
                                                                        self.sg_logit_adjust)
        if self.train_mask_mode == "hard":
            return mask_by_true_cs(o, y)
        if self.train_mask_mode == "soft":
            return soft_cs_mask(o, self.sys_logits(cs_logits))
        return o

    def scl(self, features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.scl_variant == "seed":
            return scl_seed(features, y, self.rule_matrix, self.scl_temperature, self.scl_threshold)
        return scl_soft(features, y, self.rule_matrix, self.scl_temperature)

    @staticmethod
    def _need(outputs: Tensors, key: str, why: str) -> torch.Tensor:
        if key not in outputs:
            raise fail(ConfigError, "loss 'icl'", f"the model outputs no '{key}' (needed for {why}); "
                       f"it gave {sorted(outputs)}", "use the ICL mixture-of-experts model")
        return outputs[key]

    def forward(self, outputs: Tensors, batch: Tensors) -> Tensors:
        y, y_cs = batch["y_sg"], batch["y_cs"]
        experts = self._need(outputs, "expert_logits", "L_dol")
        ensemble = self._need(outputs, "ensemble_logits", "L_col and L_sg")
        cs_logits = self._need(outputs, "cs_logits", "L_sys")
        zero = torch.zeros((), device=experts.device)

        l_dol = self.dol(experts, y)
        l_col = zero if self.disable_col else self.col(ensemble, experts)
        l_sys = ce_per_sample(self.sys_logits(cs_logits), y_cs).mean()
        l_sg = ce_per_sample(self.sg_loss_logits(ensemble, cs_logits, y), y).mean()
        l_scl = self.scl(self._need(outputs, "features", "L_scl"), y) if self.use_contrast else zero

        total = self.lambda_dol * l_dol + self.lambda_hier * (l_sys + l_sg)
        if not self.disable_col:
            total = total + self.lambda_col * l_col
        if self.use_contrast:
            total = total + self.lambda_scl * l_scl
        out = {"l_dol": l_dol, "l_col": l_col, "l_sys": l_sys, "l_sg": l_sg, "l_hier": l_sys + l_sg,
               "l_scl": l_scl}

        if self.lambda_par > 0:
            out["l_par"] = parallel_circuit_loss(experts, y)
            total = total + self.lambda_par * out["l_par"]
        if self.lambda_mutual > 0:
            out["l_mutual"] = mutual_distillation_loss(experts)
            total = total + self.lambda_mutual * out["l_mutual"]
        if self.lambda_div > 0:  # key present every epoch (stable log schema), 0 outside the window
            out["l_div"] = diversity_loss(experts) if self.diversity_active else zero
            total = total + self.lambda_div * out["l_div"]
        if self.hnm is not None:  # prototypes as they were before this batch (update_memory)
            feats = F.normalize(self._need(outputs, "features", "hard negatives").float(), dim=-1)
            out["l_hnm"] = self.hnm.loss(feats, y)
            total = total + self.lambda_hnm * out["l_hnm"]

        result = {k: v.detach() for k, v in out.items()}
        result["loss"] = total
        return result

    @torch.no_grad()
    def update_memory(self, outputs: Tensors, batch: Tensors) -> None:
        """After an optimisation step: update the hard-negative miner's EMA class prototypes and
        confusion counts from this batch's (detached) features and predictions. The training loop
        (``Trainer.moe.MoETrainer``) calls it; evaluation never does, so it never changes the state.
        No-op without hard-negative mining."""
        if self.hnm is None:
            return
        feats = F.normalize(self._need(outputs, "features", "hard negatives").detach().float(), dim=-1)
        preds = self._need(outputs, "logits", "hard-negative confusion").detach().argmax(-1)
        self.hnm.update(feats, batch["y_sg"], preds)

    # ---------------------------------------------------------------- flags
    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        """Declare the method's flags (seed names and defaults) in an argument group "icl"."""
        g = parser.add_argument_group("icl")
        g.add_argument("--loss_scheme", default="scheme2", choices=list(LOSS_SCHEMES),
                       help="loss composition (only scheme2 exists)")
        g.add_argument("--use_contrast_scheme2", action="store_true", help="enable L_scl")
        g.add_argument("--lambda_dol", type=float, default=0.5, help="weight of L_dol (independent)")
        g.add_argument("--lambda_hier", type=float, default=1.5, help="weight of L_sys + L_sg")
        g.add_argument("--lambda_scl", type=float, default=0.2, help="weight of L_scl (contrastive)")
        g.add_argument("--lambda_col", type=float, default=0.3, help="weight of L_col (collaboration)")
        g.add_argument("--disable_col", action="store_true", help="switch L_col off")
        g.add_argument("--col_detach_ensemble", action="store_true",
                       help="L_col: treat the ensemble as a fixed target (the XRD reference code does not)")
        g.add_argument("--scl_variant", default="seed", choices=list(SCL_VARIANTS),
                       help="seed = the XRD reference code's L_scl (unbounded below); "
                            "soft = SupCon weighted by the rule matrix")
        g.add_argument("--scl_temperature", type=float, default=0.07, help="L_scl temperature")
        g.add_argument("--scl_threshold", type=float, default=0.8,
                       help="R above which two groups are positives (seed variant)")
        g.add_argument("--focal_gamma", type=float, default=2.0, help="focal γ of the tail experts")
        g.add_argument("--train_mask_mode", default="hard", choices=list(TRAIN_MASK_MODES),
                       help="L_sg: hard = CE within the TRUE crystal system (the method); soft = NLL "
                            "of p(system)·p(group | system); none = CE over all 230 groups")
        g.add_argument("--cs_logit_adjust", type=float, default=0.0,
                       help="τ of a logit-adjusted L_sys, CE(cs_logits + τ·log π_cs) (Menon et al. "
                            "2021; 1 = balanced softmax); 0 = plain CE")
        g.add_argument("--sg_logit_adjust", type=float, default=0.0,
                       help="τ of a logit-adjusted L_sg with the space-group training prior; 0 = plain")
        g.add_argument("--tail_logit_adjust", type=float, default=0.0,
                       help="τ_t > 0: tail experts trained with CE(o_k + τ_t·log π, y) instead of focal "
                            "loss (2 = SADE/BalPoE's inverse-prior expert); 0 = focal (the method)")
        g.add_argument("--dol_logit_adjust", type=float, default=0.0,
                       help="τ_d > 0: every expert's L_dol term (CE / focal) on o_k + τ_d·log π; 0 = plain")
        add_extras_args(g)


def icl_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Explicit ICLLoss keyword arguments from the flags :meth:`ICLLoss.add_args` declares
    (plus ``--head_experts``/``--tail_experts`` from the model group, shared with the gate prior).

    The composition root adds ``class_counts``, ``rule_matrix`` and ``epochs`` itself.
    """
    return {
        "loss_scheme": args.loss_scheme, "use_contrast": args.use_contrast_scheme2,
        "lambda_dol": args.lambda_dol, "lambda_hier": args.lambda_hier, "lambda_scl": args.lambda_scl,
        "lambda_col": args.lambda_col, "disable_col": args.disable_col,
        "col_detach_ensemble": args.col_detach_ensemble, "scl_variant": args.scl_variant,
        "scl_temperature": args.scl_temperature, "scl_threshold": args.scl_threshold,
        "focal_gamma": args.focal_gamma, "train_mask_mode": args.train_mask_mode,
        "cs_logit_adjust": args.cs_logit_adjust, "sg_logit_adjust": args.sg_logit_adjust,
        "tail_logit_adjust": args.tail_logit_adjust, "dol_logit_adjust": args.dol_logit_adjust,
        # declared in config (model group): the gate prior uses the same ids
        "head_experts": parse_id_list(args.head_experts, "--head_experts"),
        "tail_experts": parse_id_list(args.tail_experts, "--tail_experts"),
        **extras_kwargs(args),
    }


ICLLoss.args_to_kwargs = staticmethod(icl_kwargs)
