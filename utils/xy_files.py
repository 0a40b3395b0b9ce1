"""Measured (or externally simulated) powder patterns as two-column text files: the reader.

Pure numpy (layer 0), so that every layer reads patterns by the same rules: ``datasets`` re-exports
it as ``datasets.readers.xy_patterns`` (``predict.py``, ``convert_xy``), and ``indexing`` reads its
command-line files with it.

Accepted files (``.xy``, ``.xye``, ``.csv``, ``.txt``, ``.dat``):

* one point per line: 2θ [deg] and intensity, separated by a comma (when the line has one) or by
  whitespace;
* ``.xye``: the third column is the intensity's uncertainty (esd), read past silently; any other
  file with more than two columns (or an ``.xye`` with more than three) has the extra columns
  ignored with one warning naming the file, so that a three-column export is never taken silently;
* ``#`` starts a comment (whole line or the end of a line); blank lines are skipped;
* the first non-comment line may be a non-numeric header (``two_theta,intensity``); a
  non-numeric line anywhere else is an error. Errors name the first bad line: when the line after
  a would-be header is not numeric either (a file of plain text), the header line itself is named.

Validation (DataError naming the file and line): fewer than 2 columns, non-numeric values, NaN or
inf, 2θ not strictly increasing (unsorted or duplicate points: often two scans pasted together, so
they are refused rather than silently sorted), 2θ outside (0, 180), fewer than 2 points, all
intensities zero, and negative intensities below ``-negative_tolerance × max`` (default 5 %).
Smaller negative values are normal noise after background subtraction; they are kept by
:func:`read_xy` and clipped to 0 by :func:`pattern_on_grid`.

:func:`pattern_on_grid` interpolates linearly onto a :class:`~utils.grid.GridSpec` (``np.interp``;
grid points outside the measured range get 0, and the covered fraction of the grid is reported),
subtracts nothing (no background removal) and scales to max 1. A file measured with another
wavelength is mapped through the d-spacing (Bragg's law, λ = 2 d sin θ):
``2θ' = 2 asin(λ_grid / λ_file · sin θ)``; points that the grid's wavelength cannot reach
(argument > 1) are dropped.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
from loguru import logger

from utils.errors import DataError, fail
from utils.grid import GridSpec

PATTERN_SUFFIXES = (".xy", ".xye", ".csv", ".txt", ".dat")
_FIX = "one point per line: '2theta intensity' (or '2theta,intensity'), 2θ increasing, '#' for comments"


_NUMERIC_START = re.compile(r"[-+]?(\d|\.\d)")  # a data row, maybe in a bad format ("10;5")


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _fields(line: str) -> list[str]:
    return [f.strip() for f in line.split(",")] if "," in line else line.split()


def read_xy(path: str | os.PathLike, negative_tolerance: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one pattern file.

    Args:
        path: the file.
        negative_tolerance: negative intensities down to ``-negative_tolerance × max`` are accepted.

    Returns:
        (two_theta (n,) float64 strictly increasing [deg], intensity (n,) float64), as in the file.

    Raises:
        DataError: see the module docstring; the message names ``path:line``.
    """
    path = Path(path)
    if not path.is_file():
        raise fail(DataError, path, "pattern file not found", "check the path")
    try:
        text = path.read_text(encoding="utf-8-sig", errors="strict")
    except UnicodeDecodeError as exc:
        raise fail(DataError, path, f"not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at "
                   f"offset {exc.start}; Latin-1/Windows exports often are)",
                   "re-encode it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 IN > OUT`)") from exc
    tt: list[float] = []
    inten: list[float] = []
    lines: list[int] = []
    first = True
    header: tuple[int, str] | None = None  # (line number, text) of an accepted header line
    n_cols = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = _fields(line)
        try:
            values = [float(p) for p in parts[:2]]
        except ValueError:
            if first and not _is_number(parts[0]):  # a header line such as "two_theta,intensity"
                first = False
                header = (lineno, raw.strip())
                continue
            if header is not None and not tt and not _NUMERIC_START.match(line):  # text, not a header
                raise fail(DataError, f"{path}:{header[0]}", f"non-numeric row {header[1]!r}, and line "
                           f"{lineno} {raw.strip()!r} too: this is not a pattern file", _FIX) from None
            raise fail(DataError, f"{path}:{lineno}", f"non-numeric row {raw.strip()!r}", _FIX) from None
        first = False
        n_cols = max(n_cols, len(parts))
        if len(parts) < 2:
            raise fail(DataError, f"{path}:{lineno}", f"one column only ({raw.strip()!r}); need 2θ and "
                       "intensity", _FIX)
        if not all(math.isfinite(v) for v in values):
            raise fail(DataError, f"{path}:{lineno}", f"NaN/inf in {raw.strip()!r}",
                       "remove or repair that point")
        tt.append(values[0])
        inten.append(values[1])
        lines.append(lineno)
    if len(tt) < 2:
        raise fail(DataError, path, f"{len(tt)} data point(s); a pattern needs at least 2", _FIX)
    allowed = 3 if path.suffix.lower() == ".xye" else 2
    if n_cols > allowed:
        logger.warning(f"{path}: {n_cols} columns; read 2θ and intensity from columns 1-2 and ignored "
                       f"the rest (only .xye files have a third column, the intensity's uncertainty)")
    t = np.asarray(tt, dtype=np.float64)
    y = np.asarray(inten, dtype=np.float64)
    step = np.diff(t)
    if (step <= 0).any():
        j = int(np.flatnonzero(step <= 0)[0]) + 1
        what = "duplicate" if step[j - 1] == 0 else "decreasing (unsorted)"
        raise fail(DataError, f"{path}:{lines[j]}", f"{what} 2θ {t[j]:g} after {t[j - 1]:g} (line "
                   f"{lines[j - 1]})", "2θ must be strictly increasing: sort the points and merge "
                   "repeated scans")
    if t[0] <= 0 or t[-1] >= 180:
        j = 0 if t[0] <= 0 else len(t) - 1
        raise fail(DataError, f"{path}:{lines[j]}", f"2θ = {t[j]:g} is outside (0, 180) degrees",
                   "the first column must be 2θ in degrees")
    peak = float(y.max())
    if peak <= 0:
        raise fail(DataError, path, "all intensities are zero or negative",
                   "the second column must be the measured intensity")
    low = y < -negative_tolerance * peak
    if low.any():
        j = int(np.flatnonzero(low)[0])
        raise fail(DataError, f"{path}:{lines[j]}", f"intensity {y[j]:g} is below -{negative_tolerance:g} "
                   f"× max ({int(low.sum())} such points)",
                   "intensities must be non-negative counts (small negative noise after background "
                   "subtraction is tolerated); check the column order and any log scaling")
    return t, y


def convert_wavelength(two_theta: np.ndarray, intensity: np.ndarray, wavelength_from: float,
                       wavelength_to: float) -> tuple[np.ndarray, np.ndarray]:
    """Map 2θ measured at ``wavelength_from`` to the angles of the same d-spacings at ``wavelength_to``.

    Args:
        two_theta: (n,) increasing [deg].
        intensity: (n,).
        wavelength_from, wavelength_to: [Å].

    Returns:
        (two_theta', intensity') with unreachable points (sin θ' > 1) dropped; order is preserved
        because the map is increasing.
    """
    if wavelength_from <= 0 or wavelength_to <= 0:
        raise ValueError("wavelengths must be positive")
    s = np.sin(np.radians(two_theta) / 2) * (wavelength_to / wavelength_from)
    ok = s < 1.0
    return np.degrees(2 * np.arcsin(s[ok])), intensity[ok]


def interpolate_to_grid(two_theta: np.ndarray, intensity: np.ndarray, grid: GridSpec,
                        wavelength: float | None = None, source: object = "pattern"
                        ) -> tuple[np.ndarray, float]:
    """Put one validated pattern on ``grid``.

    Args:
        two_theta, intensity: (n,) as returned by :func:`read_xy`.
        grid: the target grid.
        wavelength: the pattern's wavelength [Å]; None means the grid's.
        source: named in error messages.

    Returns:
        (pattern (L,) float32 with max 1, coverage = fraction of grid points inside the measured 2θ
        range).

    Raises:
        DataError: the pattern does not overlap the grid (or is zero on it).
    """
    if wavelength is not None and not math.isclose(wavelength, grid.wavelength, rel_tol=1e-6):
        two_theta, intensity = convert_wavelength(two_theta, intensity, wavelength, grid.wavelength)
    g = grid.two_theta()
    if len(two_theta) < 2:
        inside = np.zeros(len(g), dtype=bool)
    else:
        inside = (g >= two_theta[0]) & (g <= two_theta[-1])
    coverage = float(inside.mean())
    out = np.interp(g, two_theta, np.clip(intensity, 0, None), left=0.0, right=0.0) if inside.any() \
        else np.zeros(len(g))
    peak = float(out.max())
    if peak <= 0:
        rng = f"{two_theta[0]:g}–{two_theta[-1]:g}°" if len(two_theta) else "nothing"
        raise fail(DataError, source, f"no intensity on the grid {grid.two_theta_min:g}–"
                   f"{grid.two_theta_max:g}° (data cover {rng} at λ = {grid.wavelength:g} Å)",
                   "check the file's wavelength (--wavelength) and 2θ range")
    return (out / peak).astype(np.float32), coverage


def pattern_on_grid(path: str | os.PathLike, grid: GridSpec, wavelength: float | None = None,
                    return_coverage: bool = False, negative_tolerance: float = 0.05
                    ) -> np.ndarray | tuple[np.ndarray, float]:
    """Read ``path`` and interpolate it onto ``grid`` (see the module docstring).

    Args:
        path: the pattern file.
        grid: target grid.
        wavelength: wavelength of the file [Å] (None: the grid's).
        return_coverage: also return the covered fraction of the grid.
        negative_tolerance: see :func:`read_xy`.

    Returns:
        (L,) float32 scaled to max 1 (and the coverage in [0, 1] when asked). Coverage below 50 % is
        logged as a warning.
    """
    t, y = read_xy(path, negative_tolerance)
    pattern, coverage = interpolate_to_grid(t, y, grid, wavelength, source=path)
    if coverage < 0.5:
        logger.warning(f"{path}: the data cover only {coverage:.0%} of the grid "
                       f"{grid.two_theta_min:g}–{grid.two_theta_max:g}° (the rest is set to 0)")
    return (pattern, coverage) if return_coverage else pattern
