"""Minimal writers of the supported formats, from their specifications (xrayutilities has none).

They make the test fixtures and the files of the wavelength benchmarks from simulated patterns:
``write_xy`` (two-column text with ``# wavelength:`` comments), ``write_xrdml`` (the XRDML 1.5
schema's elements that :mod:`utils.pattern_io.xrdml` reads: ``usedWavelength``, ``scan`` with
``scanAxis``, ``positions`` by start/end, ``commonCountingTime``, ``intensities``) and
``write_ras`` (the RAS blocks and header keys that :mod:`utils.pattern_io.ras` reads). Options
make the files the readers must refuse (a rocking curve, a map, no wavelength).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from utils.pattern_io.base import Wavelength

XRDML_NS = "http://www.xrdml.com/XRDMeasurement/1.5"


def write_xy(path: str | os.PathLike, two_theta: np.ndarray, intensity: np.ndarray,
             wavelength: Wavelength | None = None) -> Path:
    """Two columns with the wavelength as ``#`` comments (none when ``wavelength`` is None)."""
    lines = []
    if wavelength is not None:
        lines.append(f"# wavelength: {wavelength.ka1:.7g}")
        if wavelength.ka2:
            lines.append(f"# wavelength_ka2: {wavelength.ka2:.7g}")
        if wavelength.ratio is not None:
            lines.append(f"# ka2_ratio: {wavelength.ratio:.4g}")
    lines += [f"{t:.5f} {y:.6g}" for t, y in zip(two_theta, intensity)]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)


def _xrdml_scan(two_theta: np.ndarray, counts: np.ndarray, count_time: float, axis: str) -> str:
    omega = two_theta / 2
    return (f'    <scan appendNumber="0" mode="Continuous" scanAxis="{axis}" status="Completed">\n'
            '      <dataPoints>\n'
            f'        <positions axis="2Theta" unit="deg"><startPosition>{two_theta[0]:.5f}</startPosition>'
            f'<endPosition>{two_theta[-1]:.5f}</endPosition></positions>\n'
            f'        <positions axis="Omega" unit="deg"><startPosition>{omega[0]:.5f}</startPosition>'
            f'<endPosition>{omega[-1]:.5f}</endPosition></positions>\n'
            f'        <commonCountingTime unit="seconds">{count_time:g}</commonCountingTime>\n'
            f'        <intensities unit="counts">{" ".join(f"{c:.0f}" for c in counts)}</intensities>\n'
            '      </dataPoints>\n'
            '    </scan>\n')


def write_xrdml(path: str | os.PathLike, two_theta: np.ndarray, counts: np.ndarray,
                wavelength: Wavelength | None, count_time: float = 1.0, scan_axis: str = "Gonio",
                measurement_type: str = "Scan", n_scans: int = 1) -> Path:
    """An XRDML file of one measurement with ``n_scans`` identical scans of ``counts`` (uniform 2θ)."""
    used = ""
    if wavelength is not None:
        used = ('    <usedWavelength intended="K-Alpha 1">\n'
                f'      <kAlpha1 unit="Angstrom">{wavelength.ka1:.7f}</kAlpha1>\n'
                + (f'      <kAlpha2 unit="Angstrom">{wavelength.ka2:.7f}</kAlpha2>\n'
                   if wavelength.ka2 else "")
                + (f'      <ratioKAlpha2KAlpha1>{wavelength.ratio:.4f}</ratioKAlpha2KAlpha1>\n'
                   if wavelength.ratio is not None else "")
                + '    </usedWavelength>\n')
    tt = np.asarray(two_theta, float)
    text = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<xrdMeasurements xmlns="{XRDML_NS}" status="Completed">\n'
            '  <sample type="To be analyzed"><id>simulated</id><name>simulated</name></sample>\n'
            f'  <xrdMeasurement measurementType="{measurement_type}" status="Completed">\n'
            + used
            + _xrdml_scan(tt, np.asarray(counts, float), count_time, scan_axis) * n_scans
            + '  </xrdMeasurement>\n</xrdMeasurements>\n')
    Path(path).write_text(text, encoding="utf-8")
    return Path(path)


def write_ras(path: str | os.PathLike, two_theta: np.ndarray, counts: np.ndarray,
              wavelength: Wavelength | None, speed_deg_min: float = 2.0, scan_axis: str = "TwoThetaTheta",
              n_scans: int = 1, anode: str = "Cu") -> Path:
    """A RAS file of ``n_scans`` identical continuous scans (counts per point; attenuation 1)."""
    tt = np.asarray(two_theta, float)
    step = (tt[-1] - tt[0]) / (len(tt) - 1)
    head = ["*FILE_TYPE \"RAS_RAW\"", f"*HW_XG_TARGET_NAME \"{anode}\""]
    if wavelength is not None:
        head.append(f"*HW_XG_WAVE_LENGTH_ALPHA1 \"{wavelength.ka1:.6f}\"")
        if wavelength.ka2:
            head.append(f"*HW_XG_WAVE_LENGTH_ALPHA2 \"{wavelength.ka2:.6f}\"")
        head.append("*HW_XG_WAVE_LENGTH_UNIT \"Angstrom\"")
        head.append(f"*MEAS_COND_XG_WAVE_TYPE \"{'Ka1' if wavelength.ratio == 0 else 'Ka'}\"")
    head += [f"*MEAS_SCAN_AXIS_X \"{scan_axis}\"", f"*MEAS_SCAN_AXIS_X_INTERNAL \"{scan_axis}\"",
             "*MEAS_SCAN_MODE \"CONTINUOUS\"", f"*MEAS_SCAN_SPEED \"{speed_deg_min:.4f}\"",
             "*MEAS_SCAN_SPEED_UNIT \"deg/min\"", f"*MEAS_SCAN_START \"{tt[0]:.4f}\"",
             f"*MEAS_SCAN_STEP \"{step:.6f}\"", f"*MEAS_SCAN_STOP \"{tt[-1]:.4f}\"",
             "*MEAS_SCAN_UNIT_X \"deg\"", "*MEAS_SCAN_UNIT_Y \"counts\"", f"*MEAS_DATA_COUNT \"{len(tt)}\""]
    block = ["*RAS_HEADER_START", *head, "*RAS_HEADER_END", "*RAS_INT_START",
             *(f"{t:.4f} {c:.0f} 1.0000" for t, c in zip(tt, counts)), "*RAS_INT_END"]
    lines = ["*RAS_DATA_START", *(block * n_scans), "*RAS_DATA_END"]
    Path(path).write_text("\r\n".join(lines) + "\r\n", encoding="ascii")
    return Path(path)
