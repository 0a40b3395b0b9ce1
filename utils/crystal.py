"""Crystallography in one place: space group → crystal system, enantiomorphs, extinction groups,
hierarchy masks.

Conventions (DATA.md): on disk space groups are International Tables numbers 1..230; inside
tensors they are 0..229. Crystal systems are 0..6 in the order of ``CRYSTAL_SYSTEMS``.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

N_SG = 230
N_CS = 7
CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal",
                   "hexagonal", "cubic")
# Last space-group number (1-based, inclusive) of each crystal system.
_CS_LAST_SG = (2, 15, 74, 142, 167, 194, 230)

# Enantiomorphic pairs (1-based): identical powder patterns by Friedel's law.
ENANTIOMORPH_PAIRS = ((76, 78), (91, 95), (92, 96), (144, 145), (151, 153), (152, 154),
                      (169, 170), (171, 172), (178, 179), (180, 181), (212, 213))

DATA_DIR = Path(__file__).resolve().parent / "data"


def sg_to_cs_number(sg: int) -> int:
    """Crystal-system index (0..6) of a 1-based space-group number."""
    if not 1 <= int(sg) <= N_SG:
        raise ValueError(f"space group {sg} is outside 1..230")
    for cs, last in enumerate(_CS_LAST_SG):
        if sg <= last:
            return cs
    raise AssertionError("unreachable")


# SG_TO_CS[i] is the crystal system of the 0-based space-group index i.
SG_TO_CS = np.array([sg_to_cs_number(s) for s in range(1, N_SG + 1)], dtype=np.int64)


def sg_to_cs(y_sg: torch.Tensor) -> torch.Tensor:
    """Map 0-based space-group indices (any shape) to crystal-system indices, on the same device."""
    return torch.as_tensor(SG_TO_CS, device=y_sg.device)[y_sg]


def cs_sg_mask(device: torch.device | str | None = None) -> torch.Tensor:
    """(7, 230) bool: ``mask[c, s]`` is True when space group s belongs to crystal system c."""
    m = torch.zeros(N_CS, N_SG, dtype=torch.bool, device=device)
    m[torch.as_tensor(SG_TO_CS, device=device), torch.arange(N_SG, device=device)] = True
    return m


def enantiomorph_partner() -> np.ndarray:
    """(230,) int: the 0-based partner of each space group (itself when it has none)."""
    partner = np.arange(N_SG)
    for a, b in ENANTIOMORPH_PAIRS:
        partner[a - 1], partner[b - 1] = b - 1, a - 1
    return partner


@lru_cache(maxsize=1)
def extinction_groups() -> np.ndarray:
    """(230,) int: extinction group (1..99) of each 0-based space group.

    Source: ``data/sg_extinction_groups.csv``, the lookup table published with "Attention Is Not
    All You Need for Diffraction" (arXiv 2604.23811, scattering/paper-ai-diffraction,
    assets/lookups). Groups sharing an extinction group have the same systematic absences.
    """
    out = np.zeros(N_SG, dtype=np.int64)
    with open(DATA_DIR / "sg_extinction_groups.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            out[int(row["space_group"]) - 1] = int(row["extinction_group"])
    return out
