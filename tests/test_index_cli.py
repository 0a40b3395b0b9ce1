"""``python -m indexing``: a known cubic cell from a rendered pattern and from its sticks, the CSV,
and every error path with its exit status and one-line message (predict.py's per-file rules)."""

from __future__ import annotations

import csv
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexing.cli import main

ROOT = Path(__file__).resolve().parents[1]
A_NACL = 5.64  # Å, Fm-3m: an F lattice with no further condition (extinction group of Fm-3m)


def render_fcc(a: float = A_NACL, wavelength: float = 1.5406, tt_range=(10.0, 100.0), step: float = 0.02,
               fwhm: float = 0.1, peak_counts: float = 20000.0, background: float = 60.0, seed: int = 0):
    """A face-centred cubic powder pattern: pseudo-Voigt lines (η = 0.5) of all hkl of equal parity,
    multiplicity × Lorentz-polarisation × a Debye-Waller fall-off, on a flat background, Poisson
    noise. Returns (2θ grid, counts, stick 2θ, stick intensities)."""
    rng = np.random.default_rng(seed)
    r = range(-7, 8)
    hkl = np.array([h for h in itertools.product(r, r, r) if any(h) and len({x % 2 for x in h}) == 1])
    n2, mult = np.unique((hkl ** 2).sum(1), return_counts=True)
    sin_t = wavelength * np.sqrt(n2) / (2 * a)
    keep = sin_t < np.sin(np.radians(tt_range[1] / 2))
    th = np.arcsin(sin_t[keep])
    sticks = np.degrees(2 * th)
    inten = mult[keep] * (1 + np.cos(2 * th) ** 2) / (np.sin(th) ** 2 * np.cos(th)) \
        * np.exp(-2 * (sin_t[keep] / wavelength) ** 2)
    x = np.arange(tt_range[0], tt_range[1], step)
    w = fwhm / 2
    dx = (x[:, None] - sticks[None, :]) / w
    lorentz = 1 / (np.pi * w * (1 + dx ** 2))
    gauss = np.sqrt(np.log(2) / np.pi) / w * np.exp(-np.log(2) * dx ** 2)
    pv = 0.5 * lorentz + 0.5 * gauss
    y = (pv * inten).sum(1)
    y = background + peak_counts * y / y.max()
    return x, rng.poisson(y).astype(float), sticks, inten


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("index_cli")
    x, y, sticks, inten = render_fcc()
    # the wavelength in a comment: a file without one needs --wavelength (issue 25: no silent Cu Kα)
    np.savetxt(d / "nacl.xy", np.c_[x, y], fmt="%.4f", header="wavelength: 1.5406")
    np.savetxt(d / "nacl_sticks.csv", np.c_[sticks, inten], delimiter=",",
               header="# wavelength: 1.5406\ntwo_theta,intensity", comments="")
    return d


def _run(argv, capsys):
    """(exit status, stdout, stderr) of main(argv) in this process."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{err}"
    return lines[0]


def _cell_row(out: str) -> list[str]:
    row = next(ln for ln in out.splitlines() if ln.strip().startswith("1. c"))
    return row.split()


def test_pattern_file_gives_the_cubic_cell_and_extinction_group(files, capsys, tmp_path):
    out_csv = tmp_path / "cells.csv"
    code, out, err = _run([files / "nacl.xy", "--csv", out_csv], capsys)
    assert code == 0, err
    assert "λ = 1.5406 Å (from file)" in out  # the wavelength used is said, never assumed
    assert "  crystal system: " in out  # cubic: asserted on the exact sticks below (picked peaks
    row = _cell_row(out)                # may hold a spurious line that a lower system also fits)
    assert row[1] == "cF" and abs(float(row[2]) - A_NACL) < 0.005
    assert "Fm-3m" in next(ln for ln in out.splitlines() if ln.strip().startswith("1. group"))
    assert "1 indexed (0 without a cell), 0 failed" in out
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 1 and rows[0]["crystal_system"] and rows[0]["bravais"] == "cF"
    assert abs(float(rows[0]["a"]) - A_NACL) < 0.005 and "Fm-3m" in rows[0]["sgs1"].split()
    assert {"M20", "F_N", "zero", "volume", "ext1", "ext2", "ext3", "gamma"} <= set(rows[0])


def test_sticks_and_wavelength(files, capsys):
    code, out, err = _run([files / "nacl_sticks.csv", "--sticks", "--wavelength", "1.5406", "--top", "2"],
                          capsys)
    assert code == 0, err
    assert "--wavelength" not in err
    assert "crystal system: cubic" in out
    row = _cell_row(out)
    assert row[1] == "cF" and abs(float(row[2]) - A_NACL) < 1e-3
    assert not any(ln.strip().startswith("3.") for ln in out.splitlines())  # --top 2


def test_named_bad_files_stop_with_file_line_and_fix(files, capsys, tmp_path):
    nan = tmp_path / "nan.xy"
    nan.write_text("10 5\n10.02 nan\n10.04 7\n")
    unsorted = tmp_path / "unsorted.xy"
    unsorted.write_text("10 5\n10.02 6\n10.01 7\n")
    few = tmp_path / "few.xy"
    few.write_text("".join(f"{t} 100\n" for t in (20, 30, 40, 50)))
    cases = [(tmp_path / "missing.xy", [], "missing.xy: not found"),
             (nan, [], "nan.xy:2: NaN/inf"),
             (unsorted, [], "unsorted.xy:3: decreasing (unsorted) 2θ"),
             (few, ["--sticks"], "few.xy: only 4 peaks found; indexing needs at least")]
    for path, extra, expect in cases:
        # the good file comes first: nothing is indexed or printed before the bad one stops the run
        code, out, err = _run([files / "nacl_sticks.csv", path, "--sticks", "--wavelength", "1.5406", *extra],
                              capsys)
        line = _error_line(err)
        assert code == 2 and expect in line and "Fix:" in line, (path, line)
        assert "crystal system" not in out


@pytest.mark.parametrize("argv,expect", [(["--wavelength", "0"], "--wavelength"),
                                         (["--wavelength", "nan"], "--wavelength"),
                                         (["--csv", "/nonexistent_folder_xrd/out.csv"], "does not exist"),
                                         (["--top", "0"], "--top")])
def test_bad_flags_are_one_line_before_any_work(files, capsys, argv, expect):
    code, out, err = _run([files / "nacl.xy", *argv], capsys)
    assert code == 2 and expect in _error_line(err)
    assert out == ""


def test_folder_skips_unreadable_files_and_exits_1(files, capsys, tmp_path):
    d = tmp_path / "folder"
    d.mkdir()
    (d / "a_good.csv").write_text((files / "nacl_sticks.csv").read_text())
    (d / "b_text.txt").write_text("this is not a pattern\njust notes\n")
    (d / "c_few.xy").write_text("".join(f"{t} 100\n" for t in (20, 30, 40)))
    (d / "notes.md").write_text("ignored: not a pattern extension")
    out_csv = tmp_path / "folder.csv"
    code, out, err = _run([d, "--sticks", "--csv", out_csv], capsys)
    assert code == 1
    assert "crystal system: cubic" in out
    assert "1 indexed (0 without a cell), 2 failed (b_text.txt, c_few.xy; reasons above)" in out
    assert "skipped: " in err and "b_text.txt" in err and "c_few.xy" in err
    assert [r["file"] for r in csv.DictReader(out_csv.open())] == [str(d / "a_good.csv")]


def test_python_dash_m_runs_without_torch(files):
    code = ("import runpy, sys; sys.argv = ['indexing', sys.argv[1], '--sticks']; "
            "runpy.run_module('indexing', run_name='__main__'); "
            "print('TORCH', 'torch' in sys.modules)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", code, str(files / "nacl_sticks.csv")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "crystal system: cubic" in p.stdout and "TORCH False" in p.stdout


def test_every_flag_refuses_out_of_range_values(capsys):
    from indexing.cli import get_parser
    from tests.test_cli_flags import assert_one_line_usage_error, walk

    pairs = walk(get_parser(), ["p.xy"])
    assert {f for f, _ in pairs} == {"--wavelength", "--top", "--csv", "--workers", "--engine"}
    for flag, value in pairs:
        err = assert_one_line_usage_error(lambda a: get_parser().parse_args(a), ["p.xy", f"{flag}={value}"],
                                          capsys)
        assert err.startswith("python -m indexing") and flag in err, err
