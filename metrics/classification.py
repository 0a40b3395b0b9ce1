"""Generic classification metrics: top-k, confusion, per-class accuracy, macro recall / F1.

Conventions (apply to every function here):
- Inputs may be torch tensors (any device) or numpy arrays; labels are 0-based class indices.
- Values are fractions in [0, 1], not percentages.
- A class with no sample in the evaluation set has no accuracy: per-class arrays hold NaN there
  and every per-class mean (macro recall, macro F1, many/medium/few) leaves it out. Averaging a
  0 for such classes would punish a model for the test split's composition.
- Everything is vectorised (``np.bincount`` on flattened indices), so N ~ 10^5 samples with
  230 classes take milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from metrics._common import as_labels, as_scores
from utils.errors import DataError, fail

_CHUNK = 16384  # rows per block in true_class_rank: bounds the (rows, C) temporaries


def true_class_rank(logits: Any, y: Any) -> np.ndarray:
    """0-based rank of the true class in each row of ``logits``.

    Ties are broken like ``argmax`` (the lower class index ranks first), so ``rank == 0`` is
    exactly ``argmax(logits, 1) == y`` and top-k never depends on a sort's tie order.

    Args:
        logits: (N, C) scores (logits or probabilities; only the order matters).
        y: (N,) true classes in [0, C).

    Returns:
        (N,) int64 rank; the sample is top-k correct when ``rank < k``.
    """
    z = as_scores(logits)
    yy = as_labels(y, z.shape[1], "y")
    if len(yy) != z.shape[0]:
        raise fail(DataError, "metrics.true_class_rank", f"logits has {z.shape[0]} rows but there "
                   f"are {len(yy)} labels", "pass logits and labels of the same samples")
    rank = np.empty(len(yy), dtype=np.int64)
    cols = np.arange(z.shape[1])
    for s in range(0, len(yy), _CHUNK):
        zb, yb = z[s:s + _CHUNK], yy[s:s + _CHUNK]
        t = zb[np.arange(len(yb)), yb][:, None]
        ahead = (zb > t) | ((zb == t) & (cols[None, :] < yb[:, None]))
        rank[s:s + _CHUNK] = ahead.sum(1)
    return rank


def topk_correct(logits: Any, y: Any, k: int = 1) -> np.ndarray:
    """(N,) bool: the true class is among the ``k`` highest scores (argmax tie-breaking)."""
    return true_class_rank(logits, y) < k


def topk_accuracy(logits: Any, y: Any, topk: Iterable[int] = (1,)) -> dict[int, float]:
    """Top-k accuracy for each k in ``topk``.

    Args:
        logits: (N, C) scores.
        y: (N,) true classes.
        topk: the k values; k larger than C gives 1.0.

    Returns:
        ``{k: fraction of samples whose true class ranks < k}`` (NaN when N = 0).
    """
    rank = true_class_rank(logits, y)
    return {int(k): float(np.mean(rank < k)) if len(rank) else float("nan") for k in topk}


def _infer_n(n_classes: int | None, *ys: Any) -> int:
    if n_classes is not None:
        return int(n_classes)
    m = [int(np.max(np.asarray(a))) for a in ys if np.asarray(a).size]
    return max(m) + 1 if m else 1


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int | None = None) -> np.ndarray:
    """(C, C) int64 counts; ``cm[i, j]`` = samples of true class i predicted as j (sklearn's layout)."""
    n = _infer_n(n_classes, y_true, y_pred)
    t = as_labels(y_true, n, "y_true")
    p = as_labels(y_pred, n, "y_pred")
    if len(t) != len(p):
        raise fail(DataError, "metrics.confusion_matrix", f"{len(t)} true labels but {len(p)} "
                   "predictions", "pass labels and predictions of the same samples")
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n)


def per_class_mean(values: Any, y: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of a per-sample quantity (e.g. a 0/1 "correct" flag) within each true class.

    Args:
        values: (N,) numbers or bools.
        y: (N,) true classes.
        n_classes: C.

    Returns:
        ``(mean, n_eval)``: (C,) float64 with NaN for classes absent from ``y``, and (C,) int64
        sample counts per class.
    """
    yy = as_labels(y, n_classes, "y")
    v = np.asarray(values, dtype=np.float64)
    n_eval = np.bincount(yy, minlength=n_classes)
    s = np.bincount(yy, weights=v, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_eval > 0, s / np.maximum(n_eval, 1), np.nan)
    return mean, n_eval


def per_class_accuracy(y_true: Any, y_pred: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class accuracy (= recall) and per-class sample counts.

    Returns:
        ``(acc, n_eval)``: (C,) float64 (NaN where the class is absent from ``y_true``) and (C,)
        int64.
    """
    t = as_labels(y_true, n_classes, "y_true")
    p = as_labels(y_pred, n_classes, "y_pred")
    return per_class_mean(t == p, t, n_classes)


def _labels(labels: Any, t: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    if labels is None:
        return np.unique(t)
    if isinstance(labels, str):
        if labels == "union":
            return np.union1d(t, p)
        raise fail(DataError, "metrics", f"unknown labels mode {labels!r}",
                   "use None (classes present in y_true), 'union', or an array of classes")
    return as_labels(labels, n, "labels")


def precision_recall_f1(y_true: Any, y_pred: Any, n_classes: int | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 (each (C,) float64), 0 where undefined (sklearn's
    ``zero_division=0``)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(np.float64)
    n_true, n_pred = cm.sum(1), cm.sum(0)
    precision = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
    recall = np.divide(tp, n_true, out=np.zeros_like(tp), where=n_true > 0)
    denom = n_true + n_pred  # F1 = 2TP / (2TP + FP + FN) = 2TP / (n_true + n_pred)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1


def macro_recall(y_true: Any, y_pred: Any, n_classes: int | None = None, labels: Any = None) -> float:
    """Unweighted mean recall over ``labels``.

    With the default ``labels=None`` (classes present in ``y_true``) this is the balanced
    accuracy and equals ``sklearn.metrics.recall_score(..., labels=np.unique(y_true),
    average="macro")``; ``labels="union"`` reproduces sklearn's default (y_true ∪ y_pred).
    """
    n = _infer_n(n_classes, y_true, y_pred)
    t, p = as_labels(y_true, n, "y_true"), as_labels(y_pred, n, "y_pred")
    lab = _labels(labels, t, p, n)
    if not len(lab):
        return float("nan")
    return float(precision_recall_f1(t, p, n)[1][lab].mean())


def macro_f1(y_true: Any, y_pred: Any, n_classes: int | None = None, labels: Any = None) -> float:
    """Unweighted mean F1 over ``labels`` (default: classes present in ``y_true``).

    Equals ``sklearn.metrics.f1_score(y_true, y_pred, labels=labels, average="macro",
    zero_division=0)``. Predictions of classes absent from the evaluation set still cost: they
    are false negatives of the true class. ``labels="union"`` gives sklearn's default, which also
    averages a 0 for every class that is only ever predicted.
    """
    n = _infer_n(n_classes, y_true, y_pred)
    t, p = as_labels(y_true, n, "y_true"), as_labels(y_pred, n, "y_pred")
    lab = _labels(labels, t, p, n)
    if not len(lab):
        return float("nan")
    return float(precision_recall_f1(t, p, n)[2][lab].mean())
