"""Picklable job functions for tests/test_engines.py.

Standard library only, so that ``spawn`` and Ray worker processes import them in milliseconds.
Every function's result depends on the job alone, like the simulator's jobs.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time


def digest(job: int) -> str:
    """A deterministic, job-specific value with some work in it."""
    h = hashlib.sha256(str(job).encode())
    for _ in range(200):
        h = hashlib.sha256(h.digest())
    return h.hexdigest()


def first_time(marker: str) -> bool:
    """True for exactly one caller across processes (and machines sharing the folder)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _crash(how: str) -> None:
    if how == "sigkill":  # what the OOM killer does
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(1)


class Digest:
    def __call__(self, job: int) -> str:
        return digest(job)


class CrashOnce:
    """Kills its worker process the first time it runs job ``bad``."""

    def __init__(self, marker: str, bad: int, how: str = "exit") -> None:
        self.marker, self.bad, self.how = marker, bad, how

    def __call__(self, job: int) -> str:
        if job == self.bad and first_time(self.marker):
            _crash(self.how)
        return digest(job)


class AlwaysCrash:
    """Kills its worker every time it runs job ``bad``: a poison job."""

    def __init__(self, bad: int) -> None:
        self.bad = bad

    def __call__(self, job: int) -> str:
        if job == self.bad:
            _crash("exit")
        return digest(job)


class HangOn:
    """Never returns on job ``bad``."""

    def __init__(self, bad: int) -> None:
        self.bad = bad

    def __call__(self, job: int) -> str:
        while job == self.bad:
            time.sleep(3600)
        return digest(job)


class RaiseOn:
    def __init__(self, bad: int) -> None:
        self.bad = bad

    def __call__(self, job: int) -> str:
        if job == self.bad:
            raise ValueError(f"bad job {job}")
        return digest(job)


class EnvProbe:
    """Reports the worker's pid and thread settings."""

    def __call__(self, job: int) -> tuple[int, str | None]:
        return os.getpid(), os.environ.get("OMP_NUM_THREADS")
