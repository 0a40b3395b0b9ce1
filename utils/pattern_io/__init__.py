"""Powder patterns as instruments write them: one reader per format, the wavelength from the file.

    from utils.pattern_io import read_pattern, pattern_to_grid
    pat = read_pattern("scan.xrdml")                  # MeasuredPattern; wavelength from the file
    pat = read_pattern("scan.xy", wavelength=1.5406)  # --wavelength: overrides (a mismatch is reported)
    x, coverage = pattern_to_grid(pat, grid)          # resampled by d-spacing onto the model's grid

Formats (:data:`FORMATS`; docs/DATA.md): ``xy`` (two-column text, ``utils.pattern_io.text``),
``xrdml`` (PANalytical, ``utils.pattern_io.xrdml``) and ``ras`` (Rigaku, ``utils.pattern_io.ras``);
the last two parse their data with xrayutilities (``utils.pattern_io.library``). Layer 0: numpy,
the standard library, and that optional package, so ``indexing`` and the composition roots read
files by the same rules.
"""

from __future__ import annotations

from utils.pattern_io import ras, text, xrdml  # noqa: F401  (registers the readers)
from utils.pattern_io.base import FORMATS, MeasuredPattern, Wavelength, check_scan, resolve_wavelength
from utils.pattern_io.dispatch import UNSUPPORTED, collect_pattern_files, format_of, read_pattern, suffixes
from utils.pattern_io.placement import d_of, missing_d, pattern_to_grid

PATTERN_SUFFIXES = suffixes()

__all__ = ["FORMATS", "PATTERN_SUFFIXES", "UNSUPPORTED", "MeasuredPattern", "Wavelength", "check_scan",
           "collect_pattern_files", "d_of", "format_of", "missing_d", "pattern_to_grid", "read_pattern",
           "resolve_wavelength", "suffixes"]
