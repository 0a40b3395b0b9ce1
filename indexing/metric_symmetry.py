"""Lattice reduction and the metric symmetry (Bravais lattice) of an indexed cell.

The refined cell is turned primitive (its centring removed), Niggli-reduced (spglib
``niggli_reduce``; Křivý & Gruber, Acta Cryst. A32, 297 (1976)) and the symmetry of a one-atom
crystal on that lattice is found by spglib within a tolerance: its space group is the lattice's
holohedry, which names the Bravais lattice (Le Page, J. Appl. Cryst. 15, 255 (1982) does the
same with two-fold axes). A P-trigonal cell is metrically hexagonal (hP); an R cell is hR.
Whatever system the search assumed, this decides the metric system of a solution, so a
tetragonal lattice found by the orthorhombic search is reported as tetragonal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import spglib

from utils.lattice import cell_of_metric, lattice_matrix, metric_from_params

# rows: primitive vectors in terms of the conventional ones
TO_PRIMITIVE = {
    "P": np.eye(3),
    "I": np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]]) / 2.0,
    "F": np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]]) / 2.0,
    "C": np.array([[1, 1, 0], [-1, 1, 0], [0, 0, 2]]) / 2.0,
    "A": np.array([[2, 0, 0], [0, 1, 1], [0, -1, 1]]) / 2.0,
    "B": np.array([[1, 0, 1], [0, 2, 0], [-1, 0, 1]]) / 2.0,
    "R": np.array([[2, 1, 1], [-1, 1, 1], [-1, -2, 1]]) / 3.0,
}
# holohedry (space group of a one-atom lattice) → Bravais lattice
HOLOHEDRY = {2: "aP", 10: "mP", 12: "mC", 47: "oP", 65: "oC", 69: "oF", 71: "oI", 123: "tP",
             139: "tI", 166: "hR", 191: "hP", 221: "cP", 225: "cF", 229: "cI"}
# Bravais lattice → metric system (hR: rhombohedral metric, the trigonal-R crystal system)
BRAVAIS_SYSTEM = {"aP": "triclinic", "mP": "monoclinic", "mC": "monoclinic", "oP": "orthorhombic",
                  "oC": "orthorhombic", "oF": "orthorhombic", "oI": "orthorhombic",
                  "tP": "tetragonal", "tI": "tetragonal", "hR": "trigonal", "hP": "hexagonal",
                  "cP": "cubic", "cF": "cubic", "cI": "cubic"}


@dataclass
class Lattice:
    """Metric symmetry of a cell."""

    bravais: str              # e.g. "tI"
    system: str               # metric system: one of utils.sg_tables.CRYSTAL_SYSTEMS
    conventional: np.ndarray  # (6,) conventional cell of that Bravais lattice (spglib's standard)
    reduced: np.ndarray       # (6,) Niggli-reduced primitive cell
    volume_primitive: float


def primitive_lattice(params: np.ndarray, centring: str) -> np.ndarray:
    """Row vectors (3, 3) of the primitive cell of metric ``params`` with ``centring``."""
    conv = lattice_matrix(cell_of_metric(metric_from_params(params)))
    return TO_PRIMITIVE[centring] @ conv


def _cell_params(lat: np.ndarray) -> np.ndarray:
    a, b, c = np.linalg.norm(lat, axis=1)
    n = np.linalg.norm(lat, axis=1)
    ang = [np.degrees(np.arccos(np.clip(lat[i] @ lat[j] / (n[i] * n[j]), -1, 1)))
           for i, j in ((1, 2), (0, 2), (0, 1))]
    return np.array([a, b, c, *ang])


def metric_symmetry(params: np.ndarray, centring: str = "P", rel_tol: float = 1e-3) -> Lattice:
    """Bravais lattice of the cell (metric ``params``, ``centring``) within a relative tolerance."""
    prim = primitive_lattice(params, centring)
    red = spglib.niggli_reduce(prim, eps=1e-5)
    if red is None:
        red = prim
    vol = float(abs(np.linalg.det(red)))
    symprec = rel_tol * vol ** (1.0 / 3.0)
    ds = spglib.get_symmetry_dataset((red, [[0.0, 0.0, 0.0]], [1]), symprec=symprec,
                                     angle_tolerance=-1.0)
    bravais = HOLOHEDRY.get(int(ds.number), "aP") if ds is not None else "aP"
    conv = _cell_params(np.asarray(ds.std_lattice)) if ds is not None else _cell_params(red)
    return Lattice(bravais, BRAVAIS_SYSTEM[bravais], conv, _cell_params(red), vol)
