"""The 230×230 space-group rule matrix R: recipes, CSV I/O and validation.

R[i, j] ∈ [0, 1] says how alike space groups i+1 and j+1 are; it is symmetric with a unit
diagonal. The ICL contrastive loss (``loss/scl.py``) treats pairs with R > 0.8 as positives and
weights negatives by 1 − R. Everything here reads the tables shipped in ``utils/data`` (generated
from pyxtal/spglib by ``python -m datasets.crystal_tables``), so it needs numpy only.

Recipe ``"crystallographic"`` (the default) is a weighted sum of indicator matrices, each asking
one question about the pair (i, j); the weights sum to 1, so the diagonal is 1 and R ∈ [0, 1]:

    ==================  ======  =====================================================================
    feature             weight  why
    ==================  ======  =====================================================================
    extinction_group     0.60   same systematic absences (99 extinction groups): identical peak
                                positions for the same cell, so powder diffraction cannot tell the
                                pair apart except by intensities. Enantiomorphs always share one.
    bravais_lattice      0.25   same lattice type and centring (aP, mP, mC, oP, oC, oF, oI, tP, tI,
                                hP, hR, cP, cI, cF): the same family of allowed peak positions
                                before glide/screw absences. Implied by the extinction group.
    crystal_system       0.03   same crystal system (the CS head's label).
    laue_class           0.03   same Laue class. Kept small: powder overlap hides Laue symmetry
                                within a crystal family (4/m vs 4/mmm peaks coincide).
    point_group          0.04   same point group (intensity statistics, polarity, chirality).
    group_subgroup       0.05   one is a maximal t- or k-subgroup of the other (International
                                Tables A1, via pyxtal), or they are enantiomorphic partners: the
                                structures are related by a small distortion or ordering.
    ==================  ======  =====================================================================

Consequences: a pair with the same extinction group always scores ≥ 0.60 + 0.25 = 0.85 > 0.8, a
pair without scores ≤ 0.40 < 0.8, so thresholding at 0.8 selects exactly the pairs powder
diffraction cannot distinguish by peak positions (the 11 enantiomorph pairs score 1.0). The matrix
takes values in {0, 0.03, ..., 1}; 0 means nothing in common (different lattice, system, no
maximal group–subgroup relation).

Recipe ``"symop_cosine"`` reproduces the original method (github.com/w1u2d3i4/phys-moe,
``sg_matrix.py``): R = cosine similarity of count vectors over the symmetry-operation strings of
each group, using coset representatives (centring translations left out, as the ITA lists them
under ``(0,0,0)+``). Reverse-engineered from its published ``rule_matrix.csv``: it used monoclinic
unique axis c, origin choice 1 and rhombohedral axes, and for centred groups the representative
with the fewest non-zero translation components. With those conventions this module gives 66
off-diagonal pairs above 0.8 (all exactly 1: identical representative lists, e.g. P2/C2, P222/C222)
as the original, and equals the original on the rows compared in full (1, 7, 24) and on spot checks
of rows 3, 4, 10, 21–23, 38. Its minimum is 0.0295 (Fd-3c vs P6_3/mcm, P6_3/mmc) instead of 0.036:
the original's operator list came from an unnamed source that differs for Fd-3c (29 entries of
row 228) and, by its Ia-3d row, even held duplicated operators. ``"symop_cosine_standard"`` is the
same cosine in the ITA standard settings with ITA's own representatives (80 pairs above 0.8,
minimum 0.042). These recipes depend on the setting, which a crystallographic property should not,
and they contradict what a powder pattern shows: their positives are groups differing only by
centring (P2/m vs C2/m), which the centring absences separate easily (only Cmm2/Amm2 of the 66
share an extinction group), while the 11 enantiomorph pairs, whose patterns are identical, score
0.39 on average. Hence they are offered for comparison only.

    python -m utils.rule_matrix --recipe crystallographic --out rule_matrix.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from pathlib import Path

import numpy as np

from utils.checkpoint import atomic_writer
from utils.crystal import N_SG, enantiomorph_partner, maximal_subgroups, sg_column, symmetry_operations
from utils.errors import ConfigError, RuleMatrixError, fail

THRESHOLD = 0.8  # the ICL contrastive loss's positive threshold (docs/methods/icl.md)
CRYSTALLOGRAPHIC_WEIGHTS = {"extinction_group": 0.60, "bravais_lattice": 0.25, "crystal_system": 0.03,
                            "laue_class": 0.03, "point_group": 0.04, "group_subgroup": 0.05}
_FIX = "supply a 230x230 comma-separated matrix (no header), e.g. `python -m utils.rule_matrix --out FILE`"


# ------------------------------------------------------------------------------------ recipes
def _same(column: str) -> np.ndarray:
    v = sg_column(column)
    return v[:, None] == v[None, :]


def group_subgroup_relation() -> np.ndarray:
    """(230, 230) bool: i == j, enantiomorphic partners, or one a maximal t/k subgroup of the other."""
    rel = np.eye(N_SG, dtype=bool)
    rel[np.arange(N_SG), enantiomorph_partner()] = True
    for sg in range(1, N_SG + 1):
        for sub in maximal_subgroups(sg, "tk"):
            rel[sg - 1, sub - 1] = rel[sub - 1, sg - 1] = True
    return rel


def crystallographic_features() -> dict[str, np.ndarray]:
    """The indicator matrices of the crystallographic recipe, each (230, 230) bool."""
    return {"extinction_group": _same("extinction_group"), "bravais_lattice": _same("bravais_lattice"),
            "crystal_system": _same("crystal_system"), "laue_class": _same("laue_class"),
            "point_group": _same("point_group"), "group_subgroup": group_subgroup_relation()}


def crystallographic_matrix(weights: dict[str, float] | None = None) -> np.ndarray:
    """Weighted sum of :func:`crystallographic_features` (see the module docstring).

    Args:
        weights: feature → weight; keys must be exactly those of ``CRYSTALLOGRAPHIC_WEIGHTS``,
            weights ≥ 0 summing to 1 (default: ``CRYSTALLOGRAPHIC_WEIGHTS``).

    Returns:
        (230, 230) float64.
    """
    w = dict(CRYSTALLOGRAPHIC_WEIGHTS if weights is None else weights)
    if set(w) != set(CRYSTALLOGRAPHIC_WEIGHTS):
        raise fail(ConfigError, "rule-matrix weights", f"keys {sorted(w)} differ from "
                   f"{sorted(CRYSTALLOGRAPHIC_WEIGHTS)}", "give one weight per feature")
    if min(w.values()) < 0 or not math.isclose(sum(w.values()), 1.0, abs_tol=1e-9):
        raise fail(ConfigError, "rule-matrix weights", f"weights {w} must be >= 0 and sum to 1",
                   "rescale them so the diagonal is 1")
    feats = crystallographic_features()
    m = sum(w[k] * feats[k].astype(np.float64) for k in CRYSTALLOGRAPHIC_WEIGHTS)
    np.fill_diagonal(m, 1.0)
    return np.clip(m, 0.0, 1.0)


def symop_cosine_matrix(setting: str = "seed") -> np.ndarray:
    """Cosine similarity of operation-count vectors (the original method's recipe).

    Args:
        setting: ``"seed"`` (the original's conventions) or ``"standard"`` (ITA standard settings);
            see :func:`utils.crystal.symmetry_operations`.

    Returns:
        (230, 230) float64.
    """
    ops = [symmetry_operations(sg, setting) for sg in range(1, N_SG + 1)]
    vocab = {op: k for k, op in enumerate(sorted({o for group in ops for o in group}))}
    counts = np.zeros((N_SG, len(vocab)))
    for i, group in enumerate(ops):
        for o in group:
            counts[i, vocab[o]] += 1.0
    unit = counts / np.linalg.norm(counts, axis=1, keepdims=True)
    m = unit @ unit.T
    np.fill_diagonal(m, 1.0)
    return np.clip((m + m.T) / 2.0, 0.0, 1.0)


RECIPES = {
    "crystallographic": crystallographic_matrix,
    "symop_cosine": lambda: symop_cosine_matrix("seed"),
    "symop_cosine_standard": lambda: symop_cosine_matrix("standard"),
}


def build_rule_matrix(recipe: str = "crystallographic") -> np.ndarray:
    """(230, 230) float64 rule matrix: symmetric, unit diagonal, values in [0, 1].

    Args:
        recipe: one of ``RECIPES`` (module docstring).
    """
    if recipe not in RECIPES:
        raise KeyError(f"unknown rule-matrix recipe {recipe!r}; valid: {sorted(RECIPES)}")
    return validate_rule_matrix(RECIPES[recipe](), f"recipe {recipe!r}")


# ------------------------------------------------------------------------ validation and I/O
def validate_rule_matrix(m: object, source: object = "rule matrix", atol: float = 1e-6) -> np.ndarray:
    """Check a rule matrix and return it as (230, 230) float64.

    Raises:
        RuleMatrixError: naming ``source`` and the fix, when the matrix is not 230×230 (with the
            shape found), not numeric, has NaN/inf, is asymmetric (worst pair given), leaves
            [0, 1], or its diagonal is not 1 (within ``atol``).
    """
    try:
        a = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise fail(RuleMatrixError, source, f"not numeric ({e})", _FIX) from None
    if a.shape != (N_SG, N_SG):
        raise fail(RuleMatrixError, source, f"expected shape (230, 230), found {a.shape}", _FIX)
    bad = ~np.isfinite(a)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise fail(RuleMatrixError, source, f"{int(bad.sum())} NaN/inf values, first at row {i + 1}, "
                   f"column {j + 1}", "replace them by similarities in [0, 1]")
    asym = np.abs(a - a.T)
    if asym.max() > atol:
        i, j = np.unravel_index(np.argmax(asym), asym.shape)
        raise fail(RuleMatrixError, source, f"not symmetric: R[{i + 1},{j + 1}]={a[i, j]:.6g} but "
                   f"R[{j + 1},{i + 1}]={a[j, i]:.6g} (1-based space groups)", "use (R + R.T) / 2")
    if a.min() < -atol or a.max() > 1 + atol:
        raise fail(RuleMatrixError, source, f"values outside [0, 1]: min {a.min():.6g}, max {a.max():.6g}",
                   "rescale the similarities to [0, 1]")
    diag = np.abs(np.diag(a) - 1.0)
    if diag.max() > atol:
        k = int(np.argmax(diag))
        raise fail(RuleMatrixError, source, f"diagonal must be 1, R[{k + 1},{k + 1}]={a[k, k]:.6g}",
                   "set every space group's similarity with itself to 1")
    return np.clip((a + a.T) / 2.0, 0.0, 1.0)


def save_rule_matrix(m: np.ndarray, path: str | os.PathLike) -> Path:
    """Validate and write ``m`` as CSV (230 rows × 230 values, no header), atomically."""
    a = validate_rule_matrix(m, path)
    with atomic_writer(path, "w", newline="") as fh:
        csv.writer(fh).writerows([[repr(float(x)) for x in row] for row in a])
    return Path(path)


def load_rule_matrix(path: str | os.PathLike) -> np.ndarray:
    """Read and validate a rule-matrix CSV; returns (230, 230) float64."""
    path = Path(path)
    if not path.is_file():
        raise fail(RuleMatrixError, path, "file not found", _FIX)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise fail(RuleMatrixError, path, f"not a CSV text file ({type(e).__name__}: {e})", _FIX) from None
    if not rows:
        raise fail(RuleMatrixError, path, "empty file", _FIX)
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise fail(RuleMatrixError, path, f"ragged rows ({len(rows)} rows with {sorted(widths)} values)",
                   _FIX)
    try:
        a = np.array([[float(c) for c in r] for r in rows], dtype=np.float64).reshape(len(rows), -1)
    except ValueError as e:
        bad = str(e)
        if len(bad) > 80:  # a row with another separator arrives as one long cell: say so, briefly
            bad = bad[:60] + "…"
        sep = next((c for c in ";\t " if c in rows[0][0]), None) if len(rows[0]) == 1 else None
        hint = f"; values separated by {sep!r}, not commas" if sep else "; a header line is not allowed"
        raise fail(RuleMatrixError, path, f"not numeric ({bad}{hint})", _FIX) from None
    return validate_rule_matrix(a, path)


# ------------------------------------------------------------------------------- summaries
def summarize(m: np.ndarray, threshold: float = THRESHOLD, top: int = 5) -> dict[str, object]:
    """Off-diagonal statistics: range, number of unordered pairs above ``threshold``, the ``top``
    most similar pairs of distinct groups, and of groups in different extinction groups (1-based)."""
    iu = np.triu_indices(N_SG, 1)
    vals = m[iu]
    ext = sg_column("extinction_group")
    other = ext[iu[0]] != ext[iu[1]]

    def best(mask: np.ndarray) -> list[tuple[int, int, float]]:
        k = np.flatnonzero(mask)[np.argsort(-vals[mask], kind="stable")[:top]]
        return [(int(iu[0][i] + 1), int(iu[1][i] + 1), round(float(vals[i]), 6)) for i in k]

    return {"min": float(vals.min()), "max": float(vals.max()), "mean": float(vals.mean()),
            "pairs_above": int((vals > threshold).sum()), "threshold": threshold,
            "same_extinction_pairs": int((~other).sum()), "top_pairs": best(np.ones_like(other)),
            "top_other_extinction": best(other)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build the 230x230 space-group rule matrix.")
    p.add_argument("--recipe", default="crystallographic", choices=sorted(RECIPES))
    p.add_argument("--out", type=Path, default=None, help="CSV to write (230 rows, no header)")
    args = p.parse_args(argv)
    m = build_rule_matrix(args.recipe)
    s = summarize(m)
    print(f"{args.recipe}: off-diagonal range [{s['min']:.4f}, {s['max']:.4f}], mean {s['mean']:.4f}, "
          f"{s['pairs_above']} pairs > {THRESHOLD} ({s['same_extinction_pairs']} same-extinction pairs)")
    print("most similar pairs:", s["top_pairs"])
    print("most similar pairs in different extinction groups:", s["top_other_extinction"])
    if args.out is not None:
        print(f"wrote {save_rule_matrix(m, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
