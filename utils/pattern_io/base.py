"""What every pattern reader returns, the format registry, and the wavelength rules.

A reader turns one file into a :class:`MeasuredPattern`: the 2θ axis [deg] and intensities as the
instrument recorded them (counts per second where the file gives the counting time), the
wavelength from the file's metadata (:class:`Wavelength`: Kα1, Kα2, Kα2/Kα1 ratio, or ``None`` when
the file does not say), and where it came from (format, scan axis, unit). Readers register in
:data:`FORMATS` with the file suffixes they own and a content test (``sniff``) for suffixes that
several formats share (``.txt``, ``.dat``).

Wavelength rules (:func:`resolve_wavelength`): ``--wavelength`` overrides the file, and a file
whose own Kα1 differs is reported (a warning naming both); a pattern whose wavelength is neither in
the file nor given is a :class:`~utils.errors.DataError` — never a silent Cu Kα.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from loguru import logger

from utils.errors import DataError, fail
from utils.registry import Registry

FORMATS = Registry("pattern file format")
MISMATCH_RTOL = 1e-3  # a given wavelength this far from the file's is reported (Cu Kα1 1.5406 vs 1.54056: no)
_NO_WAVELENGTH_FIX = ("pass --wavelength (Å, the Kα1 or monochromatic wavelength), or add a "
                      "'# wavelength: 1.5406' comment line to the file (docs/DATA.md)")


@dataclass(frozen=True)
class Wavelength:
    """The radiation of a measurement.

    Attributes:
        ka1: Kα1 (or monochromatic) wavelength [Å].
        ka2: Kα2 wavelength [Å]; None when the file does not give one (monochromatic, synchrotron).
        ratio: Kα2/Kα1 intensity ratio; 0 means Kα1 only; None when not given.
        source: where it came from ("file", "--wavelength").
    """

    ka1: float
    ka2: float | None = None
    ratio: float | None = None
    source: str = "file"

    def describe(self) -> str:
        extra = f", Kα2 {self.ka2:g} Å" if self.ka2 else ""
        extra += f", Kα2/Kα1 {self.ratio:g}" if self.ratio is not None else ""
        return f"λ = {self.ka1:g} Å{extra} (from {self.source})"


@dataclass
class MeasuredPattern:
    """One powder scan as read from a file.

    Attributes:
        two_theta: (n,) float64 strictly increasing 2θ [deg].
        intensity: (n,) float64 intensities in ``unit``.
        wavelength: the file's radiation (None: the file does not say).
        path: the file.
        format: the registry name of the reader ("xy", "xrdml", "ras").
        unit: "counts/s" (normalised by the counting time), "counts" or "as in file".
        meta: what else the reader took from the file (scan axis, counting time, anode...).
    """

    two_theta: np.ndarray
    intensity: np.ndarray
    wavelength: Wavelength | None
    path: Path
    format: str
    unit: str = "as in file"
    meta: dict = field(default_factory=dict)

    def d_range(self) -> tuple[float, float]:
        """(d_min, d_max) [Å] covered by the scan (needs a known wavelength)."""
        if self.wavelength is None:
            raise ValueError("wavelength unknown")
        s = np.sin(np.radians([self.two_theta[-1], self.two_theta[0]]) / 2)
        return float(self.wavelength.ka1 / (2 * s[0])), float(self.wavelength.ka1 / (2 * s[1]))


@dataclass(frozen=True)
class FormatSpec:
    """A registered reader: ``read(path) -> MeasuredPattern``, the suffixes it owns and a content
    test on the file's first bytes (True: this is my format)."""

    name: str
    suffixes: tuple[str, ...]
    read: Callable[[Path], MeasuredPattern]
    sniff: Callable[[bytes], bool]
    description: str


def register_format(name: str, suffixes: tuple[str, ...], sniff: Callable[[bytes], bool],
                    description: str) -> Callable:
    """Decorator: register ``read(path) -> MeasuredPattern`` as the reader of ``name``."""

    def deco(read: Callable[[Path], MeasuredPattern]) -> Callable[[Path], MeasuredPattern]:
        FORMATS.register(name)(FormatSpec(name, suffixes, read, sniff, description))
        return read

    return deco


def check_scan(path: object, two_theta: np.ndarray, intensity: np.ndarray,
               negative_tolerance: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Validate a scan read from a binary/XML/header format (the text reader has its own
    line-numbered checks): finite, ≥ 2 points, 2θ strictly increasing inside (0, 180), some signal,
    no negatives below ``-negative_tolerance × max``. Returns float64 copies."""
    t = np.asarray(two_theta, np.float64).ravel()
    y = np.asarray(intensity, np.float64).ravel()
    if len(t) != len(y):
        raise fail(DataError, path, f"{len(t)} 2θ positions but {len(y)} intensities",
                   "the file is damaged or truncated: export it again")
    if len(t) < 2:
        raise fail(DataError, path, f"{len(t)} data point(s); a pattern needs at least 2",
                   "export the whole scan")
    if not (np.isfinite(t).all() and np.isfinite(y).all()):
        raise fail(DataError, path, "NaN/inf among the 2θ positions or intensities",
                   "the file is damaged: export it again")
    if (np.diff(t) < 0).all():  # measured from high to low angle: the same scan, reversed
        t, y = t[::-1].copy(), y[::-1].copy()
    if (np.diff(t) <= 0).any():
        j = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
        raise fail(DataError, path, f"2θ not strictly increasing ({t[j]:g} after {t[j - 1]:g}, point "
                   f"{j + 1})",
                   "export one 2θ/θ scan measured from low to high angle")
    if t[0] <= 0 or t[-1] >= 180:
        raise fail(DataError, path, f"2θ range {t[0]:g}–{t[-1]:g}° is outside (0, 180)",
                   "the scan axis must be 2θ in degrees")
    peak = float(y.max())
    if peak <= 0:
        raise fail(DataError, path, "all intensities are zero or negative", "export the measured intensities")
    if (y < -negative_tolerance * peak).any():
        raise fail(DataError, path, f"intensities down to {y.min():g} (below -{negative_tolerance:g} × max)",
                   "intensities must be non-negative counts")
    return t, y


def resolve_wavelength(pattern: MeasuredPattern, given: float | None) -> MeasuredPattern:
    """The pattern with the wavelength to use: ``given`` (``--wavelength``, Kα1 in Å) overrides the
    file's, and a mismatch is reported; without either it is an error.

    Raises:
        DataError: the file does not state its wavelength and ``given`` is None.
    """
    own = pattern.wavelength
    if given is None:
        if own is None:
            raise fail(DataError, pattern.path, f"the wavelength is unknown (the {pattern.format} file "
                       "states none, and no Cu Kα is assumed)", _NO_WAVELENGTH_FIX)
        return pattern
    if not (math.isfinite(given) and given > 0):
        raise fail(DataError, pattern.path, f"--wavelength {given} is not a positive number",
                   "pass the wavelength in Å")
    if own is not None and not math.isclose(own.ka1, given, rel_tol=MISMATCH_RTOL):
        logger.warning(f"{pattern.path}: --wavelength {given:g} Å overrides the file's Kα1 {own.ka1:g} Å "
                       f"(they differ by {abs(given / own.ka1 - 1):.1%}); check which is right")
        return replace(pattern, wavelength=Wavelength(given, None, None, "--wavelength"))
    if own is not None:  # the same wavelength: keep the file's Kα2 and ratio
        return replace(pattern, wavelength=replace(own, ka1=given, source="--wavelength (= file)"))
    return replace(pattern, wavelength=Wavelength(given, None, None, "--wavelength"))
