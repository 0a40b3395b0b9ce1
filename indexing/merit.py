"""Figures of merit of an indexed cell: de Wolff's M₂₀ and Smith & Snyder's F_N.

- de Wolff, J. Appl. Cryst. 1, 108 (1968): M_N = Q_N / (2 ⟨ε⟩ N_calc), Q_N the Q of the N-th
  observed line, ⟨ε⟩ the mean |Q_obs − Q_calc| over the N lines and N_calc the number of distinct
  calculated Q ≤ Q_N (after the lattice centring's absences). M₂₀ > 10 with all lines indexed is
  the customary threshold of a probable solution.
- Smith & Snyder, J. Appl. Cryst. 12, 60 (1979): F_N = (1/⟨|Δ2θ|⟩) · N / N_poss, reported as
  "F_N = value (⟨|Δ2θ|⟩, N_poss)".

Both penalise a supercell through N_calc / N_poss: a supercell indexes every line of its cell,
with more calculated lines. Unindexed lines are left out of ⟨ε⟩ and counted apart
(``score``), so that one impurity line lowers a solution's rank instead of rejecting it.
"""

from __future__ import annotations

import numpy as np

from utils.lattice import q_to_two_theta


def distinct_count(calc_q: np.ndarray, q_max: float, rel_tol: float = 1e-5) -> int:
    """Number of distinct values of sorted ``calc_q`` ≤ q_max (values within rel_tol merged)."""
    c = calc_q[calc_q <= q_max * (1 + 1e-9)]
    if c.size == 0:
        return 0
    return int(1 + np.sum(np.diff(c) > rel_tol * np.maximum(c[1:], 1e-12)))


def de_wolff(q_obs: np.ndarray, residual_q: np.ndarray, indexed: np.ndarray, calc_q: np.ndarray,
             n: int = 20, eps_floor: float = 0.0) -> float:
    """M_N over the first ``n`` lines (the indexed ones among them); 0 when fewer than 3.

    ``eps_floor``: the lines' measurement precision in Q. ⟨ε⟩ below it is noise (exact sticks
    give ⟨ε⟩ → 0, which would rank cells by rounding error), so ⟨ε⟩ is floored there and cells
    are compared by N_calc alone when both fit within the precision."""
    sel = np.flatnonzero(indexed[:n])
    if sel.size < 3:
        return 0.0
    q_n = float(q_obs[:n][sel[-1]])
    eps = float(np.mean(np.abs(residual_q[sel])))
    n_calc = max(distinct_count(calc_q, q_n), 1)
    return q_n / (2.0 * max(eps, eps_floor, 1e-9) * n_calc)


def smith_snyder(q_obs: np.ndarray, residual_q: np.ndarray, indexed: np.ndarray, calc_q: np.ndarray,
                 wavelength: float, n: int = 30) -> tuple[float, float, int]:
    """(F_N, ⟨|Δ2θ|⟩ [deg], N_poss) over the first ``n`` lines."""
    sel = np.flatnonzero(indexed[:n])
    if sel.size < 3:
        return 0.0, float("nan"), 0
    qo = q_obs[:n][sel]
    d2t = np.abs(q_to_two_theta(qo, wavelength) - q_to_two_theta(qo - residual_q[sel], wavelength))
    mean = float(np.mean(d2t))
    n_poss = max(distinct_count(calc_q, float(qo[-1])), 1)
    return float(sel.size / (max(mean, 1e-6) * n_poss)), mean, n_poss


def score(m20: float, n_indexed: int, n_lines: int, power: float = 8.0) -> float:
    """Ranking score: M₂₀ discounted by the fraction of lines left unindexed, (n_idx/N)^power —
    a solution must explain the pattern (a subcell missing 3 lines in 20 keeps 27 %), but one
    spurious line in twenty costs a third, not all."""
    if n_lines == 0:
        return 0.0
    return float(m20 * (n_indexed / n_lines) ** power)
