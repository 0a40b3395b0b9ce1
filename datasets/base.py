"""Contracts shared by every reader.

A reader returns a :class:`DataBundle`. Its datasets yield per-sample dicts; the loaders collate
them into the batch contract of DESIGN.md::

    {"x": (B, 1, L) float32, "y_sg": (B,) int64 in [0, 230), "y_cs": (B,) int64 in [0, 7),
     "idx": (B,) int64}

Peak-list datasets yield peaks instead of ``x`` and render in their ``collate`` (on the fly, with
train-time augmentations), so the Trainer never knows which format it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from utils.crystal import N_SG
from utils.grid import GridSpec


@dataclass
class DataBundle:
    """What a reader hands to the composition root.

    Attributes:
        name: dataset name (ccdc, xrd_mp, ...).
        train, val, test: datasets (val may be None; then model selection uses test, as the
            long-tail papers do, and the run log says so; train is None only for
            evaluation-only folders, which ``test.py`` reads).
        class_counts: (230,) int64 training count per space group (0-based index); (C,) for
            other label sets (CIFAR-LT).
        grid: the 2θ grid of the patterns.
        train_collate / eval_collate: collate functions (None = torch's default).
        spec: JSON-able description stored in checkpoints (grid, normalisation, source files).
    """

    name: str
    train: Dataset | None
    val: Dataset | None
    test: Dataset
    class_counts: np.ndarray
    grid: GridSpec = field(default_factory=GridSpec)
    train_collate: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None
    eval_collate: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None
    spec: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.class_counts = np.asarray(self.class_counts, dtype=np.int64)
        # (230,) for space groups; (C,) for other label sets (CIFAR-LT: 10 / 100 classes)
        assert self.class_counts.ndim == 1 and len(self.class_counts) >= 2, self.class_counts.shape
        self.spec.setdefault("name", self.name)
        self.spec.setdefault("grid", self.grid.to_dict())


def counts_from_labels(y_sg0: np.ndarray) -> np.ndarray:
    """(230,) training counts from 0-based space-group labels."""
    return np.bincount(np.asarray(y_sg0, dtype=np.int64), minlength=N_SG)[:N_SG]
