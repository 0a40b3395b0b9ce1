"""A second phase (issue 25): strong lines that the best cell leaves unexplained are flagged, and
indexed on their own when there are enough; a single phase is not flagged."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from indexing.api import analyse
from indexing.phases import SecondPhase, explained, second_phase
from indexing.picking import pick_peaks
from tests.test_index_cli import A_NACL, _run, render_fcc
from utils.pattern_io import Wavelength
from utils.pattern_io.writers import write_xy

A_AU = 4.08  # Å, a second F-cubic phase whose lines fall between NaCl's


def _peaks(w: float):
    x, y, _, _ = render_fcc(A_NACL, seed=0)
    if w:
        _, y2, _, _ = render_fcc(A_AU, seed=1)
        y = (1 - w) * y + w * y2
    return x, y, pick_peaks(x, y, 1.5406, source="mix.xy")


@pytest.fixture(scope="module")
def mixture():
    x, y, pk = _peaks(0.3)
    ev = analyse(pk)
    return x, y, pk, ev


def test_the_main_phase_is_indexed_and_the_second_flagged_and_indexed(mixture):
    _, _, pk, ev = mixture
    best = ev.index.best
    assert best.lattice.bravais == "cF" and abs(best.lattice.conventional[0] - A_NACL) < 0.005
    sp = second_phase(pk, best.lattice.conventional, best.lattice.bravais, best.fit.zero)
    assert sp.flagged and len(sp.strong) >= 3 and 0.05 < sp.share < 0.6
    au = 1.5406 / (2 * np.sin(np.radians(sp.two_theta) / 2))   # the unexplained lines: Au (111), (200)
    assert np.allclose(np.sort(sp.d)[::-1][:2], [A_AU / np.sqrt(3), A_AU / 2], atol=0.01)
    assert np.allclose(au, sp.d, atol=0.01)
    second = sp.evidence.index.best
    assert second.lattice.bravais == "cF" and abs(second.lattice.conventional[0] - A_AU) < 0.01
    msg = sp.message()
    assert msg.startswith(f"{len(sp.strong)} peaks (largest at 2θ {sp.two_theta[0]:.2f}°")
    assert "are not explained: a second phase? The " in msg and "index on their own as cF a=4.08" in msg
    # 2θ shown at another wavelength (the file's): the same d-spacings
    mo = sp.message(wavelength=0.7093)
    assert f"{2 * np.degrees(np.arcsin(0.7093 / (2 * sp.d[0]))):.2f}°" in mo


def test_a_single_phase_is_not_flagged():
    _, _, pk = _peaks(0.0)
    best = analyse(pk).index.best
    assert explained(pk, best.lattice.conventional, best.lattice.bravais, best.fit.zero).all()
    sp = second_phase(pk, best.lattice.conventional, best.lattice.bravais, best.fit.zero)
    assert not sp.flagged and sp.message() == "" and sp.evidence is None


def test_thresholds_and_degenerate_inputs(mixture):
    _, _, pk, ev = mixture
    best = ev.index.best
    strict = second_phase(pk, best.lattice.conventional, best.lattice.bravais, best.fit.zero, min_count=50)
    assert not strict.flagged and strict.evidence is None          # below the count: not flagged
    no_rest = second_phase(pk, best.lattice.conventional, best.lattice.bravais, best.fit.zero,
                           index_rest=False)
    assert no_rest.flagged and no_rest.evidence is None
    nan = second_phase(pk, np.full(6, np.nan), "cF")
    assert isinstance(nan, SecondPhase) and not nan.flagged


def test_the_cli_says_so_and_writes_the_columns(mixture, tmp_path, capsys):
    x, y, _, _ = mixture
    f = write_xy(tmp_path / "mix.xy", x, y, Wavelength(1.5406))
    code, out, err = _run([f, "--csv", tmp_path / "c.csv", "--top", "1"], capsys)
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if "second phase?" in ln)
    assert "are not explained: a second phase?" in line and "cF a=4.08" in line
    row = next(csv.DictReader((tmp_path / "c.csv").open()))
    assert int(row["unexplained_peaks"]) >= 3 and len(row["unexplained_two_theta"].split()) == 3
