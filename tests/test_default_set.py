"""The shipped default set: every split carries the crystal structures, and the structures are the
ones the sticks came from (recomputed sticks equal the stored ones), so lattice augmentation,
which renders from those structures, trains on the crystals the labels belong to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datasets.peaks import PeakTable
from datasets.rendering.lattice_aug import family_sticks
from datasets.synthesis.jobs import compact_peaks
from datasets.synthesis.reflections import families_of_arrays, form_factor_table, merge_coincident

ROOT = Path(__file__).resolve().parents[1] / "data" / "xrd_mp_default"


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_every_split_carries_its_structures(split):
    t = PeakTable.load(ROOT / f"peaks_{split}.npz")
    assert t.structures is not None and len(t.structures) == len(t)
    np.testing.assert_allclose(t.structures.cell, t.meta["lattice"], rtol=1e-6)
    assert np.all(np.diff(t.structures.offsets) >= 1)


def test_structures_reproduce_the_stored_sticks():
    info = json.loads((ROOT / "dataset.json").read_text())
    t = PeakTable.load(ROOT / "peaks_train.npz")
    rng = np.random.default_rng(0)
    for i in rng.choice(len(t), 12, replace=False):
        cell, frac, z = t.structures.structure(int(i))
        fam = families_of_arrays(cell, frac, z, None, t.wavelength, 90.0, g_margin=1.0)
        tt, it = family_sticks(fam["hkl"], fam["mult"], fam["sf"], fam["z"],
                               form_factor_table()[fam["z"].astype(np.int64)], cell, t.wavelength)
        # the simulator's own steps: merge at 1e-5° (pymatgen's tolerance), drop sticks < 0.5 %
        tt, it = compact_peaks(*merge_coincident(tt.astype(np.float64), it.astype(np.float64)),
                               info["settings"]["min_intensity"])
        tt, it = merge_coincident(tt.astype(np.float64), it.astype(np.float64), tol=5e-4)
        st, si = merge_coincident(*(a.astype(np.float64) for a in t.peaks(int(i))), tol=5e-4)
        strong = si >= 1.0
        j = np.clip(np.searchsorted(tt, st[strong]), 1, len(tt) - 1)
        j = np.where(np.abs(tt[j - 1] - st[strong]) < np.abs(tt[j] - st[strong]), j - 1, j)
        np.testing.assert_allclose(tt[j], st[strong], atol=2e-3, err_msg=f"pattern {i}")
        np.testing.assert_allclose(it[j], si[strong], rtol=0.01, atol=0.02, err_msg=f"pattern {i}")
    assert info["settings"]["min_intensity"] == 0.5
