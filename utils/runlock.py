"""A run folder belongs to one process: an exclusive OS lock on ``RUN/.lock``.

Training, resuming and evaluating into a folder take the lock before they write anything; a second
process that wants the same folder gets a :class:`RunBusyError` naming the holder's pid instead of
interleaving its ``log.jsonl`` and checkpoints with the first one's. The lock is ``flock(2)`` on an
open file descriptor: the kernel drops it when the process ends in any way (SIGKILL included), so a
killed run never leaves a stale lock behind. The pid and purpose written into the file are only
information for the error message; the file itself may stay.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from utils.errors import XRDError

LOCK_NAME = ".lock"
_HELD: dict[str, int] = {}  # resolved folder -> open descriptor, for the life of the process


class RunBusyError(XRDError, RuntimeError):
    """Another process holds the lock of a run folder."""


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").split()
    except OSError:
        text = []
    return f"process {text[0]} ({' '.join(text[1:]) or 'a run'})" if text else "another process"


def lock_run_dir(run_dir: str | os.PathLike, purpose: str) -> Path:
    """Take the exclusive lock of ``run_dir`` (created if needed) for this process's lifetime.

    Args:
        run_dir: the folder that this process is going to write into.
        purpose: what the process does there (``training``, ``evaluation``), for the holder's message.

    Returns:
        the folder. Taking a lock this process already holds is a no-op.

    Raises:
        RunBusyError: another live process holds it (the message names its pid and what it does).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = str(run_dir.resolve())
    if key in _HELD:
        return run_dir
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise RunBusyError(f"{run_dir}: in use by {holder}; two processes writing one run folder "
                           "would mix their logs and checkpoints. Fix: wait until it has finished, "
                           "or pass another --run_dir (test.py: --out_dir)") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {purpose}\n".encode(), 0)
    _HELD[key] = fd
    return run_dir


def unlock_run_dir(run_dir: str | os.PathLike) -> None:
    """Release a lock taken by this process (a process that ends releases it anyway)."""
    fd = _HELD.pop(str(Path(run_dir).resolve()), None)
    if fd is not None:
        os.close(fd)


def release_all() -> None:
    """Release every lock this process holds (the end of ``train.main`` / ``test.main``, so that a
    test or notebook running them in one process can run them again, or in a subprocess)."""
    for key in list(_HELD):
        os.close(_HELD.pop(key))
