"""Convert a folder of pattern files (``.xrdml``, ``.ras``, ``.xy`` / ``.xye`` / ``.csv`` ...) into the
safe NPY layout (then ``python test.py --ckpt ... --use_processed_npy`` evaluates a model on them).

Usage::

    python -m datasets.readers.convert_xy --src FOLDER --labels labels.csv --out DIR --dataset NAME \\
        [--split train|test_val|test] [--wavelength 1.5406] [--two_theta_min 5 --two_theta_max 90 \\
        --n_points 8500 --grid_wavelength 1.5406]

``labels.csv`` has rows ``file,sg`` (file name relative to FOLDER, space group 1..230; an optional
header line ``file,sg``; ``#`` comments). Every pattern file in FOLDER must be labelled and every
labelled file must exist, otherwise nothing is written and the error lists the offenders. Each
pattern is read with its wavelength by :func:`utils.pattern_io.read_pattern` (``--wavelength``
overrides the files'; a file without one needs it) and resampled by d-spacing onto the grid
(:func:`datasets.readers.xy_patterns.interpolate_to_grid`, max 1), and
the split is written as ``DIR/NAME_sg_{train,test}/{split}_NAME_sg.npy`` with ``DIR/dataset.json``
(an existing dataset.json must have the same grid; the split is added to its provenance). Run it
once per split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from datasets.readers.npy_format import SPLITS, read_dataset_json, split_path, write_dataset_json, write_npy
from datasets.readers.xy_patterns import interpolate_to_grid
from utils.crystal import N_SG
from utils.errors import DataError, GridMismatchError, exit_message, fail
from utils.grid import GridSpec
from utils.pattern_io import PATTERN_SUFFIXES, read_pattern

_LABEL_FIX = "labels.csv rows are 'file,sg' with sg in 1..230 (optional header 'file,sg')"


def read_labels(path: str | Path) -> dict[str, int]:
    """``{file name: space group}`` from a ``file,sg`` CSV, validated (line numbers in errors)."""
    path = Path(path)
    if not path.is_file():
        raise fail(DataError, path, "labels file not found", _LABEL_FIX)
    out: dict[str, int] = {}
    where: dict[str, int] = {}
    first = True
    for lineno, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2 or not parts[0]:
            raise fail(DataError, f"{path}:{lineno}", f"malformed row {raw.strip()!r}", _LABEL_FIX)
        try:
            sg = int(parts[1])
        except ValueError:
            if first:  # header
                first = False
                continue
            raise fail(DataError, f"{path}:{lineno}", f"space group {parts[1]!r} is not an integer",
                       _LABEL_FIX) from None
        first = False
        if not 1 <= sg <= N_SG:
            raise fail(DataError, f"{path}:{lineno}", f"space group {sg} is outside 1..230", _LABEL_FIX)
        name = Path(parts[0]).as_posix()
        if name in out:
            raise fail(DataError, f"{path}:{lineno}", f"{name} is labelled twice (first on line "
                       f"{where[name]})", "keep one label per file")
        out[name], where[name] = sg, lineno
    if not out:
        raise fail(DataError, path, "no labelled files", _LABEL_FIX)
    return out


def _listing(names: list[str], k: int = 10) -> str:
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return ", ".join(names[:k]) + more


def match_files(src: Path, labels: dict[str, int], labels_path: Path) -> list[tuple[Path, int]]:
    """Pair pattern files with labels; DataError when either side has extras."""
    skip = labels_path.resolve()
    files = sorted(p.name for p in src.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in PATTERN_SUFFIXES and p.resolve() != skip)
    missing = sorted(n for n in labels if not (src / n).is_file())
    if missing:
        raise fail(DataError, labels_path, f"{len(missing)} labelled file(s) not found in {src}: "
                   f"{_listing(missing)}", "fix the file names in the labels file or add the files")
    unlabeled = sorted(set(files) - set(labels))
    if unlabeled:
        raise fail(DataError, src, f"{len(unlabeled)} pattern file(s) have no label in {labels_path}: "
                   f"{_listing(unlabeled)}", "add a 'file,sg' row for each, or move them out of the folder")
    return [(src / n, sg) for n, sg in sorted(labels.items())]


def convert_xy(src: str | Path, labels_path: str | Path, out: str | Path, name: str, split: str = "test",
               grid: GridSpec | None = None, wavelength: float | None = None,
               overwrite: bool = False) -> dict[str, Any]:
    """Convert one split; returns the provenance entry added to dataset.json.

    An existing file of the split is replaced only with ``overwrite``; the file is written to a
    temporary name beside it and renamed when complete (``write_npy``), so a failure leaves the
    folder as it was."""
    src, labels_path, out = Path(src), Path(labels_path), Path(out)
    grid = grid or GridSpec()
    if grid.n_points < 2 or not grid.two_theta_max > grid.two_theta_min or grid.wavelength <= 0:
        raise DataError(f"invalid grid {grid}. Fix: pass n_points >= 2, two_theta_max > two_theta_min and "
                        "a positive wavelength")
    if split not in SPLITS:
        raise DataError(f"--split {split!r}: must be one of {', '.join(SPLITS)}")
    if not src.is_dir():
        raise fail(DataError, src, "pattern folder not found", "pass the folder holding the .xy files")
    if split_path(out, name, split).exists() and not overwrite:
        raise fail(DataError, split_path(out, name, split), f"the {split} split of {name!r} exists already",
                   "pass --overwrite to replace it, or another --out / --split")
    pairs = match_files(src, read_labels(labels_path), labels_path)
    meta = read_dataset_json(out)
    if meta is not None:
        if meta.get("name") not in (None, name):
            raise fail(DataError, out / "dataset.json", f"describes dataset {meta.get('name')!r}, not "
                       f"{name!r}", "use another --out folder or the same --dataset")
        if meta["intensity_scale"] != 1.0:
            raise fail(DataError, out / "dataset.json", f"intensity_scale is {meta['intensity_scale']}",
                       "converted patterns are scaled to max 1; write them to another --out folder")
        try:
            meta["grid_spec"].check_compatible(grid, source=out / "dataset.json")
        except GridMismatchError as exc:
            raise GridMismatchError(f"{exc} (pass the same --two_theta_min/--two_theta_max/--n_points/"
                                    "--grid_wavelength as for the other splits)") from None
    x = np.zeros((len(pairs), grid.n_points), dtype=np.float32)
    coverage = np.zeros(len(pairs))
    wavelengths: set[float] = set()
    for i, (path, _) in enumerate(tqdm(pairs, desc=f"{split} patterns", unit="file")):
        pat = read_pattern(path, wavelength)  # any supported format; its wavelength or --wavelength
        wavelengths.add(round(pat.wavelength.ka1, 6))
        x[i], coverage[i] = interpolate_to_grid(pat.two_theta, pat.intensity, grid, pat.wavelength.ka1,
                                                source=path)
    sg = np.array([s for _, s in pairs], dtype=np.int64)
    dest = write_npy(split_path(out, name, split), x, sg)
    low = [p.name for (p, _), c in zip(pairs, coverage) if c < 0.5]
    entry = {"tool": "datasets.readers.convert_xy", "source": str(src), "labels": str(labels_path),
             "n": len(pairs),
             "wavelength": sorted(wavelengths)[0] if len(wavelengths) == 1 else sorted(wavelengths),
             "coverage_min": float(coverage.min()), "coverage_mean": float(coverage.mean()),
             "low_coverage_files": low[:50], "n_low_coverage": len(low),
             "processing": "linear interpolation onto the grid, 0 outside the measured range, "
                           "no background subtraction, scaled to max 1"}
    provenance = dict((meta or {}).get("provenance", {}))
    provenance.setdefault("splits", {})[split] = entry
    write_dataset_json(out, name, grid, 1.0, provenance)
    print(f"{split}: {len(pairs)} patterns -> {dest}; coverage of the grid min {coverage.min():.0%}, "
          f"mean {coverage.mean():.0%}" + (f"; {len(low)} below 50%: {_listing(low, 5)}" if low else ""))
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--src", required=True, help=f"folder of pattern files ({', '.join(PATTERN_SUFFIXES)})")
    p.add_argument("--labels", required=True, help="CSV of 'file,sg' rows")
    p.add_argument("--out", required=True, help="processed-data folder to write")
    p.add_argument("--dataset", required=True, help="dataset name used in the file names")
    p.add_argument("--split", default="test", choices=SPLITS, help="which split these files are")
    p.add_argument("--overwrite", action="store_true", help="replace the split's file if it exists")
    p.add_argument("--wavelength", type=float, default=None, help="wavelength of the files [Å]; "
                   "overrides each file's (a mismatch is reported). Default: each file's own (XRDML, RAS, "
                   "a '# wavelength:' comment); a file without one is an error")
    d = GridSpec()
    p.add_argument("--two_theta_min", type=float, default=d.two_theta_min)
    p.add_argument("--two_theta_max", type=float, default=d.two_theta_max)
    p.add_argument("--n_points", type=int, default=d.n_points)
    p.add_argument("--grid_wavelength", type=float, default=d.wavelength, help="wavelength of the grid [Å]")
    a = p.parse_args(argv)
    grid = GridSpec(a.two_theta_min, a.two_theta_max, a.n_points, a.grid_wavelength)
    try:
        entry = convert_xy(a.src, a.labels, a.out, a.dataset, a.split, grid, a.wavelength, a.overwrite)
    except (DataError, OSError) as exc:  # documented errors, full disk, read-only...: one line
        if exit_message(exc) is None:
            raise
        print(f"error: {exc if isinstance(exc, DataError) else exit_message(exc)}", file=sys.stderr)
        return 2
    print(json.dumps({k: entry[k] for k in ("n", "coverage_min", "coverage_mean", "n_low_coverage")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
