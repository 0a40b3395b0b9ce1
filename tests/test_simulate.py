"""The built-in benchmark: sampling profile, composition, one real generation, resumability."""

from __future__ import annotations

import csv
import json
from collections import Counter

import numpy as np
import pytest

from datasets.peaks import PeakTable
from datasets.simulate import main
from datasets.synthesis.jobs import compact_peaks
from datasets.synthesis.plan import SPLIT_ID, load_mp_table, make_plan, train_counts
from datasets.synthesis.structures import (
    _balanced,
    draw_composition,
    fixed_sites,
    mp_table_path,
    wyckoff_sites,
)


@pytest.fixture(scope="module")
def table():
    return load_mp_table(mp_table_path())


def _naive_totals(path):
    tot = Counter()
    with open(path) as fh:
        for r in csv.DictReader(fh):
            tot[int(r["spg"])] += int(r["count"])
    return tot


def test_mp_table_profile(table):
    tot = _naive_totals(mp_table_path())
    assert sum(tot.values()) == 88678 and len(tot) == 225
    assert max(tot.values()) == tot[225] == 7765
    assert sum(v > 100 for v in tot.values()) == 97 and sum(v < 20 for v in tot.values()) == 60


def test_train_follows_mp_counts_and_eval_is_balanced(table):
    tot = _naive_totals(mp_table_path())
    jobs = make_plan(table, scale=0.05, val_per_class=2, test_per_class=3, max_atoms=60, seed=0)
    per = {s: Counter(j.sg for j in jobs if j.split == s) for s in ("train", "val", "test")}
    for g, n in tot.items():
        assert per["train"][g] == max(1, round(0.05 * n)), g
        assert per["val"][g] == 2 and per["test"][g] == 3
    assert set(per["train"]) == set(tot)  # every present group, nothing else
    tc = train_counts(np.bincount(table["spg"], weights=table["count"], minlength=231), 0.05)
    assert tc[225] == round(0.05 * 7765) and tc[1:].sum() == len([j for j in jobs if j.split == "train"])
    # indices are 0..n-1 per split, rows belong to their group and respect max_atoms when possible
    for s in ("train", "val", "test"):
        assert sorted(j.index for j in jobs if j.split == s) == list(range(sum(per[s].values())))
    for j in jobs:
        assert table["spg"][j.row] == j.sg
        small = table["n_atoms"][table["spg"] == j.sg].min()
        assert table["n_atoms"][j.row] <= max(60, small)


def test_rows_sampled_proportionally_to_mp_count(table):
    jobs = make_plan(table, scale=1.0, val_per_class=0, test_per_class=0, max_atoms=60, seed=1,
                     groups=[62])
    rows = np.flatnonzero((table["spg"] == 62) & (table["n_atoms"] <= 60))
    p = table["count"][rows] / table["count"][rows].sum()
    freq = Counter(j.row for j in jobs)
    emp = np.array([freq[r] for r in rows]) / len(jobs)
    top = np.argsort(-p)[:5]  # the frequent rows: binomial standard error ~ sqrt(p/n)
    assert np.all(np.abs(emp[top] - p[top]) < 4 * np.sqrt(p[top] / len(jobs)) + 1e-3)
    assert set(freq) <= set(rows.tolist())


def test_group_without_small_cell_uses_its_smallest_row(table):
    jobs = make_plan(table, scale=0.0, val_per_class=3, test_per_class=0, max_atoms=60, seed=0,
                     groups=[228])
    assert {int(table["n_atoms"][j.row]) for j in jobs} == {544}


def test_plan_deterministic_per_seed(table):
    a = make_plan(table, 0.02, 1, 1, 60, seed=5)
    b = make_plan(table, 0.02, 1, 1, 60, seed=5)
    c = make_plan(table, 0.02, 1, 1, 60, seed=6)
    assert a == b and [j.row for j in a] != [j.row for j in c]
    assert [j.sg for j in a] == [j.sg for j in c]  # only the rows change with the seed


def test_composition_one_element_per_site_and_charge_balance():
    rng = np.random.default_rng(0)
    # Wyckoff indices count from the general position: Pnma 8d, 4c, 4b, 4a; Fm-3m ... 8c, 4b, 4a
    assert wyckoff_sites(62, "0-1-1-3") == [("8d", 8), ("4c", 4), ("4c", 4), ("4a", 4)]
    assert wyckoff_sites(225, "9-10-11") == [("8c", 8), ("4b", 4), ("4a", 4)]
    sites = wyckoff_sites(62, "0-1-1-3")
    n_bal = 0
    for _ in range(50):
        species, num, per = draw_composition(rng, sites)
        assert sorted(lab for p in per for lab in p) == sorted(lab for lab, _ in sites)
        assert sum(num) == 20 and len(species) == len(set(species))
        anion = [e for e in species if e in ("O", "S", "Se", "Te", "F", "Cl", "Br", "I", "N")]
        n_bal += bool(anion) and _balanced(species, num, anion[0])
    assert n_bal >= 25  # families: 75 % ionic, and those are redrawn until balanced
    # fixed sites (no free coordinate) get distinct elements: 4a + 4b of one element is Pm-3m
    assert fixed_sites(225, "9-10-11") == [True, True, True]
    assert fixed_sites(62, "0-1-1-3") == [False, False, False, True]
    for _ in range(30):
        species, num, per = draw_composition(rng, wyckoff_sites(225, "9-10-11"), fixed_sites(225, "9-10-11"))
        assert len(species) == 3
    # hand-checked balance: Ca2MnO4 (2*2 + 4 = 8) yes, Ca3O7 (6 != 14) no
    assert _balanced(["Ca", "Mn", "O"], [2, 1, 4], "O")
    assert not _balanced(["Ca", "O"], [3, 7], "O")


def test_compact_peaks_threshold_and_rounding():
    tt = np.array([10.0001, 20.5, 30.25], np.float32)
    it = np.array([100.0, 0.4, 3.14159], np.float32)
    t2, i2 = compact_peaks(tt, it, 0.5)
    assert len(t2) == 2 and np.all(np.abs(t2 - tt[[0, 2]]) <= 2 ** -13)
    assert np.allclose(i2, [100.0, 3.14159], rtol=1e-3) and np.all(t2 * 4096 == np.round(t2 * 4096))


ARGS = ["--groups", "225,2,14", "--scale", "0.0015", "--val_per_class", "1", "--test_per_class", "1",
        "--shard_size", "4", "--seed", "3"]


def _run(out, *extra):
    return main(["--out", str(out), "--workers", "1", *ARGS, *extra])


@pytest.mark.slow
def test_tiny_generation_and_resume_gives_identical_checksums(tmp_path):
    full = _run(tmp_path / "full", "--workers", "2")  # the resumed run below uses 1 worker
    assert full["counts"]["val"] == 3 and full["counts"]["test"] == 3
    train = PeakTable.load(tmp_path / "full" / "peaks_train.npz")
    assert set(train.sg.tolist()) == {2, 14, 225} and len(train) == full["counts"]["train"]
    assert {"formula", "lattice", "source", "mp_n_atoms", "mp_wps", "seed"} <= set(train.meta)
    assert np.all(train.n_peaks() > 0) and np.all(train.intensity <= 100.0)
    # cubic Fm-3m cells: a == b == c and right angles
    lat = train.meta["lattice"][train.sg == 225]
    assert np.allclose(lat[:, 0], lat[:, 2], rtol=1e-4) and np.allclose(lat[:, 3:], 90.0, atol=1e-3)
    rows = list(csv.reader(open(tmp_path / "full" / "sg_count.csv")))
    assert len(rows) == 230 and int(rows[224][1]) == int((train.sg == 225).sum())
    info = json.loads((tmp_path / "full" / "dataset.json").read_text())
    assert info["n_present_groups"] == 3 and "by_crystal_system" in info["failure_report"]
    assert (tmp_path / "full" / "lmdb" / "train" / "data.mdb").is_file()
    # interrupted run: stop after 5 jobs (two shards of 4 ... one partial), then resume
    # (built in cut.partial beside the target: cut itself appears only when complete)
    assert _run(tmp_path / "cut", "--max_jobs", "5") is None
    assert not (tmp_path / "cut").exists()
    assert len(list((tmp_path / "cut.partial" / "shards").glob("shard_*.npz"))) == 2
    # settings that change results refuse to mix with existing shards
    from utils.errors import DataError

    with pytest.raises(DataError, match="other settings"):
        _run(tmp_path / "cut", "--tol_factor", "0.8")
    resumed = _run(tmp_path / "cut", "--npy")
    assert not (tmp_path / "cut.partial").exists()
    assert resumed["checksums_sha256"] == full["checksums_sha256"]  # same data, any worker count
    # the seed's NPY layout, rendered from the same peak lists
    a = np.load(tmp_path / "cut" / "xrd_mp_sg_test" / "test_xrd_mp_sg.npy", allow_pickle=False)
    test = PeakTable.load(tmp_path / "cut" / "peaks_test.npz")
    assert a.shape == (len(test),) and a["intensitys"].shape[1] == 8500
    assert np.array_equal(a["labels230"], test.sg) and np.allclose(a["intensitys"].max(1), 1.0)
    assert (tmp_path / "cut" / "xrd_mp_sg_train" / "test_val_xrd_mp_sg.npy").is_file()
    # a finished set is never overwritten without --overwrite
    with pytest.raises(SystemExit) as exc:
        _run(tmp_path / "cut", "--tol_factor", "0.8")
    assert exc.value.code == 2


def test_split_ids_are_stable():
    assert SPLIT_ID == {"train": 0, "val": 1, "test": 2}


def test_one_real_structure_is_deterministic_and_follows_the_row():
    from datasets.synthesis.reflections import structure_peaks
    from datasets.synthesis.structures import generate_structure

    a = generate_structure(225, "9-10-11", np.random.default_rng([7, 0, 1]))
    b = generate_structure(225, "9-10-11", np.random.default_rng([7, 0, 1]))
    assert a.structure is not None and a.formula == b.formula and a.lattice == b.lattice
    s = a.structure
    assert len(s) == 16 and s.get_space_group_info()[1] == 225  # 8c + 4b + 4a, still Fm-3m
    tt, it = structure_peaks(s)
    t2, i2 = structure_peaks(b.structure)
    assert np.array_equal(tt, t2) and np.array_equal(it, i2) and it.max() == pytest.approx(100.0)
    # Fm-3m (F-centring): only unmixed hkl reflect, at d = a / sqrt(h²+k²+l²)
    a0 = a.lattice[0]
    allowed = {h * h + k * k + m * m for h in range(13) for k in range(13) for m in range(13)
               if h % 2 == k % 2 == m % 2}
    n = (a0 * 2 * np.sin(np.radians(tt.astype(np.float64) / 2)) / 1.5406) ** 2
    assert np.all(np.abs(n - np.round(n)) < 0.02) and set(np.round(n).astype(int)) <= allowed


@pytest.mark.slow
def test_ray_engine_gives_the_local_engines_files(tmp_path):
    """``--engine ray`` (a local Ray instance on 127.0.0.1) writes the same data, byte for byte in
    every array, as the local process engine: structures depend on the job's seed only."""
    import subprocess
    import sys

    pytest.importorskip("ray")
    small = ["--groups", "2,225", "--scale", "0.0005", "--no-lmdb"]  # about ten jobs
    local = _run(tmp_path / "local", "--workers", "2", *small)
    cmd = [sys.executable, "-m", "datasets.simulate", "--out", str(tmp_path / "ray"), "--engine", "ray",
           "--workers", "2", *ARGS, *small]
    subprocess.run(cmd, check=True, timeout=600, capture_output=True)
    ray_info = json.loads((tmp_path / "ray" / "dataset.json").read_text())
    assert ray_info["checksums_sha256"] == local["checksums_sha256"]
    structures = PeakTable.load(tmp_path / "ray" / "peaks_train.npz").structures
    assert structures is not None and len(structures) == local["counts"]["train"]
