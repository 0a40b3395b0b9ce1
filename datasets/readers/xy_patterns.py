"""Measured (or externally simulated) powder patterns as two-column text files.

The reader is pure numpy and lives in :mod:`utils.xy_files` (layer 0), so that ``indexing`` reads
files by exactly the same rules; it is re-exported here for the dataset readers, ``predict.py``
and ``convert_xy``. The rules (accepted files, validation, interpolation onto a grid) are in that
module's docstring and in docs/DATA.md.
"""

from __future__ import annotations

from utils.xy_files import (  # noqa: F401  (re-exported)
    PATTERN_SUFFIXES,
    convert_wavelength,
    interpolate_to_grid,
    pattern_on_grid,
    read_xy,
)

__all__ = ["PATTERN_SUFFIXES", "convert_wavelength", "interpolate_to_grid",
           "pattern_on_grid", "read_xy"]
