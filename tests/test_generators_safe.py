"""Generators and converters never overwrite data unasked nor leave half-written output; shipped
datasets record packages, not the build machine's paths (issue 24)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datasets import simulate
from datasets.readers.convert_xy import main as xy_main
from datasets.readers.npy_format import split_path
from tests.test_xy import _folder

ROOT = Path(__file__).resolve().parents[1]


def test_simulate_refuses_a_folder_that_holds_data_without_overwrite(tmp_path, capsys):
    out = tmp_path / "set"
    out.mkdir()
    (out / "peaks_train.npz").write_bytes(b"precious")
    with pytest.raises(SystemExit) as exc:
        simulate.main(["--out", str(out), "--groups", "2"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--overwrite" in err and err.count("\n") == 1
    assert (out / "peaks_train.npz").read_bytes() == b"precious"
    assert not (tmp_path / "set.partial").exists()


@pytest.mark.parametrize("bad", [["--groups", "231"], ["--scale", "0"], ["--two_theta_min", "90"]])
def test_simulate_bad_settings_write_nothing(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as exc:
        simulate.main(["--out", str(tmp_path / "set"), *bad])
    assert exc.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_simulate_publish_replaces_only_when_complete(tmp_path):
    work, out = tmp_path / "set.partial", tmp_path / "set"
    work.mkdir()
    (work / "dataset.json").write_text("{}")
    (work / ".lock").write_text("1 x")
    out.mkdir()
    (out / "old.npz").write_text("old")
    simulate.publish(work, out)
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json"] and not work.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


def test_convert_xy_refuses_to_overwrite_a_split_without_overwrite(tmp_path, capsys):
    src, lab = _folder(tmp_path)
    out = tmp_path / "out"
    argv = ["--src", str(src), "--labels", str(lab), "--out", str(out), "--dataset", "m", "--n_points", "850"]
    assert xy_main(argv) == 0
    before = split_path(out, "m", "test").read_bytes()
    (src / "a.xy").write_text("# wavelength: 1.5406\n5 1\n6 2\n7 100\n8 3\n")  # the folder changed since
    capsys.readouterr()
    assert xy_main(argv) == 2
    err = capsys.readouterr().err
    assert "exists already" in err and "--overwrite" in err
    assert split_path(out, "m", "test").read_bytes() == before
    assert xy_main([*argv, "--overwrite"]) == 0
    assert split_path(out, "m", "test").read_bytes() != before


def test_external_set_records_the_package_and_version_not_a_path():
    info = json.loads((ROOT / "data" / "external_pyxtal" / "dataset.json").read_text())
    assert "source_dir" not in info
    assert info["source"]["package"] == "pyxtal" and info["source"]["version"]
    assert not any(str(v).startswith("/") for v in info["source"].values())


def test_external_set_source_record(tmp_path):
    pytest.importorskip("pyxtal")
    from datasets.synthesis.external_set import pyxtal_structure_dir, source_record

    assert source_record(pyxtal_structure_dir())["package"] == "pyxtal"
    assert source_record(tmp_path) == {"folder": str(tmp_path)}
