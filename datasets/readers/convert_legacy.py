"""One-time converter from the original (pickled) NPY files to the safe NPY format.

Usage::

    python -m datasets.readers.convert_legacy --src OLD_DIR --dst NEW_DIR --dataset ccdc --trust-pickle

The original files (``OLD_DIR/ccdc_sg_train/train_ccdc_sg.npy`` etc.) are pickled dicts read with
``np.load(path, allow_pickle=True).item()``, with keys ``intensitys`` (N, L), ``labels230`` (N,),
``labels7`` (N,) and ``angles`` (the 2θ grid: (L,) or (N, L) with equal rows), possibly more
(ignored). Unpickling runs whatever code the file contains, so nothing is read without
``--trust-pickle``.

What it does, per split present (train, test_val, test):

* validates shapes, NaN/inf (first bad sample index), labels230 in 1..230 (``--zero-based-labels``
  adds 1 first), labels7 against labels230 (0- or 1-based labels7 accepted, always rewritten
  0-based from labels230), and that every split shares one 2θ grid;
* divides intensities by ``--divide_by`` (100, as the original training code does before use) and
  writes float32, so ``dataset.json`` records ``intensity_scale = 1.0`` and notes the division;
* copies ``{name}_sg_count.csv`` / ``sg_count.csv`` (found in OLD_DIR or its ``*_sg_train``
  folder) after validating them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from datasets.readers.npy import read_sg_count
from datasets.readers.npy_format import (
    SPLITS,
    check_finite,
    check_labels,
    split_path,
    write_dataset_json,
    write_npy,
)
from utils.crystal import SG_TO_CS
from utils.errors import DataError, fail
from utils.grid import GridSpec

PICKLE_WARNING = (
    "refusing to read legacy files without --trust-pickle: they are Python pickles, and loading a "
    "pickle runs arbitrary code stored in the file. Fix: pass --trust-pickle only if you trust "
    "where the files came from (e.g. you made them yourself)")


def load_legacy(path: Path, trust_pickle: bool) -> dict[str, Any]:
    """The dict stored in a legacy file (only with ``trust_pickle``)."""
    if not trust_pickle:
        raise DataError(f"{path}: {PICKLE_WARNING}")
    if not path.is_file():
        raise fail(DataError, path, "legacy file not found", "check --src and --dataset")
    try:
        obj = np.load(path, allow_pickle=True)  # noqa: S301 (explicit opt-in above)
        if isinstance(obj, np.ndarray) and obj.dtype == object and obj.ndim == 0:
            obj = obj.item()
    except Exception as exc:
        raise fail(DataError, path, f"cannot be unpickled ({type(exc).__name__}: {exc})",
                   "the file may be truncated") from exc
    if not isinstance(obj, dict):
        raise fail(DataError, path, f"holds a {type(obj).__name__}, not the legacy dict",
                   "a legacy file is a pickled dict with keys intensitys, labels230, labels7, angles")
    missing = [k for k in ("intensitys", "labels230") if k not in obj]
    if missing:
        raise fail(DataError, path, f"legacy dict lacks {missing} (keys: {sorted(map(str, obj))})",
                   "a legacy file is a pickled dict with keys intensitys, labels230, labels7, angles")
    return obj


def grid_from_angles(angles: Any, n_points: int, wavelength: float, source: Path,
                     default: GridSpec) -> GridSpec:
    """The GridSpec of a legacy ``angles`` array ((L,) or (N, L) with identical rows)."""
    if angles is None:
        return GridSpec(default.two_theta_min, default.two_theta_max, n_points, wavelength)
    a = np.asarray(angles, dtype=np.float64)
    if a.ndim == 2:
        if not np.allclose(a, a[:1], atol=1e-6):
            raise fail(DataError, source, "angles differ between samples",
                       "per-sample 2θ grids are not supported; interpolate onto one grid first")
        a = a[0]
    if a.shape != (n_points,):
        raise fail(DataError, source, f"angles has shape {a.shape}, patterns have {n_points} points",
                   "angles must be the 2θ grid of the patterns")
    step = np.diff(a)
    if not (np.isfinite(a).all() and (step > 0).all() and np.allclose(step, step.mean(), rtol=1e-3)):
        raise fail(DataError, source, "angles is not a uniform increasing 2θ grid",
                   "interpolate the patterns onto a uniform grid first")
    # GridSpec convention: points min + i*step, i < n; the end point max = min + n*step is excluded.
    lo, st = float(a[0]), float(step.mean())
    return GridSpec(round(lo, 6), round(lo + st * n_points, 6), n_points, wavelength)


def convert_split(path: Path, out: Path, trust_pickle: bool, divide_by: float, zero_based: bool,
                  wavelength: float, default_grid: GridSpec) -> tuple[GridSpec, dict[str, Any]]:
    """Convert one legacy file; returns (its grid, a summary for dataset.json)."""
    d = load_legacy(path, trust_pickle)
    x = np.asarray(d["intensitys"])
    if x.ndim != 2 or x.dtype.kind not in "fiu":
        raise fail(DataError, path, f"intensitys must be a numeric (N, L) array, got {x.dtype} {x.shape}",
                   "store one pattern per row")
    n = len(x)
    sg = np.asarray(d["labels230"]).reshape(-1)
    if len(sg) != n or sg.dtype.kind not in "iuf" or (sg.dtype.kind == "f" and np.any(sg != np.round(sg))):
        raise fail(DataError, path, f"labels230 must be {n} integers, got {sg.dtype} {sg.shape}",
                   "one integer label per pattern")
    sg = sg.astype(np.int64) + (1 if zero_based else 0)
    check_labels(sg, None, path)
    note = "labels7 absent; derived from labels230"
    if "labels7" in d:
        cs = np.asarray(d["labels7"]).reshape(-1).astype(np.int64)
        if len(cs) != n:
            raise fail(DataError, path, f"labels7 has {len(cs)} entries for {n} patterns", "one per pattern")
        expect = SG_TO_CS[sg - 1]
        if np.array_equal(cs, expect + 1):
            note = "labels7 were 1-based; rewritten 0-based"
        else:
            check_labels(sg, cs, path)
            note = "labels7 consistent with labels230"
    grid = grid_from_angles(d.get("angles"), x.shape[1], wavelength, path, default_grid)
    # In place where possible: legacy files are loaded whole, so avoid a second full-size copy.
    x = x if x.dtype == np.float32 and x.flags.writeable else x.astype(np.float32)
    x /= np.float32(divide_by)
    check_finite(x, path)  # after the cast: float64 values beyond float32 range become inf
    write_npy(out, x, sg)
    present = np.unique(sg)
    summary = {"source": str(path), "n": int(n), "n_points": int(x.shape[1]),
               "n_classes": int(len(present)), "ignored_keys": sorted(str(k) for k in d
                                                                      if k not in ("intensitys", "labels230",
                                                                                   "labels7", "angles")),
               "labels7": note}
    return grid, summary


def convert(src: Path, dst: Path, name: str, trust_pickle: bool, divide_by: float = 100.0,
            zero_based: bool = False, wavelength: float = 1.5406,
            default_grid: GridSpec | None = None) -> dict[str, Any]:
    """Convert every split found under ``src``; returns the provenance written to dataset.json."""
    if not trust_pickle:
        raise DataError(f"{src}: {PICKLE_WARNING}")
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise fail(DataError, src, "source folder not found", "pass the folder holding NAME_sg_train/")
    if src.resolve() == dst.resolve():
        raise fail(DataError, dst, "destination equals source", "write the safe files to a new folder")
    if not np.isfinite(divide_by) or divide_by <= 0:
        raise DataError(f"--divide_by {divide_by}: must be a positive number")
    found = {s: split_path(src, name, s) for s in SPLITS if split_path(src, name, s).is_file()}
    for s in ("train", "test"):
        if s not in found:
            raise fail(DataError, split_path(src, name, s), f"legacy {s} split not found",
                       f"check --src and --dataset (expected {name}_sg_train/train_{name}_sg.npy and "
                       f"{name}_sg_test/test_{name}_sg.npy)")
    grids: dict[str, GridSpec] = {}
    splits: dict[str, Any] = {}
    for s, p in found.items():
        grids[s], splits[s] = convert_split(p, split_path(dst, name, s), True, divide_by, zero_based,
                                            wavelength, default_grid or GridSpec())
        print(f"{s}: {splits[s]['n']} patterns × {splits[s]['n_points']} points, "
              f"{splits[s]['n_classes']} space groups -> {split_path(dst, name, s)}")
    grid = grids["train"]
    for s, g in grids.items():
        grid.check_compatible(g, source=found[s])
    copied = []
    for fname in (f"{name}_sg_count.csv", "sg_count.csv"):
        for folder in (src, src / f"{name}_sg_train"):
            if (folder / fname).is_file():
                read_sg_count(folder / fname)  # validate before copying
                shutil.copyfile(folder / fname, dst / fname)
                copied.append(str(folder / fname))
                break
    provenance = {"tool": "datasets.readers.convert_legacy", "source": str(src), "splits": splits,
                  "intensity_divided_by": float(divide_by),
                  "note": f"intensities were divided by {divide_by:g} during conversion (as the "
                          "original code does before use), so intensity_scale is 1.0",
                  "labels230_zero_based_input": bool(zero_based), "sg_count_copied": copied}
    write_dataset_json(dst, name, grid, 1.0, provenance)
    return provenance


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="folder with NAME_sg_train/ and NAME_sg_test/ (legacy)")
    p.add_argument("--dst", required=True, help="output folder (safe format)")
    p.add_argument("--dataset", required=True, help="dataset name in the file names (ccdc, inor, ...)")
    p.add_argument("--trust-pickle", "--trust_pickle", dest="trust_pickle", action="store_true",
                   help="allow unpickling the legacy files (runs code stored in them)")
    p.add_argument("--divide_by", type=float, default=100.0, help="intensity divisor (original: 100)")
    p.add_argument("--zero-based-labels", "--zero_based_labels", dest="zero_based", action="store_true",
                   help="legacy labels230 are 0..229: add 1")
    p.add_argument("--wavelength", type=float, default=1.5406, help="X-ray wavelength of the data [Å]")
    p.add_argument("--two_theta_min", type=float, default=5.0, help="grid start when 'angles' is absent")
    p.add_argument("--two_theta_max", type=float, default=90.0, help="grid end (excluded) without 'angles'")
    a = p.parse_args(argv)
    try:
        convert(Path(a.src), Path(a.dst), a.dataset, a.trust_pickle, a.divide_by, a.zero_based,
                a.wavelength, GridSpec(a.two_theta_min, a.two_theta_max, 8500, a.wavelength))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {a.dst}/dataset.json; train with --use_processed_npy --processed_data_dir {a.dst} "
          f"--dataset {a.dataset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
