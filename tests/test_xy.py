"""Two-column pattern files: parsing, validation with line numbers, interpolation, wavelength
conversion, and the folder → NPY converter."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from datasets.readers.convert_xy import convert_xy, read_labels
from datasets.readers.convert_xy import main as xy_main
from datasets.readers.npy import build_npy
from datasets.readers.npy_format import read_npy, split_path
from datasets.readers.xy_patterns import convert_wavelength, interpolate_to_grid, pattern_on_grid, read_xy
from utils.errors import DataError, GridMismatchError
from utils.grid import GridSpec

SMALL = GridSpec(10.0, 20.0, 10, 1.5406)  # points 10, 11, ..., 19


def _w(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


# ------------------------------------------------------------------------------------ parsing

def test_formats_comments_header_and_extra_columns(tmp_path):
    xy = _w(tmp_path, "a.xy", "# measured\n\n10.0 5\n10.5\t7  # inline comment\n11.0   9\n")
    xye = _w(tmp_path, "a.xye", "10.0 5 0.3\n10.5 7 0.4\n11.0 9 0.5\n")
    csv = _w(tmp_path, "a.csv", "two_theta,intensity\n10.0,5\n10.5, 7\n11.0,9\n")
    for p in (xy, xye, csv):
        t, y = read_xy(p)
        assert t.tolist() == [10.0, 10.5, 11.0] and y.tolist() == [5.0, 7.0, 9.0]


@pytest.mark.parametrize("text,match", [
    ("10 5\n11\n12 3\n", r"a.xy:2: one column only"),
    ("10 5\n11 abc\n12 3\n", r"a.xy:2: non-numeric row"),
    ("10 5\n11 6\nangle intensity\n", r"a.xy:3: non-numeric row"),  # a header only as first line
    ("10 5\n12 6\n11 3\n", r"a.xy:3: decreasing \(unsorted\) 2θ 11 after 12 \(line 2\)"),
    ("10 5\n11 6\n11 3\n", r"a.xy:3: duplicate 2θ 11"),
    ("10 5\n11 nan\n12 3\n", r"a.xy:2: NaN/inf"),
    ("10 5\ninf 1\n", r"a.xy:2: NaN/inf"),
    ("10 100\n11 -20\n12 3\n", r"a.xy:2: intensity -20 is below -0.05 × max"),
    ("10 0\n11 0\n12 0\n", "all intensities are zero"),
    ("10 5\n", "1 data point"),
    ("# nothing\n", "0 data point"),
    ("0 5\n11 6\n", r"a.xy:1: 2θ = 0 is outside \(0, 180\)"),
    ("2theta;intensity\n10;5\n11;6\n", r"a.xy:2: non-numeric row"),
])
def test_bad_files_name_file_and_line(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        read_xy(_w(tmp_path, "a.xy", text))


def test_missing_and_binary_file(tmp_path):
    with pytest.raises(DataError, match="pattern file not found"):
        read_xy(tmp_path / "none.xy")
    (tmp_path / "b.xy").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(DataError, match="not a UTF-8"):
        read_xy(tmp_path / "b.xy")


def test_small_negative_noise_is_tolerated_then_clipped(tmp_path):
    p = _w(tmp_path, "n.xy", "10 100\n11 -3\n12 50\n")
    assert read_xy(p)[1].tolist() == [100.0, -3.0, 50.0]
    out = pattern_on_grid(p, GridSpec(10.0, 12.0, 2, 1.5406))  # points 10, 11
    assert out.tolist() == [1.0, 0.0]


# ------------------------------------------------------------------------------ interpolation

def test_interpolation_against_hand_computed_values(tmp_path):
    p = _w(tmp_path, "p.xy", "12 0\n14 10\n16 5\n")
    out, cov = pattern_on_grid(p, SMALL, return_coverage=True)
    # np.interp by hand: 13 -> 5, 14 -> 10, 15 -> 7.5, 16 -> 5; outside [12, 16] -> 0; / max 10
    np.testing.assert_allclose(out, [0, 0, 0, 0.5, 1.0, 0.75, 0.5, 0, 0, 0])
    assert out.dtype == np.float32 and out.shape == (10,)
    assert cov == 0.5  # grid points 12..16 of 10..19


def test_no_overlap_with_grid(tmp_path):
    p = _w(tmp_path, "p.xy", "40 1\n41 2\n")
    with pytest.raises(DataError, match="no intensity on the grid 10–20°"):
        pattern_on_grid(p, SMALL)


def _two_theta_from_d(d, lam):
    return 2 * math.degrees(math.asin(lam / (2 * d)))


def test_wavelength_conversion_through_d_spacing():
    mo, cu = 0.7093, 1.5406
    d = np.array([3.0, 2.0, 1.2, 0.7])  # 0.7 Å is beyond the Cu limit λ/2 = 0.7703 Å
    tt_mo = np.array([_two_theta_from_d(x, mo) for x in d])
    tt, it = convert_wavelength(tt_mo, np.arange(4.0), mo, cu)
    np.testing.assert_allclose(tt, [_two_theta_from_d(x, cu) for x in d[:3]], rtol=1e-12)
    assert it.tolist() == [0.0, 1.0, 2.0]
    back, _ = convert_wavelength(tt, it, cu, mo)
    np.testing.assert_allclose(back, tt_mo[:3], rtol=1e-12)


def test_pattern_measured_at_another_wavelength_lands_on_the_right_angle(tmp_path):
    mo, grid = 0.7093, GridSpec(5.0, 90.0, 8500, 1.5406)
    peak_mo = _two_theta_from_d(3.0, mo)  # 13.58° with Mo, 29.75° with Cu
    t = np.arange(3.0, 45.0, 0.01)
    y = np.exp(-0.5 * ((t - peak_mo) / 0.02) ** 2)
    p = tmp_path / "mo.xy"
    np.savetxt(p, np.c_[t, y])
    out, cov = pattern_on_grid(p, grid, wavelength=mo, return_coverage=True)
    assert abs(grid.two_theta()[np.argmax(out)] - _two_theta_from_d(3.0, 1.5406)) < 0.015
    # measured 3–45° with Mo covers 6.52–112° with Cu: the grid from 6.52° to its end at 90°
    lo = _two_theta_from_d(mo / (2 * math.sin(math.radians(3.0 / 2))), 1.5406)
    assert lo == pytest.approx(6.52, abs=0.01)
    assert cov == pytest.approx((90 - lo) / 85, abs=2e-4)
    assert np.all(interpolate_to_grid(t, y, grid)[0] >= 0)


# -------------------------------------------------------------------------------- convert_xy

def _folder(tmp_path, names=("a.xy", "b.xye", "c.csv"), sgs=(225, 14, 62)):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for k, n in enumerate(names):
        t = np.linspace(5, 60, 200)
        y = np.exp(-0.5 * ((t - 20 - 5 * k) / 0.3) ** 2) * 1000
        sep = "," if n.endswith(".csv") else " "
        (src / n).write_text("# wavelength: 1.5406\n"
                             + "\n".join(f"{a:.4f}{sep}{b:.4f}" for a, b in zip(t, y)) + "\n")
    lab = tmp_path / "labels.csv"
    lab.write_text("file,sg\n" + "".join(f"{n},{s}\n" for n, s in zip(names, sgs)))
    return src, lab


def test_convert_folder_round_trip(tmp_path):
    src, lab = _folder(tmp_path)
    grid = GridSpec(5.0, 90.0, 850, 1.5406)
    out = tmp_path / "out"
    assert xy_main(["--src", str(src), "--labels", str(lab), "--out", str(out), "--dataset", "m",
                    "--split", "train", "--n_points", "850"]) == 0
    convert_xy(src, lab, out, "m", "test", grid)
    a = read_npy(split_path(out, "m", "train"), n_points=850)
    assert a["labels230"].tolist() == [225, 14, 62]  # sorted by file name
    np.testing.assert_allclose(a["intensitys"][1], pattern_on_grid(src / "b.xye", grid), rtol=1e-6)
    meta = json.loads((out / "dataset.json").read_text())
    assert set(meta["provenance"]["splits"]) == {"train", "test"}
    assert meta["provenance"]["splits"]["train"]["coverage_min"] == pytest.approx((60 - 5) / 85, abs=2e-3)
    b = build_npy(out, "m")
    assert b.grid == grid and b.test[0]["x"].max() == 1.0


def test_convert_unknown_and_unlabeled_files(tmp_path):
    src, lab = _folder(tmp_path)
    lab.write_text("a.xy,225\nb.xye,14\nc.csv,62\nmissing.xy,3\n")
    with pytest.raises(DataError, match="1 labelled file.* not found.*missing.xy"):
        convert_xy(src, lab, tmp_path / "o", "m")
    lab.write_text("a.xy,225\n")
    with pytest.raises(DataError, match="2 pattern file.*no label.*b.xye, c.csv"):
        convert_xy(src, lab, tmp_path / "o", "m")
    assert not (tmp_path / "o").exists()


def test_labels_inside_the_source_folder_are_not_a_pattern(tmp_path):
    src, _ = _folder(tmp_path)
    lab = src / "labels.csv"
    lab.write_text("a.xy,1\nb.xye,2\nc.csv,3\n")
    convert_xy(src, lab, tmp_path / "o", "m", grid=GridSpec(5, 90, 100, 1.5406))
    assert read_npy(split_path(tmp_path / "o", "m", "test"))["labels230"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("text,match", [("a.xy,231\n", r"labels.csv:1: space group 231"),
                                        ("file,sg\na.xy,x\n", r"labels.csv:2: space group 'x'"),
                                        ("a.xy\n", r"labels.csv:1: malformed"),
                                        ("a.xy,1\na.xy,2\n", r"labels.csv:2: a.xy is labelled twice"),
                                        ("file,sg\n", "no labelled files")])
def test_bad_labels(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        read_labels(_w(tmp_path, "labels.csv", text))
    with pytest.raises(DataError, match="labels file not found"):
        read_labels(tmp_path / "nope.csv")


def test_convert_bad_pattern_and_grid_mismatch(tmp_path, capsys):
    src, lab = _folder(tmp_path)
    convert_xy(src, lab, tmp_path / "o", "m", "train", GridSpec(5, 90, 100, 1.5406))
    with pytest.raises(GridMismatchError, match="same --two_theta_min"):
        convert_xy(src, lab, tmp_path / "o", "m", "test", GridSpec(5, 90, 200, 1.5406))
    with pytest.raises(DataError, match="describes dataset 'm'"):
        convert_xy(src, lab, tmp_path / "o", "other", "test", GridSpec(5, 90, 100, 1.5406))
    (src / "b.xye").write_text("10 1\n9 2\n")
    assert xy_main(["--src", str(src), "--labels", str(lab), "--out", str(tmp_path / "o2"),
                    "--dataset", "m"]) == 2
    assert "b.xye:2: decreasing" in capsys.readouterr().err
    with pytest.raises(DataError, match="pattern folder not found"):
        convert_xy(tmp_path / "none", lab, tmp_path / "o3", "m")


def test_latin1_file_says_reencode_as_utf8(tmp_path):
    """Issue 24: a Latin-1 export is refused with the fix (re-encode as UTF-8), not just 'not UTF-8'."""
    p = tmp_path / "scan.xy"
    p.write_bytes("# Température 25 °C\n10 1\n11 2\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"scan\.xy.*not a UTF-8 text file.*re-encode it as UTF-8"):
        read_xy(p)
