"""Logging setup (loguru) and the one-JSON-line-per-epoch writer."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from loguru import logger
from tqdm import tqdm

LOG_FORMAT = "{time:HH:mm:ss} | {level: <7} | {message}"
COLOR_FORMAT = "<green>{time:HH:mm:ss}</green> | <level>{level: <7}</level> | {message}"


def _to_stderr(message: str) -> None:
    """Console sink: through ``tqdm.write`` so that a line never tears a live progress bar
    (looked up at call time, so redirected/captured stderr works)."""
    tqdm.write(str(message), end="", file=sys.stderr)


def size_sizeless_terminal(stream: TextIO | None = None, cols: int = 80, rows: int = 24) -> bool:
    """Give a terminal that reports 0×0 (``script`` without a terminal, some container and CI
    consoles) the size ``cols``×``rows`` ($COLUMNS/$LINES when set), as a terminal emulator would.

    tqdm sizes its bars from the terminal; with 0×0 it draws nothing at all, so a user sees no
    progress. A terminal with a real size is left alone. Returns True when the size was set.
    """
    stream = stream or sys.stderr
    try:
        fd = stream.fileno()
        if not os.isatty(fd) or os.get_terminal_size(fd) != (0, 0):
            return False
        import fcntl
        import struct
        import termios

        cols = int(os.environ.get("COLUMNS", cols) or cols)
        rows = int(os.environ.get("LINES", rows) or rows)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        return True
    except (OSError, ValueError, AttributeError, ImportError):
        return False


def setup_logging(log_file: str | os.PathLike | None = None, level: str = "INFO") -> None:
    """Configure loguru once for the process: stderr in one short format, and, when given,
    ``log_file`` (the run's ``train.log``) in the same format. Call it before anything logs.
    A terminal on stderr that reports no size gets one (:func:`size_sizeless_terminal`), so that
    every progress bar of the run is drawn."""
    size_sizeless_terminal(sys.stderr)
    logger.remove()
    tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    logger.add(_to_stderr, level=level, format=COLOR_FORMAT if tty else LOG_FORMAT, colorize=tty)
    if log_file is not None:
        add_log_file(log_file, level)


def add_log_file(log_file: str | os.PathLike, level: str = "INFO") -> None:
    """Also write every log line to ``log_file``, in the console's format (no colours)."""
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    logger.add(str(log_file), level=level, format=LOG_FORMAT, colorize=False, enqueue=False)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if hasattr(v, "item") and callable(v.item):
        try:
            return _clean(v.item())
        except (ValueError, RuntimeError):
            return str(v)
    return v


class JsonlWriter:
    """Appends one JSON object per line (dino's ``log.txt`` habit) and flushes each line."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps({k: _clean(v) for k, v in record.items()})
        with open(self.path, "a") as fh:
            fh.write(line + "\n")

    def keep_epochs_upto(self, epoch: int) -> None:
        """Drop the rows whose ``epoch`` is above ``epoch`` (atomic rewrite; nothing when none is)."""
        rows = self.read()
        keep = [r for r in rows if int(r.get("epoch", 0)) <= epoch]
        if len(keep) == len(rows):
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        os.replace(tmp, self.path)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path) as fh:
            return [json.loads(x) for x in fh if x.strip()]
