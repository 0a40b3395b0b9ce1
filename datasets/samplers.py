"""Samplers whose order is a pure function of (seed, epoch): resuming at an epoch boundary
replays exactly the same batches."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[int]):
    """Random permutation of ``range(n)`` seeded by ``seed + epoch`` (call ``set_epoch``)."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class ClassBalancedSampler(Sampler[int]):
    """With-replacement sampler with class probability ∝ n_c^(1−q) (per-sample weight n_y^(−q)).

    q = 0: instance-balanced (the natural profile); q = 1: class-balanced. Deterministic per
    (seed, epoch).
    """

    def __init__(self, labels: np.ndarray, q: float = 1.0, seed: int = 0, num_samples: int | None = None):
        labels = np.asarray(labels)
        counts = np.bincount(labels)
        w = counts[labels].astype(np.float64) ** (-q)
        self.weights = torch.as_tensor(w / w.sum())
        self.num_samples = num_samples or len(labels)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100003 + 7919 + self.epoch)
        return iter(torch.multinomial(self.weights, self.num_samples, True, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_samples
