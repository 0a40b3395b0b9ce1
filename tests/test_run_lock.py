"""A run folder belongs to one process; --resume auto continues only a run of the same model; the
OS refusing a write (full disk, read-only folder) is one line saying what was kept (issue 24)."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import train
from tests.conftest import tiny_args
from utils import checkpoint as ck
from utils.checkpoint import load_checkpoint
from utils.errors import CheckpointError, ConfigError, StorageError, exit_message
from utils.runlock import lock_run_dir, release_all

ROOT = Path(__file__).resolve().parents[1]


def _cmd(data, run_dir, *extra):
    return [sys.executable, "train.py", *tiny_args(data, Path(run_dir).parent, "--run_dir", str(run_dir),
                                                   "--progress", "none", *extra)]


def _epochs(run_dir: Path) -> list[int]:
    return [json.loads(x)["epoch"] for x in (run_dir / "log.jsonl").read_text().splitlines()]


def test_two_trainings_into_one_folder_the_second_is_refused_naming_the_first(tiny_data, tmp_path):
    run_dir = tmp_path / "R"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(_cmd(tiny_data, run_dir, "--epochs", "500"), cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not (run_dir / "log.jsonl").is_file():  # the first holds the lock and is training
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.5)
        second = subprocess.run(_cmd(tiny_data, run_dir, "--epochs", "8", "--seed", "7", "--method", "ce"),
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 1
        last = second.stderr.strip().splitlines()[-1]
        assert f"in use by process {first.pid}" in last and "Traceback" not in second.stderr, second.stderr
        assert first.poll() is None  # the first run goes on, alone
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(60)
    lock_run_dir(run_dir, "test")  # a killed holder leaves no stale lock
    release_all()
    epochs = _epochs(run_dir)
    assert epochs == list(range(1, len(epochs) + 1))  # one writer: no interleaved 1,1,2,2
    assert load_checkpoint(run_dir / "last.pt")["args"]["method"] == "icl"


def test_a_held_folder_refuses_train_and_test_in_process(tiny_data, tmp_path):
    run_dir = lock_run_dir(tmp_path / "held", "training --method icl")
    try:
        code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from utils.runlock import lock_run_dir; " \
               f"lock_run_dir({str(run_dir)!r}, 'x')"
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert res.returncode == 1 and f"process {os.getpid()} (training --method icl)" in res.stderr
    finally:
        release_all()


def test_resume_auto_skips_another_frontend_and_names_mismatching_flags(tiny_data, tmp_path):
    base = [*tiny_args(tiny_data, tmp_path), "--epochs", "1", "--max_train_samples", "64", "--method", "ce",
            "--progress", "none"]
    lite = train.main([*base, "--frontend_type", "restcn_lite", "--stem_stride", "8"])
    # another frontend whose name is a prefix of the first run's folder: a new run, not a crash
    plain = train.main([*base, "--frontend_type", "restcn", "--resume", "auto"])
    assert plain["run_dir"] != lite["run_dir"]
    # same folder stem, other width: the flags that differ are named, with how to start fresh
    with pytest.raises(ConfigError, match=r"width_mult: 0\.125 -> 0\.25.*drop --resume auto"):
        train.main([*base, "--frontend_type", "restcn", "--width_mult", "0.25", "--resume", "auto"])
    with pytest.raises(ConfigError, match=r"width_mult: 0\.125 -> 0\.25"):  # an explicit path too
        train.main([*base, "--frontend_type", "restcn", "--width_mult", "0.25",
                    "--resume", str(Path(plain["run_dir"]) / "last.pt")])


def test_full_disk_keeps_last_pt_and_log_in_step_then_resume(tiny_data, tmp_path, monkeypatch):
    run_dir = tmp_path / "R"
    args = [*tiny_args(tiny_data, tmp_path, "--run_dir", str(run_dir)), "--epochs", "2", "--progress", "none",
            "--max_train_samples", "64", "--method", "ce"]
    real, calls = ck.write_all, []

    def full_after_epoch_1(fd, data):  # the test double of the checkpoint's write call
        if any(".last.pt." in p for p in calls) and len(calls) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd, data)

    monkeypatch.setattr(ck, "write_all", full_after_epoch_1)
    with pytest.raises(StorageError) as exc:
        train.main(args)
    line = exit_message(exc.value)
    assert "\n" not in line and str(run_dir) in line and "no space left on the device" in line
    assert "last.pt holds epoch 1" in line and "--resume auto" in line
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1 and _epochs(run_dir) == [1]
    assert not list(run_dir.glob(".*.tmp"))
    monkeypatch.undo()
    train.main([*args, "--resume", "auto"])
    assert _epochs(run_dir) == [1, 2]


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_read_only_run_dir_is_one_line_naming_the_folder(tiny_data, tmp_path, monkeypatch, code):
    import builders

    def refuse(path, purpose):  # what mkdir/open report in a read-only or foreign folder
        raise OSError(code, os.strerror(code), str(Path(path) / ".lock"))

    monkeypatch.setattr(builders, "lock_run_dir", refuse)
    with pytest.raises(OSError) as exc:
        train.main([*tiny_args(tiny_data, tmp_path, "--run_dir", str(tmp_path / "ro")), "--epochs", "1",
                    "--max_train_samples", "64"])
    line = exit_message(exc.value)
    assert line is not None and "\n" not in line and "ro/.lock" in line and "Fix:" in line


def test_raw_pickle_checkpoint_is_named_as_such_without_torch_warnings(tmp_path):
    path = tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps({"model": {"w": [1.0]}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaking torch warning fails the test
        with pytest.raises(CheckpointError, match="plain Python pickle"):
            load_checkpoint(path)
