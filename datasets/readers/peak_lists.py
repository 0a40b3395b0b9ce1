"""Peak-list datasets rendered on the fly: the dataset, the collate and the ``peaks`` reader.

Per-sample contract of every peak-list dataset (this one and ``datasets.readers.lmdb_store``)::

    {"two_theta": (n,) float32 [deg], "intensity": (n,) float32, "y_sg": int in [0, 230),
     "y_cs": int in [0, 7), "idx": int}

:class:`PeakCollate` pads a list of them, renders (``datasets.rendering.renderer``) and returns the batch
contract of ``datasets.base``. Folder read by :func:`build_peaks_bundle` (``--data_format peaks``,
written by ``python -m datasets.simulate``)::

    root/peaks_train.npz, peaks_val.npz (optional), peaks_test.npz   (datasets.peaks.PeakTable)
    root/sg_count.csv or {name}_sg_count.csv  (optional; rows ``sg,count``, 1-based, no header)
    root/dataset.json                          (optional; its "grid" is the default output grid)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger
from torch.utils.data import Dataset

from datasets.base import DataBundle, counts_from_labels
from datasets.peaks import PeakTable
from datasets.readers.npy import read_sg_count
from datasets.registry import READERS
from datasets.rendering.instrument import RenderConfig, sample_seeds
from datasets.rendering.lattice_aug import LatticeAugment
from datasets.rendering.renderer import PeakRenderer, pad_peaks
from utils.crystal import SG_TO_CS
from utils.errors import DataError, fail
from utils.grid import GridSpec


class PeakListDataset(Dataset):
    """Samples of a :class:`PeakTable` (optionally a subset of its rows).

    Args:
        table: the peak lists (intensities on any scale, labels 1..230).
        indices: table rows to expose, in order (None: all). ``idx`` of an item is its position
            in this dataset, as for the other readers.
    """

    def __init__(self, table: PeakTable, indices: np.ndarray | list[int] | None = None,
                 with_families: bool = False) -> None:
        self.table = table
        if with_families and table.families is None:
            raise ValueError("with_families needs a table with reflection families")
        self.with_families = bool(with_families)
        self.rows = np.arange(len(table)) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= len(table)):
            raise IndexError(f"indices outside 0..{len(table) - 1}")
        self.wavelength = float(table.wavelength)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> np.ndarray:
        """(N,) 0-based space-group labels (samplers and class counts use them)."""
        return self.table.sg[self.rows].astype(np.int64) - 1

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        if not 0 <= i < len(self.rows):
            raise IndexError(i)
        tt, inten = self.table.peaks(int(self.rows[i]))
        sg0 = int(self.table.sg[self.rows[i]]) - 1
        item = {"two_theta": np.asarray(tt, np.float32), "intensity": np.asarray(inten, np.float32),
                "y_sg": sg0, "y_cs": int(SG_TO_CS[sg0]), "idx": i}
        if self.with_families:  # what lattice augmentation re-renders from (PeakCollate)
            item.update(self.table.families.item(int(self.rows[i])))
        return item


LATTICE_SEED_SALT = 104729  # the strained cells: a random stream of their own


class PeakCollate:
    """Pad, render and label a list of per-sample peak dicts (a DataLoader ``collate_fn``).

    Seeds: sample ``idx`` of epoch ``e`` gets ``sample_seeds(seed, e, idx)``, so its augmented
    pattern is the same whatever batch or worker renders it, and a run resumed at epoch e replays
    the same patterns. The Trainer calls :meth:`set_epoch` on the loader's ``collate_fn`` before
    iterating; that reaches the workers because with ``persistent_workers=False`` (the framework's
    loaders) DataLoader re-creates its workers, each with a fresh copy of this object, every epoch.
    (With persistent workers the copies would keep the epoch they were created with.)

    Multi-view methods (GLMC, GH, ...) set ``n_views`` > 1: the batch then also holds
    ``"views": [x_1, ..., x_V]``, V independent augmentations of every sample (view 0 is ``x``
    itself, so single-view runs are unchanged). An item may carry ``"aug_key"`` (e.g. its draw
    position in a with-replacement sampler, see ``datasets.views``): the augmentation seed then
    uses it instead of ``idx``, so repeated draws of one sample get different augmentations.

    Args:
        grid: output grid.
        cfg: render settings (default :class:`RenderConfig`).
        augment: random train-time augmentation (else the nominal rendering).
        seed: run seed.
        wavelength: wavelength [Å] of the peak lists' 2θ (converted to the grid's).
        method: ``"fast"`` or ``"dense"`` renderer.
        n_views: augmented views per sample (1: only ``x``).
        lattice: exact lattice augmentation (``datasets.rendering.lattice_aug``) applied, when
            ``augment``, to items that carry reflection families: their sticks are recomputed in
            a randomly strained cell of the same crystal system (all views share that cell).
    """

    def __init__(self, grid: GridSpec | None = None, cfg: RenderConfig | None = None, augment: bool = False,
                 seed: int = 0, wavelength: float = 1.5406, method: str = "fast", n_views: int = 1,
                 lattice: LatticeAugment | None = None) -> None:
        self.renderer = PeakRenderer(grid or GridSpec(), cfg, method)
        self.lattice = lattice
        self.augment, self.seed, self.wavelength, self.epoch = bool(augment), int(seed), float(wavelength), 0
        if int(n_views) < 1:
            raise ValueError(f"PeakCollate: n_views must be >= 1, got {n_views}")
        self.n_views = int(n_views)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Returns ``{"x": (B, 1, L) float32, "y_sg": (B,) int64, "y_cs": (B,) int64, "idx": (B,)}``
        plus ``"views"``: a list of ``n_views`` (B, 1, L) tensors when ``n_views`` > 1."""
        idx = torch.tensor([int(d["idx"]) for d in items], dtype=torch.int64)
        key = torch.tensor([int(d.get("aug_key", d["idx"])) for d in items], dtype=torch.int64)
        seeds = sample_seeds(self.seed, self.epoch, key) if self.augment else None
        sticks = [(d["two_theta"], d["intensity"]) for d in items]
        if seeds is not None and self.lattice is not None:
            cell_seeds = sample_seeds(self.seed + LATTICE_SEED_SALT, self.epoch, key).tolist()
            sticks = [self.lattice.sticks(d, s, self.wavelength) if "hkl" in d else st
                      for d, s, st in zip(items, cell_seeds, sticks)]
        tt, inten, mask = pad_peaks([s[0] for s in sticks], [s[1] for s in sticks])
        x = self.renderer.render(tt, inten, mask, augment=self.augment, seeds=seeds,
                                 wavelength=self.wavelength)
        out = {"x": x, "y_sg": torch.tensor([int(d["y_sg"]) for d in items], dtype=torch.int64),
               "y_cs": torch.tensor([int(d["y_cs"]) for d in items], dtype=torch.int64), "idx": idx}
        if self.n_views > 1:
            views = [x]
            for v in range(1, self.n_views):
                # view v's seeds: a hash of (view, the sample's seed); independent of view 0's
                vs = sample_seeds(v, 0, seeds) if seeds is not None else None
                views.append(x if vs is None else self.renderer.render(
                    tt, inten, mask, augment=True, seeds=vs, wavelength=self.wavelength))
            out["views"] = views
        return out


def render_table(table: PeakTable, grid: GridSpec | None = None, cfg: RenderConfig | None = None,
                 batch_size: int = 256) -> np.ndarray:
    """Nominal renderings of every pattern of ``table``: (N, L) float32, each max 1 (for export)."""
    r = PeakRenderer(grid or GridSpec(), cfg)
    out = np.zeros((len(table), r.grid.n_points), np.float32)
    for s in range(0, len(table), batch_size):
        rows = range(s, min(s + batch_size, len(table)))
        tt, inten, mask = pad_peaks([table.peaks(i)[0] for i in rows], [table.peaks(i)[1] for i in rows])
        out[s:s + len(rows)] = r.render(tt, inten, mask, wavelength=table.wavelength)[:, 0].numpy()
    return out


def _grid_of(root: Path) -> tuple[GridSpec, dict[str, Any]]:
    path = root / "dataset.json"
    if not path.is_file():
        return GridSpec(), {}
    try:
        meta = json.loads(path.read_text())
        return GridSpec.from_dict(meta.get("grid")), meta
    except (ValueError, TypeError, AttributeError) as exc:
        raise fail(DataError, path, f"unreadable dataset description ({type(exc).__name__}: {exc})",
                   'write valid JSON with a "grid" object (two_theta_min, two_theta_max, n_points, '
                   "wavelength), or delete it to use the default grid") from exc


@READERS.register("peaks")
def build_peaks_bundle(root: str | os.PathLike, name: str = "xrd_mp", grid: GridSpec | None = None,
                       seed: int = 0, augment: bool = True, sg_count_path: str | None = None,
                       render: RenderConfig | dict[str, Any] | None = None, method: str = "fast",
                       lattice_aug: bool | None = None, lattice_strain: float = 0.06,
                       lattice_angle_deg: float = 3.0, **options: Any) -> DataBundle:
    """Train / val / test from peak tables, rendered on the fly (train augmented, eval nominal).

    Args:
        root: folder with ``peaks_{train,val,test}.npz`` (val optional).
        name: dataset name (run names, ``{name}_sg_count.csv``).
        grid: output grid (e.g. a checkpoint's); peak lists render on any grid. None: the "grid"
            of ``root/dataset.json``, else the default 5–90°, 8500 points, Cu Kα1.
        seed: run seed of the train-time augmentation.
        augment: augment the training patterns (evaluation collates never do).
        sg_count_path: explicit ``sg,count`` file; default ``{name}_sg_count.csv`` or
            ``sg_count.csv`` in root (validated), else counts of the training labels.
        render: :class:`RenderConfig` (or its dict) of the rendering and its augmentation ranges.
        method: ``"fast"`` or ``"dense"`` renderer.
        lattice_aug: exact lattice augmentation of the training patterns (None: on when the
            training table carries structures or reflection families, i.e. simulated data).
            Families are derived from the structures once and cached (``datasets.synthesis.families``).
        lattice_strain, lattice_angle_deg: its ranges (``datasets.rendering.lattice_aug``).
        options: other reader options (ignored, logged at debug level).

    Raises:
        DataError: a missing or malformed file (the message names it and says how to fix it).
    """
    root = Path(root)
    if not root.is_dir():
        raise fail(DataError, root, "peak-list folder not found",
                   "generate it with `python -m datasets.simulate --out DIR`")
    data_grid, meta = _grid_of(root)
    cfg = render if isinstance(render, RenderConfig) else RenderConfig.from_dict(render)
    paths = {s: root / f"peaks_{s}.npz" for s in ("train", "val", "test")}
    # an evaluation-only folder (dataset.json "eval_only", e.g. datasets.synthesis.external_set)
    # has no train split
    optional = {"val", "train"} if meta.get("eval_only") else {"val"}
    tables = {s: PeakTable.load(p) for s, p in paths.items() if s not in optional or p.is_file()}
    if options:
        logger.debug(f"peaks reader ignores options {sorted(options)}")
    lattice = None
    train = tables.get("train")
    can = train is not None and (train.families is not None or train.structures is not None)
    if lattice_aug and not can:
        raise fail(DataError, paths["train"], "--lattice_aug needs the crystal structures or reflection "
                   "families of the training patterns, and this table has neither",
                   "regenerate the set with `python -m datasets.simulate`, or pass --lattice_aug False")
    if (lattice_aug is None and can) or lattice_aug:
        lattice, tables["train"] = _with_lattice(root, train, meta, lattice_strain, lattice_angle_deg)
    splits = {s: (PeakListDataset(t, with_families=lattice is not None and s == "train"), t.wavelength,
                  str(paths[s])) for s, t in tables.items()}
    bundle = bundle_from_peak_datasets(root, splits, name, grid or data_grid, cfg, seed, augment,
                                       sg_count_path, method, "peaks", meta)
    bundle.train_collate.lattice = lattice if augment else None
    bundle.spec["lattice_aug"] = None if lattice is None else asdict(lattice)
    return bundle


def _with_lattice(root: Path, train: PeakTable, meta: dict[str, Any], strain: float, angle_deg: float
                  ) -> tuple[LatticeAugment, PeakTable]:
    """The lattice augmentation of a table, and the table with its families (derived if needed)."""
    from datasets.synthesis.families import cached_families

    settings = meta.get("settings", {})
    tt_range = (float(settings.get("two_theta_min", 5.0)), float(settings.get("two_theta_max", 90.0)))
    if train.families is None:
        train.families = cached_families(train.structures, root, "train", train.wavelength, tt_range[1],
                                         workers=min(2, os.cpu_count() or 1))
    lattice = LatticeAugment(strain=float(strain), angle_deg=float(angle_deg), two_theta_range=tt_range,
                             min_rel=float(settings.get("min_intensity", 0.5)) / 100.0)
    return lattice, train


def bundle_from_peak_datasets(root: Path, splits: dict[str, tuple[Any, float, str]], name: str,
                              grid: GridSpec, cfg: RenderConfig, seed: int, augment: bool,
                              sg_count_path: str | None, method: str, fmt: str,
                              meta: dict[str, Any]) -> DataBundle:
    """A DataBundle from per-split peak datasets (peak tables or LMDB), rendered by PeakCollate.

    Args:
        splits: ``{split: (dataset with .labels, wavelength, source file)}``; train and test required.
    """
    if "val" not in splits:
        logger.info(f"{root}: no validation split, model selection uses test")
    eval_lams = {round(lam, 6) for s, (_, lam, _) in splits.items() if s != "train"}
    if len(eval_lams) > 1:
        raise fail(DataError, root, f"val and test peak lists use different wavelengths {sorted(eval_lams)}",
                   "regenerate them at one wavelength")
    train = splits["train"][0] if "train" in splits else None
    # evaluation-only folders: counts come from a sg_count file or the checkpoint (test.py)
    from_labels = counts_from_labels(train.labels if train is not None else np.zeros(0, np.int64))
    candidates = [Path(sg_count_path)] if sg_count_path else [root / f"{name}_sg_count.csv",
                                                               root / "sg_count.csv"]
    counts, counts_src = from_labels, "training labels"
    for p in candidates:
        if sg_count_path or p.is_file():
            counts, counts_src = read_sg_count(p), str(p)
            if not np.array_equal(counts, from_labels):
                g = int(np.flatnonzero(counts != from_labels)[0])
                logger.warning(f"{p}: counts differ from the training labels (e.g. space group {g + 1}: "
                               f"{counts[g]} vs {from_labels[g]}); using the file")
            break
    lam_eval = splits["test"][1]
    lam_train = splits["train"][1] if "train" in splits else lam_eval
    spec = {"name": name, "format": fmt, "grid": grid.to_dict(), "render": cfg.to_dict(),
            "method": method, "wavelength": {s: v[1] for s, v in splits.items()},
            "files": {s: v[2] for s, v in splits.items()}, "class_counts_source": counts_src,
            "generator": {k: meta[k] for k in ("command", "seed", "settings") if k in meta}}
    return DataBundle(
        name=name, train=train, val=splits["val"][0] if "val" in splits else None,
        test=splits["test"][0], class_counts=counts, grid=grid,
        train_collate=PeakCollate(grid, cfg, augment, seed, lam_train, method),
        eval_collate=PeakCollate(grid, cfg, False, seed, lam_eval, method), spec=spec)
