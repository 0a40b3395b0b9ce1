"""NCL multi-expert model: K complete backbones, each with its own classifier.

NCL: Li, Zhan, Zhang, Hu, Tan, Hu, Ding, Yang, "Nested Collaborative Learning for Long-Tailed
Visual Recognition", CVPR 2022 (reference code: github.com/Bazinga699/NCL). Spec:
docs/methods/ncl.md §2.

    h_k = backbone_k(x)                  (B, h_dim)   k = 1..K, independent weights and init
    z_k = W_k h_k + b_k                  (B, C)       "expert_logits" (B, K, C)
    logits = mean_k z_k                  (B, C)       inference: the experts' average of RAW logits

The losses (NIL + NBOD with hard category mining) are in ``loss/ncl.py``; class counts never enter
the model (log n is added by the loss only), so ``logits`` is the paper's inference rule.

Decisions and deviations:
* The K backbones run one after another: they are arbitrary registered frontends with their own
  BatchNorm statistics, which do not batch across experts without rewriting every frontend. The
  K classifiers (and the MoCo MLPs) are one batched einsum (:class:`BatchedLinear`).
* ``share_frontend=True`` (documented deviation, spec §2): one backbone shared by all experts,
  experts differ only in their classifiers; ~K× less memory/compute for large 1-D CNNs.
* ``classifier="cosine"``: the large-scale configs' cosine classifier (scale 16; iNat 32).
* Optional MoCo branch (spec §2, off by default; the loss enables it with ``--ncl_con_ratio``):
  per expert a query MLP h → h → d, an EMA copy of the expert's backbone (momentum m), a key MLP
  and a queue of Q keys. As in the reference code the key MLP starts as a copy of the query MLP
  and is never EMA-updated (``moco_key_mlp="frozen"``: a fixed random projection); ``"ema"``
  updates it like the backbone. Queues (K, d, Q) and their pointer are buffers (state_dict).
  The enqueue wraps around the queue end, so Q need not be a multiple of the batch size (the
  reference asserts divisibility). The similarity logits are returned without temperature; the
  loss divides by τ.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import check_positive, jsonable
from models.registry import FRONTENDS, MODELS
from utils.crystal import N_SG
from utils.errors import ConfigError

CLASSIFIERS = ("linear", "cosine")
KEY_MLP_MODES = ("frozen", "ema")


class BatchedLinear(nn.Module):
    """K independent ``nn.Linear(in_features, out_features)`` as one einsum.

    Init as ``nn.Linear`` (weight and bias uniform in ±1/sqrt(in_features)), independently per
    expert. Shapes: (B, K, in) → (B, K, out); a (B, in) input is shared by all K.
    """

    def __init__(self, num: int, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(num, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num, out_features).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("bi,kio->bko" if x.dim() == 2 else "bki,kio->bko", x, self.weight)
        return out if self.bias is None else out + self.bias


class BatchedMLP(nn.Module):
    """K MLPs Linear(in → hidden) → ReLU → Linear(hidden → out). Shapes: (B, K, in) → (B, K, out)."""

    def __init__(self, num: int, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = BatchedLinear(num, in_features, hidden)
        self.fc2 = BatchedLinear(num, hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


@MODELS.register("ncl")
class NCLModel(nn.Module):
    """K experts (backbone + GAP + linear classifier each) whose raw logits are averaged.

    Args:
        frontend: FRONTENDS name of every expert's backbone ("restcn", "vit", "resnet32", ...).
        frontend_kwargs: its keyword arguments.
        num_classes: C.
        num_experts: K (NCL: 3).
        share_frontend: one backbone for all experts (deviation, see module docstring).
        classifier: "linear" (CIFAR configs, bias on) or "cosine" (large-scale configs).
        cosine_scale: s of the cosine classifier.
        moco_dim: d of the MoCo projection; 0 = no MoCo branch (the CIFAR-100 default).
        moco_queue: Q, keys per expert queue (1024).
        moco_momentum: m of the EMA key backbones (0.999).
        moco_key_mlp: "frozen" (reference code) or "ema".

    Shapes: ``forward(x, key_view=None)``, x (B, 1, L) (or (B, L); image frontends take their own
    shape) → dict with
        "logits" (B, C) float32 mean of the experts' raw logits,
        "expert_logits" (B, K, C),
        "features" (B, h_dim) the unit-norm mean of the backbones' h,
    and, with a MoCo branch in training mode and ``key_view`` given (the second augmented view),
        "proj" (B, K, d) unit-norm queries, "moco_logits" (B, K, 1 + Q) cosine similarities
        [positive key, queue negatives] (before the temperature); the keys are then enqueued.
    """

    name = "ncl"

    def __init__(self, frontend: str = "restcn", frontend_kwargs: dict | None = None,
                 num_classes: int = N_SG, num_experts: int = 3, share_frontend: bool = False,
                 classifier: str = "linear", cosine_scale: float = 16.0, moco_dim: int = 0,
                 moco_queue: int = 1024, moco_momentum: float = 0.999,
                 moco_key_mlp: str = "frozen") -> None:
        super().__init__()
        where = "NCLModel"
        for key, val in (("num_classes", num_classes), ("num_experts", num_experts),
                         ("cosine_scale", cosine_scale), ("moco_queue", moco_queue)):
            check_positive(key, val, where)
        for key, val, ok in (("classifier", classifier, CLASSIFIERS), ("moco_key_mlp", moco_key_mlp,
                                                                       KEY_MLP_MODES)):
            if val not in ok:
                raise ConfigError(f"{where}: unknown {key} '{val}'. Fix: use one of {', '.join(ok)}")
        if moco_dim < 0 or not 0.0 <= moco_momentum < 1.0:
            raise ConfigError(f"{where}: moco_dim must be >= 0 and moco_momentum in [0, 1), got "
                              f"{moco_dim} / {moco_momentum}. Fix: e.g. moco_dim 64, momentum 0.999")
        self.num_experts, self.classifier_type = int(num_experts), classifier
        self.cosine_scale, self.moco_momentum = float(cosine_scale), float(moco_momentum)
        self.moco_key_mlp = moco_key_mlp
        n_bb = 1 if share_frontend else num_experts
        # independent backbones: each FRONTENDS.build draws its own random init (as K separate nets)
        self.backbones = nn.ModuleList(FRONTENDS.build(frontend, **(frontend_kwargs or {}))
                                       for _ in range(n_bb))
        self.config = jsonable(dict(
            name=self.name, frontend=frontend, frontend_kwargs=self.backbones[0].config,
            num_classes=num_classes, num_experts=num_experts, share_frontend=share_frontend,
            classifier=classifier, cosine_scale=cosine_scale, moco_dim=moco_dim, moco_queue=moco_queue,
            moco_momentum=moco_momentum, moco_key_mlp=moco_key_mlp))
        self.h_dim = self.backbones[0].out_dim
        self.classifier = BatchedLinear(num_experts, self.h_dim, num_classes, bias=classifier == "linear")
        self.moco_dim = int(moco_dim)
        if self.moco_dim:
            self.query_mlp = BatchedMLP(num_experts, self.h_dim, self.h_dim, self.moco_dim)
            # key side: copies made at init (MoCo), never touched by the optimiser
            self.key_backbones = copy.deepcopy(self.backbones)
            self.key_mlp = copy.deepcopy(self.query_mlp)
            for p in (*self.key_backbones.parameters(), *self.key_mlp.parameters()):
                p.requires_grad_(False)
            queue = F.normalize(torch.randn(num_experts, self.moco_dim, moco_queue), dim=1)
            self.register_buffer("queue", queue)
            self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @property
    def frontend(self) -> nn.Module:
        """The first expert's backbone (generic code reads ``model.frontend.out_dim``)."""
        return self.backbones[0]

    def classifier_parameters(self) -> list[nn.Parameter]:
        """The K classifiers' parameters (for classifier re-training with the rest frozen)."""
        return list(self.classifier.parameters())

    @staticmethod
    def _backbone_features(backbones: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        """(B, n_backbones, h_dim): every backbone on the same input."""
        return torch.stack([bb(x) for bb in backbones], dim=1)

    def _classify(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, n_backbones, h_dim) → (B, K, C)."""
        if h.shape[1] == 1:
            h = h[:, 0]  # shared frontend: one h for every expert's classifier
        if self.classifier_type == "linear":
            return self.classifier(h)
        w = F.normalize(self.classifier.weight, dim=1)
        eq = "bi,kio->bko" if h.dim() == 2 else "bki,kio->bko"
        return self.cosine_scale * torch.einsum(eq, F.normalize(h, dim=-1), w)

    def _expand(self, h: torch.Tensor) -> torch.Tensor:
        return h.expand(-1, self.num_experts, -1) if h.shape[1] == 1 else h

    @torch.no_grad()
    def _momentum_update(self) -> None:
        """key ← m·key + (1 − m)·query for the backbones (and the key MLP in "ema" mode)."""
        pairs = [(self.key_backbones, self.backbones)]
        if self.moco_key_mlp == "ema":
            pairs.append((self.key_mlp, self.query_mlp))
        for key, query in pairs:
            for pk, pq in zip(key.parameters(), query.parameters(), strict=True):
                pk.lerp_(pq.detach(), 1.0 - self.moco_momentum)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        """keys (B, K, d) → the queues' next B slots (wrapping around)."""
        q = self.queue.shape[-1]
        keys = keys[-q:].to(self.queue.dtype)
        n = keys.shape[0]
        idx = (int(self.queue_ptr) + torch.arange(n, device=keys.device)) % q
        self.queue[:, :, idx] = keys.permute(1, 2, 0)
        self.queue_ptr[0] = (int(self.queue_ptr) + n) % q

    def _moco(self, h: torch.Tensor, key_view: torch.Tensor) -> dict[str, torch.Tensor]:
        q = F.normalize(self.query_mlp(self._expand(h)), dim=-1)                  # (B, K, d)
        with torch.no_grad():
            self._momentum_update()
            hk = self._backbone_features(self.key_backbones, self._prepare(key_view))
            k = F.normalize(self.key_mlp(self._expand(hk)).float(), dim=-1)       # (B, K, d)
            neg_bank = self.queue.clone()
        pos = (q.float() * k).sum(-1, keepdim=True)                               # (B, K, 1)
        neg = torch.einsum("bkd,kdq->bkq", q.float(), neg_bank)                   # (B, K, Q)
        self._enqueue(k)
        return {"proj": q, "moco_logits": torch.cat([pos, neg], dim=-1)}

    @staticmethod
    def _prepare(x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1) if x.dim() == 2 else x

    def forward(self, x: torch.Tensor, key_view: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        h = self._backbone_features(self.backbones, self._prepare(x))             # (B, n_bb, h_dim)
        expert_logits = self._classify(h)                                         # (B, K, C)
        out = {"logits": expert_logits.float().mean(dim=1), "expert_logits": expert_logits,
               "features": F.normalize(h.mean(dim=1), dim=-1)}
        if self.moco_dim and key_view is not None and self.training:
            out.update(self._moco(h, key_view))
        return out


def ncl_model_kwargs(args) -> dict:
    """Head kwargs of :class:`NCLModel` from the ``ncl`` flag group (declared by ``loss/ncl.py``).

    The MoCo branch is built only when its loss weight ``--ncl_con_ratio`` is positive.
    """
    try:
        return dict(num_experts=args.ncl_num_experts, share_frontend=args.ncl_share_frontend,
                    classifier=args.ncl_classifier, cosine_scale=args.ncl_cosine_scale,
                    moco_dim=args.ncl_moco_dim if args.ncl_con_ratio > 0 else 0,
                    moco_queue=args.ncl_moco_queue, moco_momentum=args.ncl_moco_momentum,
                    moco_key_mlp=args.ncl_moco_key_mlp)
    except AttributeError as exc:
        raise ConfigError(f"model 'ncl' reads the ncl flags ({exc}). Fix: train it with --method ncl, "
                          "which declares them") from exc


NCLModel.args_to_kwargs = staticmethod(ncl_model_kwargs)
