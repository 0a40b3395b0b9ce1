"""Indexing: known cells of every crystal system and centring recovered from their sticks, with
missing, extra and shifted lines; property tests on random cells; bad input.

Sticks are made here from the cell alone (all reflections the centring allows, random Wilson-like
intensities), independently of the simulator, so the tests check the search, not its data.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from indexing.index import index_peaks
from indexing.peaks import IndexingInputError, PeakList, from_sticks
from indexing.refine import CENTRINGS
from utils.lattice import cell_volume, hkl_box, hkl_terms, metric_params, q_to_two_theta, reciprocal_metric

WL = 1.5406
FACTOR = {"P": 1, "I": 2, "C": 2, "A": 2, "B": 2, "F": 4, "R": 3}


def make_sticks(cell, centring="P", n_lines=30, seed=0, zero=0.0, missing=0.0, extra=0.0):
    """A measured-like peak list of ``cell``: the first ``n_lines`` lines after merging."""
    rng = np.random.default_rng(seed)
    p = metric_params(reciprocal_metric(np.asarray(cell, float)))
    hkl = hkl_box(12, 12, 12)
    q = hkl_terms(hkl) @ p
    keep = CENTRINGS[centring](*hkl.T) & (q < 0.55)
    tt = q_to_two_theta(q[keep], WL)
    inten = rng.exponential(1.0, tt.size) + 0.05
    pl = from_sticks(tt, inten, WL, min_rel=0.0)
    tt, it = pl.two_theta[:n_lines], pl.intensity[:n_lines]
    if missing:
        drop = rng.random(tt.size) < missing
        drop[:2] = False
        tt, it = tt[~drop], it[~drop]
    if extra:
        n_extra = max(1, int(round(extra * tt.size)))
        tt = np.r_[tt, rng.uniform(tt.min(), tt.max(), n_extra)]
        it = np.r_[it, rng.uniform(0.05, 0.3, n_extra)]
    return PeakList(tt + zero, it, WL, np.full(tt.size, 0.003))


def primitive_volume(cell, centring):
    return cell_volume(np.asarray(cell, float)) / FACTOR[centring]


CASES = [
    ("cubic P", (4.1, 4.1, 4.1, 90, 90, 90), "P", "cubic"),
    ("cubic I", (6.3, 6.3, 6.3, 90, 90, 90), "I", "cubic"),
    ("cubic F", (5.43, 5.43, 5.43, 90, 90, 90), "F", "cubic"),
    ("tetragonal P", (4.3, 4.3, 7.1, 90, 90, 90), "P", "tetragonal"),
    ("tetragonal I, c >> a", (3.9, 3.9, 19.7, 90, 90, 90), "I", "tetragonal"),
    ("hexagonal P", (3.2, 3.2, 5.2, 90, 90, 120), "P", "hexagonal"),
    ("rhombohedral (hex axes)", (4.9, 4.9, 13.6, 90, 90, 120), "R", "trigonal"),
    ("orthorhombic P", (5.1, 6.3, 7.7, 90, 90, 90), "P", "orthorhombic"),
    ("orthorhombic C", (5.4, 9.1, 4.6, 90, 90, 90), "C", "orthorhombic"),
    ("orthorhombic I", (4.7, 5.9, 8.8, 90, 90, 90), "I", "orthorhombic"),
    ("orthorhombic F", (5.8, 7.3, 10.3, 90, 90, 90), "F", "orthorhombic"),
    ("monoclinic P", (5.2, 6.1, 7.4, 90, 104.5, 90), "P", "monoclinic"),
    ("monoclinic C", (9.3, 5.4, 6.2, 90, 112.0, 90), "C", "monoclinic"),
    ("near-tetragonal orthorhombic", (5.00, 5.06, 7.3, 90, 90, 90), "P", "orthorhombic"),
]


@pytest.mark.parametrize("name,cell,centring,system", CASES, ids=[c[0] for c in CASES])
def test_known_cells_recovered(name, cell, centring, system):
    res = index_peaks(make_sticks(cell, centring))
    best = res.best
    assert best is not None, f"{name}: no cell"
    assert best.system == system, f"{name}: {best.describe()}"
    assert best.lattice.volume_primitive == pytest.approx(primitive_volume(cell, centring), rel=5e-3)
    assert best.n_indexed == best.n_lines
    assert best.m20 > 20


def test_triclinic_cell_recovered():
    cell = (5.1, 6.2, 7.3, 81.0, 77.0, 69.0)
    res = index_peaks(make_sticks(cell, "P", n_lines=30), exhaustive=True)
    assert res.best is not None and res.best.system == "triclinic", res.best and res.best.describe()
    assert res.best.lattice.volume_primitive == pytest.approx(primitive_volume(cell, "P"), rel=5e-3)


def test_supercell_trap_prefers_the_true_cell():
    """A cell with every line indexed by a doubled-c cell too: the smaller cell must win (M20)."""
    cell = (4.0, 4.0, 6.0, 90, 90, 90)
    res = index_peaks(make_sticks(cell, "P"), exhaustive=True)
    assert res.best.lattice.volume_primitive == pytest.approx(96.0, rel=5e-3)
    doubled = [c for c in res.candidates if abs(c.lattice.volume_primitive / 192.0 - 1) < 5e-3]
    assert all(c.score < res.best.score for c in doubled)


@pytest.mark.parametrize("case", ["missing 10 %", "extra 10 %", "zero shift 0.05°"])
def test_robust_to_missing_extra_and_shifted_lines(case):
    cell, cen = (5.1, 6.3, 7.7, 90, 90, 90), "P"
    kw = {"missing 10 %": dict(missing=0.1), "extra 10 %": dict(extra=0.1),
          "zero shift 0.05°": dict(zero=0.05)}[case]
    res = index_peaks(make_sticks(cell, cen, seed=3, **kw))
    best = res.best
    assert best is not None and best.system == "orthorhombic", best and best.describe()
    assert best.lattice.volume_primitive == pytest.approx(primitive_volume(cell, cen), rel=5e-3)
    if "zero" in case:
        assert best.fit.zero == pytest.approx(0.05, abs=0.01)


# derandomize: the same examples on every run (CI must not fail on a draw; the pseudo-symmetric
# cells a random draw can hit are pinned in test_pseudo_hexagonal_orthorhombic_cells below)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(a=st.floats(3.0, 9.0), c_over_a=st.floats(0.4, 3.0),
       system=st.sampled_from(["tetragonal", "hexagonal"]), seed=st.integers(0, 1000))
def test_random_uniaxial_cells(a, c_over_a, system, seed):
    """Property: a random tetragonal/hexagonal cell is found with its volume and every line
    indexed. Cells with a simple rational c/a (p/q, q ≤ 4) are left out: their lines are exactly
    those of a higher-symmetry supercell (c/a = 2: a cubic cell of edge c), which a peak list
    cannot tell apart."""
    assume(all(abs(c_over_a * qq - round(c_over_a * qq)) > 0.02 for qq in (1, 2, 3, 4)))
    gamma = 120 if system == "hexagonal" else 90
    cell = (a, a, a * c_over_a, 90, 90, gamma)
    assume(len(make_sticks(cell, "P", seed=seed)) >= 10)
    res = index_peaks(make_sticks(cell, "P", seed=seed))
    best = res.best
    assert best is not None and best.n_indexed == best.n_lines
    assert best.lattice.volume_primitive <= primitive_volume(cell, "P") * 1.005


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(abc=st.tuples(st.floats(3.5, 9.0), st.floats(3.5, 9.0), st.floats(3.5, 9.0)),
       seed=st.integers(0, 99))
def test_random_orthorhombic_cells(abc, seed):
    ratios = [abc[i] / abc[j] for i in range(3) for j in range(3) if i != j]
    assume(all(abs(r * qq - round(r * qq)) > 0.02 for r in ratios for qq in (1, 2, 3)))
    cell = (*abc, 90, 90, 90)
    res = index_peaks(make_sticks(cell, "P", seed=seed))
    best = res.best
    assert best is not None and best.n_indexed == best.n_lines
    assert best.lattice.volume_primitive <= primitive_volume(cell, "P") * 1.005
    assert best.system in ("orthorhombic", "tetragonal", "cubic")


@pytest.mark.xfail(strict=True, reason="known limit: metric coincidences of these orthorhombic cells "
                   "let a hexagonal cell index the first 20 lines (found by a random draw of "
                   "test_random_orthorhombic_cells on 2026-12-07)")
@pytest.mark.parametrize("abc", [(6.0, 6.5, 7.5), (4.0, 6.5, 7.5)])
def test_pseudo_hexagonal_orthorhombic_cells(abc):
    """(6.0, 6.5, 7.5) → hP a = 15.0, c = 6.0 (4× the volume) indexing all 20 lines; (4.0, 6.5,
    7.5) → a hexagonal cell indexing 19 of 20. Passing would mean the ranking prefers the true
    orthorhombic cell (remove the xfail then)."""
    cell = (*abc, 90, 90, 90)
    best = index_peaks(make_sticks(cell, "P", seed=0)).best
    assert best is not None and best.n_indexed == best.n_lines
    assert best.lattice.volume_primitive <= primitive_volume(cell, "P") * 1.005
    assert best.system in ("orthorhombic", "tetragonal", "cubic")


def test_too_few_peaks_is_a_clear_error():
    pl = PeakList([10.0, 20.0, 30.0], [1, 1, 1], WL, 0.003, source="x.xy")
    with pytest.raises(IndexingInputError, match=r"x\.xy.*only 3 peaks.*Fix"):
        index_peaks(pl)


@pytest.mark.parametrize("bad,match", [
    (dict(two_theta=[10.0, np.nan, 30.0]), "NaN"),
    (dict(intensity=[1.0, 2.0]), "intensities"),
    (dict(wavelength=0.0), "wavelength"),
    (dict(two_theta=[10.0, 200.0, 30.0]), "0 < 2θ < 180"),
])
def test_bad_peak_lists_name_the_source(bad, match):
    kw = dict(two_theta=[10.0, 20.0, 30.0], intensity=[1.0, 2.0, 3.0], wavelength=WL,
              sigma_two_theta=0.003, source="bad.xy")
    kw.update(bad)
    with pytest.raises(IndexingInputError, match=match) as exc:
        PeakList(**kw)
    assert "bad.xy" in str(exc.value) and "Fix" in str(exc.value)


def test_merging_sticks_at_the_resolution():
    pl = from_sticks([10.0, 10.01, 20.0, 30.0], [1.0, 1.0, 0.001, 2.0], WL, resolution=0.02, min_rel=0.01)
    np.testing.assert_allclose(pl.two_theta, [10.005, 30.0])
    np.testing.assert_allclose(pl.intensity, [2.0, 2.0])


def test_evidence_vector_ranks_compatible_groups_above_excluded_ones():
    """The extinction block is relative to the best group: groups the metric excludes sit at the
    floor, below every compatible one (a raw floor would lift them above large negative sums)."""
    from indexing.api import EVIDENCE_DIM, LL_FLOOR, analyse
    from utils.sg_tables import CRYSTAL_SYSTEMS, SG_TO_CS, extinction_groups

    ev = analyse(make_sticks((5.43, 5.43, 5.43, 90, 90, 90), "F", n_lines=40))
    v = ev.vector()
    assert v.shape == (EVIDENCE_DIM,) and v[-1] == 1.0
    cs, ext = v[:7], v[7:106]
    assert CRYSTAL_SYSTEMS[int(np.argmax(cs))] == "cubic" and cs.max() == 0.0
    assert ext.max() == 0.0
    cubic_groups = set(extinction_groups()[SG_TO_CS == 6])
    best = int(np.argmax(ext)) + 1
    assert best in cubic_groups
    non_cubic = [g - 1 for g in range(1, 100) if g not in cubic_groups]
    assert np.all(ext[non_cubic] == LL_FLOOR)
