"""Instrument files (issue 25): every supported format read with its wavelength and counting time,
and every refusal (unknown format, not a powder scan, no wavelength, damaged file) is one message
naming the file and the fix."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from utils.errors import DataError
from utils.grid import GridSpec
from utils.pattern_io import (
    FORMATS,
    PATTERN_SUFFIXES,
    Wavelength,
    collect_pattern_files,
    format_of,
    pattern_to_grid,
    read_pattern,
)
from utils.pattern_io.writers import write_ras, write_xrdml, write_xy

FIX = Path(__file__).resolve().parent / "fixtures" / "instrument"
TT = np.linspace(10, 80, 351)
Y = 100 + 5000 * np.exp(-0.5 * ((TT - 31.7) / 0.1) ** 2)
CU = Wavelength(1.540598, 1.544426, 0.5)


def _refused(path, match: str, **kw) -> str:
    with pytest.raises(DataError) as e:
        read_pattern(path, **kw)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "Fix: " in msg and "\n" not in msg, msg
    assert match in msg, msg
    return msg


# ------------------------------------------------------------------------ the committed fixtures

@pytest.mark.parametrize("name,fmt,ka1,ka2,ratio,unit", [
    ("nacl_cu.xrdml", "xrdml", 1.540598, 1.544426, 0.5, "counts/s"),
    ("nacl_mo.ras", "ras", 0.709319, 0.713609, None, "counts/s"),
    ("nacl_sync.xy", "xy", 0.4, None, None, "as in file"),
])
def test_fixtures_are_read_with_their_wavelength(name, fmt, ka1, ka2, ratio, unit):
    pat = read_pattern(FIX / name)
    assert pat.format == fmt and pat.unit == unit
    assert pat.wavelength == Wavelength(ka1, ka2, ratio, "file")
    # the writers stored counts over 0.5 s (XRDML) and 0.375 s per point (RAS, 0.025° at 4°/min):
    # counts per second come back, the background (40) and the strongest line (2·10⁴ + 40) alike
    assert np.percentile(pat.intensity, 5) == pytest.approx(40, abs=1.5)
    assert pat.intensity.max() == pytest.approx(20040, rel=2e-3)
    # the same d-range: 10–100° at Cu ↔ 4.5–45° at Mo ↔ 2.5–25° at 0.4 Å (roughly)
    lo, hi = pat.d_range()
    assert 0.9 < lo < 1.1 and 8.0 < hi < 9.2


def test_the_three_fixtures_agree_on_the_model_grid():
    grid = GridSpec(5.0, 90.0, 2000, 1.5406)
    xs = [pattern_to_grid(read_pattern(FIX / n), grid)[0] for n in ("nacl_cu.xrdml", "nacl_mo.ras",
                                                                     "nacl_sync.xy")]
    for x in xs[1:]:
        assert np.corrcoef(xs[0], x)[0, 1] > 0.98


def test_registry_and_suffixes():
    assert FORMATS.names() == ["ras", "xrdml", "xy"]
    assert {".xrdml", ".ras", ".xy", ".xye", ".csv", ".txt", ".dat"} == set(PATTERN_SUFFIXES)
    with pytest.raises(KeyError, match="valid names: ras, xrdml, xy"):
        FORMATS.get("raw")


def test_content_decides_before_the_suffix(tmp_path):
    p = tmp_path / "export.txt"
    p.write_bytes((FIX / "nacl_cu.xrdml").read_bytes())
    assert format_of(p) == "xrdml" and read_pattern(p).wavelength.ka1 == 1.540598
    q = tmp_path / "scan.dat"
    q.write_bytes((FIX / "nacl_mo.ras").read_bytes())
    assert format_of(q) == "ras"


def test_a_scan_measured_downwards_is_reversed(tmp_path):
    p = write_xrdml(tmp_path / "down.xrdml", TT[::-1], Y[::-1], CU)
    pat = read_pattern(p)
    assert pat.two_theta[0] == pytest.approx(10)
    assert abs(pat.two_theta[np.argmax(pat.intensity)] - 31.7) < 0.15


def test_folders_collect_instrument_files_and_known_unsupported_ones(tmp_path):
    for name in ("a.xrdml", "b.ras", "c.xy", "d.raw", "e.md"):
        (tmp_path / name).write_text("x")
    assert [f.name for f, named in collect_pattern_files([tmp_path])] == ["a.xrdml", "b.ras", "c.xy", "d.raw"]


# ------------------------------------------------------------------------------ the wavelength

def test_xy_without_wavelength_is_an_error_not_cu(tmp_path):
    p = write_xy(tmp_path / "plain.xy", TT, Y, None)
    _refused(p, "the wavelength is unknown")
    assert "--wavelength" in _refused(p, "no Cu Kα is assumed")
    assert read_pattern(p, wavelength=1.5406).wavelength == Wavelength(1.5406, None, None, "--wavelength")
    assert read_pattern(p, require_wavelength=False).wavelength is None


@pytest.mark.parametrize("writer", [write_xrdml, write_ras])
def test_instrument_file_without_wavelength_is_an_error(tmp_path, writer):
    p = writer(tmp_path / f"no_wl{'.xrdml' if writer is write_xrdml else '.ras'}", TT, Y, None)
    _refused(p, "the wavelength is unknown")
    assert read_pattern(p, wavelength=0.7093).wavelength.ka1 == 0.7093


def test_given_wavelength_overrides_and_a_mismatch_is_reported(warnings_):
    pat = read_pattern(FIX / "nacl_cu.xrdml", wavelength=1.5406)   # the same (1.540598): silent
    assert warnings_ == [] and pat.wavelength.ka2 == 1.544426 and pat.wavelength.ka1 == 1.5406
    pat = read_pattern(FIX / "nacl_cu.xrdml", wavelength=0.7093)
    assert pat.wavelength == Wavelength(0.7093, None, None, "--wavelength")
    assert len(warnings_) == 1 and "--wavelength 0.7093 Å overrides the file's Kα1 1.5406 Å" in warnings_[0]
    assert str(FIX / "nacl_cu.xrdml") in warnings_[0]


@pytest.mark.parametrize("line,match", [("# wavelength: abc", "wavelength 'abc' is not a valid value"),
                                        ("# wavelength: -1", "is not a valid value"),
                                        ("# ka2_ratio: 2", "ka2_ratio '2' is not a valid value"),
                                        ("# wavelength_ka2: 1.544", "Kα2 metadata but no '# wavelength:'")])
def test_bad_wavelength_comments(tmp_path, line, match):
    p = tmp_path / "c.xy"
    p.write_text(line + "\n" + "\n".join(f"{t} {y}" for t, y in zip(TT, Y)) + "\n")
    _refused(p, match)


def test_xy_comment_forms(tmp_path):
    p = tmp_path / "c.xy"
    p.write_text("# Lambda = 0.7093 A\n# KA2: 0.71359\n# ratio: 0\n10 1\n11 2\n")
    assert read_pattern(p).wavelength == Wavelength(0.7093, 0.71359, 0.0, "file")


# ---------------------------------------------------------------------- not a powder 2θ/θ scan

@pytest.mark.parametrize("kw,match", [
    ({"scan_axis": "Omega"}, "a rocking curve (Omega scan), not a 2θ/θ powder scan"),
    ({"scan_axis": "Phi"}, "a scan of Phi, not a 2θ/θ powder scan"),
    ({"measurement_type": "Area measurement"}, "measurementType 'Area measurement' (a map"),
    ({"n_scans": 2}, "2 scans in the measurement"),
])
def test_xrdml_that_is_not_a_powder_scan(tmp_path, kw, match):
    _refused(write_xrdml(tmp_path / "x.xrdml", TT, Y, CU, **kw), match)


@pytest.mark.parametrize("kw,match", [({"scan_axis": "Omega"}, "a rocking curve (Omega scan)"),
                                      ({"scan_axis": "Chi"}, "a scan of Chi"),
                                      ({"n_scans": 3}, "3 scans (a map or repeated scans)")])
def test_ras_that_is_not_a_powder_scan(tmp_path, kw, match):
    _refused(write_ras(tmp_path / "x.ras", TT, Y, CU, **kw), match)


def test_damaged_xrdml_files(tmp_path):
    p = write_xrdml(tmp_path / "x.xrdml", TT, Y, CU)
    text = p.read_text()
    p.write_text(text[: len(text) // 2])
    _refused(p, "not well-formed XML")
    p.write_text(text.replace("xrdMeasurements", "somethingElse"))
    _refused(p, "is not <xrdMeasurements>")
    two = text.replace("</xrdMeasurement>\n", "</xrdMeasurement>\n" + text[text.index("  <xrdMeasurement "):
                                                                      text.index("</xrdMeasurements>")], 1)
    p.write_text(two)
    _refused(p, "2 measurements in one file")
    p.write_text(text.replace('<commonCountingTime unit="seconds">1</commonCountingTime>',
                              '<countingTimes unit="seconds">1</countingTimes>'))
    _refused(p, "xrayutilities could not read the scan data")
    p.write_text(text.replace(">1.5405980<", ">abc<"))
    _refused(p, "usedWavelength/kAlpha1 'abc' is not a number")


def test_damaged_ras_files(tmp_path):
    p = write_ras(tmp_path / "x.ras", TT, Y, CU)
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[: len(lines) // 2]))
    _refused(p, "166 data points where *MEAS_DATA_COUNT says 351 (a truncated file)")
    p.write_text("\n".join(ln.replace("10.2000 ", "10.2000 7 ") for ln in lines))
    _refused(p, "xrayutilities could not read it as RAS (ValueError: Some errors were detected ! Line #")
    p.write_text("\n".join(ln.rsplit(" ", 1)[0] if ln[:1].isdigit() else ln for ln in lines))
    assert read_pattern(p).intensity.max() > 0   # two columns: no attenuation factor, 1
    p.write_text("\n".join(ln.replace('"1.540598"', '"x"') for ln in lines))
    _refused(p, "*HW_XG_WAVE_LENGTH_ALPHA1 'x' is not a number")


@pytest.mark.parametrize("name,match", [("scan.raw", "binary RAW file"), ("scan.brml", "Bruker BRML"),
                                        ("scan.rasx", "export .ras"),
                                        ("scan.foo", "unknown pattern format '.foo'"),
                                        ("noext", "unknown pattern format '(no suffix)'")])
def test_unknown_and_unsupported_formats(tmp_path, name, match):
    p = tmp_path / name
    p.write_bytes(b"\x00\x01binary")
    _refused(p, match)


def test_missing_file(tmp_path):
    _refused(tmp_path / "nope.xrdml", "pattern file not found")


def test_without_xrayutilities_the_fix_is_the_install(tmp_path, monkeypatch):
    real = importlib.import_module

    def no_xu(name, *a, **k):
        if name.startswith("xrayutilities"):
            raise ImportError("No module named 'xrayutilities'")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", no_xu)
    msg = _refused(FIX / "nacl_mo.ras", "reading Rigaku RAS files needs the xrayutilities package")
    assert "pip install 'xrayutilities>=1.8'" in msg
    assert read_pattern(FIX / "nacl_sync.xy").format == "xy"   # text needs no library


# -------------------------------------------------------------------- the model's d-range

def test_missing_d_range_is_named(tmp_path, warnings_):
    grid = GridSpec(5.0, 90.0, 1000, 1.5406)
    p = write_xy(tmp_path / "narrow.xy", TT, Y, Wavelength(1.5406))   # 10–80° of the model's 5–90°
    x, cov = pattern_to_grid(read_pattern(p), grid)
    assert x.max() == 1.0 and 0.8 < cov < 0.85
    assert len(warnings_) == 1 and str(p) in warnings_[0]
    assert "d > " in warnings_[0] and "d < " in warnings_[0] and "missing" in warnings_[0]
    warnings_.clear()
    cr = write_xy(tmp_path / "cr.xy", np.linspace(5, 150, 500), np.ones(500) + 1, Wavelength(2.2897))
    pattern_to_grid(read_pattern(cr), grid)
    assert "2.2897 Å cannot reach d = 1.090 Å" in warnings_[0]
    warnings_.clear()
    pattern_to_grid(read_pattern(FIX / "nacl_cu.xrdml"), GridSpec(10.5, 99.5, 1000, 1.5406))
    assert warnings_ == []
