"""``utils.cli.command_line``: provenance commands as a user types them (issue 12, item 7)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from utils.cli import command_line

ROOT = Path(__file__).resolve().parents[1]
SIM = "python -m datasets.simulate"


def test_absolute_paths_under_the_working_directory_become_relative(tmp_path):
    argv = ["--out", str(tmp_path / "data" / "xrd_mp_default"), "--scale", "0.05", "--no-lmdb"]
    assert command_line(SIM, argv, tmp_path) == f"{SIM} --out data/xrd_mp_default --scale 0.05 --no-lmdb"
    assert command_line(SIM, [f"--out={tmp_path}/data/x/"], tmp_path) == f"{SIM} --out=data/x"
    assert command_line(SIM, ["--out", str(tmp_path)], tmp_path) == f"{SIM} --out ."


def test_other_paths_stay_and_everything_is_shell_quoted(tmp_path):
    outside = "/elsewhere/cifs"
    got = command_line(SIM, ["--src", outside, "--name", "my set", "--out", "rel/dir"], tmp_path / "repo")
    assert got == f"{SIM} --src /elsewhere/cifs --name 'my set' --out rel/dir"
    # a sibling whose name starts like the working directory is not "under" it
    sibling = f"{tmp_path}/repo2/x"
    assert command_line(SIM, ["--out", sibling], tmp_path / "repo") == f"{SIM} --out {sibling}"


def test_default_working_directory_is_the_current_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert command_line("prog", [str(tmp_path / "a.csv")]) == "prog a.csv"


@pytest.mark.parametrize("name", ["xrd_mp_default", "external_pyxtal"])
def test_shipped_datasets_record_commands_a_user_can_type(name):
    cmd = json.loads((ROOT / "data" / name / "dataset.json").read_text())["command"]
    assert cmd.startswith("python -m datasets.")
    assert not any(os.path.isabs(a.partition("=")[2] or a) for a in cmd.split()[3:]), cmd
    assert f"data/{name}" in cmd
