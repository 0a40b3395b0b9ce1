"""The stream job's shared path (one enumeration of reflections, the generator's spglib rotations)
equals the path it replaced (``benchmarks/legacy_stream_job.py``: sticks and families from two
enumerations, a second spglib call): same crystals, bitwise-same sticks and families, for crystals
of every crystal system; the simulator's job (``JobRunner`` without families) is unchanged too."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyxtal")
pytest.importorskip("spglib")

from benchmarks.bench_stream_job import OPTS, same  # noqa: E402
from benchmarks.legacy_stream_job import families_of_arrays as old_families  # noqa: E402
from benchmarks.legacy_stream_job import peaks_of_arrays as old_peaks  # noqa: E402
from benchmarks.legacy_stream_job import run_job, stream_job  # noqa: E402
from datasets.synthesis.jobs import JobRunner  # noqa: E402
from datasets.synthesis.plan import draw_job, load_mp_table, rows_by_group  # noqa: E402
from datasets.synthesis.reflections import G_MARGIN, families_of_arrays, sticks_and_families  # noqa: E402
from datasets.synthesis.stream import StreamJob, stream_seed  # noqa: E402
from datasets.synthesis.structures import mp_table_path  # noqa: E402

# triclinic, monoclinic, orthorhombic, tetragonal, trigonal (R, hexagonal axes), hexagonal, cubic (F)
GROUPS = (2, 14, 62, 139, 166, 194, 225)
FAM_KEYS = ("cell", "hkl", "mult", "sf", "z")


def _jobs(groups=GROUPS, per_group: int = 2, seed: int = 3):
    table = load_mp_table(mp_table_path())
    cand = rows_by_group(table, 60)
    return [draw_job("train", k * 100 + i, g, cand[g], stream_seed(seed, 0))
            for k, g in enumerate(groups) for i in range(per_group)]


@pytest.mark.parametrize("sg", GROUPS)
def test_stream_job_equals_old_path(sg):
    new = StreamJob(JobRunner(mp_table_path(), OPTS), OPTS["wavelength"], OPTS["two_theta_range"][1])
    for job in _jobs((sg,)):
        a = stream_job(mp_table_path(), OPTS, OPTS["wavelength"], OPTS["two_theta_range"][1], job)
        b = new(job)
        assert a["ok"] and b["ok"], (a["errors"], b["errors"])
        assert same(a, b), f"space group {sg}, job {job.index}"
        assert b["families"]["sf"].dtype == np.float32 and len(b["families"]["hkl"]) > len(b["two_theta"])


def test_simulator_job_unchanged():
    """``python -m datasets.simulate`` runs ``JobRunner.__call__``: results as before, no families."""
    runner = JobRunner(mp_table_path(), OPTS)
    for job in _jobs(per_group=1):
        a, b = run_job(mp_table_path(), OPTS, job), runner(job)
        assert "families" not in b
        assert a["ok"] == b["ok"] and a["formula"] == b["formula"] and a["lattice"] == b["lattice"]
        for k in ("two_theta", "intensity", "st_frac", "st_z"):
            assert np.array_equal(a[k], b[k]), k


def test_pyxtal_placer_and_other_wavelength():
    """Without the fast placer's rotations (one spglib call, shared) and with families at another
    wavelength than the sticks (two enumerations, still one spglib call), results equal the old."""
    for opts, wl in (({**OPTS, "placer": "pyxtal"}, OPTS["wavelength"]), (OPTS, 1.0)):
        new = StreamJob(JobRunner(mp_table_path(), opts), wl, 90.0)
        for job in _jobs((14, 166), per_group=1):
            a, b = stream_job(mp_table_path(), opts, wl, 90.0, job), new(job)
            assert a["ok"] and b["ok"], (a["errors"], b["errors"])
            assert same(a, b), (opts.get("placer"), wl, job.index)


@pytest.mark.parametrize("g_margin,tt_fam", [(G_MARGIN, 90.0), (1.0, 60.0), (0.9, 90.0), (1.0, 120.0)])
def test_sticks_and_families_equal_separate_calls(g_margin, tt_fam):
    """Either radius may be the larger one; spglib is asked once (no rotations given)."""
    rng = np.random.default_rng(0)
    cells = {"tetragonal": (6.1, 6.1, 9.3, 90, 90, 90), "hexagonal": (5.2, 5.2, 8.4, 90, 90, 120),
             "monoclinic": (5.4, 9.1, 7.7, 90, 107.3, 90)}
    for cell in cells.values():
        frac = rng.random((5, 3))
        z = np.array([8, 8, 26, 14, 3])
        (tt, it), fam = sticks_and_families(cell, frac, z, None, 1.5406, (5.0, 90.0), tt_fam, g_margin,
                                            min_rel=0.0025)
        t0, i0 = old_peaks(cell, frac, z, None, 1.5406, (5.0, 90.0))
        f0 = old_families(cell, frac, z, None, 1.5406, tt_fam, g_margin, min_rel=0.0025)
        f1 = families_of_arrays(cell, frac, z, None, 1.5406, tt_fam, g_margin, min_rel=0.0025)
        assert np.array_equal(tt, t0) and np.array_equal(it, i0)
        for k in FAM_KEYS:
            assert np.array_equal(fam[k], f0[k]) and np.array_equal(f1[k], f0[k]), k
