"""predict.py as a user meets it (issue 12, items 8-10): a folder is predicted past the files it
cannot read, with a summary and exit status 1; named files still fail fast; a non-checkpoint --ckpt
is named plainly; pattern files with extra columns or plain text are reported at the right line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from datasets.readers.xy_patterns import read_xy
from tests.conftest import TINY_GRID, tiny_args
from utils.checkpoint import load_checkpoint
from utils.errors import CheckpointError, DataError

ROOT = Path(__file__).resolve().parents[1]


class Opaque:
    """Not a tensor: a file holding it is refused by weights_only loading."""


# ------------------------------------------------------------------------------ reader (item 10)

def test_plain_text_is_reported_at_its_first_line(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("Sample received on Monday\nplease measure twice\n10 5\n")
    with pytest.raises(DataError, match=r"notes.txt:1: non-numeric row 'Sample received on Monday', and "
                                        r"line 2 'please measure twice' too: this is not a pattern file"):
        read_xy(p)
    p.write_text("# comment\n\nLorem ipsum dolor sit amet\nconsectetur adipiscing\n")
    with pytest.raises(DataError, match=r"notes.txt:3: "):
        read_xy(p)


def test_a_header_then_a_malformed_data_row_names_the_data_row(tmp_path):
    p = tmp_path / "a.xy"
    p.write_text("two_theta intensity\n10 5\n11 abc\n")
    with pytest.raises(DataError, match=r"a.xy:3: non-numeric row '11 abc'"):
        read_xy(p)
    p.write_text("2theta;intensity\n10;5\n11;6\n")  # a data row in a format we do not read
    with pytest.raises(DataError, match=r"a.xy:2: non-numeric row '10;5'"):
        read_xy(p)


@pytest.mark.parametrize("name,text,warned", [
    ("three.xy", "10 5 0.3\n11 7 0.4\n12 9 0.5\n", True),
    ("three.csv", "tt,i,esd\n10,5,1\n11,7,1\n", True),
    ("esd.xye", "10 5 0.3\n11 7 0.4\n12 9 0.5\n", False),  # .xye: column 3 is the uncertainty
    ("four.xye", "10 5 0.3 1\n11 7 0.4 1\n", True),
    ("two.xy", "10 5\n11 7\n", False),
])
def test_extra_columns_warn_once_naming_the_file(tmp_path, warnings_, name, text, warned):
    p = tmp_path / name
    p.write_text(text)
    t, y = read_xy(p)
    assert t[:2].tolist() == [10.0, 11.0] and y[:2].tolist() == [5.0, 7.0]
    if warned:
        assert len(warnings_) == 1 and warnings_[0].startswith(f"{p}: ") and "columns" in warnings_[0]
    else:
        assert warnings_ == []


# ------------------------------------------------------------------------- checkpoints (item 9)

@pytest.mark.parametrize("kind,reason", [
    ("text", "it is not a PyTorch file at all"),
    ("empty", "the file is empty"),
    ("object", "it holds a Python object (tests.test_predict_cli.Opaque) besides tensors"),
    ("truncated", "it is truncated or damaged"),
    ("npy", "it is a numpy .npy file"),
])
def test_a_non_checkpoint_is_named_plainly(tmp_path, kind, reason):
    p = tmp_path / "x.pt"
    if kind == "text":
        p.write_text("this is a results table, not weights\n")
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "object":
        torch.save({"model": {}, "extra": Opaque()}, p)
    elif kind == "truncated":
        torch.save({"model": {"w": torch.ones(100)}}, p)
        p.write_bytes(p.read_bytes()[:300])
    else:
        with open(p, "wb") as fh:
            np.save(fh, np.ones(3))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: not a checkpoint written by train.py: {reason}"), msg
    assert "weights_only" not in msg and msg.endswith("retrain if both are damaged)") and "\n" not in msg


# ------------------------------------------------------------------------- the command (item 8)

@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from tests.conftest import write_tiny_dataset

    root = tmp_path_factory.mktemp("predict_cli")
    write_tiny_dataset(root / "data")
    res = train.main(tiny_args(root / "data", root / "Log", "--epochs", "1", "--method", "ce",
                               "--run_dir", str(root / "run")))
    return Path(res["run_dir"]) / "best.pt"


def _pattern(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tt = np.linspace(TINY_GRID["two_theta_min"], TINY_GRID["two_theta_max"], 500)
    y = np.exp(-((tt[:, None] - rng.uniform(10, 80, 5)) / 0.3) ** 2).sum(1) * 1000 + 10
    np.savetxt(path, np.c_[tt, y], header="wavelength: 1.5406\n2theta intensity")  # no silent Cu Kα


def _predict(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "predict.py", *argv], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)


@pytest.mark.slow
def test_a_folder_is_predicted_past_unreadable_files(ckpt, tmp_path):
    folder = tmp_path / "measured"
    folder.mkdir()
    for j in range(3):
        _pattern(folder / f"p{j}.xy", j)
    (folder / "labels.csv").write_text("file,sg\np0.xy,225\np1.xy,14\n")
    (folder / "broken.xy").write_text("10 5\n12 6\n11 3\n")  # unsorted
    (folder / "notes.md").write_text("not a pattern extension: never read\n")
    res = _predict("--ckpt", str(ckpt), str(folder), "--csv", str(tmp_path / "pred.csv"))
    assert res.returncode == 1, res.stderr
    assert res.stdout.count("crystal system:") == 3
    assert "3 predicted, 2 failed (broken.xy, labels.csv; reasons above)" in res.stdout
    assert "labels.csv:1: non-numeric row 'file,sg', and line 2 'p0.xy,225' too: this is not a pattern " \
           "file" in res.stderr and "broken.xy:3: decreasing" in res.stderr
    assert "notes.md" not in res.stdout + res.stderr and "Traceback" not in res.stderr
    assert len((tmp_path / "pred.csv").read_text().splitlines()) == 1 + 3


@pytest.mark.slow
def test_named_files_still_fail_fast_and_a_bad_ckpt_is_one_plain_line(ckpt, tmp_path):
    good, bad = tmp_path / "good.xy", tmp_path / "bad.xy"
    _pattern(good, 0)
    bad.write_text("Lorem ipsum\ndolor sit amet\n")
    res = _predict("--ckpt", str(ckpt), str(good), str(bad))
    assert res.returncode == 2 and "crystal system:" not in res.stdout
    assert f"error: {bad}:1: non-numeric row 'Lorem ipsum'" in res.stderr and "Traceback" not in res.stderr

    three = tmp_path / "three.xy"
    np.savetxt(three, np.c_[np.loadtxt(good), np.ones(500)], header="wavelength: 1.5406")
    res = _predict("--ckpt", str(ckpt), str(three))
    assert res.returncode == 0 and "1 predicted, 0 failed" in res.stdout
    assert res.stderr.count("WARNING") == 1 and f"{three}: 3 columns" in res.stderr

    not_ckpt = tmp_path / "results.csv"
    not_ckpt.write_text("sg,acc\n225,0.5\n")
    res = _predict("--ckpt", str(not_ckpt), str(good))
    assert res.returncode == 2
    assert res.stderr.strip() == (f"error: {not_ckpt}: not a checkpoint written by train.py: it is not a "
                                  "PyTorch file at all. Fix: pass the best.pt or last.pt of a run directory "
                                  "(retrain if both are damaged)")
