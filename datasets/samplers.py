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


class ShardSampler(Sampler):
    """This rank's share of any sampler's epoch order, for multi-process (DDP) training.

    Every rank builds the wrapped sampler's full order (a function of (seed, epoch), hence the
    same on all ranks), pads it to a multiple of ``num_replicas`` by repeating its first items, and
    keeps the stride ``order[rank::num_replicas]``. Strided shards of a shuffled (or re-weighted)
    order draw the same long-tailed class profile as the whole epoch; every rank gets the same
    number of items, so the ranks run the same number of steps. ``set_epoch`` is forwarded.

    Args:
        sampler: sampler of the full epoch (:class:`EpochShuffleSampler`, a class-balanced one, or a
            wrapper yielding tagged draws, whose tags then stay the global positions).
        num_replicas: number of processes (ranks).
        rank: this process's rank in ``[0, num_replicas)``.
    """

    def __init__(self, sampler: Sampler, num_replicas: int, rank: int) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.sampler, self.num_replicas, self.rank = sampler, num_replicas, rank
        self.total = len(sampler)  # type: ignore[arg-type]
        self.num_samples = -(-self.total // num_replicas)  # ceil

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator:
        order = list(self.sampler)
        pad = self.num_samples * self.num_replicas - len(order)
        if pad > 0 and order:
            order += (order * (pad // len(order) + 1))[:pad]
        return iter(order[self.rank::self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples
