"""Peak lists: what indexing reads. Positions in 2θ and in Q = 1/d² with uncertainties, and
intensities.

Two sources: the stored sticks of a simulated pattern (:func:`from_sticks`, merged at the
instrument's resolution, as a measured peak list would show them), and a pattern on a grid,
measured or rendered (``indexing.picking.pick_peaks``). Either way the result is a
:class:`PeakList`, sorted by position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from utils.lattice import dq_d2theta, two_theta_to_q


class IndexingInputError(ValueError):
    """A peak list or pattern that cannot be indexed (too few peaks, NaN, non-monotonic axis).

    The message names the source (file) and the fix."""


@dataclass
class PeakList:
    """Observed diffraction lines of one pattern, sorted by 2θ.

    Attributes:
        two_theta: (N,) positions [deg] (zero shift not removed: indexing refines it).
        intensity: (N,) integrated (or peak) intensities, any scale.
        wavelength: Kα1 (or monochromatic) wavelength [Å].
        sigma_two_theta: (N,) position uncertainties [deg].
        source: where the list came from (file name, ``sticks``), for messages.
        info: free-form notes of the picker (Kα2 ratio found, noise level, …).
    """

    two_theta: np.ndarray
    intensity: np.ndarray
    wavelength: float
    sigma_two_theta: np.ndarray
    source: str = "peaks"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        tt = np.asarray(self.two_theta, np.float64).ravel()
        it = np.asarray(self.intensity, np.float64).ravel()
        sg = np.broadcast_to(np.asarray(self.sigma_two_theta, np.float64), tt.shape).copy()
        if tt.shape != it.shape:
            raise IndexingInputError(f"{self.source}: {tt.size} positions but {it.size} intensities. "
                                     "Fix: give one intensity per peak")
        if not (np.all(np.isfinite(tt)) and np.all(np.isfinite(it)) and np.all(np.isfinite(sg))):
            raise IndexingInputError(f"{self.source}: the peak list holds NaN or infinite values. "
                                     "Fix: remove or repair those peaks")
        if not (np.isfinite(self.wavelength) and self.wavelength > 0):
            raise IndexingInputError(f"{self.source}: wavelength {self.wavelength} is not a positive "
                                     "number. Fix: pass --wavelength in Å (Cu Kα1: 1.5406)")
        if np.any((tt <= 0) | (tt >= 180)):
            raise IndexingInputError(f"{self.source}: peak positions must lie in 0 < 2θ < 180°. "
                                     "Fix: give 2θ in degrees")
        order = np.argsort(tt, kind="stable")
        self.two_theta, self.intensity, self.sigma_two_theta = tt[order], it[order], sg[order]
        self.wavelength = float(self.wavelength)

    def __len__(self) -> int:
        return int(self.two_theta.size)

    @property
    def q(self) -> np.ndarray:
        """(N,) Q = 1/d² [Å⁻²]."""
        return two_theta_to_q(self.two_theta, self.wavelength)

    @property
    def sigma_q(self) -> np.ndarray:
        """(N,) σ_Q = |dQ/d2θ| σ_2θ."""
        return np.abs(dq_d2theta(self.two_theta, self.wavelength)) * self.sigma_two_theta

    def first(self, n: int) -> PeakList:
        """The ``n`` lowest-angle lines."""
        return PeakList(self.two_theta[:n], self.intensity[:n], self.wavelength,
                        self.sigma_two_theta[:n], self.source, dict(self.info))

    def strongest(self, n: int) -> PeakList:
        """The ``n`` strongest lines, sorted by position."""
        keep = np.sort(np.argsort(-self.intensity, kind="stable")[:n])
        return PeakList(self.two_theta[keep], self.intensity[keep], self.wavelength,
                        self.sigma_two_theta[keep], self.source, dict(self.info))


def from_sticks(two_theta: np.ndarray, intensity: np.ndarray, wavelength: float, *,
                resolution: float = 0.02, min_rel: float = 0.01, sigma: float = 0.003,
                source: str = "sticks", two_theta_min: float | None = None) -> PeakList:
    """A measured-like peak list from simulated sticks.

    Sticks closer than ``resolution`` [deg 2θ] merge into one line (intensity-weighted position,
    summed intensity), as an instrument of that resolution would show them; lines weaker than
    ``min_rel`` of the strongest are dropped (below a lab detection limit).

    Args:
        two_theta, intensity: (M,) sticks (any order).
        wavelength: Å.
        resolution: merge window [deg].
        min_rel: relative detection threshold.
        sigma: position uncertainty [deg] given to every line.
        two_theta_min: start of the measured range [deg] (``info["two_theta_min"]``): the
            extinction analysis takes reflections between it and the first line as missing.
    """
    tt = np.asarray(two_theta, np.float64).ravel()
    it = np.asarray(intensity, np.float64).ravel()
    if tt.size != it.size:
        raise IndexingInputError(f"{source}: {tt.size} positions but {it.size} intensities. "
                                 "Fix: give one intensity per stick")
    ok = np.isfinite(tt) & np.isfinite(it) & (it > 0)
    tt, it = tt[ok], it[ok]
    order = np.argsort(tt, kind="stable")
    tt, it = tt[order], it[order]
    # simulated sticks carry no instrument zero error: indexing need not search zero offsets
    info = {"zero_free": True}
    if two_theta_min is not None:
        info["two_theta_min"] = float(two_theta_min)
    if tt.size == 0:
        return PeakList(tt, it, wavelength, np.zeros(0), source, info)
    # chain merge: a new line starts where the gap to the previous stick exceeds the window
    starts = np.r_[True, np.diff(tt) > resolution]
    gid = np.cumsum(starts) - 1
    n = int(gid[-1]) + 1
    s_i = np.bincount(gid, it, n)
    s_t = np.bincount(gid, it * tt, n) / s_i
    keep = s_i >= min_rel * s_i.max()
    return PeakList(s_t[keep], s_i[keep], wavelength, np.full(int(keep.sum()), sigma), source, info)
