"""How a command is recorded for provenance (``dataset.json``'s ``command``, run metadata)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path


def _relative(arg: str, cwd: Path) -> str:
    if not os.path.isabs(arg):
        return arg
    path = Path(os.path.normpath(arg))
    try:
        rel = path.relative_to(cwd)
    except ValueError:  # outside the working directory: only the user's machine knows it
        return arg
    return str(rel) if str(rel) != "." else "."


def command_line(prog: str, argv: Sequence[str], cwd: str | os.PathLike | None = None) -> str:
    """The command as a user would type it from ``cwd`` (default: the current directory).

    Absolute paths under ``cwd`` become relative (also in ``--flag=/abs/path``), so that a file
    shipped with the repository does not record the machine that built it; paths elsewhere stay as
    given. Arguments are shell-quoted, so the result can be pasted back into a shell.

    >>> command_line("python -m datasets.simulate", ["--out", "/repo/data/x", "--seed", "0"], "/repo")
    'python -m datasets.simulate --out data/x --seed 0'
    """
    base = Path(os.path.normpath(os.fspath(cwd) if cwd is not None else os.getcwd()))
    parts = []
    for arg in map(str, argv):
        flag, eq, value = arg.partition("=")
        if eq and flag.startswith("-"):
            parts.append(f"{flag}={shlex.quote(_relative(value, base))}")
        else:
            parts.append(shlex.quote(_relative(arg, base)))
    return " ".join([prog, *parts])
