"""Raw (MP20-style) data: CSV files of CIF strings, simulated into peak lists and cached.

Folder layout::

    root/
      train*.csv  val*.csv (optional)  test*.csv     # several files per split are concatenated
      sg_count.csv (optional)                        # rows "sg,count", no header
      cache/raw_{split}_{hash}.npz                   # written here: PeakTable of the split
      cache/raw_{split}_{hash}_report.json           # rows skipped, label sources, timings

Columns: ``cif`` (required, a CIF string per row); ``spacegroup.number`` or ``sg`` (optional,
1..230; an empty cell means "determine it"); ``material_id`` (optional, used as the row id in
reports; otherwise ``file:row``). Other columns are ignored.

Per row: ``pymatgen.core.Structure.from_str(cif, fmt="cif")``; the space group from the column, or
from spglib via ``SpacegroupAnalyzer(structure, symprec=0.1)`` when absent; sticks from
:func:`datasets.synthesis.reflections.structure_peaks` (the simulator's function, so both give identical
peaks). A row whose CIF does not parse, whose symmetry cannot be found or that has no peak in the
2θ range is skipped and reported (count and first row ids in the log; all of them in the report
JSON) instead of stopping the run. A malformed label (not an integer, outside 1..230) is an error.

The cache key is a hash of the CSV bytes, the wavelength, the 2θ range and the recipe version,
so an edited CSV or another grid is recomputed and a repeated run starts at once.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger
from tqdm import tqdm

from datasets.base import DataBundle
from datasets.peaks import PeakTable
from datasets.readers.npy import resolve_class_counts
from datasets.readers.peak_lists import PeakCollate, PeakListDataset
from datasets.registry import READERS
from datasets.rendering.instrument import RenderConfig
from utils.crystal import N_SG
from utils.errors import DataError, fail
from utils.grid import GridSpec

RECIPE_VERSION = "raw-csv-v1"  # bump when the per-row recipe changes (invalidates caches)
SYMPREC = 0.1
SG_COLUMNS = ("spacegroup.number", "sg")
SPLIT_PATTERNS = {"train": "train*.csv", "val": "val*.csv", "test": "test*.csv"}
_PARALLEL_MIN_ROWS = 64  # below this a process pool costs more than it saves


def split_files(root: Path) -> dict[str, list[Path]]:
    """CSV files of each split (sorted); DataError when train or test is missing."""
    root = Path(root)
    if not root.is_dir():
        raise fail(DataError, root, "raw data folder not found",
                   "pass a folder with train*.csv and test*.csv (val*.csv optional) holding a 'cif' column")
    files = {s: sorted(root.glob(p)) for s, p in SPLIT_PATTERNS.items()}
    for s in ("train", "test"):
        if not files[s]:
            raise fail(DataError, root / SPLIT_PATTERNS[s], f"no {s} CSV file",
                       "name the files train*.csv and test*.csv (val*.csv optional)")
    return {s: f for s, f in files.items() if f}


def cache_key(files: list[Path], wavelength: float, two_theta_range: tuple[float, float]) -> str:
    """16 hex digits of sha256(CSV contents, wavelength, 2θ range, recipe version)."""
    h = hashlib.sha256(f"{RECIPE_VERSION}|{SYMPREC}|{wavelength:.6f}|{two_theta_range[0]:.4f}|"
                       f"{two_theta_range[1]:.4f}".encode())
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\x00")
    return h.hexdigest()[:16]


def read_rows(files: list[Path]) -> list[tuple[str, str, int | None]]:
    """``(row id, cif, sg or None)`` for every row of the split's CSV files (labels validated)."""
    import pandas as pd

    rows: list[tuple[str, str, int | None]] = []
    for f in files:
        try:
            df = pd.read_csv(f, dtype=str, keep_default_na=False)
        except Exception as exc:
            raise fail(DataError, f, f"cannot be read as CSV ({type(exc).__name__}: {exc})",
                       "write it as a comma-separated file with a header row") from exc
        if "cif" not in df.columns:
            raise fail(DataError, f, f"no 'cif' column (columns: {list(df.columns)[:12]})",
                       "name the column holding the CIF strings 'cif'")
        sg_col = next((c for c in SG_COLUMNS if c in df.columns), None)
        ids = df["material_id"] if "material_id" in df.columns else [f"{f.name}:{i}" for i in range(len(df))]
        sgs = df[sg_col] if sg_col else [""] * len(df)
        for i, (rid, cif, sg) in enumerate(zip(ids, df["cif"], sgs)):
            sg = str(sg).strip()
            if sg:
                try:
                    val = float(sg)
                    if val != int(val):
                        raise ValueError
                    num: int | None = int(val)
                except (ValueError, OverflowError):
                    num = -1
                if not 1 <= num <= N_SG:
                    raise fail(DataError, f"{f} row {i} ({rid})", f"space group {sg!r} in column "
                               f"'{sg_col}' is not an integer in 1..230",
                               "fix the label or leave the cell empty to determine it with spglib")
            else:
                num = None
            rows.append((str(rid), str(cif), num))
    if not rows:
        raise fail(DataError, files[0], "no rows", "the CSV files of this split are empty")
    return rows


def process_row(task: tuple[str, str, int | None, float, tuple[float, float]]) -> dict[str, Any]:
    """One CIF → peaks. Never raises: a failure is returned as ``{"ok": False, "error": ...}``."""
    rid, cif, sg, wavelength, tt_range = task
    import warnings

    from datasets.synthesis.reflections import structure_peaks

    try:
        from pymatgen.core import Structure

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns on every rounded occupancy
            structure = Structure.from_str(cif, fmt="cif")
            lat = structure.lattice
            # a degenerate cell (e.g. an angle of 0) gives NaN coordinates, on which spglib segfaults
            if not (np.isfinite(lat.matrix).all() and np.isfinite(structure.frac_coords).all()
                    and np.isfinite(lat.volume) and lat.volume > 1e-3):
                return {"id": rid, "ok": False, "error": f"degenerate cell (abc {lat.abc}, angles "
                        f"{lat.angles})"}
            sg_from = "column"
            if sg is None:
                from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

                sg = int(SpacegroupAnalyzer(structure, symprec=SYMPREC).get_space_group_number())
                sg_from = "spglib"
        tt, it = structure_peaks(structure, wavelength=wavelength, two_theta_range=tt_range)
        if len(tt) == 0:
            return {"id": rid, "ok": False, "error": "no peak in the 2θ range"}
        if not (np.isfinite(tt).all() and np.isfinite(it).all()):  # e.g. a degenerate cell
            return {"id": rid, "ok": False, "error": "non-finite peaks (degenerate cell?)"}
        if not 1 <= int(sg) <= N_SG:
            return {"id": rid, "ok": False, "error": f"space group {sg} outside 1..230"}
        lat = structure.lattice
        return {"id": rid, "ok": True, "sg": int(sg), "sg_from": sg_from, "two_theta": tt, "intensity": it,
                "formula": structure.composition.reduced_formula,
                "lattice": [*lat.abc, *lat.angles]}
    except Exception as exc:  # any parser/symmetry failure: skip the row, report it
        return {"id": rid, "ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def _run(tasks: list, workers: int, desc: str) -> list[dict[str, Any]]:
    bar = dict(total=len(tasks), desc=desc, unit="cif", mininterval=1.0)
    if workers <= 1 or len(tasks) < _PARALLEL_MIN_ROWS:
        return [process_row(t) for t in tqdm(tasks, **bar)]
    with mp.get_context("spawn").Pool(workers) as pool:
        return list(tqdm(pool.imap(process_row, tasks, chunksize=16), **bar))


def build_split(files: list[Path], split: str, wavelength: float, two_theta_range: tuple[float, float],
                workers: int) -> tuple[PeakTable, dict[str, Any]]:
    """Parse and simulate one split; returns (table, report)."""
    t0 = time.perf_counter()
    rows = read_rows(files)
    tasks = [(rid, cif, sg, float(wavelength), tuple(two_theta_range)) for rid, cif, sg in rows]
    res = _run(tasks, workers, f"raw {split}")
    ok = [r for r in res if r["ok"]]
    bad = [{"id": r["id"], "error": r["error"]} for r in res if not r["ok"]]
    report = {"split": split, "files": [str(f) for f in files], "rows": len(rows), "ok": len(ok),
              "skipped": len(bad), "skipped_rows": bad,
              "sg_from_column": sum(r["sg_from"] == "column" for r in ok),
              "sg_from_spglib": sum(r["sg_from"] == "spglib" for r in ok),
              "symprec": SYMPREC, "wavelength": wavelength, "two_theta_range": list(two_theta_range),
              "seconds": round(time.perf_counter() - t0, 2)}
    if not ok:
        raise fail(DataError, files[0], f"none of the {len(rows)} rows gave a structure (first errors: "
                   f"{bad[:3]})", "check the 'cif' column holds complete CIF strings")
    meta = {"source_id": np.array([r["id"] for r in ok], dtype=str),
            "formula": np.array([r["formula"] for r in ok], dtype=str),
            "lattice": np.array([r["lattice"] for r in ok], dtype=np.float32).reshape(-1, 6)}
    table = PeakTable.from_lists([r["two_theta"] for r in ok], [r["intensity"] for r in ok],
                                 [r["sg"] for r in ok], wavelength, meta)
    return table.validate(f"{files[0]} (simulated)"), report


def _load_cache(cache: Path) -> PeakTable | None:
    """The cached table, or None (with a warning) when the cache file is unreadable: it is
    recomputed from the CSVs rather than stopping the run."""
    try:
        return PeakTable.load(cache)
    except DataError as exc:
        logger.warning(f"ignoring the unreadable cache ({exc}); recomputing it")
        return None


def _read_report(path: Path) -> dict[str, Any]:
    """The report JSON, or {} when it is missing or unreadable (it is informational only)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def load_raw_tables(root: str | os.PathLike, wavelength: float = 1.5406,
                    two_theta_range: tuple[float, float] = (5.0, 90.0), workers: int | None = None,
                    use_cache: bool = True) -> dict[str, PeakTable]:
    """PeakTables of every split under ``root`` ("train", "test" and, when present, "val").

    Args:
        root: folder with ``train*.csv`` / ``val*.csv`` / ``test*.csv``.
        wavelength: X-ray wavelength of the simulated peaks [Å].
        two_theta_range: (min, max) 2θ of the peaks [deg].
        workers: processes for the simulation (default: CPU count, at most 8; small splits run
            in-process).
        use_cache: read/write ``root/cache``.

    Returns:
        ``{split: PeakTable}`` with ``meta`` arrays ``source_id``, ``formula``, ``lattice`` (N, 6).
    """
    root = Path(root)
    files = split_files(root)
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    tables: dict[str, PeakTable] = {}
    for split, fs in files.items():
        key = cache_key(fs, wavelength, two_theta_range)
        cache = root / "cache" / f"raw_{split}_{key}.npz"
        report_path = cache.with_name(f"raw_{split}_{key}_report.json")
        cached = _load_cache(cache) if use_cache and cache.is_file() else None
        if cached is not None:
            tables[split] = cached
            logger.info(f"raw {split}: {len(tables[split])} structures from cache {cache}")
            skipped = _read_report(report_path).get("skipped", 0)
            if skipped:
                logger.warning(f"raw {split}: {skipped} rows were skipped; see {report_path}")
            continue
        table, report = build_split(fs, split, wavelength, two_theta_range, workers)
        tables[split] = table
        if report["skipped"]:
            first = ", ".join(str(r["id"]) for r in report["skipped_rows"][:5])
            logger.warning(f"raw {split}: skipped {report['skipped']} of {report['rows']} rows (broken CIF, "
                           f"no symmetry or no peak), first: {first}; details in {report_path}")
        if use_cache:
            try:
                table.save(cache)
                tmp = report_path.with_name(f".{report_path.name}.tmp")
                tmp.write_text(json.dumps(report, indent=1) + "\n")
                os.replace(tmp, report_path)
            except OSError as exc:  # a read-only data folder must not stop training
                logger.warning(f"cannot write the cache under {root / 'cache'} ({exc}); it will be "
                               "recomputed next time")
        logger.info(f"raw {split}: {report['ok']} structures in {report['seconds']} s (labels: "
                    f"{report['sg_from_column']} from the CSV, {report['sg_from_spglib']} by spglib)")
    return tables


def raw_report(root: str | os.PathLike, split: str, wavelength: float = 1.5406,
               two_theta_range: tuple[float, float] = (5.0, 90.0)) -> dict[str, Any] | None:
    """The cached report JSON of a split (None when not computed yet)."""
    root = Path(root)
    fs = split_files(root)[split]
    p = root / "cache" / f"raw_{split}_{cache_key(fs, wavelength, two_theta_range)}_report.json"
    return (_read_report(p) or None) if p.is_file() else None


@READERS.register("raw")
def build_raw(root: str | os.PathLike, name: str = "raw", grid: GridSpec | None = None, seed: int = 0,
              augment: bool = False, sg_count_path: str | None = None,
              render: RenderConfig | dict[str, Any] | None = None, method: str = "fast",
              workers: int | None = None, use_cache: bool = True, **options: Any) -> DataBundle:
    """Train / val / test from CIF CSVs: simulated once (cached), rendered on the fly.

    Args:
        root: folder with ``train*.csv`` / ``val*.csv`` / ``test*.csv``.
        name: dataset name (run names, ``{name}_sg_count.csv``).
        grid: output grid (default 5–90°, 8500 points, Cu Kα1); peaks are simulated at its
            wavelength and 2θ range.
        seed: run seed of the train-time augmentation.
        augment: augment the training patterns (evaluation collates never do).
        sg_count_path: explicit ``sg,count`` file; default ``{name}_sg_count.csv`` or
            ``sg_count.csv`` in root, else counts of the training labels.
        render: :class:`RenderConfig` (or its dict).
        method: ``"fast"`` or ``"dense"`` renderer.
        workers: simulation processes (see :func:`load_raw_tables`).
        use_cache: read/write ``root/cache``.
        options: other reader options (ignored, logged at debug level).
    """
    grid = grid or GridSpec()
    cfg = render if isinstance(render, RenderConfig) else RenderConfig.from_dict(render)
    tt_range = (grid.two_theta_min, grid.two_theta_max)
    tables = load_raw_tables(root, grid.wavelength, tt_range, workers, use_cache)
    if "val" not in tables:
        logger.info(f"{root}: no val*.csv, no validation split; model selection uses test")
    if options:
        logger.debug(f"raw reader ignores options {sorted(options)}")
    train = PeakListDataset(tables["train"])
    counts, counts_src = resolve_class_counts(Path(root), name, train.labels, sg_count_path)
    spec = {"name": name, "format": "raw", "grid": grid.to_dict(), "render": cfg.to_dict(), "method": method,
            "files": {s: [str(f) for f in fs] for s, fs in split_files(Path(root)).items()},
            "cache_keys": {s: cache_key(fs, grid.wavelength, tt_range)
                           for s, fs in split_files(Path(root)).items()},
            "class_counts_source": counts_src, "symprec": SYMPREC, "recipe": RECIPE_VERSION}
    lam = grid.wavelength
    return DataBundle(
        name=name, train=train, val=PeakListDataset(tables["val"]) if "val" in tables else None,
        test=PeakListDataset(tables["test"]), class_counts=counts, grid=grid,
        train_collate=PeakCollate(grid, cfg, augment, seed, lam, method),
        eval_collate=PeakCollate(grid, cfg, False, seed, lam, method), spec=spec)
