"""Atomic checkpoint writing and safe loading.

A checkpoint is written to a temporary file in the same directory, flushed and fsync'ed, then
moved into place with ``os.replace`` (atomic on POSIX), so an interrupted write never leaves a
corrupt ``last.pt``. Loading uses ``weights_only=True``: a checkpoint cannot run code.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch

from utils.errors import CheckpointError, storage_error


@contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success fsync it, give it the usual permissions
    (0666 minus the umask, not mkstemp's 0600) and ``os.replace`` it onto ``path`` (atomic on
    POSIX). On any error the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise storage_error(exc, path, "nothing was written") or exc from exc
    try:
        with os.fdopen(fd, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # full disk, read-only folder...: one line naming what is kept
            kept = f"the previous {path.name} is unchanged" if path.exists() else "nothing was written"
            raise storage_error(exc, path, kept) or exc from exc
        raise


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """Save ``obj`` with ``torch.save`` atomically to ``path``; returns the path.

    The checkpoint is serialised in memory first and then written with :func:`write_all`, so that a
    full disk is an ``OSError`` (ENOSPC) of the write call, which becomes a one-line
    :class:`StorageError` (PyTorch's zip writer would report it as an unrelated ``RuntimeError``).
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_writer(path, "wb") as fh:
        write_all(fh.fileno(), buf.getbuffer())
    return Path(path)


def write_all(fd: int, data: memoryview | bytes) -> None:
    """``os.write`` until every byte is written (the one write call of checkpoints: tests inject
    faults here)."""
    view = memoryview(data)
    while len(view):
        view = view[os.write(fd, view):]


def config_diff(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """Entries that differ between two nested dicts, as ``key: saved -> now`` (leaf keys, which are
    flag names for most model settings, e.g. ``width_mult: 0.25 -> 0.5``)."""
    out = []
    for key in sorted(set(saved) | set(now), key=str):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{key}.")
        elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))
                             and list(a) == list(b)):
            out.append(f"{prefix}{key}: {_short(a)} -> {_short(b)}")
    return out


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _why_not_a_checkpoint(path: Path, exc: Exception) -> str:
    """One plain sentence on why ``torch.load(weights_only=True)`` refused ``path`` (PyTorch's own
    message is long and ends by suggesting ``weights_only=False``, which would let the file run code)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    text = str(exc)
    if not head:
        return "the file is empty"
    if head.startswith(b"\x93NUMPY"):
        return "it is a numpy .npy file"
    if not head.startswith((b"PK", b"\x80")):
        return "it is not a PyTorch file at all"
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:  # a readable file that would need arbitrary code to rebuild an object
        return (f"it holds a Python object ({found.group(1)}) besides tensors and plain values, which "
                "this framework never loads because loading it could run code")
    if head.startswith(b"PK"):
        return "it is truncated or damaged (a copy or a write that was cut short)"
    if head.startswith(b"\x80"):  # PyTorch writes zip archives; this is a bare Python pickle
        return ("it is a plain Python pickle, not a PyTorch checkpoint (train.py writes zip archives), "
                "and loading a pickle could run code")
    return f"PyTorch cannot read it ({type(exc).__name__})"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`atomic_save`, refusing missing, truncated or foreign
    files with one plain :class:`CheckpointError` (never PyTorch's advice to set
    ``weights_only=False``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found. Fix: pass the path of a 'last.pt' or "
                              "'best.pt' inside a run directory")
    try:
        with warnings.catch_warnings():  # PyTorch's own warnings about the file: our message says it
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle error, wrong format ...
        if isinstance(exc, OSError) and storage_error(exc) is not None:  # e.g. no permission to read
            raise storage_error(exc, path, "nothing was changed") from exc
        raise CheckpointError(f"{path}: not a checkpoint written by train.py: "
                              f"{_why_not_a_checkpoint(path, exc)}. Fix: pass the best.pt or last.pt "
                              "of a run directory (retrain if both are damaged)") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise CheckpointError(f"{path}: not a checkpoint written by train.py (no 'model' state dict). "
                              "Fix: pass the best.pt or last.pt of a run directory")
    return obj


def find_resume(run_dir: str | os.PathLike) -> Path | None:
    """Return ``run_dir/last.pt`` when it exists (``--resume auto``), else None.

    Temporary files of checkpoint writes that a SIGKILL cut short (``.last.pt.*.tmp``,
    ``.best.pt.*.tmp``) are removed here: the run that owned them is gone.
    """
    run_dir = Path(run_dir)
    for name in ("last.pt", "best.pt"):
        for stale in run_dir.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    p = run_dir / "last.pt"
    return p if p.is_file() else None
