"""ICL mixture of experts for space-group classification with a crystal-system branch.

ICL: "Enhancing Mixture of Experts with Independent and Collaborative Learning for Long-Tail
Visual Recognition" (IJCAI 2025); XRD version: github.com/w1u2d3i4/phys-moe. Spec:
docs/methods/icl.md, "Model".

    h = frontend(x)                      (B, h_dim)
    u = P(h)                             (B, d)      P = Linear(h_dim → d), d = 256
    cs_logits = s·cos(u, W_cs)           (B, 7)
    o_k = expert_k(feature map)          (B, K, 230) see models/experts.py
    g = softmax(G(u) + softmax(cs_logits) @ R_gate)    (B, K)  see models/gate.py
    o = Σ_k g_k o_k                      (B, 230)    "ensemble_logits" (unmasked; the loss masks
                                                     with the TRUE crystal system itself)
    logits = mask(o, cs_logits)          (B, 230)    prediction

Masking (``mask_mode``):
* ``hard``: space groups outside argmax(cs_logits) are shifted down by ``MASK_PENALTY`` = 1e4.
  Decision: a large finite shift rather than −inf or a constant, because (1) cosine logits lie in
  [−s, s], so with 2s < 1e4 every masked group ranks below every allowed one — argmax never leaves
  the predicted system — yet softmax/CE/KL stay finite (no inf·0 = NaN), (2) 1e4 is exact enough in
  fp16/bf16 (fp16 max 65504), (3) the order among masked groups is kept, so top-k with k larger
  than the system (triclinic has 2 groups) continues with the best groups of other systems
  instead of arbitrary ties.
* ``soft``: ``log p_cs[cs(sg)] + log_softmax of o within its system``: a normalised log
  distribution over 230 groups (logsumexp = 0) combining both levels.
* ``none``: the ensemble as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.evidence_inputs import EvidenceInputs, check_evidence, parse_parts
from models.experts import EXPERT_MODES
from models.gate import GATE_PRIOR_MODES, RuleGate, check_expert_ids
from models.gate import gate_prior as build_gate_prior
from models.layers import CosineClassifier, as_model_input, check_positive, jsonable
from models.registry import FRONTENDS, MODELS
from utils.crystal import N_CS, N_SG, SG_TO_CS, cs_sg_mask, per_system, soft_cs_mask
from utils.errors import ConfigError

MASK_MODES = ("hard", "soft", "none")
MASK_PENALTY = 1e4


def hard_mask(logits: torch.Tensor, cs_pred: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Shift logits of groups outside the predicted system down by ``MASK_PENALTY``.

    Args:
        logits: (B, 230). cs_pred: (B,) long. allowed: (7, 230) bool ``cs_sg_mask``.
    """
    return torch.where(allowed[cs_pred], logits, logits - MASK_PENALTY)


def soft_mask(logits: torch.Tensor, cs_logits: torch.Tensor) -> torch.Tensor:
    """``log p_cs[cs(g)] + o_g − logsumexp_{g' ∈ cs(g)} o_g'``: (B, 230), logsumexp over groups = 0
    (:func:`utils.crystal.soft_cs_mask`, shared with the ICL loss's soft training mask).

    Args:
        logits: (B, 230) o. cs_logits: (B, 7).
    """
    return soft_cs_mask(logits, cs_logits)


@MODELS.register("icl_moe")
class ICLMoE(nn.Module):
    """Frontend + crystal-system branch + K cosine experts + rule-guided gate + CS masking.

    Args:
        frontend: FRONTENDS name ("restcn", "vit").
        frontend_kwargs: keyword arguments of the frontend.
        num_classes: must be 230 (the crystal-system hierarchy is fixed).
        num_experts: K.
        proj_dim: d of the shared projection P (256).
        expert_mode: "lightweight" (shared layer3, experts = classifiers on P's space) or
            "original" (own layer3 + Linear(h_dim → expert_dim) + cosine per expert).
        expert_dim: d_e of the original mode (32).
        scale: cosine scale s of the CS branch and the experts (30).
        mask_mode: "hard" | "soft" | "none" (see the module docstring).
        head_experts / tail_experts: expert ids trained with CE / focal loss (default: first /
            second half); used by the gate prior.
        class_counts: (230,) training counts; when given, the gate prior is ``gate_prior(...)``.
        gate_prior: an explicit (7, K) prior (exclusive with ``class_counts``); zeros if neither.
        gate_prior_strength / gate_prior_mode / tail_threshold: see :func:`models.gate.gate_prior`.
        learn_gate_prior: make the prior a trainable parameter instead of a buffer.
        layer3_kernel_size: conv kernel of the experts' residual stage (CODE: 3). Its feature map
            has length 1 for ResTcn at L = 8500 and for the ViT, where only the centre tap acts:
            1 gives the same function with a third of the weights (original mode at width 1:
            17 M instead of 50 M parameters); 3 stays faithful for longer maps.
        evidence_inputs: "none" or a comma list of "cs", "gate": the indexing evidence as an input
            of the crystal-system branch and/or the gate (:mod:`models.evidence_inputs`; trained
            by ``train_evidence.py``); ``forward(x, evidence)`` then uses it.

    The prior itself is not in ``config`` (it would be a large JSON list): it lives in the
    state_dict, so ``create_model(**model.config)`` + ``load_state_dict`` restores it.

    Shapes: x (B, 1, L) (or (B, L)) → dict with "logits" (B, 230), "ensemble_logits" (B, 230),
    "gate" (B, K) (these three float32 even under autocast), "cs_logits" (B, 7), "expert_logits"
    (B, K, 230), "features" (B, h_dim; h with unit norm), "proj" (B, d) = u.
    """

    name = "icl_moe"

    def __init__(self, frontend: str = "restcn", frontend_kwargs: dict | None = None,
                 num_classes: int = N_SG, num_experts: int = 8, proj_dim: int = 256,
                 expert_mode: str = "lightweight", expert_dim: int = 32, scale: float = 30.0,
                 mask_mode: str = "hard", head_experts: Sequence[int] | None = None,
                 tail_experts: Sequence[int] | None = None, class_counts=None, gate_prior=None,
                 gate_prior_strength: float = 1.0, gate_prior_mode: str = "log_odds",
                 tail_threshold: float = 20, learn_gate_prior: bool = False,
                 layer3_kernel_size: int = 3, evidence_inputs: str = "none") -> None:
        super().__init__()
        where = "ICLMoE"
        if num_classes != N_SG:
            raise ConfigError(f"{where}: num_classes must be {N_SG} (the crystal-system masks are "
                              f"defined on 230 space groups), got {num_classes}. Fix: use the "
                              "'linear' model for other label sets")
        for key, val, ok in (("expert_mode", expert_mode, EXPERT_MODES), ("mask_mode", mask_mode, MASK_MODES),
                             ("gate_prior_mode", gate_prior_mode, GATE_PRIOR_MODES)):
            if val not in ok:
                raise ConfigError(f"{where}: unknown {key} '{val}'. Fix: use one of {', '.join(ok)}")
        for key, val in (("num_experts", num_experts), ("proj_dim", proj_dim), ("expert_dim", expert_dim),
                         ("scale", scale)):
            check_positive(key, val, where)
        if 2 * scale >= MASK_PENALTY / 10:
            raise ConfigError(f"{where}: scale {scale} is too large for hard masking (needs 2·s ≪ "
                              f"{MASK_PENALTY:g}). Fix: use a cosine scale below {MASK_PENALTY / 20:g}")
        if class_counts is not None and gate_prior is not None:
            raise ConfigError(f"{where}: both class_counts and gate_prior given. Fix: pass one of them")
        half = num_experts // 2
        head_experts = list(range(half)) if head_experts is None else [int(k) for k in head_experts]
        tail_experts = (list(range(half, num_experts)) if tail_experts is None
                        else [int(k) for k in tail_experts])
        check_expert_ids(num_experts, head_experts, tail_experts)
        self.frontend = FRONTENDS.build(frontend, **(frontend_kwargs or {}))
        self.config = jsonable(dict(
            name=self.name, frontend=frontend, frontend_kwargs=self.frontend.config,
            num_classes=num_classes, num_experts=num_experts, proj_dim=proj_dim,
            expert_mode=expert_mode, expert_dim=expert_dim, scale=scale, mask_mode=mask_mode,
            head_experts=head_experts, tail_experts=tail_experts, class_counts=None, gate_prior=None,
            gate_prior_strength=gate_prior_strength, gate_prior_mode=gate_prior_mode,
            tail_threshold=tail_threshold, learn_gate_prior=learn_gate_prior,
            layer3_kernel_size=layer3_kernel_size, evidence_inputs=",".join(parse_parts(evidence_inputs))
            or "none"))
        self.num_experts, self.mask_mode, self.scale = num_experts, mask_mode, float(scale)
        self.head_experts, self.tail_experts = head_experts, tail_experts
        h_dim = self.frontend.out_dim
        self.h_dim = h_dim

        self.proj = nn.Linear(h_dim, proj_dim)
        self.cs_head = CosineClassifier(proj_dim, N_CS, scale)
        d_expert = proj_dim if expert_mode == "lightweight" else expert_dim
        self.experts = EXPERT_MODES[expert_mode](h_dim, num_experts, d_expert, num_classes, scale,
                                                 layer3_kernel_size)
        if class_counts is not None:
            gate_prior = build_gate_prior(
                class_counts, num_experts, head_experts, tail_experts, gate_prior_strength,
                tail_threshold, gate_prior_mode)
        self.gate = RuleGate(proj_dim, num_experts, gate_prior, learn_gate_prior)
        parts = parse_parts(evidence_inputs)
        # the indexing evidence as an input of the CS branch and the gate (models/evidence_inputs.py)
        self.evidence_inputs = EvidenceInputs(num_experts, parts) if parts else None

        # Constant crystallographic tables as non-persistent buffers: they follow .to(device) and
        # never go stale in checkpoints.
        self.register_buffer("cs_sg_mask", cs_sg_mask(), persistent=False)
        self.register_buffer("sg_to_cs", torch.as_tensor(SG_TO_CS), persistent=False)
        # Post-hoc CS logit shift (set_cs_posthoc_adjust; inference only, never in checkpoints).
        self.register_buffer("cs_logit_shift", torch.zeros(N_CS), persistent=False)
        self._cs_shift_on = False

    def set_cs_posthoc_adjust(self, class_counts: Any, tau: float) -> torch.Tensor:
        """Post-hoc logit adjustment of the crystal-system head (Menon et al., ICLR 2021, eq. 9),
        from the training prior π_cs to the system prior of a test set balanced over space groups,
        ν_cs = (groups in the system) / 230: ``cs_logits − τ·(log π_cs − log ν_cs)``. It changes the
        predicted system and therefore the hard mask and the gate's rule prior. τ = 0 switches it
        off. Returns the (7,) shift.

        Args:
            class_counts: (230,) training counts (clamped at 1 per system).
            tau: strength τ ≥ 0.
        """
        if tau < 0:
            raise ConfigError(f"ICLMoE: post-hoc CS adjustment τ = {tau} < 0. Fix: pass τ ≥ 0")
        counts = torch.as_tensor(class_counts, dtype=torch.float64).reshape(-1)
        if counts.shape != (N_SG,):
            raise ConfigError(f"ICLMoE: post-hoc CS adjustment needs ({N_SG},) counts, got "
                              f"{tuple(counts.shape)}. Fix: pass the training histogram")
        pi = per_system(counts).clamp_min(1.0)
        nu = per_system(torch.ones_like(counts))  # groups per system
        shift = -tau * ((pi / pi.sum()).log() - (nu / nu.sum()).log())
        self.cs_logit_shift.copy_(shift.to(self.cs_logit_shift))
        self._cs_shift_on = tau > 0
        return self.cs_logit_shift.clone()

    def mask_logits(self, ensemble: torch.Tensor, cs_logits: torch.Tensor) -> torch.Tensor:
        """Apply ``self.mask_mode`` to ensemble logits (B, 230) → (B, 230)."""
        if self.mask_mode == "hard":
            return hard_mask(ensemble, cs_logits.argmax(dim=-1), self.cs_sg_mask)
        if self.mask_mode == "soft":
            return soft_mask(ensemble, cs_logits)
        return ensemble

    def classifier_parameters(self) -> list[nn.Parameter]:
        """The expert classifiers' weights (for classifier re-training with the rest frozen)."""
        return [self.experts.weight]

    @property
    def uses_evidence(self) -> bool:
        """Whether ``forward`` takes the indexing evidence (``evidence_inputs`` not none)."""
        return self.evidence_inputs is not None

    def evidence_parameters(self) -> list[nn.Parameter]:
        """The parameters of the evidence inputs (trained with the rest frozen, train_evidence.py)."""
        return [] if self.evidence_inputs is None else list(self.evidence_inputs.parameters())

    def heads(self, u: torch.Tensor, cs_logits: torch.Tensor, expert_logits: torch.Tensor,
              evidence: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """CS branch (with the evidence), gate, ensemble and mask from the projection u (B, d), the
        CS head's logits (B, 7) and the experts' logits (B, K, 230): the part of ``forward`` after
        the frontend and the experts, so the evidence inputs can be trained on stored outputs."""
        gate_logits = None
        if evidence is not None and self.evidence_inputs is not None:
            evidence = check_evidence(evidence, len(u)).to(cs_logits.dtype)
            cs_logits = self.evidence_inputs.cs(cs_logits, evidence)
            gate_logits = self.evidence_inputs.gate_bias(evidence)
        g_logits = self.gate.logits(u, cs_logits)
        if gate_logits is not None:
            g_logits = g_logits + gate_logits
        gate = torch.softmax(g_logits.float(), dim=-1)           # float32 under autocast too
        # float32 even under autocast (elementwise ops are not down-cast): the ensemble and the
        # masked logits keep their ranking exactly; the cost is B·K·230 multiply-adds.
        ensemble = (gate.unsqueeze(-1) * expert_logits.float()).sum(dim=1)
        return {"logits": self.mask_logits(ensemble, cs_logits), "ensemble_logits": ensemble,
                "cs_logits": cs_logits, "gate": gate}

    def forward(self, x: torch.Tensor, evidence: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``evidence`` (B, 110): the indexing evidence, used when the model has evidence inputs
        (ignored otherwise); None = no evidence (the model as trained without it)."""
        x = as_model_input(x, self.frontend, self.name)
        fmap = self.frontend.forward_features(x)                  # (B, h_dim, T)
        h = self.frontend.pool(fmap)                              # (B, h_dim)
        u = self.proj(h)                                          # (B, d)
        cs_logits = self.cs_head(u)                               # (B, 7)
        if self._cs_shift_on:
            cs_logits = cs_logits + self.cs_logit_shift
        expert_logits = self.experts(fmap, self.proj)             # (B, K, 230)
        out = self.heads(u, cs_logits, expert_logits, evidence)
        out.update(expert_logits=expert_logits, features=F.normalize(h, dim=-1), proj=u)
        return out


def icl_moe_kwargs(args: Any) -> dict[str, Any]:
    """Explicit ICLMoE keyword arguments from the model flags (the composition root adds
    ``class_counts``, which the crystallographic gate prior is computed from)."""
    ids = {k: [int(t) for t in str(getattr(args, k)).split(",") if t.strip()]
           for k in ("head_experts", "tail_experts")}
    return dict(num_experts=args.num_experts, expert_mode=args.expert_mode, mask_mode=args.mask_mode,
                learn_gate_prior=args.learn_gate_prior,
                gate_prior_strength=getattr(args, "gate_prior_strength", 1.0), **ids)


ICLMoE.args_to_kwargs = staticmethod(icl_moe_kwargs)
