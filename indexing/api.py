"""One result object per pattern: the indexed cells, the extinction analysis of the best one,
and a fixed-length evidence vector for the learned models.

Evidence vector (``EVIDENCE_DIM`` = 7 + 99 + 4 floats):
- 7 crystal-system log-likelihoods (order of ``utils.sg_tables.CRYSTAL_SYSTEMS``), relative to
  the most likely system: from the best score (``merit.score``) of each metric system's
  candidates with the ranking's Occam factor; a hexagonal metric is split between trigonal and
  hexagonal by the extinction groups' member space groups;
- 99 extinction-group log-likelihood ratios to the best group (``indexing.extinction``; floored
  at ``LL_FLOOR``, which is also where −inf, a group the metric excludes, ends);
- quality: log(1 + M₂₀) of the best cell, fraction of the first lines indexed, number of peaks
  (/100), solved (1/0).
When no cell is found the likelihood blocks are all zero (flat) and ``solved`` is 0: never a
confident guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexing.conditions import N_GROUPS, extinction_group_table
from indexing.extinction import ExtinctionResult, extinction_loglik
from indexing.index import SYMMETRY_BONUS, SYMMETRY_RANK, IndexResult, index_peaks
from indexing.peaks import IndexingInputError, PeakList
from utils.lattice import reciprocal_metric
from utils.sg_tables import CRYSTAL_SYSTEMS, N_CS, SG_TO_CS

EVIDENCE_DIM = N_CS + N_GROUPS + 4
LL_FLOOR = -30.0
_CS = {name: i for i, name in enumerate(CRYSTAL_SYSTEMS)}


@dataclass
class PatternEvidence:
    """Indexing + extinction analysis of one pattern."""

    index: IndexResult
    extinction: ExtinctionResult | None
    message: str = ""

    @property
    def solved(self) -> bool:
        return self.index.solved

    def cs_loglik(self) -> np.ndarray:
        """(7,) crystal-system log-likelihoods (zeros when unsolved)."""
        out = np.full(N_CS, 0.0)
        if not self.solved:
            return out
        best: dict[str, float] = {}
        for c in self.index.candidates:
            best[c.system] = max(best.get(c.system, 0.0), c.score)
        out[:] = np.log1p(0.0) - 8.0      # systems no candidate supports
        for sys_, s in best.items():
            # the ranking's Occam factor per level of metric symmetry (index._prefer_symmetry)
            ll = float(np.log1p(s) + SYMMETRY_RANK[sys_] * np.log(SYMMETRY_BONUS))
            if sys_ == "hexagonal":
                p_trig = self._trigonal_share()
                out[_CS["trigonal"]] = max(out[_CS["trigonal"]], ll + np.log(max(p_trig, 1e-6)))
                out[_CS["hexagonal"]] = max(out[_CS["hexagonal"]], ll + np.log(max(1 - p_trig, 1e-6)))
            else:
                out[_CS[sys_]] = max(out[_CS[sys_]], ll)
        # the ranking prefers the highest symmetry among comparable fits (index._prefer_symmetry):
        # the chosen cell's system leads, so argmax agrees with the best cell
        chosen = self.index.best.system
        lead = [_CS["trigonal"], _CS["hexagonal"]] if chosen == "hexagonal" else [_CS[chosen]]
        gap = out.max() - out[lead].max() + 0.1
        if gap > 0.1:
            out[lead] += gap
        return out - out.max()      # ratios to the most likely system (0 for it)

    def _trigonal_share(self) -> float:
        """P(trigonal | hexagonal metric) from the extinction posterior and member groups."""
        if self.extinction is None or self.extinction.system != "hexagonal":
            return 18.0 / 45.0     # P-trigonal groups among the hexagonal-metric P groups
        post = self.extinction.posterior
        table = extinction_group_table()
        share = 0.0
        for g, p in enumerate(post):
            if p > 0 and table[g].members:
                trig = sum(SG_TO_CS[s - 1] == _CS["trigonal"] for s in table[g].members)
                share += p * trig / len(table[g].members)
        return float(share)

    def crystal_system(self) -> str | None:
        """Most likely crystal system (P-trigonal vs hexagonal by the extinction groups)."""
        if not self.solved:
            return None
        return CRYSTAL_SYSTEMS[int(np.argmax(self.cs_loglik()))]

    def ext_loglik(self) -> np.ndarray:
        """(99,) extinction-group log-likelihood ratios to the best group (0 for it), floored at
        ``LL_FLOOR``; zeros when unsolved. Relative, because the sums over many reflections are
        far below any fixed floor: flooring the raw values would lift the groups the metric
        excludes (−inf) above every compatible one."""
        if self.extinction is None:
            return np.zeros(N_GROUPS)
        ll = self.extinction.loglik
        top = np.max(ll[np.isfinite(ll)]) if np.any(np.isfinite(ll)) else 0.0
        return np.maximum(ll - top, LL_FLOOR)

    def extinction_ranked(self, k: int = 3) -> list[int]:
        """The ``k`` most probable extinction groups (1..99), best first; [] when unsolved."""
        if self.extinction is None:
            return []
        return [g for g, _, _ in self.extinction.ranked(k)]

    def vector(self) -> np.ndarray:
        """(EVIDENCE_DIM,) float32 evidence (see module docstring)."""
        b = self.index.best
        quality = [np.log1p(b.m20) if b else 0.0, (b.n_indexed / b.n_lines) if b else 0.0,
                   self.index.n_peaks / 100.0, 1.0 if b else 0.0]
        return np.concatenate([self.cs_loglik(), self.ext_loglik(), quality]).astype(np.float32)


def _ext_system(metric_system: str) -> str:
    return "hexagonal" if metric_system == "trigonal" else metric_system


def analyse(peaks: PeakList, n_lines: int = 20, strict: bool = False, **index_options) -> PatternEvidence:
    """Index ``peaks`` and analyse the extinctions of the best cell.

    Args:
        strict: raise on a peak list that cannot be indexed (too few peaks) instead of returning
            flat, unsolved evidence that says why (what a data set's evidence needs).

    Raises:
        IndexingInputError: with ``strict``, too few peaks (see :func:`indexing.index.index_peaks`).
    """
    try:
        res = index_peaks(peaks, n_lines=n_lines, **index_options)
    except IndexingInputError as exc:
        if strict:
            raise
        return PatternEvidence(IndexResult([], len(peaks), peaks.source, str(exc)), None, str(exc))
    if not res.solved:
        return PatternEvidence(res, None, res.message or "no cell found")
    best = res.best
    corrected = PeakList(peaks.two_theta - best.fit.zero, peaks.intensity, peaks.wavelength,
                         peaks.sigma_two_theta, peaks.source, dict(peaks.info))
    try:
        ext = extinction_loglik(reciprocal_metric(best.lattice.conventional), _ext_system(best.system),
                                corrected)
    except IndexingInputError as exc:
        return PatternEvidence(res, None, str(exc))
    return PatternEvidence(res, ext)
