"""PANalytical XRDML (``.xrdml``; XML, schema published at www.xrdml.com).

The data come from xrayutilities (``xrayutilities.io.XRDMLFile``): the ``2Theta`` positions
(``listPositions`` or ``startPosition``/``endPosition``) and the intensities divided by the
``commonCountingTime`` (counts per second; with ``<counts>`` also multiplied by the
``beamAttenuationFactors``). xrayutilities does not read the radiation, nor check what kind of scan
it is; both are read here from the XML (``xml.etree``):

* wavelength: ``xrdMeasurement/usedWavelength``: ``kAlpha1``, ``kAlpha2`` [Å, or nm by the
  ``unit`` attribute] and ``ratioKAlpha2KAlpha1``; a missing ``kAlpha1`` is an unknown wavelength;
* the scan: one ``xrdMeasurement`` of ``measurementType`` "Scan" holding one ``scan`` whose
  ``scanAxis`` is 2θ/θ-like (``Gonio``, ``2Theta-Omega``, ``Omega-2Theta``, or a ``2Theta``
  detector scan). Refused with the reason: a rocking curve (``Omega``), other axes (``Phi``,
  ``Chi``, ...), area measurements (maps), repeated or several scans, and a 2-D detector frame.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from utils.errors import DataError, fail
from utils.pattern_io.base import MeasuredPattern, Wavelength, check_scan, register_format
from utils.pattern_io.library import xrayutilities_io

POWDER_AXES = ("Gonio", "2Theta-Omega", "Omega-2Theta", "2Theta")
_EXPORT = "export one 2θ/θ (Gonio) scan, e.g. Data Viewer / HighScore: File > Save As .xrdml per scan"


def _sniff(head: bytes) -> bool:
    return b"<?xml" in head[:200] and b"xrdMeasurement" in head


def _ns(root: ElementTree.Element) -> str:
    return root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""


def _wavelength(path: Path, meas: ElementTree.Element, ns: str) -> Wavelength | None:
    used = meas.find(ns + "usedWavelength")
    if used is None or used.find(ns + "kAlpha1") is None:
        return None

    def value(tag: str) -> float | None:
        el = used.find(ns + tag)
        if el is None or not (el.text or "").strip():
            return None
        try:
            v = float(el.text)
        except ValueError:
            raise fail(DataError, path, f"usedWavelength/{tag} {el.text!r} is not a number",
                       "repair or re-export the file") from None
        return v * 10.0 if el.get("unit", "Angstrom").lower() in ("nm", "nanometer") else v

    ka1, ka2, ratio = value("kAlpha1"), value("kAlpha2"), value("ratioKAlpha2KAlpha1")
    if ka1 is None or not ka1 > 0:
        raise fail(DataError, path, f"usedWavelength/kAlpha1 = {ka1}", "repair or re-export the file")
    return Wavelength(ka1, ka2 if ka2 and ka2 > ka1 else None, ratio, "file")


def _check_kind(path: Path, root: ElementTree.Element, ns: str) -> tuple[ElementTree.Element, str]:
    """The single powder measurement of the file and its scan axis, or a DataError saying why not."""
    if not root.tag.endswith("xrdMeasurements"):
        raise fail(DataError, path, f"XML root <{root.tag.split('}')[-1]}> is not <xrdMeasurements>",
                   "this is not an XRDML file: export the scan as .xrdml or .xy")
    measurements = root.findall(ns + "xrdMeasurement")
    if len(measurements) != 1:
        raise fail(DataError, path, f"{len(measurements)} measurements in one file", _EXPORT)
    meas = measurements[0]
    kind = meas.get("measurementType", "Scan")
    if kind != "Scan":
        raise fail(DataError, path, f"measurementType {kind!r} (a map or repeated scans), not a single "
                   "powder scan", _EXPORT)
    scans = meas.findall(ns + "scan")
    if len(scans) != 1:
        raise fail(DataError, path, f"{len(scans)} scans in the measurement (a map or repeated scans)",
                   _EXPORT)
    axis = scans[0].get("scanAxis", "")
    if axis not in POWDER_AXES:
        what = "a rocking curve (Omega scan)" if axis == "Omega" else f"a scan of {axis or 'an unnamed axis'}"
        raise fail(DataError, path, f"{what}, not a 2θ/θ powder scan (scanAxis must be one of "
                   f"{', '.join(POWDER_AXES)})", _EXPORT)
    return meas, axis


@register_format("xrdml", (".xrdml",), sniff=_sniff,
                 description="PANalytical XRDML (XML): data via xrayutilities, wavelength from "
                             "usedWavelength")
def read_xrdml(path: Path) -> MeasuredPattern:
    """Read one XRDML 2θ/θ scan (see the module docstring)."""
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as exc:
        raise fail(DataError, path, f"not well-formed XML ({exc})", "re-export the file") from None
    ns = _ns(root)
    meas, axis = _check_kind(path, root, ns)
    wavelength = _wavelength(path, meas, ns)
    xu = xrayutilities_io(path, "XRDML")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scan = xu.XRDMLFile(str(path)).scan
            two_theta, intensity = np.asarray(scan["2Theta"], float), np.asarray(scan["detector"], float)
            count_time = float(np.ravel(scan["countTime"])[0])
    except (AttributeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise fail(DataError, path, f"xrayutilities could not read the scan data ({type(exc).__name__}: "
                   f"{' '.join(str(exc).split())}; per-point countingTimes and scans without 2Theta "
                   "positions are not read)",
                   _EXPORT) from None
    if intensity.ndim != 1:
        raise fail(DataError, path, f"a {intensity.shape} detector frame per point (a 2-D/1-D detector "
                   "map), not a powder scan", "export the integrated 1-D scan")
    if two_theta.shape != intensity.shape:  # 2Theta fixed (commonPosition) while another axis moves
        raise fail(DataError, path, "2Theta does not move during the scan", _EXPORT)
    two_theta, intensity = check_scan(path, two_theta, intensity)
    return MeasuredPattern(two_theta, intensity, wavelength, path, "xrdml", "counts/s",
                           {"scan_axis": axis, "count_time_s": count_time})
