"""Crystallography-aware accuracies: crystal system, up to enantiomorph, extinction group.

A powder pattern cannot separate enantiomorphic space groups (Friedel's law: (76, 78),
(91, 95), ...), and it reveals the lattice and the systematic absences (the extinction group,
99 of them) directly, while the rest of the space-group choice rests on intensities. So docs/DATA.md
asks for accuracy at three levels: strict, up to enantiomorph, and on extinction groups.
Labels are 0-based space-group indices (tensor or array); results are fractions in [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metrics._common import as_labels, as_scores
from utils.crystal import N_CS, N_SG, SG_TO_CS, enantiomorph_partner, extinction_groups
from utils.errors import DataError, fail

_PARTNER = enantiomorph_partner()


def _pair(y_true: Any, y_pred: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    t, p = as_labels(y_true, N_SG, "y_true"), as_labels(y_pred, N_SG, "y_pred")
    if len(t) != len(p):
        raise fail(DataError, where, f"{len(t)} true labels but {len(p)} predictions",
                   "pass labels and predictions of the same samples")
    return t, p


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


def sg_to_cs_np(y_sg: Any) -> np.ndarray:
    """(N,) crystal system (0..6) of 0-based space groups."""
    return SG_TO_CS[as_labels(y_sg, N_SG, "y_sg")]


def cs_correct_from_sg(y_true: Any, y_pred: Any) -> np.ndarray:
    """(N,) bool: the predicted space group lies in the true crystal system."""
    t, p = _pair(y_true, y_pred, "metrics.cs_correct_from_sg")
    return SG_TO_CS[t] == SG_TO_CS[p]


def cs_accuracy_from_sg(y_true: Any, y_pred: Any) -> float:
    """Crystal-system accuracy implied by space-group predictions (0-based SG labels)."""
    return _mean(cs_correct_from_sg(y_true, y_pred))


def enantiomorph_correct(y_true: Any, y_pred: Any) -> np.ndarray:
    """(N,) bool: prediction equals the true group or its enantiomorphic partner (76 ↔ 78, ...)."""
    t, p = _pair(y_true, y_pred, "metrics.enantiomorph_correct")
    return (p == t) | (p == _PARTNER[t])


def enantiomorph_accuracy(y_true: Any, y_pred: Any) -> float:
    """Space-group accuracy up to enantiomorph: predicting 78 (P4_3) for 76 (P4_1) counts."""
    return _mean(enantiomorph_correct(y_true, y_pred))


def extinction_correct(y_true: Any, y_pred: Any) -> np.ndarray:
    """(N,) bool: predicted and true space groups share an extinction group."""
    t, p = _pair(y_true, y_pred, "metrics.extinction_correct")
    eg = extinction_groups()
    return eg[t] == eg[p]


def extinction_accuracy(y_true: Any, y_pred: Any) -> float:
    """Accuracy on extinction groups (what the peak positions alone can decide)."""
    return _mean(extinction_correct(y_true, y_pred))


def cs_head_accuracy(cs_logits: Any, y_cs: Any) -> float:
    """Accuracy of a crystal-system head.

    Args:
        cs_logits: (N, 7) crystal-system scores.
        y_cs: (N,) true crystal systems (0..6).
    """
    z = as_scores(cs_logits, name="cs_logits")
    y = as_labels(y_cs, N_CS, "y_cs")
    if z.shape != (len(y), N_CS):
        raise fail(DataError, "metrics.cs_head_accuracy", f"cs_logits has shape {z.shape}, "
                   f"expected ({len(y)}, {N_CS})", "pass the model's 'cs_logits' for these samples")
    return _mean(z.argmax(1) == y)


def gate_usage_by_cs(gate: Any, y_cs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean gate weight of each expert for the samples of each crystal system.

    Args:
        gate: (N, K) gate weights of the MoE head (rows sum to 1).
        y_cs: (N,) crystal system of each sample (0..6), true or predicted.

    Returns:
        ``(mean, n)``: (7, K) mean gate weight per crystal system and expert (NaN rows for a
        system without samples) and the (7,) sample counts.
    """
    g = np.asarray(gate.detach().cpu().numpy() if hasattr(gate, "detach") else gate, dtype=float)
    if g.ndim != 2:
        raise fail(DataError, "gate", f"expected (N, K) gate weights, got shape {g.shape}",
                   "pass outputs['gate'] stacked over the evaluation set")
    y = as_labels(y_cs, N_CS, "y_cs")
    if len(y) != len(g):
        raise fail(DataError, "gate", f"{len(g)} gate rows but {len(y)} labels",
                   "pass the gate and the labels of the same samples")
    n = np.bincount(y, minlength=N_CS)
    sums = np.stack([np.bincount(y, weights=g[:, e], minlength=N_CS) for e in range(g.shape[1])], 1)
    mean = np.where(n[:, None] > 0, sums / np.maximum(n, 1)[:, None], np.nan)
    return mean, n


def gate_usage(gate: Any) -> dict[str, float]:
    """Mean gate weight per expert over all samples, ``{'gate_e0': ..., 'gate_e{K-1}': ...}``, and
    ``gate_active``: how many experts carry at least half their uniform share (1/(2K)) — a
    collapsed gate (all weight on a few experts) shows up as a small number."""
    g = np.asarray(gate.detach().cpu().numpy() if hasattr(gate, "detach") else gate, dtype=float)
    if g.ndim != 2 or len(g) == 0:
        return {}
    use = g.mean(0)
    out = {f"gate_e{e}": float(u) for e, u in enumerate(use)}
    out["gate_active"] = float((use >= 0.5 / g.shape[1]).sum())
    return out
