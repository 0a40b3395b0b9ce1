"""Reader of the safe NPY layout (``--use_processed_npy --processed_data_dir D``).

The files are memory-mapped, so a 100k × 8500 training set costs no RAM up front and DataLoader
workers share the page cache. The layout and array format are documented in
:mod:`datasets.readers.npy_format`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger
from torch.utils.data import Dataset

from datasets.base import DataBundle, counts_from_labels
from datasets.readers.npy_format import LAYOUT, SPLITS, read_dataset_json, read_npy, split_path
from datasets.registry import READERS
from utils.crystal import N_SG, SG_TO_CS
from utils.errors import DataError, fail
from utils.grid import GridSpec


class NpyDataset(Dataset):
    """One split file, memory-mapped read-only.

    Each item: ``{"x": (1, L) float32 tensor (stored intensity / intensity_scale), "y_sg": int in
    [0, 230), "y_cs": int in [0, 7), "idx": int}``; torch's default collate stacks them into the
    batch contract of :mod:`datasets.base`.

    Args:
        path: the ``.npy`` file.
        intensity_scale: stored intensities are divided by it (dataset.json ``intensity_scale``).
        n_points: expected pattern length (GridMismatchError otherwise); None skips the check.
        check_values: validate every value on open (NaN/inf scan in chunks, labels).
    """

    def __init__(self, path: str | os.PathLike, intensity_scale: float = 1.0, n_points: int | None = None,
                 check_values: bool = True) -> None:
        self.path = Path(path)
        arr = read_npy(self.path, n_points=n_points, check_values=check_values)
        self.n_points = int(arr.dtype.fields["intensitys"][0].shape[0])
        self.intensity_scale = float(intensity_scale)
        # Labels are small: keep them in memory (samplers and class counts need them all).
        self.sg = np.asarray(arr["labels230"]).astype(np.int64)
        self._arr: np.ndarray | None = arr
        self._pid = os.getpid()

    @property
    def labels(self) -> np.ndarray:
        """(N,) 0-based space-group labels."""
        return self.sg - 1

    def _array(self) -> np.ndarray:
        # Re-open after pickling (spawned workers) instead of shipping the mapped data around.
        if self._arr is None or self._pid != os.getpid():
            self._arr = np.load(self.path, allow_pickle=False, mmap_mode="r")
            self._pid = os.getpid()
        return self._arr

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_arr"], d["_pid"] = None, None
        return d

    def __len__(self) -> int:
        return len(self.sg)

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        x = np.array(self._array()["intensitys"][i], dtype=np.float32)
        if self.intensity_scale != 1.0:
            x /= np.float32(self.intensity_scale)
        sg0 = int(self.sg[i]) - 1
        return {"x": torch.from_numpy(x).unsqueeze(0), "y_sg": sg0, "y_cs": int(SG_TO_CS[sg0]), "idx": i}


def read_sg_count(path: str | os.PathLike) -> np.ndarray:
    """(230,) int64 counts from a ``sg,count`` CSV (no header; 1-based space groups).

    Blank lines are ignored; groups not listed count 0. Raises DataError with the line number for a
    malformed row, a space group outside 1..230, a negative count or a repeated group.
    """
    path = Path(path)
    if not path.is_file():
        raise fail(DataError, path, "class-count file not found", "write rows 'sg,count' (no header) "
                   "or drop --sg_count_path to count the training labels")
    counts = np.zeros(N_SG, dtype=np.int64)
    seen: dict[int, int] = {}
    fix = "each line must be 'sg,count' with sg in 1..230 and count >= 0, no header"
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        try:
            if len(parts) != 2:
                raise ValueError
            sg, n = int(parts[0]), int(parts[1])
        except ValueError:
            raise fail(DataError, f"{path}:{lineno}", f"malformed row {line!r}", fix) from None
        if not 1 <= sg <= N_SG or n < 0:
            raise fail(DataError, f"{path}:{lineno}", f"row {line!r} out of range", fix)
        if sg in seen:
            raise fail(DataError, f"{path}:{lineno}", f"space group {sg} repeated (first on line "
                       f"{seen[sg]})", "list each space group once")
        seen[sg] = lineno
        counts[sg - 1] = n
    if not seen:
        raise fail(DataError, path, "no rows", fix)
    return counts


def resolve_class_counts(root: Path, name: str, train_labels0: np.ndarray, sg_count_path: str | None
                         ) -> tuple[np.ndarray, str]:
    """(230,) training counts and where they came from.

    Order: ``sg_count_path`` (must exist), ``root/{name}_sg_count.csv``, ``root/sg_count.csv``
    (validated by :func:`read_sg_count`; a disagreement with the labels is logged), else the
    counts of ``train_labels0`` (0-based).
    """
    root = Path(root)
    from_labels = counts_from_labels(train_labels0)
    candidates = [Path(sg_count_path)] if sg_count_path else [root / f"{name}_sg_count.csv",
                                                               root / "sg_count.csv"]
    for p in candidates:
        if sg_count_path or p.is_file():
            counts = read_sg_count(p)
            if not np.array_equal(counts, from_labels):
                diff = int(np.flatnonzero(counts != from_labels)[0])
                logger.warning(f"{p}: counts differ from the training labels (e.g. space group "
                               f"{diff + 1}: {counts[diff]} vs {from_labels[diff]}); using the file")
            return counts, str(p)
    return from_labels, "training labels"


@READERS.register("npy")
def build_npy(root: str | os.PathLike, name: str, grid: GridSpec | None = None, seed: int = 0,
              augment: bool = False, sg_count_path: str | None = None, check_values: bool = True,
              **options: Any) -> DataBundle:
    """Build train / val (``test_val``) / test from the safe NPY layout.

    Args:
        root: processed-data folder (``--processed_data_dir``).
        name: dataset name selecting the file names (ccdc, coremof19, inor, ...).
        grid: the grid the model expects (e.g. from a checkpoint); GridMismatchError if the data's
            grid (``dataset.json``) differs. None accepts the data's grid.
        seed, augment: accepted for the common reader signature. Stored patterns are used as they
            are (peak-shape augmentations need peak lists), so ``augment`` only logs a note.
        sg_count_path: explicit ``sg,count`` file; default ``{name}_sg_count.csv`` or
            ``sg_count.csv`` in root, else counts of the training labels.
        check_values: scan every file for NaN/inf and bad labels on open.
        options: other reader options (ignored, logged).

    Raises:
        DataError: missing folder/file (message gives the expected layout), bad content.
        GridMismatchError: pattern length ≠ grid.n_points, or data grid ≠ ``grid``.
    """
    root = Path(root)
    if not root.is_dir():
        raise fail(DataError, root, "processed-data folder not found", LAYOUT.replace("NAME", name))
    meta = read_dataset_json(root)
    if meta is None:
        data_grid, scale = GridSpec(), 1.0
        logger.warning(f"{root}/dataset.json not found: assuming the default grid {data_grid} and "
                       "intensity_scale 1.0 (write it with datasets.readers.npy_format.write_dataset_json)")
    else:
        data_grid, scale = meta["grid_spec"], meta["intensity_scale"]
    if grid is not None:
        grid.check_compatible(data_grid, source=root / "dataset.json")
    paths = {s: split_path(root, name, s) for s in SPLITS}
    for s in ("train", "test"):
        if not paths[s].is_file():
            raise fail(DataError, paths[s], f"{s} split not found", LAYOUT.replace("NAME", name))

    def open_split(s: str) -> NpyDataset:
        return NpyDataset(paths[s], scale, n_points=data_grid.n_points, check_values=check_values)

    train, test = open_split("train"), open_split("test")
    for s, ds in (("train", train), ("test", test)):
        if len(ds) == 0:
            raise fail(DataError, paths[s], f"the {s} split is empty", "write at least one sample")
    val = open_split("test_val") if paths["test_val"].is_file() else None
    if val is None:
        logger.info(f"{paths['test_val']} not found: no validation split, model selection uses test")
    if augment:
        logger.info("npy reader: stored patterns are used as they are (no peak-shape augmentation)")
    if options:
        logger.debug(f"npy reader ignores options {sorted(options)}")
    counts, counts_src = resolve_class_counts(root, name, train.labels, sg_count_path)
    spec = {"name": name, "format": "npy", "grid": data_grid.to_dict(), "intensity_scale": scale,
            "files": {s: str(p) for s, p in paths.items() if p.is_file()},
            "class_counts_source": counts_src,
            "provenance": (meta or {}).get("provenance", {})}
    return DataBundle(name=name, train=train, val=val, test=test, class_counts=counts, grid=data_grid,
                      spec=spec)
