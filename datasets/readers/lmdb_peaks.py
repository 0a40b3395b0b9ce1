"""The "lmdb" reader: ``DIR/lmdb/{train,val,test}`` environments written by the simulator
(``datasets.readers.lmdb_store``), rendered on the fly like peak tables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from datasets.base import DataBundle
from datasets.readers.lmdb_store import LmdbPeakDataset
from datasets.readers.peak_lists import _grid_of, bundle_from_peak_datasets
from datasets.registry import READERS
from datasets.rendering.instrument import RenderConfig
from utils.errors import DataError, fail
from utils.grid import GridSpec


def lmdb_split_dirs(root: str | os.PathLike) -> dict[str, Path]:
    """``{split: folder}`` of the LMDB environments under ``root`` (``root/lmdb/<split>`` or
    ``root/<split>``)."""
    root = Path(root)
    base = root / "lmdb" if (root / "lmdb").is_dir() else root
    return {s: base / s for s in ("train", "val", "test") if (base / s / "data.mdb").is_file()}


@READERS.register("lmdb")
def build_lmdb_bundle(root: str | os.PathLike, name: str = "xrd_mp", grid: GridSpec | None = None,
                      seed: int = 0, augment: bool = True, sg_count_path: str | None = None,
                      render: RenderConfig | dict[str, Any] | None = None, method: str = "fast",
                      **options: Any) -> DataBundle:
    """Train / val / test from read-only LMDB environments (safe with several loader workers)."""
    root = Path(root)
    dirs = lmdb_split_dirs(root)
    missing = {"train", "test"} - set(dirs)
    if missing:
        raise fail(DataError, root, f"no LMDB environment for split(s) {sorted(missing)} (expected "
                   "DIR/lmdb/<split>/data.mdb)",
                   "generate it with `python -m datasets.simulate --out DIR --lmdb`")
    data_grid, meta = _grid_of(root)
    cfg = render if isinstance(render, RenderConfig) else RenderConfig.from_dict(render)
    splits = {}
    for s, d in dirs.items():
        ds = LmdbPeakDataset(d)
        splits[s] = (ds, ds.wavelength, str(d))
    return bundle_from_peak_datasets(root, splits, name, grid or data_grid, cfg, seed, augment,
                                     sg_count_path, method, "lmdb", meta)
