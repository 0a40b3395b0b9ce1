"""Two-column text patterns (``.xy .xye .csv .txt .dat``) with the wavelength in a comment.

The columns are read by :func:`utils.xy_files.read_xy` (its rules: 2θ and intensity, ``#``
comments, one optional header line, ``.xye`` uncertainty column). Plain text carries no metadata,
so the wavelength is taken from ``#`` comment lines of the form ``key: value`` or ``key = value``
(case-insensitive, anywhere in the file):

* ``wavelength`` (also ``lambda``, ``wavelength_ka1``, ``ka1``): the Kα1 or monochromatic
  wavelength in Å;
* ``wavelength_ka2`` (also ``ka2``): the Kα2 wavelength in Å;
* ``ka2_ratio`` (also ``ratio``): the Kα2/Kα1 intensity ratio (0: Kα1 only).

A file without a ``wavelength`` line has an unknown wavelength: the commands then need
``--wavelength`` (:func:`utils.pattern_io.base.resolve_wavelength`). Intensities are kept as in the
file (``unit`` "as in file": a text export does not say whether they are counts or counts/s).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from utils.errors import DataError, fail
from utils.pattern_io.base import MeasuredPattern, Wavelength, register_format
from utils.xy_files import PATTERN_SUFFIXES, read_xy

_KEYS = {"wavelength": "ka1", "lambda": "ka1", "wavelength_ka1": "ka1", "ka1": "ka1",
         "wavelength_ka2": "ka2", "ka2": "ka2", "ka2_ratio": "ratio", "ratio": "ratio"}
_META = re.compile(r"^\s*#\s*([A-Za-z_0-9]+)\s*[:=]\s*(\S+)")


def header_wavelength(path: Path, text: str) -> Wavelength | None:
    """The :class:`Wavelength` stated by the file's comment lines (None when there is none).

    Raises:
        DataError: a wavelength line whose value is not a positive number (``path:line``).
    """
    found: dict[str, float] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _META.match(line)
        if not m or m.group(1).lower() not in _KEYS:
            continue
        key, raw = _KEYS[m.group(1).lower()], m.group(2).rstrip(",;")
        try:
            value = float(raw.removesuffix("Å").removesuffix("A"))
        except ValueError:
            value = math.nan
        bad = not math.isfinite(value) or value < 0 or (key != "ratio" and value == 0) \
            or (key == "ratio" and value > 1)
        if bad:
            raise fail(DataError, f"{path}:{lineno}", f"{m.group(1)} {raw!r} is not a valid value",
                       "write e.g. '# wavelength: 1.5406' (Å), '# wavelength_ka2: 1.5444', "
                       "'# ka2_ratio: 0.5'")
        found.setdefault(key, value)
    if "ka1" not in found:
        if found:
            raise fail(DataError, path, "Kα2 metadata but no '# wavelength:' line",
                       "add '# wavelength: <Kα1 in Å>'")
        return None
    return Wavelength(found["ka1"], found.get("ka2"), found.get("ratio"), "file")


@register_format("xy", PATTERN_SUFFIXES, sniff=lambda head: False,
                 description="two-column text (2θ, intensity), wavelength from a '# wavelength:' comment")
def read_text(path: Path) -> MeasuredPattern:
    """Read a two-column text pattern and the wavelength of its comment lines."""
    two_theta, intensity = read_xy(path)  # validates first: its errors name the bad line
    text = path.read_text(encoding="utf-8-sig")
    return MeasuredPattern(two_theta, intensity, header_wavelength(path, text), path, "xy")
