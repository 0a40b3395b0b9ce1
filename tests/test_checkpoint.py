"""Atomic checkpoint writes and refusal of truncated checkpoints (library, train.py, test.py).

An interrupted ``atomic_save`` (exception inside ``torch.save``, failing ``fsync`` or ``os.replace``,
Ctrl-C, or a SIGKILL) must leave the previous ``last.pt`` byte-identical and loadable; a truncated
checkpoint is refused with ``CheckpointError`` naming the file and a fix, never a torch/zip error.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from tests.conftest import tiny_args
from utils.checkpoint import atomic_save, find_resume, load_checkpoint
from utils.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]


def _state(v: float = 1.0) -> dict:
    return {"model": {"w": torch.full((64, 64), v), "b": torch.zeros(64)}, "epoch": int(v),
            "optimizer": {"state": {}, "param_groups": []}, "args": {"lr": 0.1}}


@pytest.fixture()
def run(tmp_path):
    atomic_save(_state(1.0), tmp_path / "last.pt")
    return tmp_path, (tmp_path / "last.pt").read_bytes()


def _assert_intact(run_dir: Path, before: bytes, stray_ok: bool = False) -> None:
    assert (run_dir / "last.pt").read_bytes() == before
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1
    assert find_resume(run_dir) == run_dir / "last.pt"
    if not stray_ok:
        assert sorted(p.name for p in run_dir.iterdir()) == ["last.pt"], "stray temp file"


class Boom(Exception):
    pass


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.99])
@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_interrupted_torch_save_keeps_last_pt(run, monkeypatch, fraction, exc):
    run_dir, before = run
    real_save = torch.save

    def partial_save(obj, fh, *a, **k):  # write part of a real checkpoint, then fail
        import io

        buf = io.BytesIO()
        real_save(obj, buf)
        fh.write(buf.getvalue()[: int(len(buf.getvalue()) * fraction)])
        raise exc("interrupted")

    monkeypatch.setattr(torch, "save", partial_save)
    with pytest.raises(exc):
        atomic_save(_state(2.0), run_dir / "last.pt")
    monkeypatch.undo()
    _assert_intact(run_dir, before)


@pytest.mark.parametrize("where", ["os.replace", "os.fsync", "os.chmod"])
def test_failing_fsync_chmod_or_replace_keeps_last_pt(run, monkeypatch, where):
    run_dir, before = run

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, where.split(".")[1], broken)
    with pytest.raises(OSError, match="(?i)no space"):
        atomic_save(_state(2.0), run_dir / "last.pt")
    monkeypatch.undo()
    _assert_intact(run_dir, before)


def test_sigkill_during_write_keeps_last_pt(run):
    """A real kill: the process dies after writing half of the temp file (no cleanup can run)."""
    run_dir, before = run
    code = f"""
import os, signal, sys, torch
sys.path.insert(0, {str(ROOT)!r})
import utils.checkpoint as ck
def half(fd, data):  # the checkpoint's one write call: half the bytes reach the disk, then SIGKILL
    os.write(fd, bytes(data[: len(data) // 2])); os.fsync(fd)
    os.kill(os.getpid(), signal.SIGKILL)
ck.write_all = half
ck.atomic_save({{"model": {{"w": torch.zeros(8)}}, "epoch": 2}}, {str(run_dir / "last.pt")!r})
"""
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    stray = [p for p in run_dir.iterdir() if p.name != "last.pt"]
    assert len(stray) == 1 and stray[0].name.startswith(".last.pt.") and stray[0].suffix == ".tmp"
    assert (run_dir / "last.pt").read_bytes() == before
    atomic_save(_state(3.0), run_dir / "last.pt")  # the next save is unaffected by the leftover
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 3
    assert find_resume(run_dir) == run_dir / "last.pt"  # --resume auto clears the leftover
    assert [p.name for p in run_dir.iterdir()] == ["last.pt"]


def test_successful_save_replaces_and_leaves_nothing_behind(run):
    run_dir, _ = run
    atomic_save(_state(2.0), run_dir / "last.pt")
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 2
    assert [p.name for p in run_dir.iterdir()] == ["last.pt"]
    assert (run_dir / "last.pt").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _cuts(n: int) -> list[int]:
    return sorted({0, 1, 2, 10, 100, n // 3, n // 2, n - 200, n - 22, n - 1} & set(range(n)))


def test_truncated_checkpoint_is_refused_at_every_offset(run):
    run_dir, before = run
    for cut in _cuts(len(before)):
        p = run_dir / f"cut{cut}.pt"
        p.write_bytes(before[:cut])
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(p)
        msg = str(e.value)
        assert str(p) in msg and "Fix:" in msg, msg


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found.*Fix"):
        load_checkpoint(tmp_path / "none.pt")


# --------------------------------------------------------------------------------- end to end

def _load_test_cli():
    spec = importlib.util.spec_from_file_location("xrd_test_cli_ckpt", ROOT / "test.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _args(data, out, *extra):
    return tiny_args(data, out, *extra)


def test_truncated_last_pt_is_refused_by_resume_and_test_py(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    common = ["--epochs", "2", "--method", "ce", "--run_dir", str(run_dir)]
    train.main(_args(tiny_data, tmp_path, *common, "--stop_after_epoch", "1"))
    last = run_dir / "last.pt"
    raw = last.read_bytes()
    assert load_checkpoint(last)["epoch"] == 1
    last.write_bytes(raw[: len(raw) // 2])

    with pytest.raises(CheckpointError) as e:
        train.main(_args(tiny_data, tmp_path, *common, "--resume", "auto"))
    assert str(last) in str(e.value) and "Fix:" in str(e.value)
    with pytest.raises(CheckpointError) as e:
        train.main(_args(tiny_data, tmp_path, *common, "--resume", str(last)))
    with pytest.raises(CheckpointError) as e:
        _load_test_cli().main(["--ckpt", str(last), "--out_dir", str(tmp_path / "eval")])
    assert str(last) in str(e.value) and "Fix:" in str(e.value)

    # on the command line: one clear line, no torch/zip traceback
    proc = subprocess.run([sys.executable, str(ROOT / "test.py"), "--ckpt", str(last)], cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert f"CheckpointError: {last}" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]

    # a readable checkpoint whose model config was lost, or whose weights do not fit it
    whole = tmp_path / "whole.pt"
    whole.write_bytes(raw)
    ckpt = load_checkpoint(whole)
    for name, broken in (("noconfig", {k: v for k, v in ckpt.items() if k != "model_config"}),
                         ("badweights", {**ckpt, "model": {"x": torch.zeros(1)}})):
        path = tmp_path / f"{name}.pt"
        torch.save(broken, path)
        with pytest.raises(CheckpointError, match="Fix:") as e:
            _load_test_cli().main(["--ckpt", str(path), "--out_dir", str(tmp_path / name)])
        assert str(path) in str(e.value)
