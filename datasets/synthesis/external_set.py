"""An evaluation-only set of REAL crystal structures the model never saw, simulated by pymatgen.

    python -m datasets.synthesis.external_set --out data/external_pyxtal   # pyxtal's structures
    python -m datasets.synthesis.external_set --src my_cifs/ --out data/external_mine
    python test.py --ckpt RUN/best.pt --data_dir data/external_pyxtal

The default source is the structure folder that ships with pyxtal (``pyxtal/database/cifs``):
experimental organic molecular crystals from the CSD (aspirin, anthracene, coumarin, resorcinol,
CSD refcodes such as ACBNZA01) and inorganic ones (quartz and cristobalite polymorphs, BaTiO3,
JARVIS and Materials Project entries, zeolite FAU, ice). None of them is in the built-in
benchmark, whose structures are random pyxtal crystals. Each file is read with pymatgen, its
space group found with spglib (symprec 0.1, as for raw CSVs), its sticks computed with the same
kinematic calculator (``datasets.synthesis.reflections``); files that fail are skipped and reported.

Output: ``OUT/peaks_test.npz`` (a PeakTable with ``meta_source``, ``meta_formula``,
``meta_organic``) and ``OUT/dataset.json`` (``"eval_only": true``, the source list, skips). The
"peaks" reader accepts such a folder without a training split (evaluation only).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from loguru import logger

from datasets.peaks import PeakTable
from datasets.synthesis.reflections import structure_peaks
from utils.cli import command_line
from utils.errors import DataError, fail
from utils.grid import GridSpec

SUFFIXES = (".cif", ".vasp")


def pyxtal_structure_dir() -> Path:
    import pyxtal

    return Path(pyxtal.__file__).resolve().parent / "database" / "cifs"


def source_record(src: Path) -> dict[str, str]:
    """Where the structures came from, without the building machine's paths: pyxtal's own folder
    is recorded as the package and its version (as the default set records its versions); another
    folder as the path given (relative to the working directory when under it)."""
    import importlib.metadata as md

    try:
        own = src.resolve() == pyxtal_structure_dir()
    except ImportError:
        own = False
    if own:
        return {"package": "pyxtal", "version": md.version("pyxtal"), "folder": "database/cifs"}
    return {"folder": command_line("", [str(src)]).strip()}


def load_structures(src: Path) -> tuple[list[tuple[str, object]], list[tuple[str, str]]]:
    """(name, pymatgen Structure) for every readable file; (name, reason) for the others."""
    from pymatgen.core import Structure

    ok, skipped = [], []
    for f in sorted(p for p in src.iterdir() if p.suffix.lower() in SUFFIXES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = Structure.from_file(str(f))
            if len(s) == 0 or not s.is_ordered:
                raise ValueError("empty or partially occupied structure")
            ok.append((f.name, s))
        except Exception as exc:  # broken/unsupported files are reported, not fatal
            skipped.append((f.name, f"{type(exc).__name__}: {str(exc)[:120]}"))
    return ok, skipped


def build(src: Path, out: Path, grid: GridSpec, symprec: float = 0.1) -> dict:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    if not src.is_dir():
        raise fail(DataError, src, "structure folder not found", "pass --src DIR with .cif/.vasp files")
    structures, skipped = load_structures(src)
    tts, ints, sgs, names, formulas, organic = [], [], [], [], [], []
    for name, s in structures:
        try:
            sg = SpacegroupAnalyzer(s, symprec=symprec).get_space_group_number()
            tt, it = structure_peaks(s, grid.wavelength, (grid.two_theta_min, grid.two_theta_max))
            if len(tt) == 0:
                raise ValueError("no reflection in the 2θ range")
        except Exception as exc:
            skipped.append((name, f"{type(exc).__name__}: {str(exc)[:120]}"))
            continue
        els = {e.symbol for e in s.composition.elements}
        tts.append(tt)
        ints.append(it)
        sgs.append(sg)
        names.append(name)
        formulas.append(s.composition.reduced_formula)
        organic.append(bool({"C", "H"} <= els))
    if not sgs:
        raise fail(DataError, src, "no structure could be simulated", "check the files (see skips)")
    table = PeakTable.from_lists(tts, ints, sgs, grid.wavelength,
                                 meta={"source": names, "formula": formulas, "organic": organic})
    table.save(out / "peaks_test.npz")
    info = {"name": out.name, "eval_only": True, "grid": grid.to_dict(), "source": source_record(src),
            "command": command_line("python -m datasets.synthesis.external_set", sys.argv[1:]),
            "n": len(sgs), "n_organic": int(sum(organic)), "skipped": skipped,
            "samples": [{"file": n, "formula": f, "sg": g, "organic": o}
                        for n, f, g, o in zip(names, formulas, sgs, organic, strict=True)]}
    (out / "dataset.json").write_text(json.dumps(info, indent=1))
    logger.info(f"{out}: {len(sgs)} structures ({sum(organic)} organic), {len(skipped)} skipped")
    return info


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser("Evaluation-only set from real structure files")
    ap.add_argument("--src", default=None, help="folder of .cif/.vasp files (default: pyxtal's)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--symprec", type=float, default=0.1)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    return build(Path(a.src) if a.src else pyxtal_structure_dir(), out, GridSpec(), a.symprec)


if __name__ == "__main__":
    main()
