"""Peak lists: the compact storage of simulated (or user-supplied) diffraction patterns.

A :class:`PeakTable` holds N patterns as a ragged array of sticks (2θ, intensity), CSR style.
Patterns are rendered onto the 2θ grid on the fly (``datasets.rendering.renderer``), so peak shape, zero
shift, background and noise are train-time augmentations.

On disk: one ``.npz`` (``np.savez_compressed``; always loaded with ``allow_pickle=False``) with
arrays ``offsets`` (N+1,) int64, ``two_theta`` (P,) float32 [deg], ``intensity`` (P,) float32
(max of each pattern = 100), ``sg`` (N,) int16 (1..230), ``wavelength`` () float64 and optional
per-sample metadata arrays ``meta_<name>`` (e.g. ``meta_formula`` unicode, ``meta_lattice``
(N, 6) float32, ``meta_source_id`` unicode). Simulated tables also carry the crystal structures
(``st_*``) and may carry their reflection families (``fam_*``), see ``datasets.crystals``; tables
written before either existed load unchanged (no lattice augmentation for them).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets.crystals import FamilyTable, StructureTable, from_arrays, to_arrays
from utils.crystal import N_SG
from utils.errors import DataError, fail


@dataclass
class PeakTable:
    offsets: np.ndarray
    two_theta: np.ndarray
    intensity: np.ndarray
    sg: np.ndarray
    wavelength: float = 1.5406
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    structures: StructureTable | None = None
    families: FamilyTable | None = None

    def __len__(self) -> int:
        return len(self.sg)

    def peaks(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Sticks of pattern ``i``: (2θ [deg], intensity), both (n_i,) float32."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.two_theta[a:b], self.intensity[a:b]

    def n_peaks(self) -> np.ndarray:
        return np.diff(self.offsets)

    def validate(self, source: object = "peak table") -> PeakTable:
        """Check shapes, monotone offsets, finite values and labels in 1..230; raise DataError."""
        for k, want in (("offsets", "iu"), ("two_theta", "f"), ("intensity", "f"), ("sg", "iu")):
            v = getattr(self, k)
            if not isinstance(v, np.ndarray) or v.ndim != 1 or v.dtype.kind not in want:
                raise fail(DataError, source, f"'{k}' must be a 1-D {'integer' if 'i' in want else 'float'} "
                           f"array, got {getattr(v, 'dtype', type(v))} of shape {np.shape(v)}",
                           "regenerate the peak table with datasets.simulate")
        if not (np.isfinite(self.wavelength) and self.wavelength > 0):
            raise fail(DataError, source, f"wavelength {self.wavelength} is not a positive number of Å",
                       "regenerate the peak table")
        n = len(self.sg)
        if self.offsets.shape != (n + 1,) or self.offsets[0] != 0 or np.any(np.diff(self.offsets) < 0):
            raise fail(DataError, source, "offsets must be (N+1,), start at 0 and be non-decreasing",
                       "regenerate the peak table with datasets.simulate")
        if self.offsets[-1] != len(self.two_theta) or len(self.two_theta) != len(self.intensity):
            raise fail(DataError, source, "two_theta/intensity length does not match offsets[-1]",
                       "regenerate the peak table")
        bad = ~(np.isfinite(self.two_theta) & np.isfinite(self.intensity))
        if bad.any():
            j = int(np.searchsorted(self.offsets, np.flatnonzero(bad)[0], side="right") - 1)
            raise fail(DataError, source, f"non-finite peak in pattern {j}", "drop or fix that pattern")
        if n and (self.sg.min() < 1 or self.sg.max() > N_SG):
            j = int(np.flatnonzero((self.sg < 1) | (self.sg > N_SG))[0])
            raise fail(DataError, source, f"space group {int(self.sg[j])} of pattern {j} is outside "
                       "1..230", "labels on disk are International Tables numbers 1..230")
        for k, v in self.meta.items():
            if np.ndim(v) == 0 or len(v) != n:
                raise fail(DataError, source, f"metadata '{k}' has {len(v)} rows for {n} patterns",
                           "regenerate the peak table")
        for extra in (self.structures, self.families):
            if extra is not None and len(extra) != n:
                raise fail(DataError, source, f"{type(extra).__name__} has {len(extra)} rows for {n} "
                           "patterns", "regenerate the peak table")
        return self

    def subset(self, idx: np.ndarray) -> PeakTable:
        idx = np.asarray(idx, dtype=np.int64)
        lens = self.n_peaks()[idx]
        offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        take = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in idx]) \
            if len(idx) else np.zeros(0, np.int64)
        return PeakTable(offs, self.two_theta[take], self.intensity[take], self.sg[idx],
                         self.wavelength, {k: v[idx] for k, v in self.meta.items()},
                         None if self.structures is None else self.structures.subset(idx),
                         None if self.families is None else self.families.subset(idx))

    @classmethod
    def from_lists(cls, two_theta: list[np.ndarray], intensity: list[np.ndarray], sg: list[int],
                   wavelength: float = 1.5406, meta: dict[str, list] | None = None) -> PeakTable:
        lens = [len(t) for t in two_theta]
        offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        def cat(xs):
            return (np.concatenate(xs).astype(np.float32) if xs else np.zeros(0, np.float32))
        m = {k: np.asarray(v) for k, v in (meta or {}).items()}
        return cls(offs, cat(two_theta), cat(intensity), np.asarray(sg, dtype=np.int16), wavelength, m)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file + ``os.replace``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # a name of its own per writer: runs sharing a cache (``--stream_cache``) may write one file at once
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
        arrays = {"offsets": self.offsets, "two_theta": self.two_theta, "intensity": self.intensity,
                  "sg": self.sg, "wavelength": np.float64(self.wavelength)}
        arrays.update({f"meta_{k}": v for k, v in self.meta.items()})
        arrays.update(to_arrays(self.structures))
        arrays.update(to_arrays(self.families))
        try:
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> PeakTable:
        path = Path(path)
        if not path.is_file():
            raise fail(DataError, path, "peak table not found",
                       "generate it with `python -m datasets.simulate --out DIR`")
        try:
            with np.load(path, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except Exception as exc:
            raise fail(DataError, path, f"cannot be read as a peak table ({type(exc).__name__})",
                       "regenerate it; it may be truncated") from exc
        missing = {"offsets", "two_theta", "intensity", "sg"} - set(d)
        if missing:
            raise fail(DataError, path, f"missing arrays {sorted(missing)}", "regenerate it")
        meta = {k[5:]: v for k, v in d.items() if k.startswith("meta_")}
        wl = np.asarray(d.get("wavelength", 1.5406))
        if wl.shape != () or wl.dtype.kind not in "iuf":
            raise fail(DataError, path, f"'wavelength' must be a number, got {wl.dtype} of shape "
                       f"{wl.shape}", "regenerate it")
        # check kinds and ranges before the casts below, which would wrap or truncate silently
        raw = cls(d["offsets"], d["two_theta"], d["intensity"], d["sg"], float(wl), meta).validate(path)
        return cls(raw.offsets.astype(np.int64), raw.two_theta.astype(np.float32),
                   raw.intensity.astype(np.float32), raw.sg.astype(np.int16), raw.wavelength,
                   meta, from_arrays(StructureTable, d, path),
                   from_arrays(FamilyTable, d, path)).validate(path)
