"""Multi-view batches and with-replacement draws for methods that need them (GLMC, GH, ...).

* :func:`with_views` gives a training collate ``n_views`` independent augmentations per sample
  (``batch["views"] = [x_1, ..., x_V]``): collates that render on the fly (``PeakCollate``, or any
  collate with an ``n_views`` attribute) produce them themselves; fixed patterns (the NPY layout,
  torch's default collate) get :class:`TensorViewCollate`, pattern-level augmentations of the
  stored tensor.
* :class:`DrawTaggedSampler` / :class:`DrawTaggedDataset` tag every draw of a with-replacement
  sampler with its position in the epoch (``"aug_key"``), so a sample drawn twice in one epoch gets
  two different augmentations (augmentation seeds are otherwise a function of (seed, epoch, idx)).

All randomness is counter based (``datasets.rendering.instrument.sample_seeds`` / ``hash_uniform``):
a view is a pure function of (seed, epoch, key, view), whatever batch or worker builds it, so resuming at an
epoch boundary replays the same views.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler, Subset, default_collate

from datasets.rendering.instrument import hash_normal, hash_uniform, sample_seeds
from utils.errors import ConfigError, DataError, fail

Collate = Callable[[list[dict[str, Any]]], dict[str, Any]]


def dataset_labels(ds: Dataset) -> np.ndarray:
    """(N,) 0-based space-group labels of a dataset (its ``labels``, through ``Subset``s)."""
    if isinstance(ds, Subset):
        return dataset_labels(ds.dataset)[np.asarray(ds.indices, dtype=np.int64)]
    if hasattr(ds, "labels"):
        return np.asarray(ds.labels, dtype=np.int64)
    raise fail(ConfigError, type(ds).__name__, "the dataset exposes no `labels` array, which a "
               "class-aware sampler needs", "give the reader's dataset a `labels` property "
               "((N,) 0-based labels), as PeakListDataset and NpyDataset have")


class DrawTaggedSampler(Sampler):
    """Wraps a sampler of indices; yields ``(position, index)`` pairs for :class:`DrawTaggedDataset`.

    ``set_epoch`` is forwarded, so the wrapped sampler stays a function of (seed, epoch).
    """

    def __init__(self, sampler: Sampler[int]) -> None:
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(enumerate(self.sampler))

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]


class DrawTaggedDataset(Dataset):
    """``ds[(position, i)]`` = ``ds[i]`` plus ``"aug_key": position`` (the draw's augmentation key)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    @property
    def labels(self) -> np.ndarray:
        return dataset_labels(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        pos, i = key
        item = dict(self.dataset[i])
        item["aug_key"] = int(pos)
        return item


class TensorViewCollate:
    """Collate + ``n_views`` augmentations of fixed 1-D patterns ``x`` (B, 1, L).

    GLMC / GH augment images (random crop, flip, colour jitter); a stored powder pattern has no
    peak list to re-render, so the views use the pattern-level counterparts (each drawn per sample
    and view): a 2θ shift of up to ``shift_deg`` (zero error / sample displacement; linear
    interpolation, zeros shifted in), a Gaussian broadening with σ up to ``blur_deg`` (peak-width
    jitter: crystallite size / instrument), an intensity factor log-uniform in
    [1/``scale``, ``scale``] and Gaussian noise of σ = ``noise_rel`` · max|x|.

    Args:
        base: the reader's collate (None: torch's default collate).
        n_views: views per sample (≥ 2 to be useful).
        seed: run seed. augment: False gives V copies of ``x``.
        step_deg: grid step in degrees (converts the ranges to points).
        shift_deg, blur_deg, scale, noise_rel: augmentation ranges (see above).

    Returns (call): the base batch plus ``"views"``: list of ``n_views`` (B, 1, L) float32.
    ``"x"`` stays the stored pattern.
    """

    def __init__(self, base: Collate | None, n_views: int, seed: int = 0, augment: bool = True,
                 step_deg: float = 0.01, shift_deg: float = 0.1, blur_deg: float = 0.05,
                 scale: float = 1.1, noise_rel: float = 0.005) -> None:
        if n_views < 1 or step_deg <= 0 or min(shift_deg, blur_deg, noise_rel) < 0 or scale < 1:
            raise ConfigError(f"TensorViewCollate: bad settings n_views={n_views} step_deg={step_deg} "
                              f"shift_deg={shift_deg} blur_deg={blur_deg} scale={scale} noise_rel="
                              f"{noise_rel}. Fix: n_views >= 1, step > 0, ranges >= 0, scale >= 1")
        self.base, self.n_views, self.seed, self.augment = base, int(n_views), int(seed), bool(augment)
        self.shift_pts, self.blur_pts = shift_deg / step_deg, blur_deg / step_deg
        self.scale, self.noise_rel, self.epoch = float(scale), float(noise_rel), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        keys = torch.tensor([int(d.get("aug_key", d["idx"])) for d in items], dtype=torch.int64)
        items = [{k: v for k, v in d.items() if k != "aug_key"} for d in items]
        batch = dict((self.base or default_collate)(items))
        x = torch.as_tensor(batch["x"]).float()
        if x.dim() != 3:
            raise fail(DataError, "batch['x']", f"pattern views need (B, 1, L) patterns, got shape "
                       f"{tuple(x.shape)}", "give the reader's collate an `n_views` option that "
                       "builds its own views (as PeakCollate does)")
        if not self.augment:
            batch["views"] = [x] * self.n_views
            return batch
        seeds = sample_seeds(self.seed, self.epoch, keys)
        batch["views"] = [self.augment_patterns(x, sample_seeds(v + 1, 0, seeds))
                          for v in range(self.n_views)]
        return batch

    def augment_patterns(self, x: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """One augmented copy of ``x`` (B, 1, L), per-sample randomness from ``seeds`` (B,)."""
        b, _, n = x.shape
        y = x[:, 0]
        if self.shift_pts > 0:
            s = (2.0 * hash_uniform(seeds, 101, 1) - 1.0) * self.shift_pts          # (B, 1) points
            pos = torch.arange(n, dtype=torch.float32) - s                         # out[i] = x(i - s)
            lo = pos.floor()
            frac = pos - lo
            lo = lo.long()

            def at(j: torch.Tensor) -> torch.Tensor:
                inside = (j >= 0) & (j < n)
                return torch.gather(y, 1, j.clamp(0, n - 1)) * inside

            y = (1.0 - frac) * at(lo) + frac * at(lo + 1)
        if self.blur_pts > 0:
            sigma = hash_uniform(seeds, 102, 1) * self.blur_pts                      # (B, 1) points
            half = max(1, math.ceil(3.0 * self.blur_pts))
            k = torch.arange(-half, half + 1, dtype=torch.float32)
            ker = torch.exp(-0.5 * (k / sigma.clamp_min(1e-3)) ** 2)
            ker = ker / ker.sum(dim=1, keepdim=True)                                # (B, K)
            y = F.conv1d(F.pad(y[None], (half, half)), ker[:, None], groups=b)[0]
        if self.scale > 1:
            log_s = (2.0 * hash_uniform(seeds, 103, 1) - 1.0) * math.log(self.scale)
            y = y * torch.exp(log_s)
        if self.noise_rel > 0:
            amp = y.abs().amax(dim=1, keepdim=True) * self.noise_rel
            y = y + amp * hash_normal(seeds, 104, n)
        return y[:, None].contiguous()


def with_views(collate: Collate | None, n_views: int, seed: int, augment: bool = True,
               step_deg: float = 0.01) -> Collate | None:
    """A training collate that yields ``n_views`` views per sample (``collate`` itself if 1).

    A collate with an ``n_views`` attribute (``PeakCollate``) is copied and asked for the views;
    any other is wrapped in :class:`TensorViewCollate`. The copy keeps the original untouched, so
    one bundle can serve single- and multi-view loaders.
    """
    if n_views <= 1:
        return collate
    if collate is not None and hasattr(collate, "n_views"):
        c = copy.copy(collate)
        c.n_views = int(n_views)
        if hasattr(c, "seed"):
            c.seed = int(seed)
        return c
    return TensorViewCollate(collate, n_views, seed, augment, step_deg)


def reseeded(collate: Collate | None, seed: int) -> Collate | None:
    """A copy of ``collate`` with another augmentation seed (a second loader's own stream)."""
    if collate is None or not hasattr(collate, "seed"):
        return collate
    c = copy.copy(collate)
    c.seed = int(seed)
    return c
