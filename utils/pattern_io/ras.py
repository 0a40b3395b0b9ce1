"""Rigaku RAS (``.ras``; SmartLab Guidance / SmartLab Studio II text export).

A RAS file is text: ``*RAS_DATA_START``, then per scan a header of ``*KEY "value"`` lines between
``*RAS_HEADER_START`` and ``*RAS_HEADER_END`` and the data between ``*RAS_INT_START`` and
``*RAS_INT_END`` (columns: scan angle, intensity, attenuation factor). xrayutilities
(``xrayutilities.io.RASFile``) splits the scans and parses the data and header lines; it reads
neither the radiation nor the counting time, which are taken here from the header:

* wavelength: ``*HW_XG_WAVE_LENGTH_ALPHA1`` / ``*HW_XG_WAVE_LENGTH_ALPHA2`` (unit
  ``*HW_XG_WAVE_LENGTH_UNIT``, Å by default); ``*MEAS_COND_XG_WAVE_TYPE "Ka1"`` means Kα1 only
  (ratio 0); RAS has no ratio field (None: the picker estimates it);
* intensity: column 2 × the attenuation factor (column 3), in counts; divided by the time per
  point when the header gives it: continuous scans ``*MEAS_SCAN_STEP / *MEAS_SCAN_SPEED`` with
  ``*MEAS_SCAN_SPEED_UNIT "deg/min"`` (× 60 s), step scans the speed in seconds per step
  (``"sec"``, ``"s"``); ``*MEAS_SCAN_UNIT_Y "cps"`` is already a rate;
* the scan: ``*MEAS_SCAN_AXIS_X`` must be a 2θ/θ-like axis (``TwoThetaTheta``,
  ``TwoThetaOmega``, ``2-Theta/Theta``, ``TwoTheta``...); an ``Omega`` scan is a rocking curve,
  and a file with several scans (a reciprocal-space map) is refused.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np

from utils.errors import DataError, fail
from utils.pattern_io.base import MeasuredPattern, Wavelength, check_scan, register_format
from utils.pattern_io.library import xrayutilities_io

_LINE = re.compile(r'^\*([A-Z0-9_]+)\s+"?(.*?)"?\s*$')
POWDER_AXES = ("twothetatheta", "twothetaomega", "twotheta", "thetatwotheta", "omegatwotheta")
_EXPORT = "export one 2θ/θ scan as .ras (SmartLab Studio II: File > Export > RAS)"


def _sniff(head: bytes) -> bool:
    return head.lstrip().startswith(b"*RAS_DATA_START")


def _axis_key(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower().replace("2", "two"))


def header_values(lines: list[str]) -> dict[str, str]:
    """``{KEY: value}`` of the ``*KEY "value"`` header lines (first occurrence wins)."""
    out: dict[str, str] = {}
    for line in lines:
        m = _LINE.match(line.strip())
        if m:
            out.setdefault(m.group(1), m.group(2).strip())
    return out


def _number(path: Path, head: dict[str, str], key: str) -> float | None:
    raw = head.get(key, "").strip()
    if not raw:
        return None
    try:
        v = float(raw)
    except ValueError:
        raise fail(DataError, path, f"*{key} {raw!r} is not a number",
                   "repair or re-export the file") from None
    return v if math.isfinite(v) else None


def _wavelength(path: Path, head: dict[str, str]) -> Wavelength | None:
    ka1 = _number(path, head, "HW_XG_WAVE_LENGTH_ALPHA1")
    if ka1 is None or ka1 <= 0:
        return None
    scale = 10.0 if head.get("HW_XG_WAVE_LENGTH_UNIT", "").lower() in ("nm", "nanometer") else 1.0
    ka2 = _number(path, head, "HW_XG_WAVE_LENGTH_ALPHA2")
    ratio = 0.0 if head.get("MEAS_COND_XG_WAVE_TYPE", "").lower() == "ka1" else None
    return Wavelength(ka1 * scale, ka2 * scale if ka2 and ka2 > ka1 else None, ratio, "file")


def _seconds_per_point(path: Path, head: dict[str, str]) -> float | None:
    speed = _number(path, head, "MEAS_SCAN_SPEED")
    unit = head.get("MEAS_SCAN_SPEED_UNIT", "").lower().replace(" ", "")
    if speed is None or speed <= 0:
        return None
    if unit in ("sec", "s", "second", "seconds", "sec/step", "s/step"):
        return speed
    step = _number(path, head, "MEAS_SCAN_STEP")
    if unit in ("deg/min", "°/min") and step:
        return abs(step) / speed * 60.0
    return None


@register_format("ras", (".ras",), sniff=_sniff,
                 description="Rigaku RAS (text): data via xrayutilities, wavelength from "
                             "*HW_XG_WAVE_LENGTH_*")
def read_ras(path: Path) -> MeasuredPattern:
    """Read one RAS 2θ/θ scan (see the module docstring)."""
    xu = xrayutilities_io(path, "Rigaku RAS")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scans = xu.RASFile(str(path)).scans
    except (OSError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise fail(DataError, path, f"xrayutilities could not read it as RAS ({type(exc).__name__}: "
                   f"{' '.join(str(exc).split())})", _EXPORT) from None
    if len(scans) != 1:
        what = "no scan" if not scans else f"{len(scans)} scans (a map or repeated scans)"
        raise fail(DataError, path, f"{what}, not one powder scan", _EXPORT)
    scan = scans[0]
    head = header_values(scan.header)
    axis = head.get("MEAS_SCAN_AXIS_X") or getattr(scan, "scan_axis", "")
    if _axis_key(axis) not in POWDER_AXES:
        what = "a rocking curve (Omega scan)" if _axis_key(axis) == "omega" else f"a scan of {axis or '?'}"
        raise fail(DataError, path, f"{what}, not a 2θ/θ powder scan (*MEAS_SCAN_AXIS_X)", _EXPORT)
    data = scan.data
    names = data.dtype.names
    angle, counts = np.asarray(data[names[0]], float), np.asarray(data[names[1]], float)
    att = np.asarray(data[names[2]], float) if len(names) > 2 else np.ones_like(counts)  # no column: 1
    expected = _number(path, head, "MEAS_DATA_COUNT")
    if expected is not None and int(expected) != len(angle):
        raise fail(DataError, path, f"{len(angle)} data points where *MEAS_DATA_COUNT says {int(expected)} "
                   "(a truncated file)", "copy or export the file again")
    intensity = counts * np.where(np.isfinite(att) & (att > 0), att, 1.0)
    seconds = _seconds_per_point(path, head)
    if head.get("MEAS_SCAN_UNIT_Y", "").lower() == "cps":
        unit = "counts/s"
    elif seconds is not None:
        intensity, unit = intensity / seconds, "counts/s"
    else:
        unit = "counts"
    two_theta, intensity = check_scan(path, angle, intensity)
    return MeasuredPattern(two_theta, intensity, _wavelength(path, head), path, "ras", unit,
                           {"scan_axis": axis, "seconds_per_point": seconds,
                            "anode": head.get("HW_XG_TARGET_NAME", "")})
