"""The same crystal at Cu Kα1, Mo Kα1 and a synchrotron wavelength: do the model inputs, the
predictions and the indexed cells agree once each file is read with its own wavelength?

    python -m benchmarks.wavelength_agreement --n 30 --ckpt RUN/best.pt [--json Log/wavelengths.json]

Per crystal of the built-in test split (every k-th of ``data/xrd_mp_default/peaks_test.npz``;
sticks at Cu Kα1 → d-spacings), one pattern per wavelength is rendered over the 2θ range that
covers the model grid's d-range (Cu 5–90° ↔ d 17.7–1.09 Å; Mo Kα1 0.7093 Å: 2.30–38.1°; 0.4 Å:
1.30–21.2°), 8500 points each, and written as the instrument would: Cu as PANalytical ``.xrdml``,
Mo as Rigaku ``.ras`` and the synchrotron pattern as ``.xy`` with a ``# wavelength: 0.4`` comment
(``utils.pattern_io.writers``). The rendering is the same pattern in d: pseudo-Voigt lines
(η = 0.5) of FWHM Δd/d = 2.5·10⁻³ (0.08° at 2θ = 30° for Cu) with the sticks' heights, a flat
background and Poisson counts; Lorentz–polarisation and instrument resolution, which do change with
the wavelength in a real measurement, are *not* varied (the reader does not correct them; RESULTS.md
says so). Each file is then read by ``predict.py``'s path (``predict.read_on_grid``: format,
wavelength from the file, resampling by d-spacing) and by ``python -m indexing``'s
(``indexing.cli.read_peaks`` + ``report``).

Reports: Pearson r and max |Δ| of the model inputs (Mo, 0.4 Å against Cu), top-1 space group and
crystal system agreement and max |Δp| with ``--ckpt``, and the share of crystals whose indexed cell
(Bravais lattice, volume within 0.5 %) is the same at all three wavelengths.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.grid import CU_KA1, GridSpec  # noqa: E402
from utils.pattern_io import Wavelength  # noqa: E402
from utils.pattern_io.writers import write_ras, write_xrdml, write_xy  # noqa: E402

MO_KA1 = 0.7093
SYNCHROTRON = 0.4
REL_FWHM = 2.5e-3
# (name, Kα1, Kα2 written to the file (the rendering is Kα1 only: ratio 0), writer, suffix)
SOURCES = (("Cu", CU_KA1, 1.54439, write_xrdml, ".xrdml"), ("Mo", MO_KA1, 0.71359, write_ras, ".ras"),
           ("0.4 Å", SYNCHROTRON, None, write_xy, ".xy"))


def two_theta_window(grid: GridSpec, wavelength: float, margin: float = 0.01) -> tuple[float, float]:
    """The 2θ range [deg] at ``wavelength`` that covers the grid's d-range (with a margin)."""
    d_max = grid.wavelength / (2 * np.sin(np.radians(grid.two_theta_min) / 2))
    d_min = grid.wavelength / (2 * np.sin(np.radians(grid.two_theta_max) / 2))
    lo = 2 * np.degrees(np.arcsin(wavelength / (2 * d_max * (1 + margin))))
    hi = 2 * np.degrees(np.arcsin(min(1.0, wavelength / (2 * d_min * (1 - margin)))))
    return float(lo), float(hi)


def render_in_d(d: np.ndarray, height: np.ndarray, wavelength: float, two_theta: np.ndarray,
                rel_fwhm: float = REL_FWHM, peak_counts: float = 2e4, background: float = 50.0,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Counts on ``two_theta`` [deg] at ``wavelength`` of lines at d-spacings ``d`` [Å] with
    ``height``: pseudo-Voigt in d (FWHM ``rel_fwhm``·d), flat background, Poisson noise if ``rng``."""
    d_axis = wavelength / (2 * np.sin(np.radians(two_theta) / 2))
    y = np.zeros_like(two_theta)
    for dk, hk in zip(d, height):
        x = (d_axis - dk) / (rel_fwhm * dk)
        near = np.abs(x) < 40
        y[near] += hk * (0.5 / (1 + 4 * x[near] ** 2) + 0.5 * np.exp(-4 * np.log(2) * x[near] ** 2))
    y = background + peak_counts * y / max(float(y.max()), 1e-300)
    return rng.poisson(y).astype(float) if rng is not None else y


def write_crystal(folder: Path, name: str, d: np.ndarray, height: np.ndarray, grid: GridSpec,
                  n_points: int = 8500, seed: int | None = 0) -> list[Path]:
    """The three files of one crystal (Cu .xrdml, Mo .ras, 0.4 Å .xy); noise-free when ``seed`` is None."""
    paths = []
    for k, (_, ka1, ka2, writer, suffix) in enumerate(SOURCES):
        tt = np.linspace(*two_theta_window(grid, ka1), n_points)
        rng = None if seed is None else np.random.default_rng(seed * 10 + k)
        y = render_in_d(d, height, ka1, tt, rng=rng)
        path = folder / f"{name}_{k}{suffix}"
        writer(path, tt, y, Wavelength(ka1, ka2, 0.0 if ka2 else None))
        paths.append(path)
    return paths


def same_cell(a: dict, b: dict) -> bool:
    """Same Bravais lattice and volume within 0.5 % (``indexing.cli.report`` cells)."""
    return bool(a["cells"] and b["cells"] and a["cells"][0]["bravais"] == b["cells"][0]["bravais"]
                and abs(a["cells"][0]["volume"] / b["cells"][0]["volume"] - 1) < 0.005)


def tiny_checkpoint(folder: Path, epochs: int = 1) -> Path:
    """best.pt of the test suite's tiny run (7 classes, 1024-point grid; seconds per epoch on a CPU)."""
    ckpt = folder / "run" / "best.pt"
    if not ckpt.is_file():
        import train
        from tests.conftest import tiny_args, write_tiny_dataset

        write_tiny_dataset(folder / "data")
        train.main(tiny_args(folder / "data", folder / "Log", "--epochs", str(epochs), "--method", "ce",
                             "--run_dir", str(folder / "run")))
    return ckpt


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("data/xrd_mp_default"))
    p.add_argument("--n", type=int, default=30, help="crystals (every k-th of the test split)")
    p.add_argument("--ckpt", default=None, help="checkpoint whose predictions are compared (optional)")
    p.add_argument("--train_tiny", type=Path, default=None,
                   help="train the test suite's tiny model (tests/conftest.py) into this folder "
                        "(unless its best.pt exists) and compare its predictions")
    p.add_argument("--tiny_epochs", type=int, default=1, help="epochs of the --train_tiny run")
    p.add_argument("--no_index", action="store_true", help="skip the indexing comparison")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    import predict  # torch: only for the model's half
    from indexing.cli import read_peaks, report

    t0 = time.perf_counter()
    if a.train_tiny is not None:
        a.ckpt = str(tiny_checkpoint(a.train_tiny, a.tiny_epochs))
    raw = np.load(a.data / "peaks_test.npz")
    off, wl = raw["offsets"], float(raw["wavelength"])
    rows = np.linspace(0, len(raw["sg"]) - 1, a.n).astype(int)
    grid = GridSpec()
    if a.ckpt:
        from utils.checkpoint import load_checkpoint

        grid = GridSpec.from_dict(load_checkpoint(a.ckpt).get("data_spec", {}).get("grid"))
    r_mo, r_sy, dmax, top1, cs_same, dp, cells, cu_top = [], [], [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in rows:
            tt, inten = raw["two_theta"][off[i]:off[i + 1]], raw["intensity"][off[i]:off[i + 1]]
            d = wl / (2 * np.sin(np.radians(tt) / 2))
            files = write_crystal(Path(tmp), f"c{i}", d, inten, grid, seed=int(i))
            xs = [predict.read_on_grid(f, grid, None)[0] for f in files]
            r_mo.append(float(np.corrcoef(xs[0], xs[1])[0, 1]))
            r_sy.append(float(np.corrcoef(xs[0], xs[2])[0, 1]))
            dmax.append(float(max(np.abs(xs[0] - xs[1]).max(), np.abs(xs[0] - xs[2]).max())))
            if a.ckpt:
                out, _ = predict.predict_files(a.ckpt, files, topk=1, index=False)
                top1.append(len({r["top"][0][0] for r in out}) == 1)
                cs_same.append(len({r["crystal_system"] for r in out}) == 1)
                dp.append(max(abs(r["top"][0][2] - out[0]["top"][0][2]) for r in out))
                cu_top.append(out[0]["top"][0])  # context: how much the model varies between crystals
            if not a.no_index:
                reps = [report(read_peaks(f, None, False), top=1) for f in files]
                cells.append(same_cell(reps[0], reps[1]) and same_cell(reps[0], reps[2]))
    res = {"n": int(a.n), "grid": grid.to_dict(), "input_r_mo_min": min(r_mo),
           "input_r_mo_median": float(np.median(r_mo)), "input_r_sync_min": min(r_sy),
           "input_r_sync_median": float(np.median(r_sy)), "input_max_abs_diff_max": max(dmax),
           "input_max_abs_diff_median": float(np.median(dmax))}
    if a.ckpt:
        res.update(ckpt=a.ckpt, top1_same_pct=100 * float(np.mean(top1)),
                   cs_same_pct=100 * float(np.mean(cs_same)), max_dp_top1=float(max(dp)),
                   median_dp_top1=float(np.median(dp)),
                   distinct_top1_across_crystals=len({t[0] for t in cu_top}),
                   p_top1_range_across_crystals=float(np.ptp([t[2] for t in cu_top])))
    if cells:
        res["same_cell_all_three_pct"] = 100 * float(np.mean(cells))
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res, indent=1))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        tmp_json = a.json.with_name(f".{a.json.name}.{os.getpid()}.tmp")
        tmp_json.write_text(json.dumps(res))
        os.replace(tmp_json, a.json)
    return res


if __name__ == "__main__":
    main()
