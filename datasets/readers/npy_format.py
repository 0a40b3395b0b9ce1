"""The safe NPY format: the seed's file layout, without pickle.

Layout (file names as in the original code; ``NAME`` is the dataset name, e.g. ``ccdc``)::

    processed_data_dir/
      dataset.json                          # grid, intensity_scale, provenance (see below)
      NAME_sg_count.csv or sg_count.csv     # optional: rows "sg,count", no header
      NAME_sg_train/train_NAME_sg.npy       # training split
      NAME_sg_train/test_val_NAME_sg.npy    # validation split (optional)
      NAME_sg_test/test_NAME_sg.npy         # test split

Each ``.npy`` file holds ONE numpy structured array of shape ``(N,)`` (NPY format 1.0/2.0, no
Python objects, so ``np.load(path, allow_pickle=False, mmap_mode="r")`` opens it without running
any code and without reading it into memory) with the dtype::

    [("intensitys", "<f4", (L,)),   # pattern on the 2θ grid of dataset.json (L = grid.n_points)
     ("labels230",  "<i2"),         # space group, International Tables number 1..230
     ("labels7",    "<i1")]         # crystal system 0..6 (triclinic .. cubic), = SG_TO_CS[sg - 1]

i.e. ``4·L + 3`` bytes per sample, sample-major (one pattern is contiguous). The field name
``intensitys`` keeps the original spelling. In Python::

    a = np.load("ccdc_sg_train/train_ccdc_sg.npy", allow_pickle=False, mmap_mode="r")
    a["intensitys"]  # (N, L) float32      a["labels230"]  # (N,) int16 in 1..230

``dataset.json``::

    {"format": "xrd-npy", "version": 1, "name": "ccdc",
     "grid": {"two_theta_min": 5.0, "two_theta_max": 90.0, "n_points": 8500, "wavelength": 1.5406},
     "intensity_scale": 1.0,        # readers divide stored intensities by this
     "provenance": {...}}           # free-form: converter, source files, notes

The original (legacy) files are pickled dicts; they are refused here, and converted once with
``python -m datasets.readers.convert_legacy --src OLD --dst NEW --dataset NAME --trust-pickle``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from utils.crystal import N_SG, SG_TO_CS
from utils.errors import DataError, GridMismatchError, fail
from utils.grid import GridSpec

FORMAT = "xrd-npy"
VERSION = 1
FIELDS = ("intensitys", "labels230", "labels7")
SPLITS = ("train", "test_val", "test")
CHUNK = 1024  # samples per validation chunk (bounded memory on memory-mapped files)

LAYOUT = ("expected layout: DIR/NAME_sg_train/train_NAME_sg.npy, DIR/NAME_sg_train/test_val_NAME_sg.npy "
          "(optional), DIR/NAME_sg_test/test_NAME_sg.npy and DIR/dataset.json")


def record_dtype(n_points: int) -> np.dtype:
    """Structured dtype of one sample on a grid of ``n_points`` points."""
    return np.dtype([("intensitys", "<f4", (int(n_points),)), ("labels230", "<i2"), ("labels7", "<i1")])


def split_path(root: str | os.PathLike, name: str, split: str) -> Path:
    """Path of one split's file (``split`` in ``SPLITS``) under the processed-data folder."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")
    folder = f"{name}_sg_test" if split == "test" else f"{name}_sg_train"
    return Path(root) / folder / f"{split}_{name}_sg.npy"


def legacy_hint(path: str | os.PathLike) -> str:
    """The exact ``convert_legacy`` command for a file found at ``path`` (best guess of root/name)."""
    path = Path(path)
    folder = path.parent.name
    if folder.endswith("_sg_train") or folder.endswith("_sg_test"):
        name, src = folder.rsplit("_sg_", 1)[0], path.parent.parent
    else:
        name, src = "NAME", path.parent
    return (f"python -m datasets.readers.convert_legacy --src {src} --dst {src}_safe --dataset {name} "
            "--trust-pickle  (only if you trust where the file came from), then point "
            f"--processed_data_dir at {src}_safe")


# ---------------------------------------------------------------------------------------- checks

def check_labels(labels230: np.ndarray, labels7: np.ndarray | None, source: object,
                 offset: int = 0) -> None:
    """Raise DataError when a label is outside 1..230 or labels7 disagrees with labels230.

    Args:
        labels230: (n,) space-group numbers.
        labels7: (n,) crystal systems 0..6, or None to skip the consistency check.
        source: file named in the message.
        offset: index of ``labels230[0]`` in the file (for the message).
    """
    sg = np.asarray(labels230).astype(np.int64)
    bad = (sg < 1) | (sg > N_SG)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise fail(DataError, source, f"labels230[{offset + j}] = {sg[j]} is outside 1..230 "
                   f"({int(bad.sum())} such labels)",
                   "labels are International Tables numbers 1..230 on disk; if yours are 0-based "
                   "add 1 (convert_legacy --zero-based-labels)")
    if labels7 is None:
        return
    cs = np.asarray(labels7).astype(np.int64)
    expect = SG_TO_CS[sg - 1]
    wrong = cs != expect
    if wrong.any():
        j = int(np.flatnonzero(wrong)[0])
        raise fail(DataError, source, f"labels7[{offset + j}] = {cs[j]} disagrees with labels230 = "
                   f"{sg[j]} (crystal system {expect[j]}; {int(wrong.sum())} such samples)",
                   "labels7 must be utils.crystal.SG_TO_CS[labels230 - 1] (0..6); rewrite the file "
                   "with datasets.readers.npy_format.write_npy, which derives it")


def check_finite(intensities: np.ndarray, source: object, chunk: int = CHUNK) -> None:
    """Raise DataError naming the first sample with NaN/inf; reads ``chunk`` rows at a time."""
    n = len(intensities)
    for a in range(0, n, chunk):
        block = np.asarray(intensities[a:a + chunk])
        ok = np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if not ok.all():
            j = a + int(np.flatnonzero(~ok)[0])
            n_bad = int((~ok).sum())
            raise fail(DataError, source, f"sample {j} has NaN/inf intensities (first bad sample; "
                       f"{n_bad} bad in samples {a}..{a + len(block) - 1})",
                       "drop or repair those samples before writing the dataset")


# ---------------------------------------------------------------------------------------- write

def write_npy(path: str | os.PathLike, intensities: np.ndarray, labels230: np.ndarray,
              labels7: np.ndarray | None = None, chunk: int = CHUNK) -> Path:
    """Write one split in the safe format, atomically (temp file + ``os.replace``).

    Args:
        path: destination ``.npy`` (parent folders are created).
        intensities: (N, L) patterns (any float dtype, stored as float32); may be a memmap.
        labels230: (N,) space groups 1..230.
        labels7: (N,) crystal systems; derived from labels230 when None, validated otherwise.
        chunk: rows copied at a time (memory stays bounded for large inputs).

    Returns:
        the written path. Raises DataError (and writes nothing) on bad input.
    """
    path = Path(path)
    if np.ndim(intensities) != 2:
        raise fail(DataError, path, f"intensities must be (N, L), got shape {np.shape(intensities)}",
                   "pass one pattern per row")
    n, length = np.shape(intensities)
    sg = np.asarray(labels230)
    if sg.shape != (n,):
        raise fail(DataError, path, f"labels230 has shape {sg.shape}, expected ({n},)",
                   "pass one label per pattern")
    if labels7 is not None and np.shape(labels7) != (n,):
        raise fail(DataError, path, f"labels7 has shape {np.shape(labels7)}, expected ({n},)",
                   "pass one label per pattern or None to derive it")
    check_labels(sg, labels7, path)
    check_finite(intensities, path, chunk)
    cs = SG_TO_CS[sg.astype(np.int64) - 1]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=record_dtype(length), shape=(n,))
        for a in range(0, n, chunk):
            out["intensitys"][a:a + chunk] = np.asarray(intensities[a:a + chunk], dtype=np.float32)
        out["labels230"][:] = sg.astype(np.int16)
        out["labels7"][:] = cs.astype(np.int8)
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_dataset_json(root: str | os.PathLike, name: str, grid: GridSpec, intensity_scale: float = 1.0,
                       provenance: dict[str, Any] | None = None) -> Path:
    """Write ``root/dataset.json`` atomically (see the module docstring for its keys)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if not (np.isfinite(intensity_scale) and intensity_scale > 0):
        raise ValueError(f"intensity_scale must be a positive number, got {intensity_scale}")
    d = {"format": FORMAT, "version": VERSION, "name": name, "grid": grid.to_dict(),
         "intensity_scale": float(intensity_scale), "provenance": provenance or {}}
    path = root / "dataset.json"
    tmp = root / ".dataset.json.tmp"
    tmp.write_text(json.dumps(d, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_dataset_json(root: str | os.PathLike) -> dict[str, Any] | None:
    """Parsed ``root/dataset.json`` (validated ``grid`` and ``intensity_scale``), or None if absent."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        if not isinstance(d, dict):
            raise TypeError("top level is not an object")
        grid = GridSpec.from_dict(d.get("grid"))
        scale = float(d.get("intensity_scale", 1.0))
    except Exception as exc:
        raise fail(DataError, path, f"unreadable dataset description ({type(exc).__name__}: {exc})",
                   "fix the JSON (keys: grid{two_theta_min,two_theta_max,n_points,wavelength}, "
                   "intensity_scale) or delete it to assume the default grid") from exc
    if not (np.isfinite(scale) and scale > 0):
        raise fail(DataError, path, f"intensity_scale = {scale} is not a positive number",
                   "set it to the factor by which stored intensities are divided (1.0 if none)")
    finite = all(np.isfinite([grid.two_theta_min, grid.two_theta_max, grid.wavelength]))
    if not finite or grid.n_points < 2 or not grid.two_theta_max > grid.two_theta_min or grid.wavelength <= 0:
        raise fail(DataError, path, f"invalid grid {grid}", "fix the 'grid' entry")
    d["grid_spec"], d["intensity_scale"] = grid, scale
    return d


# ----------------------------------------------------------------------------------------- read

def _open(path: Path) -> np.ndarray:
    """Memory-map ``path`` with ``allow_pickle=False``; legacy pickles get the convert command."""
    if not path.is_file():
        raise fail(DataError, path, "file not found", LAYOUT)
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:  # 3.0 (UTF-8 field names) has no public reader
                shape, _, dtype = np.lib.format._read_array_header(fh, version)
    except Exception as exc:
        with open(path, "rb") as fh:
            head = fh.read(2)
        what = "a raw pickle" if head[:1] == b"\x80" else "not a .npy file"
        raise fail(DataError, path, f"{what} ({type(exc).__name__}: {exc})",
                   "if it is a legacy pickled file: " + legacy_hint(path)) from exc
    if dtype.hasobject:
        raise fail(DataError, path, f"contains Python objects (dtype {dtype}, shape {shape}): this is a "
                   "legacy pickled file, and loading a pickle runs arbitrary code, so it is refused",
                   "convert it once with " + legacy_hint(path))
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as exc:
        raise fail(DataError, path, f"cannot be memory-mapped ({type(exc).__name__}: {exc})",
                   "the file may be truncated; rewrite it") from exc


def read_npy(path: str | os.PathLike, n_points: int | None = None, check_values: bool = True,
             chunk: int = CHUNK) -> np.ndarray:
    """Open one split file read-only (memory-mapped), after validating it.

    Args:
        path: the ``.npy`` file.
        n_points: expected pattern length (grid.n_points); None skips the check.
        check_values: scan intensities for NaN/inf in chunks and check every label.
        chunk: rows per NaN-scan chunk.

    Returns:
        (N,) structured memmap with the fields of :func:`record_dtype`.

    Raises:
        DataError: missing file, pickle/object content, wrong fields or dims, NaN/inf, labels out of
            range or inconsistent. GridMismatchError (a DataError) when the length is not n_points.
    """
    path = Path(path)
    arr = _open(path)
    names = arr.dtype.names
    if names is None:
        raise fail(DataError, path, f"a plain {arr.dtype} array of shape {arr.shape}, not the structured "
                   f"array with fields {FIELDS}",
                   "write it with datasets.readers.npy_format.write_npy(path, intensities, labels230) "
                   "(layout in datasets/readers/npy_format.py)")
    missing = [f for f in FIELDS if f not in names]
    if missing:
        raise fail(DataError, path, f"missing fields {missing} (found {list(names)})",
                   "write it with datasets.readers.npy_format.write_npy "
                   "(fields intensitys, labels230, labels7)")
    if arr.ndim != 1:
        raise fail(DataError, path, f"structured array must be 1-D (N,), got shape {arr.shape}",
                   "store one record per sample")
    f_int, f_sg, f_cs = (arr.dtype.fields[f][0] for f in FIELDS)
    if f_int.kind != "V" or len(f_int.shape) != 1 or f_int.base.kind != "f":
        raise fail(DataError, path, f"field intensitys must be float of shape (L,), got {f_int}",
                   "store each pattern as a 1-D float32 array")
    if f_sg.kind not in "iu" or f_cs.kind not in "iu" or f_sg.shape or f_cs.shape:
        raise fail(DataError, path, f"label fields must be integer scalars, got labels230 {f_sg}, "
                   f"labels7 {f_cs}", "write it with datasets.readers.npy_format.write_npy")
    length = f_int.shape[0]
    if n_points is not None and length != n_points:
        raise fail(GridMismatchError, path, f"patterns have {length} points but the grid has {n_points}",
                   "fix the 'grid' entry of dataset.json (or re-export the data on that grid)")
    if check_values:
        labels = np.asarray(arr["labels230"])
        check_labels(labels, np.asarray(arr["labels7"]), path)
        check_finite(arr["intensitys"], path, chunk)
    return arr
