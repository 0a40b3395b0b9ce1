"""Lattice augmentation in the peaks reader: on by default for tables with structures, seeded,
training only, families derived once and cached, old tables and bad requests handled clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("pymatgen")
from pymatgen.core import Lattice, Structure  # noqa: E402

from datasets.crystals import StructureTable  # noqa: E402
from datasets.peaks import PeakTable  # noqa: E402
from datasets.readers.peak_lists import build_peaks_bundle  # noqa: E402
from datasets.synthesis.reflections import structure_arrays, structure_peaks  # noqa: E402
from utils.errors import DataError  # noqa: E402

CRYSTALS = [
    (225, (5.64,) * 3 + (90,) * 3, ["Na", "Cl"], [(0, 0, 0), (0.5, 0.5, 0.5)]),
    (62, (10.2, 6.0, 4.7, 90, 90, 90), ["Mg", "Si", "O"],
     [(0, 0, 0), (0.09, 0.25, 0.43), (0.16, 0.03, 0.28)]),
    (14, (5.4, 9.1, 7.7, 90, 107.3, 90), ["Fe", "O"], [(0.13, 0.21, 0.09), (0.31, 0.44, 0.27)]),
    (194, (3.2, 3.2, 5.2, 90, 90, 120), ["Mg"], [(1 / 3, 2 / 3, 0.25)]),
]


def _table(with_structures: bool = True) -> PeakTable:
    tts, its, sgs, cells, fracs, zs = [], [], [], [], [], []
    for sg, cell, el, xyz in CRYSTALS:
        s = Structure.from_spacegroup(sg, Lattice.from_parameters(*cell), el, xyz)
        tt, it = structure_peaks(s)
        c, _, f, z, _ = structure_arrays(s)
        tts.append(tt), its.append(it), sgs.append(sg), cells.append(c), fracs.append(f), zs.append(z)
    t = PeakTable.from_lists(tts, its, sgs)
    if with_structures:
        t.structures = StructureTable.from_lists(cells, fracs, zs)
    return t.validate()


def _write(root, with_structures=True):
    t = _table(with_structures)
    t.save(root / "peaks_train.npz")
    t.save(root / "peaks_test.npz")


def _batch(bundle, epoch=0):
    c = bundle.train_collate
    c.set_epoch(epoch)
    return c([bundle.train[i] for i in range(len(bundle.train))])["x"]


def test_on_by_default_seeded_and_training_only(tmp_path):
    _write(tmp_path)
    on = build_peaks_bundle(tmp_path, seed=3)
    assert on.spec["lattice_aug"]["strain"] == pytest.approx(0.06)
    assert list((tmp_path / ".cache").glob("families_train_*.npz")), "families are cached"
    off = build_peaks_bundle(tmp_path, seed=3, lattice_aug=False)
    assert off.spec["lattice_aug"] is None
    a, b = _batch(on), _batch(build_peaks_bundle(tmp_path, seed=3))  # second build: from the cache
    torch.testing.assert_close(a, b)  # same seed, same epoch -> same strained cells
    assert not torch.allclose(a, _batch(off), atol=1e-3)  # the cells did change
    assert not torch.allclose(a, _batch(on, epoch=1), atol=1e-3)  # a new cell every epoch
    # evaluation renders the stored sticks, untouched
    ev = [on.test[i] for i in range(len(on.test))]
    torch.testing.assert_close(on.eval_collate(ev)["x"], off.eval_collate(ev)["x"])
    assert "hkl" not in on.test[0]


def test_peak_positions_move_with_the_cell(tmp_path):
    """With only strain (no other augmentation), NaCl's strongest line moves by the cell factor."""
    from datasets.rendering.lattice_aug import LatticeAugment

    _write(tmp_path)
    bundle = build_peaks_bundle(tmp_path, seed=0)
    item = bundle.train[0]
    base_tt, base_it = item["two_theta"], item["intensity"]
    aug = LatticeAugment(strain=0.05, angle_deg=0.0)
    tt, it = aug.sticks(item, 7, 1.5406)
    ratio = np.sin(np.radians(base_tt[np.argmax(base_it)] / 2)) / np.sin(np.radians(tt[np.argmax(it)] / 2))
    assert 1 / 1.05 - 1e-6 <= ratio <= 1.05 + 1e-6 and abs(ratio - 1) > 1e-4


def test_old_tables_and_explicit_requests(tmp_path):
    _write(tmp_path, with_structures=False)
    assert build_peaks_bundle(tmp_path).spec["lattice_aug"] is None  # old format: still readable
    with pytest.raises(DataError, match="lattice_aug"):
        build_peaks_bundle(tmp_path, lattice_aug=True)


def test_structure_table_round_trip_and_subset(tmp_path):
    t = _table()
    t.save(tmp_path / "t.npz")
    back = PeakTable.load(tmp_path / "t.npz")
    for k in ("offsets", "z", "frac", "cell"):
        np.testing.assert_array_equal(getattr(back.structures, k), getattr(t.structures, k))
    sub = back.subset(np.array([2, 0]))
    np.testing.assert_array_equal(sub.structures.structure(0)[2], t.structures.structure(2)[2])
    np.testing.assert_array_equal(sub.structures.cell[1], t.structures.cell[0])
