"""A second phase: strong lines that the best cell does not explain, indexed on their own.

    check = second_phase(peaks, cell, bravais, zero)       # the best cell of indexing.api.analyse
    if check.flagged:
        print(check.message())   # "3 peaks (largest at 2θ …) are not explained: a second phase?"

Every reflection that the best cell's lattice allows (conventional cell, the Bravais centring's
conditions; no other extinction, so a line a space group forbids still counts as explained) is
compared with each observed line after the refined zero shift; a line within ``tol_deg`` (or 3 σ of
its position) of one is explained. The check looks at the *strong* lines only (relative intensity ≥
``min_rel``; weak lines are too often noise or Kα2 residue) and flags the pattern when at least
``min_count`` of them are unexplained and they carry at least ``min_share`` of the strong lines'
intensity. When at least ``MIN_LINES`` lines (strong or weak) are unexplained they are indexed on
their own (``indexing.api.analyse``). Thresholds: chosen on the two-phase benchmark
(``python -m benchmarks.second_phase``, RESULTS.md "Instrument files, wavelengths and a second
phase"), which also measures the false alarms on single-phase lab renderings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from indexing.index import MIN_LINES
from indexing.peaks import PeakList
from indexing.refine import CENTRINGS, calc_reflections
from utils.lattice import metric_params, reciprocal_metric, two_theta_to_q

TOL_DEG = 0.05      # a line this close to an allowed reflection (after the zero shift) is explained
MIN_REL = 0.05      # strong lines: ≥ 5 % of the strongest
MIN_COUNT = 2       # unexplained strong lines needed to flag
MIN_SHARE = 0.05    # ... carrying this share of the strong lines' intensity


@dataclass
class SecondPhase:
    """The outcome of :func:`second_phase` for one pattern.

    Attributes:
        unexplained: (k,) indices into the peak list of the lines no allowed reflection explains.
        strong: (m,) indices of the unexplained strong lines, strongest first.
        share: intensity share of the unexplained strong lines among all strong lines.
        flagged: the pattern looks like a mixture (thresholds above).
        two_theta: (m,) positions of the unexplained strong lines [deg], strongest first.
        d: (m,) their d-spacings [Å].
        evidence: ``indexing.api.PatternEvidence`` of the unexplained lines indexed on their own
            (None when there were fewer than ``MIN_LINES``).
    """

    unexplained: np.ndarray
    strong: np.ndarray
    share: float
    flagged: bool
    two_theta: np.ndarray = field(default_factory=lambda: np.zeros(0))
    d: np.ndarray = field(default_factory=lambda: np.zeros(0))
    evidence: object | None = None

    def message(self, wavelength: float | None = None, shown: int = 3) -> str:
        """``n peaks (largest at 2θ …) are not explained: a second phase?`` plus the second cell
        ('' when not flagged).

        Args:
            wavelength: show 2θ at this wavelength [Å] (the file's) instead of the peak list's.
            shown: how many positions to list.
        """
        n = len(self.strong)
        if not self.flagged:
            return ""
        tt = self.two_theta
        if wavelength is not None:
            s = np.clip(wavelength / (2 * self.d), -1, 1)
            tt = np.degrees(2 * np.arcsin(s))
        where = ", ".join(f"{t:.2f}°" for t in tt[:shown]) + (", …" if n > shown else "")
        ds = ", ".join(f"{d:.3f}" for d in self.d[:shown])
        text = (f"{n} peak{'s' if n != 1 else ''} (largest at 2θ {where}; d = {ds} Å; "
                f"{self.share:.0%} of the strong-line intensity) {'are' if n != 1 else 'is'} not "
                "explained: a second phase?")
        ev = self.evidence
        if ev is not None and getattr(ev, "solved", False):
            c = ev.index.best
            a, b, cc, al, be, ga = (float(v) for v in c.lattice.conventional)
            text += (f" The {len(self.unexplained)} unexplained lines index on their own as "
                     f"{c.lattice.bravais} a={a:.4f} b={b:.4f} c={cc:.4f} α={al:.2f} β={be:.2f} "
                     f"γ={ga:.2f} (M20={c.m20:.1f}, {c.n_indexed}/{c.n_lines} lines)")
        elif ev is not None:
            text += f" The {len(self.unexplained)} unexplained lines do not index on their own"
        return text


def allowed_q(cell: np.ndarray, bravais: str, q_max: float) -> np.ndarray:
    """Sorted Q = 1/d² [Å⁻²] ≤ ``q_max`` of the reflections the lattice allows (centring only)."""
    params = metric_params(reciprocal_metric(np.asarray(cell, np.float64)))
    hkl, q = calc_reflections(params, q_max)
    keep = CENTRINGS.get(bravais[1:2] or "P", CENTRINGS["P"])(*hkl.T)
    return q[keep]


def explained(peaks: PeakList, cell: np.ndarray, bravais: str, zero: float = 0.0,
              tol_deg: float = TOL_DEG) -> np.ndarray:
    """(N,) bool: each line lies within ``max(tol_deg, 3σ)`` of an allowed reflection (2θ − zero)."""
    tt = peaks.two_theta - zero
    tol = np.maximum(tol_deg, 3 * peaks.sigma_two_theta)
    q_hi = two_theta_to_q(np.minimum(tt + tol, 179.9), peaks.wavelength)
    q_lo = two_theta_to_q(np.maximum(tt - tol, 1e-3), peaks.wavelength)
    calc = allowed_q(cell, bravais, float(q_hi.max()) * 1.001)
    if calc.size == 0:
        return np.zeros(len(peaks), bool)
    j = np.searchsorted(calc, q_lo)   # the first reflection at or above the window's low edge
    return (j < calc.size) & (calc[np.minimum(j, calc.size - 1)] <= q_hi)


def second_phase(peaks: PeakList, cell: np.ndarray, bravais: str, zero: float = 0.0, *,
                 tol_deg: float = TOL_DEG, min_rel: float = MIN_REL, min_count: int = MIN_COUNT,
                 min_share: float = MIN_SHARE, index_rest: bool = True) -> SecondPhase:
    """Check the lines that the best cell leaves unexplained (see the module docstring).

    Args:
        peaks: the pattern's lines (zero shift not removed, as picked).
        cell: (6,) conventional a, b, c [Å], α, β, γ [deg] of the best cell.
        bravais: its Bravais lattice (``cF``, ``hR``, ``mC``...).
        zero: its refined zero shift [deg 2θ].
        index_rest: index the unexplained lines on their own when there are ≥ ``MIN_LINES``.
    """
    if len(peaks) == 0 or not np.all(np.isfinite(cell)):
        return SecondPhase(np.zeros(0, int), np.zeros(0, int), 0.0, False)
    ok = explained(peaks, cell, bravais, zero, tol_deg)
    rel = peaks.intensity / max(float(peaks.intensity.max()), 1e-300)
    strong = rel >= min_rel
    bad_strong = np.flatnonzero(strong & ~ok)
    bad_strong = bad_strong[np.argsort(-rel[bad_strong], kind="stable")]
    total = float(peaks.intensity[strong].sum())
    share = float(peaks.intensity[bad_strong].sum()) / total if total > 0 else 0.0
    flagged = len(bad_strong) >= min_count and share >= min_share
    unexplained = np.flatnonzero(~ok)
    tt = peaks.two_theta[bad_strong]
    d = peaks.wavelength / (2 * np.sin(np.radians(tt - zero) / 2))
    out = SecondPhase(unexplained, bad_strong, share, flagged, tt, d)
    if flagged and index_rest and len(unexplained) >= MIN_LINES:
        from indexing.api import analyse  # api imports index; phases stays importable from api

        rest = PeakList(peaks.two_theta[unexplained], peaks.intensity[unexplained], peaks.wavelength,
                        peaks.sigma_two_theta[unexplained], f"{peaks.source} (unexplained lines)",
                        dict(peaks.info))
        out.evidence = analyse(rest)
    return out


def thresholds() -> dict[str, float]:
    """The decision thresholds, for reports."""
    return {"tol_deg": TOL_DEG, "min_rel": MIN_REL, "min_count": MIN_COUNT, "min_share": MIN_SHARE,
            "min_lines_to_index": MIN_LINES}
