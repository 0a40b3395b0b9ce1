"""Ragged per-pattern crystal data stored beside the sticks of a :class:`datasets.peaks.PeakTable`.

* :class:`StructureTable` — the simulated crystal itself: cell (a, b, c [Å], α, β, γ [deg]) and
  atoms (atomic number, fractional coordinates). Compact (about 0.2 KB per structure), exact, and
  enough to derive everything else: the shipped default set carries it.
* :class:`FamilyTable` — reflection families derived from it (``datasets.synthesis.reflections``):
  per family a representative hkl, its multiplicity and the per-element structure-factor sums;
  per pattern its elements; one table of form-factor coefficients. This is what lattice
  augmentation renders from (``datasets.rendering.lattice_aug``); large generated sets may store
  it, small ones derive it once and cache it.

On disk both are arrays with a prefix (``st_`` / ``fam_``) in the peak table's ``.npz``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from utils.errors import DataError, fail


def _take_ragged(offsets: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(new offsets, element indices) selecting rows ``idx`` of a CSR-style ragged array."""
    idx = np.asarray(idx, np.int64)
    lens = np.diff(offsets)[idx]
    new = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    take = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in idx]) if len(idx) \
        else np.zeros(0, np.int64)
    return new, take


def _check_offsets(offsets: np.ndarray, n: int, total: int, what: str, source: object) -> None:
    if offsets.shape != (n + 1,) or (n + 1 and offsets[0] != 0) or np.any(np.diff(offsets) < 0) \
            or offsets[-1] != total:
        raise fail(DataError, source, f"{what} offsets must be (N+1,), start at 0, be non-decreasing "
                   f"and end at the number of rows ({total})", "regenerate the data set")


@dataclass
class StructureTable:
    offsets: np.ndarray  # (N+1,) int64 atoms per structure, CSR
    z: np.ndarray        # (A,) uint8 atomic numbers
    frac: np.ndarray     # (A, 3) float32 fractional coordinates
    cell: np.ndarray     # (N, 6) float64

    PREFIX = "st_"

    def __len__(self) -> int:
        return len(self.cell)

    def structure(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cell (6,), frac (n, 3) float64, z (n,) int64) of structure ``i``."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.cell[i], self.frac[a:b].astype(np.float64), self.z[a:b].astype(np.int64)

    def validate(self, source: object = "structure table") -> StructureTable:
        n = len(self.cell)
        if self.cell.ndim != 2 or self.cell.shape[1] != 6 or self.frac.ndim != 2 or self.frac.shape[1] != 3:
            raise fail(DataError, source, "structures: cell must be (N, 6) and frac (A, 3)",
                       "regenerate the data set")
        _check_offsets(self.offsets, n, len(self.z), "structure", source)
        finite = np.all(np.isfinite(self.cell)) and np.all(np.isfinite(self.frac))
        if len(self.frac) != len(self.z) or not finite:
            raise fail(DataError, source, "structures: non-finite or mismatched atom arrays",
                       "regenerate the data set")
        return self

    def subset(self, idx: np.ndarray) -> StructureTable:
        offs, take = _take_ragged(self.offsets, idx)
        return StructureTable(offs, self.z[take], self.frac[take], self.cell[np.asarray(idx, np.int64)])

    @classmethod
    def from_lists(cls, cells: list, fracs: list, zs: list) -> StructureTable:
        lens = [len(z) for z in zs]
        return cls(np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
                   np.concatenate(zs).astype(np.uint8) if zs else np.zeros(0, np.uint8),
                   np.concatenate(fracs).astype(np.float32).reshape(-1, 3) if fracs
                   else np.zeros((0, 3), np.float32),
                   np.asarray(cells, np.float64).reshape(-1, 6))


@dataclass
class FamilyTable:
    offsets: np.ndarray  # (N+1,) int64 families per pattern, CSR
    hkl: np.ndarray      # (F, 3) int16 representatives
    mult: np.ndarray     # (F,) int16 multiplicities
    sf: np.ndarray       # (F, E, 2) float32 Re/Im of S_e per element slot (zeros: padding)
    z: np.ndarray        # (N, E) int16 atomic numbers of the slots (0: padding)
    cell: np.ndarray     # (N, 6) float64 the cell the families were computed in
    ff: np.ndarray       # (Zmax + 1, K, 2) float32 form-factor coefficients per atomic number

    PREFIX = "fam_"

    def __len__(self) -> int:
        return len(self.cell)

    def item(self, i: int) -> dict[str, np.ndarray]:
        """Families of pattern ``i``: hkl, mult, sf (F_i, E_i, 2), z (E_i,), ff (E_i, K, 2), cell."""
        a, b = self.offsets[i], self.offsets[i + 1]
        slots = np.flatnonzero(self.z[i] > 0)
        z = self.z[i, slots].astype(np.int64)
        return {"hkl": self.hkl[a:b], "mult": self.mult[a:b], "sf": self.sf[a:b][:, slots],
                "z": z, "ff": self.ff[z], "cell": self.cell[i]}

    def validate(self, source: object = "family table") -> FamilyTable:
        n = len(self.cell)
        _check_offsets(self.offsets, n, len(self.hkl), "family", source)
        ok = (self.hkl.ndim == 2 and self.hkl.shape[1] == 3 and self.mult.shape == (len(self.hkl),)
              and self.sf.ndim == 3 and self.sf.shape[0] == len(self.hkl) and self.sf.shape[2] == 2
              and self.z.shape == (n, self.sf.shape[1]) and self.cell.shape == (n, 6)
              and self.ff.ndim == 3 and self.ff.shape[2] == 2)
        if not ok:
            raise fail(DataError, source, "families: inconsistent array shapes", "regenerate the data set")
        if not (np.all(np.isfinite(self.sf)) and np.all(np.isfinite(self.cell))):
            raise fail(DataError, source, "families: non-finite values", "regenerate the data set")
        if self.z.size and int(self.z.max()) >= len(self.ff):
            raise fail(DataError, source, "families: an element has no form-factor coefficients",
                       "regenerate the data set")
        return self

    def subset(self, idx: np.ndarray) -> FamilyTable:
        idx = np.asarray(idx, np.int64)
        offs, take = _take_ragged(self.offsets, idx)
        return FamilyTable(offs, self.hkl[take], self.mult[take], self.sf[take], self.z[idx],
                           self.cell[idx], self.ff)

    @classmethod
    def from_lists(cls, fams: list[dict[str, np.ndarray]], ff: np.ndarray) -> FamilyTable:
        """From per-pattern dicts of ``reflection_families`` (element slots padded to the max)."""
        e = max([len(f["z"]) for f in fams], default=1)
        lens = [len(f["hkl"]) for f in fams]
        sf = np.zeros((sum(lens), e, 2), np.float32)
        z = np.zeros((len(fams), e), np.int16)
        row = 0
        for i, f in enumerate(fams):
            sf[row:row + lens[i], :len(f["z"])] = f["sf"]
            z[i, :len(f["z"])] = f["z"]
            row += lens[i]

        def cat(k: str, shape: tuple, dt: type) -> np.ndarray:
            return np.concatenate([f[k] for f in fams]).astype(dt) if fams else np.zeros(shape, dt)

        return cls(np.concatenate([[0], np.cumsum(lens)]).astype(np.int64), cat("hkl", (0, 3), np.int16),
                   cat("mult", (0,), np.int16), sf, z,
                   np.asarray([f["cell"] for f in fams], np.float64).reshape(-1, 6), ff.astype(np.float32))


def to_arrays(table: StructureTable | FamilyTable | None) -> dict[str, np.ndarray]:
    """Prefixed arrays for ``np.savez`` (empty for None)."""
    if table is None:
        return {}
    return {table.PREFIX + f.name: getattr(table, f.name) for f in fields(table)}


def from_arrays(cls: type, arrays: dict[str, np.ndarray], source: object):
    """The table of class ``cls`` stored in ``arrays`` under its prefix, or None if absent."""
    names = [f.name for f in fields(cls)]
    present = [n for n in names if cls.PREFIX + n in arrays]
    if not present:
        return None
    if len(present) != len(names):
        missing = sorted(set(names) - set(present))
        raise fail(DataError, source, f"incomplete {cls.__name__}: missing {missing}",
                   "regenerate the data set")
    return cls(**{n: arrays[cls.PREFIX + n] for n in names}).validate(source)
