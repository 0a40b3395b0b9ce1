"""Patterns in any wavelength (issue 25): the same crystal at Cu Kα1, Mo Kα1 and 0.4 Å, written as
.xrdml, .ras and .xy, gives the same model input (resampled by d-spacing), the same predictions and
the same indexed cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import predict
import train
from benchmarks.wavelength_agreement import two_theta_window, write_crystal
from tests.conftest import TINY_GRID, tiny_args
from tests.fixtures.instrument.make_fixtures import A_NACL, nacl_lines
from tests.test_index_cli import _run
from utils.grid import GridSpec
from utils.pattern_io import read_pattern

ROOT = Path(__file__).resolve().parents[1]
GRID = GridSpec(**TINY_GRID)


def _crystal(row: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(d, heights) of one crystal of the built-in test split (sticks at Cu Kα1)."""
    raw = np.load(ROOT / "data" / "xrd_mp_default" / "peaks_test.npz")
    off = raw["offsets"]
    tt, inten = raw["two_theta"][off[row]:off[row + 1]], raw["intensity"][off[row]:off[row + 1]]
    return float(raw["wavelength"]) / (2 * np.sin(np.radians(tt) / 2)), inten


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    d, h = _crystal()
    return write_crystal(tmp_path_factory.mktemp("wl"), "c7", d, h, GRID, seed=None)


def test_windows_cover_the_same_d_range():
    for lam in (1.5406, 0.7093, 0.4):
        lo, hi = two_theta_window(GRID, lam)
        d_hi, d_lo = (lam / (2 * np.sin(np.radians([lo, hi]) / 2)))
        assert d_hi >= 17.6 and d_lo <= 1.09


def test_files_carry_their_wavelength_and_the_model_inputs_agree(three):
    assert [p.suffix for p in three] == [".xrdml", ".ras", ".xy"]
    assert [read_pattern(p).wavelength.ka1 for p in three] == [1.5406, 0.7093, 0.4]
    xs = [predict.read_on_grid(p, GRID, None)[0] for p in three]
    for x in xs[1:]:
        assert np.corrcoef(xs[0], x)[0, 1] > 0.995 and np.abs(xs[0] - x).max() < 0.1


@pytest.mark.slow
def test_predictions_agree_at_three_wavelengths(three, tmp_path):
    from tests.conftest import write_tiny_dataset

    write_tiny_dataset(tmp_path / "data")
    # 20 epochs (0.3 s each): a model whose predictions depend on the pattern, so agreement means something
    res = train.main(tiny_args(tmp_path / "data", tmp_path / "Log", "--epochs", "20", "--method", "ce",
                               "--run_dir", str(tmp_path / "run")))
    rows, failures = predict.predict_files(str(Path(res["run_dir"]) / "best.pt"), three, topk=3, index=False)
    assert not failures and len(rows) == 3
    assert len({r["top"][0][0] for r in rows}) == 1 and len({r["crystal_system"] for r in rows}) == 1
    for r in rows[1:]:
        assert abs(rows[0]["top"][0][2] - r["top"][0][2]) < 0.05
    other = write_crystal(tmp_path, "c100", *_crystal(100), GRID, seed=None)[:1]   # another crystal
    assert predict.predict_files(str(Path(res["run_dir"]) / "best.pt"), other, topk=1, index=False)[0][0][
        "top"][0] != rows[0]["top"][0]
    assert [r["read_as"].split(",")[0] for r in rows] == ["xrdml", "ras", "xy"]


def test_the_indexing_cli_finds_the_same_cell_at_three_wavelengths(tmp_path, capsys):
    d, h = nacl_lines(d_min=1.05)
    files = write_crystal(tmp_path, "nacl", d, h, GridSpec(), n_points=4000, seed=1)
    code, out, err = _run([*files, "--top", "1"], capsys)
    assert code == 0, err
    rows = [ln.split() for ln in out.splitlines() if ln.strip().startswith("1. cF")]
    assert len(rows) == 3 and all(abs(float(r[2]) - A_NACL) < 0.003 for r in rows), out
    assert "λ = 0.7093 Å, Kα2 0.71359 Å" in out and "λ = 0.4 Å (from file)" in out
