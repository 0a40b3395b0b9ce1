"""datasets.synthesis.external_set: real structure files → an evaluation-only peak set that the
peaks reader accepts."""

from __future__ import annotations

import json

import pytest

from datasets import READERS, resolve_data_source
from datasets.synthesis.external_set import main as external_main
from utils.errors import DataError


def _write_structures(folder):
    from pymatgen.core import Lattice, Structure

    folder.mkdir()
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    nacl.to(filename=str(folder / "NaCl.cif"))
    rutile = Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.59, 2.96), ["Ti", "O"],
                                       [[0, 0, 0], [0.305, 0.305, 0]])
    rutile.to(filename=str(folder / "TiO2.cif"))
    (folder / "broken.cif").write_text("data_x\n_cell_length_a 1\nnot a cif\n")


def test_external_set_is_built_reported_and_readable(tmp_path):
    src, out = tmp_path / "cifs", tmp_path / "ext"
    _write_structures(src)
    info = external_main(["--src", str(src), "--out", str(out)])
    assert info["n"] == 2 and [s for s, _ in info["skipped"]] == ["broken.cif"]
    assert sorted(s["sg"] for s in info["samples"]) == [136, 225]
    assert json.loads((out / "dataset.json").read_text())["eval_only"] is True
    fmt, root = resolve_data_source(data_dir=str(out))
    assert fmt == "peaks"
    bundle = READERS.build(fmt, root=root, name="ext", augment=False)
    assert bundle.train is None and len(bundle.test) == 2
    batch = bundle.eval_collate([bundle.test[i] for i in range(2)])
    assert batch["x"].shape == (2, 1, 8500) and sorted(batch["y_sg"].tolist()) == [135, 224]


def test_external_refuses_a_missing_or_empty_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        external_main(["--src", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no structure"):
        external_main(["--src", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
