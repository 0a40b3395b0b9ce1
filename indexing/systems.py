"""The six metric systems of indexing: free reciprocal-metric parameters and their trial hkl.

Every candidate cell is carried as the six parameters p = (A, B, C, D, E, F) of its reciprocal
metric in the system's conventional setting, Q = 1/d² = h²A + k²B + l²C + hkD + hlE + klF
(docs/methods/indexing.md). A system ties them to fewer free parameters x through a fixed
(6 × n_free) matrix ``expand``: p = expand @ x, and the design row of a reflection in the free
parameters is ``hkl_terms(h) @ expand``:

- cubic       x = (A):            p = (A, A, A, 0, 0, 0)
- tetragonal  x = (A, C):         p = (A, A, C, 0, 0, 0)
- hexagonal   x = (A, C):         p = (A, A, C, A, 0, 0)   (hexagonal axes; P-trigonal and R too)
- orthorhombic x = (A, B, C):     p = (A, B, C, 0, 0, 0)
- monoclinic  x = (A, B, C, E):   p = (A, B, C, 0, E, 0)   (b unique)
- triclinic   x = all six.

Trial rows are the low-index reflections a low-angle line is likely to be; one copy of each
distinct design row is kept (hkl giving the same row give the same Q in every cell of the
system), and the axis permutations of a system are factored out where cheap (see ``search``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from utils.lattice import hkl_terms

SYSTEMS = ("cubic", "hexagonal", "tetragonal", "orthorhombic", "monoclinic", "triclinic")

_EXPAND = {
    "cubic": [[1], [1], [1], [0], [0], [0]],
    "tetragonal": [[1, 0], [1, 0], [0, 1], [0, 0], [0, 0], [0, 0]],
    "hexagonal": [[1, 0], [1, 0], [0, 1], [1, 0], [0, 0], [0, 0]],
    "orthorhombic": [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]],
    "monoclinic": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
    "triclinic": np.eye(6).tolist(),
}


@dataclass(frozen=True)
class System:
    """A metric system: its name and the map from free to full metric parameters."""

    name: str
    expand: np.ndarray  # (6, n_free)

    @property
    def n_free(self) -> int:
        return int(self.expand.shape[1])

    def rows(self, hkl: np.ndarray) -> np.ndarray:
        """(M, n_free) design rows of reflections ``hkl`` (M, 3)."""
        return hkl_terms(hkl) @ self.expand

    def full(self, x: np.ndarray) -> np.ndarray:
        """(…, 6) full parameters of free parameters x (…, n_free)."""
        return np.asarray(x, np.float64) @ self.expand.T


@cache
def system(name: str) -> System:
    """The :class:`System` called ``name`` (one of :data:`SYSTEMS`)."""
    if name not in _EXPAND:
        raise KeyError(f"unknown metric system {name!r}; valid: {SYSTEMS}")
    return System(name, np.asarray(_EXPAND[name], np.float64))


def _distinct_rows(sys_: System, hkl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = sys_.rows(hkl)
    _, first = np.unique(np.round(rows, 6), axis=0, return_index=True)
    first = np.sort(first)
    return hkl[first], rows[first]


@cache
def trial_hkl(name: str, hmax: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Low-index reflections (hkl (M, 3), design rows (M, n_free)) used as trial assignments.

    Sorted so that the lowest-order reflections come first (h² + k² + l²)."""
    rng = np.arange(-hmax, hmax + 1)
    h, k, l = np.meshgrid(rng, rng, rng, indexing="ij")
    hkl = np.stack([h.ravel(), k.ravel(), l.ravel()], axis=1)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    if name in ("cubic", "tetragonal", "hexagonal", "orthorhombic"):
        hkl = hkl[np.all(hkl >= 0, axis=1)]
    elif name == "monoclinic":
        hkl = hkl[(hkl[:, 1] >= 0) & (hkl[:, 2] >= 0)]
    order = np.lexsort((hkl[:, 2], hkl[:, 1], hkl[:, 0], np.sum(hkl * hkl, axis=1)))
    return _distinct_rows(system(name), hkl[order])


@cache
def cubic_n_values(n_max: int = 400) -> np.ndarray:
    """(n_max+1,) bool: whether N = h² + k² + l² has a solution (Legendre: N ≠ 4^a (8b + 7))."""
    ok = np.zeros(n_max + 1, bool)
    r = np.arange(int(np.sqrt(n_max)) + 1)
    s = (r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2).ravel()
    ok[s[s <= n_max]] = True
    ok[0] = False
    return ok
