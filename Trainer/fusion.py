"""A model's space-group posterior fused with the crystallographer's evidence (layer 3).

Issue 23, "fusion at evaluation": for every method,

    log p(sg | x) = log p_model(sg | x) / T + w_ext · max(ℓ_ext(ext(sg)), −c) + w_cs · ℓ_cs(cs(sg)) − log Z

* ``p_model``: the model's posterior. A hierarchical model (ICL: ``cs_logits`` and the unmasked
  ``ensemble_logits``) gives p(system) · p(group | system), the two-level distribution of
  ``utils.crystal.soft_cs_mask``; any other model the softmax of its ``logits``.
* ``ℓ_ext`` (99) and ``ℓ_cs`` (7): the indexing evidence vector of the pattern
  (``indexing.api.PatternEvidence.vector``: log-likelihood ratios to the best extinction group and
  crystal system, computed from the picked peak positions; all zero when no cell was found, so an
  unsolved pattern keeps the model's answer).
* ``T``, ``w_ext``, ``c``, ``w_cs``: :class:`FusionParams`, fitted on the validation split by
  minimising the fused negative log-likelihood (:func:`fit_fusion`); ``c`` caps how far one
  wrong cell can push a group down (the evidence comes from the best cell only: when that cell is
  wrong, the true group sits at the −30 floor). With ``w = 1, c = ∞`` this is Bayes' rule with the
  likelihood of the positions; fitted weights calibrate an evidence that is not a true likelihood.

A hierarchical model's hard mask then uses the FUSED crystal system: the predicted system is the
argmax of the fused system posterior (the fused groups summed per system), and groups outside it
are shifted down by ``MASK_PENALTY`` (the ranking inside and outside is kept, as ``models.moe``).

The index alone (``--method index``'s rule): ``log π_train(sg) + W·ℓ_ext(ext(sg))`` with W = 100:
the extinction group decides and the training prior chooses inside it (:func:`index_logits`).

This module never imports ``indexing`` or ``models`` (siblings): the evidence arrives as an array
from the composition root (``index_method.PatternEvidenceSource``), laid out as
:data:`EVIDENCE_DIM` = 7 + 99 + 4 floats (a test checks it equals ``indexing.api.EVIDENCE_DIM``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, logsumexp

from utils.crystal import N_CS, SG_TO_CS
from utils.errors import DataError, fail
from utils.sg_tables import extinction_groups

N_EXT = 99
EVIDENCE_DIM = N_CS + N_EXT + 4
MASK_PENALTY = 1e4
INDEX_WEIGHT = 100.0
EXT_OF_SG = extinction_groups() - 1          # (230,) 0-based extinction group of each group
_CS_MASK = SG_TO_CS[None, :] == np.arange(N_CS)[:, None]     # (7, 230)
FLOOR_GRID = (2.0, 4.0, 8.0, 16.0, 30.0)     # the cap c is chosen on this grid, the rest continuously


@dataclasses.dataclass
class FusionParams:
    """Weights of the fusion (module docstring); ``fit`` holds the validation numbers."""

    temperature: float = 1.0
    w_ext: float = 1.0
    ext_cap: float = 30.0
    w_cs: float = 0.0
    fit: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> FusionParams | None:
        if not d:
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def describe(self) -> str:
        return (f"T={self.temperature:.3f} w_ext={self.w_ext:.3f} cap={self.ext_cap:g} "
                f"w_cs={self.w_cs:.3f}")


def check_evidence(evidence: Any, n: int, where: str) -> np.ndarray:
    """The (n, EVIDENCE_DIM) float64 evidence, or a DataError naming ``where``."""
    ev = np.asarray(evidence, np.float64)
    if ev.ndim != 2 or ev.shape != (n, EVIDENCE_DIM):
        raise fail(DataError, where, f"evidence of shape {ev.shape}, expected ({n}, {EVIDENCE_DIM}) (one "
                   "indexing evidence vector per pattern)",
                   "compute it with index_method.PatternEvidenceSource")
    if not np.isfinite(ev).all():
        raise fail(DataError, where, "evidence holds NaN or inf", "recompute the indexing cache")
    return ev


def model_log_probs(pred: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 230) log p_model: two-level for a hierarchical model, else log_softmax(logits)."""
    if "ensemble_logits" in pred and "cs_logits" in pred:
        o = np.asarray(pred["ensemble_logits"], np.float64)
        per_cs = np.stack([logsumexp(np.where(m, o, -np.inf), axis=1) for m in _CS_MASK], 1)  # (N, 7)
        log_p_cs = log_softmax(np.asarray(pred["cs_logits"], np.float64), axis=1)
        return (log_p_cs - per_cs)[:, SG_TO_CS] + o
    return log_softmax(np.asarray(pred["logits"], np.float64), axis=1)


def evidence_terms(evidence: np.ndarray, w_ext: float, ext_cap: float, w_cs: float) -> np.ndarray:
    """(N, 230) ``w_ext·max(ℓ_ext(ext(sg)), −cap) + w_cs·ℓ_cs(cs(sg))``."""
    cs_ll, ext_ll = evidence[:, :N_CS], evidence[:, N_CS:N_CS + N_EXT]
    return w_ext * np.maximum(ext_ll, -ext_cap)[:, EXT_OF_SG] + w_cs * cs_ll[:, SG_TO_CS]


def fused_log_probs(base: np.ndarray, evidence: np.ndarray, p: FusionParams) -> np.ndarray:
    """(N, 230) normalised fused log-probabilities from ``model_log_probs`` and the evidence."""
    s = base / p.temperature + evidence_terms(evidence, p.w_ext, p.ext_cap, p.w_cs)
    return s - logsumexp(s, axis=1, keepdims=True)


def system_scores(logp: np.ndarray) -> np.ndarray:
    """(N, 7) log p(system): the groups' probabilities summed per system."""
    return np.stack([logsumexp(np.where(m, logp, -np.inf), axis=1) for m in _CS_MASK], 1)


def mask_by_system(logp: np.ndarray, cs_scores: np.ndarray) -> np.ndarray:
    """``logp`` (N, 230) with the groups outside argmax(cs_scores) shifted down by ``MASK_PENALTY``
    (the hard mask of ``models.moe``, by the given system scores)."""
    outside = SG_TO_CS[None, :] != cs_scores.argmax(1)[:, None]
    return logp - MASK_PENALTY * outside


def fuse(pred: dict[str, np.ndarray], evidence: np.ndarray, p: FusionParams) -> dict[str, np.ndarray]:
    """The fused prediction as a ``pred`` dict (labels kept): ``logits`` the fused log-probs (a
    hierarchical model's hard-masked by the fused system), ``cs_logits`` the fused log p(system)."""
    ev = check_evidence(evidence, len(pred["logits"]), "fusion")
    logp = fused_log_probs(model_log_probs(pred), ev, p)
    cs = system_scores(logp)
    out = {k: v for k, v in pred.items() if k.startswith("y_") or k == "idx"}
    hierarchical = "ensemble_logits" in pred and "cs_logits" in pred  # mask by the fused system
    out["logits"] = (mask_by_system(logp, cs) if hierarchical else logp).astype(np.float32)
    out["cs_logits"] = cs.astype(np.float32)
    return out


def log_prior(counts: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """log of the smoothed training frequencies ``(counts + alpha) / sum``."""
    c = np.asarray(counts, np.float64) + alpha
    return np.log(c / c.sum())


def index_logits(evidence: np.ndarray, counts: np.ndarray, weight: float = INDEX_WEIGHT,
                 alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The index alone: ``logits`` (N,230) = log π(sg) + W·ℓ_ext(ext(sg)) and ``cs_logits`` (N,7)
    = log π(cs) + W·ℓ_cs (π: the smoothed training frequencies)."""
    ev = np.asarray(evidence, np.float64)
    counts = np.asarray(counts, np.float64)
    cs_counts = np.bincount(SG_TO_CS, weights=counts, minlength=N_CS)
    logits = log_prior(counts, alpha)[None] + weight * ev[:, N_CS:N_CS + N_EXT][:, EXT_OF_SG]
    return logits, log_prior(cs_counts, alpha)[None] + weight * ev[:, :N_CS]


def index_prediction(pred: dict[str, np.ndarray], evidence: np.ndarray,
                     counts: np.ndarray) -> dict[str, np.ndarray]:
    """The index alone as a ``pred`` dict with the labels of ``pred``."""
    ev = check_evidence(evidence, len(pred["y_sg"]), "index prediction")
    logits, cs_logits = index_logits(ev, counts)
    out = {k: v for k, v in pred.items() if k.startswith("y_") or k == "idx"}
    out.update(logits=logits.astype(np.float32), cs_logits=cs_logits.astype(np.float32))
    return out


def _nll(base: np.ndarray, ev: np.ndarray, y: np.ndarray, p: FusionParams) -> float:
    logp = fused_log_probs(base, ev, p)
    return float(-logp[np.arange(len(y)), y].mean())


def fit_fusion(pred: dict[str, np.ndarray], evidence: np.ndarray) -> FusionParams:
    """Fit T, w_ext, w_cs (continuous, L-BFGS-B, w ≥ 0, 0.05 ≤ T ≤ 20) for each cap on
    :data:`FLOOR_GRID` by the validation negative log-likelihood of the true groups; returns the
    best, with the validation NLL and top-1 of the model alone and of the fusion in ``fit``."""
    y = np.asarray(pred["y_sg"], np.int64)
    if len(y) == 0:
        raise fail(DataError, "fusion", "no validation patterns to fit the fusion on",
                   "evaluate with a validation split, or pass --evidence none")
    ev = check_evidence(evidence, len(y), "fusion fit")
    base = model_log_probs(pred)
    best: tuple[float, FusionParams] | None = None
    for cap in FLOOR_GRID:
        def objective(theta: np.ndarray, cap: float = cap) -> float:
            p = FusionParams(float(np.exp(theta[0])), float(theta[1]), cap, float(theta[2]))
            return _nll(base, ev, y, p)
        res = minimize(objective, np.array([0.0, 1.0, 0.5]), method="L-BFGS-B",
                       bounds=[(np.log(0.05), np.log(20.0)), (0.0, 50.0), (0.0, 50.0)])
        p = FusionParams(float(np.exp(res.x[0])), float(res.x[1]), cap, float(res.x[2]))
        if best is None or res.fun < best[0]:
            best = (float(res.fun), p)
    assert best is not None
    nll, p = best
    identity = FusionParams(1.0, 0.0, 30.0, 0.0)
    p.fit = {"n_val": int(len(y)), "val_nll_model": _nll(base, ev, y, identity), "val_nll_fused": nll,
             "val_top1_model": float((base.argmax(1) == y).mean()),
             "val_top1_fused": float((fused_log_probs(base, ev, p).argmax(1) == y).mean()),
             "val_solved": float((ev[:, -1] > 0.5).mean())}
    return p


__all__ = ["EVIDENCE_DIM", "EXT_OF_SG", "FusionParams", "N_EXT", "check_evidence", "evidence_terms",
           "fit_fusion", "fuse", "fused_log_probs", "index_logits", "index_prediction", "log_prior",
           "mask_by_system",
           "model_log_probs", "system_scores"]
