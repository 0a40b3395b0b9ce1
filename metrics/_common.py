"""Input handling shared by the metric modules: tensors or arrays in, validated numpy out."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from utils.errors import DataError, fail

_WHERE = "metrics"


def to_numpy(x: Any) -> np.ndarray:
    """A numpy view/copy of a torch tensor (any device, any dtype), array or sequence."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()  # numpy has no bfloat16
        return x.cpu().numpy()
    return np.asarray(x)


def as_labels(y: Any, n_classes: int, name: str = "labels") -> np.ndarray:
    """(N,) int64 labels checked to lie in ``[0, n_classes)``.

    Raises:
        DataError: when ``y`` is not 1-D, not integral, or out of range.
    """
    a = to_numpy(y)
    if a.ndim != 1:
        raise fail(DataError, _WHERE, f"{name} must be 1-D (N,), got shape {a.shape}",
                   "pass one integer label per sample")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise fail(DataError, _WHERE, f"{name} are not integers (dtype {a.dtype})",
                       "pass class indices, not scores")
    a = a.astype(np.int64, copy=False)
    if a.size and (a.min() < 0 or a.max() >= n_classes):
        raise fail(DataError, _WHERE, f"{name} must lie in [0, {n_classes}), got range "
                   f"[{a.min()}, {a.max()}]", "use 0-based indices (space group number - 1)")
    return a


def as_scores(logits: Any, n: int | None = None, name: str = "logits") -> np.ndarray:
    """(N, C) float scores, checked against the number of labels ``n`` when given."""
    a = to_numpy(logits)
    if a.ndim != 2:
        raise fail(DataError, _WHERE, f"{name} must be 2-D (N, C), got shape {a.shape}",
                   "pass one row of class scores per sample")
    if n is not None and a.shape[0] != n:
        raise fail(DataError, _WHERE, f"{name} has {a.shape[0]} rows but there are {n} labels",
                   "pass logits and labels of the same samples")
    return a


def as_counts(counts: Any, n_classes: int | None = None, name: str = "class_counts") -> np.ndarray:
    """(C,) non-negative training counts (int64 when integral, else float64)."""
    a = to_numpy(counts)
    if a.ndim != 1 or (n_classes is not None and a.shape[0] != n_classes):
        want = f"({n_classes},)" if n_classes is not None else "1-D"
        raise fail(DataError, _WHERE, f"{name} must have shape {want}, got {a.shape}",
                   "pass the training count of every class (e.g. DataBundle.class_counts)")
    if a.size and (not np.all(np.isfinite(a)) or np.any(a < 0)):
        raise fail(DataError, _WHERE, f"{name} has negative or non-finite entries",
                   "counts are finite numbers >= 0")
    if np.issubdtype(a.dtype, np.integer) or np.all(np.equal(np.mod(a, 1), 0)):
        return a.astype(np.int64)
    return a.astype(np.float64)
