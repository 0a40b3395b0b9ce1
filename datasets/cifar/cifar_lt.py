"""Long-tailed CIFAR-10/100 from the official python folders (``--data_format cifar10_lt|cifar100_lt``).

So that a user with CIFAR on disk can check each baseline plug-in against its paper. Nothing is
ever downloaded: get ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` from
https://www.cs.toronto.edu/~kriz/cifar.html yourself, unpack it, and pass the folder
(``--data_dir .../cifar-100-python`` or its parent).

**These files are Python pickles.** Unpickling can run code, so they are read only from the folder
the user names, and with a restricted unpickler that resolves nothing but the numpy array
constructors (``_reconstruct``, ``_frombuffer``, ``ndarray``, ``dtype``) and ``_codecs.encode``;
any other global (a code reference) is refused with a :class:`DataError`.

Long-tailed training set (methods/conventions.md §1.1): n_i = floor(n_max · IF^(−i/(C−1))),
class 0 = head, natural label order, n_max = |train| / C as in LDAM-DRW (5000 / 500 for the
official files), images kept WITHOUT replacement:

* ``cao`` (default; LDAM-DRW, MiSLAS / ARB-Loss, GH): a RandomState(0) shared by all classes (the
  run seed is not used); per class, shuffle that class's indices and keep the first n_i;
* ``glmc``: a RandomState(run seed; GLMC's default 3407); per class choice(n_class, n_i,
  replace=False) (GLMC's fixed version; the pre-2023-05-23 duplicates are not reproduced);
* ``first``: the first n_i images of each class in file order (PolarisLight / ICL).

CIFAR-100-LT IF=100 has 10,847 training images (500, 477, 455, …, 5). The test split is the full
balanced test set (no validation split: model selection uses test, as the CIFAR-LT papers do).

Batches follow the framework's contract with images: ``x`` (B, 3, 32, 32) float32 (normalised with
LDAM-DRW's per-channel mean/std, used for both datasets), ``y_sg`` = class id in [0, C), ``y_cs`` = 0.
Crystal-system, enantiomorph and extinction metrics are meaningless on CIFAR; only top-k, macro-F1
and many/medium/few apply. Train with a model whose ``num_classes`` is C (``linear``, ``gh_linear``,
``glmc``, ``ncl`` with ``--frontend_type resnet32``); the ICL MoE needs the 230 space groups.
"""

from __future__ import annotations

import importlib
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.base import DataBundle
from datasets.cifar.image_augment import VIEW_AUGMENTS, crop_flip
from datasets.registry import READERS
from datasets.rendering.instrument import sample_seeds
from utils.errors import ConfigError, DataError, fail

LT_SAMPLING = ("cao", "glmc", "first")
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)   # LDAM-DRW's CIFAR normalisation
LAYOUTS = {  # folder, train files, test files, label key, classes
    "cifar10_lt": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels",
                   10),
    "cifar100_lt": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100),
}
_ALLOWED = {("_reconstruct", "multiarray"), ("_frombuffer", "numeric"), ("ndarray", None), ("dtype", None)}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays, lists and dicts, and nothing that runs code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return importlib.import_module("_codecs").encode
        sub = module.rsplit(".", 1)[-1] if module.startswith(("numpy.core.", "numpy._core.")) else None
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                      "numpy._core.numeric") and (name, sub) in _ALLOWED:
            if sub is None:
                return getattr(np, name)
            for base in ("numpy._core", "numpy.core"):
                try:
                    return getattr(importlib.import_module(f"{base}.{sub}"), name)
                except (ImportError, AttributeError):
                    continue
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def load_cifar_pickle(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One official CIFAR python file → images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    if not path.is_file():
        raise fail(DataError, path, "CIFAR file not found", "pass the unpacked official python folder "
                   "(cifar-10-batches-py or cifar-100-python) from "
                   "https://www.cs.toronto.edu/~kriz/cifar.html")
    try:
        with open(path, "rb") as fh:
            obj = _ArrayUnpickler(fh, encoding="bytes").load()
    except Exception as exc:  # truncated file, not a pickle, refused global ...
        raise fail(DataError, path,
                   f"not a readable CIFAR python file ({type(exc).__name__}: {str(exc)[:160]})",
                   "re-extract the official archive; only its python pickles (numpy arrays + lists) "
                   "are accepted") from exc
    if not isinstance(obj, dict):
        raise fail(DataError, path, f"expected a dict, found {type(obj).__name__}", "re-extract the archive")
    obj = {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}
    if "data" not in obj or label_key not in obj:
        raise fail(DataError, path, f"keys 'data' and '{label_key}' expected, found {sorted(obj)}",
                   "point --data_dir at the folder matching --data_format (cifar10_lt: cifar-10-batches-py, "
                   "cifar100_lt: cifar-100-python)")
    data, labels = np.asarray(obj["data"]), np.asarray(obj[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise fail(DataError, path, f"data {data.dtype}{data.shape} with {len(labels)} labels; expected "
                   "uint8 (N, 3072) and N labels", "re-extract the official archive")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise fail(DataError, path, f"labels outside [0, {num_classes})",
                   "use the folder of the right dataset")
    return data.reshape(-1, 3, 32, 32), labels


def lt_counts(n_max: float, num_classes: int, imbalance_factor: float) -> list[int]:
    """n_i = floor(n_max · IF^(−i/(C−1))), computed as LDAM-DRW does (n_max · (1/IF)^(i/(C−1)))."""
    if imbalance_factor < 1:
        raise fail(ConfigError, "--imbalance_factor", f"{imbalance_factor} < 1", "pass e.g. 100, 50 or 10")
    return [int(n_max * (1.0 / imbalance_factor) ** (i / (num_classes - 1.0))) for i in range(num_classes)]


def lt_indices(labels: np.ndarray, counts: list[int], sampling: str = "cao", seed: int = 0) -> np.ndarray:
    """Indices of the kept training images, class by class (class 0 first), no duplicates."""
    if sampling not in LT_SAMPLING:
        raise fail(ConfigError, "--lt_sampling", f"unknown variant '{sampling}'", f"use one of {LT_SAMPLING}")
    rng = np.random.RandomState(0 if sampling == "cao" else seed)
    keep = []
    for c, n in enumerate(counts):
        idx = np.flatnonzero(labels == c)
        if n > len(idx):
            raise fail(DataError, f"class {c}", f"{n} images requested, {len(idx)} available",
                       "use the full official training files")
        if sampling == "cao":
            rng.shuffle(idx)
            keep.append(idx[:n])
        elif sampling == "glmc":
            keep.append(idx[rng.choice(len(idx), n, replace=False)])
        else:
            keep.append(idx[:n])
    return np.concatenate(keep).astype(np.int64)


class CifarDataset(Dataset):
    """Images (N, 3, 32, 32) uint8 and labels; items ``{"img", "y_sg", "y_cs": 0, "idx"}``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self._labels = np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        return {"img": self.images[i], "y_sg": int(self._labels[i]), "y_cs": 0, "idx": i}


class CifarCollate:
    """Stack, augment (train) and normalise images; optional extra views for two-view methods.

    Args:
        augment: random crop (pad 4) + flip per sample, seeded by (seed, epoch, idx).
        seed: run seed. n_views: views per sample in ``batch["views"]`` (set by ``datasets.views``).
        view_aug: augmentation of the views: "standard" (crop + flip) or "simclr" (GH's).

    Returns (call): ``{"x": (B, 3, 32, 32) float32, "y_sg": (B,), "y_cs": (B,) zeros, "idx": (B,)}``
    plus ``"views"``: list of ``n_views`` (B, 3, 32, 32) when ``n_views`` > 1.
    """

    def __init__(self, augment: bool = False, seed: int = 0, n_views: int = 1,
                 view_aug: str = "standard") -> None:
        if view_aug not in VIEW_AUGMENTS:
            raise fail(ConfigError, "--cifar_view_aug", f"unknown augmentation '{view_aug}'",
                       f"use one of {sorted(VIEW_AUGMENTS)}")
        self.augment, self.seed, self.n_views = bool(augment), int(seed), int(n_views)
        self.view_aug, self.epoch = view_aug, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @staticmethod
    def normalize(x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(MEAN, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(STD, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        keys = torch.tensor([int(d.get("aug_key", d["idx"])) for d in items], dtype=torch.int64)
        img = torch.from_numpy(np.stack([d["img"] for d in items])).float() / 255.0
        seeds = sample_seeds(self.seed, self.epoch, keys)
        x = crop_flip(img, seeds) if self.augment else img
        out: dict[str, Any] = {
            "x": self.normalize(x), "y_sg": torch.tensor([int(d["y_sg"]) for d in items], dtype=torch.int64),
            "y_cs": torch.zeros(len(items), dtype=torch.int64),
            "idx": torch.tensor([int(d["idx"]) for d in items], dtype=torch.int64)}
        if self.n_views > 1:
            fn = VIEW_AUGMENTS[self.view_aug]
            out["views"] = [self.normalize(fn(img, sample_seeds(v + 1, 0, seeds)) if self.augment else img)
                            for v in range(self.n_views)]
        return out


def resolve_folder(root: str | os.PathLike, fmt: str) -> Path:
    folder, train_files = LAYOUTS[fmt][0], LAYOUTS[fmt][1]
    root = Path(root)
    for cand in (root, root / folder):
        if (cand / train_files[0]).is_file():
            return cand
    raise fail(DataError, root, f"no {folder} folder (with {train_files[0]}) here",
               f"download and unpack the official python version yourself (the framework never downloads), "
               f"then pass --data_dir .../{folder} (or its parent)")


def build_cifar_lt(fmt: str, root: str | os.PathLike, name: str, seed: int = 0, augment: bool = True,
                   imbalance_factor: float = 100.0, lt_sampling: str = "cao",
                   cifar_view_aug: str = "standard", sg_count_path: str | None = None,
                   **options: Any) -> DataBundle:
    """DataBundle of CIFAR-{10,100}-LT (train long-tailed, test balanced, no val).

    Args:
        fmt: "cifar10_lt" or "cifar100_lt". root: the official python folder or its parent.
        name: dataset name (run names). seed: run seed (augmentations; the "glmc" subset).
        augment: crop + flip on training images. imbalance_factor: IF = n_max / n_min.
        lt_sampling: "cao", "glmc" or "first". cifar_view_aug: augmentation of extra views.
        sg_count_path: must be None (counts come from the subset). options: ignored.
    """
    if sg_count_path:
        raise fail(ConfigError, "--sg_count_path", "not used with CIFAR-LT", "drop the flag")
    folder, train_files, test_files, key, c = LAYOUTS[fmt]
    root = resolve_folder(root, fmt)
    tr = [load_cifar_pickle(root / f, key, c) for f in train_files]
    te = [load_cifar_pickle(root / f, key, c) for f in test_files]
    x_tr, y_tr = np.concatenate([a for a, _ in tr]), np.concatenate([b for _, b in tr])
    x_te, y_te = np.concatenate([a for a, _ in te]), np.concatenate([b for _, b in te])
    counts = lt_counts(len(y_tr) / c, c, imbalance_factor)   # LDAM-DRW: n_max = |train| / C
    keep = lt_indices(y_tr, counts, lt_sampling, seed)
    class_counts = np.bincount(y_tr[keep], minlength=c)
    spec = {"name": name, "format": fmt, "folder": str(root), "imbalance_factor": imbalance_factor,
            "lt_sampling": lt_sampling, "n_train": int(len(keep)), "n_test": int(len(y_te)), "num_classes": c,
            "normalize": {"mean": MEAN, "std": STD}, "input_shape": [3, 32, 32]}
    return DataBundle(name=name, train=CifarDataset(x_tr[keep], y_tr[keep]), val=None,
                      test=CifarDataset(x_te, y_te), class_counts=class_counts,
                      train_collate=CifarCollate(augment, seed, 1, cifar_view_aug),
                      eval_collate=CifarCollate(False, seed), spec=spec)


@READERS.register("cifar10_lt")
def build_cifar10_lt(root: str | os.PathLike, name: str = "cifar10_lt", seed: int = 0, augment: bool = True,
                     imbalance_factor: float = 100.0, lt_sampling: str = "cao",
                     cifar_view_aug: str = "standard", sg_count_path: str | None = None,
                     **options: Any) -> DataBundle:
    """CIFAR-10-LT from ``cifar-10-batches-py`` (arguments: :func:`build_cifar_lt`)."""
    return build_cifar_lt("cifar10_lt", root, name, seed, augment, imbalance_factor, lt_sampling,
                          cifar_view_aug, sg_count_path, **options)


@READERS.register("cifar100_lt")
def build_cifar100_lt(root: str | os.PathLike, name: str = "cifar100_lt", seed: int = 0, augment: bool = True,
                      imbalance_factor: float = 100.0, lt_sampling: str = "cao",
                      cifar_view_aug: str = "standard", sg_count_path: str | None = None,
                      **options: Any) -> DataBundle:
    """CIFAR-100-LT from ``cifar-100-python`` (arguments: :func:`build_cifar_lt`)."""
    return build_cifar_lt("cifar100_lt", root, name, seed, augment, imbalance_factor, lt_sampling,
                          cifar_view_aug, sg_count_path, **options)
