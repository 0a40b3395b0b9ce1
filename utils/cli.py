"""Command lines: how a command is recorded for provenance (``dataset.json``'s ``command``, run
metadata), and how one is parsed (range-checked flag types, a parser whose errors are one line)."""

from __future__ import annotations

import argparse
import math
import os
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn


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


# ------------------------------------------------------------------ flag types and the parser
class Bounded:
    """An argparse ``type`` that converts with ``kind`` (int or float) and checks a range.

    Non-finite numbers (nan, inf) are always refused. ``lo``/``hi`` bound the value (``lo_open`` /
    ``hi_open`` exclude the bound); ``allow`` lists extra values accepted as they are (e.g. 0 = off).
    ``bad_values`` are values the flag-walking test feeds to check the range is enforced.
    """

    def __init__(self, kind: type = float, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False) -> None:
        self.kind, self.lo, self.hi, self.lo_open, self.hi_open = kind, lo, hi, lo_open, hi_open
        self.__name__ = self.describe()  # argparse names the type in "invalid <name> value"

    def describe(self) -> str:
        name = "integer" if self.kind is int else "number"
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        return f"{name} {' and '.join(parts)}".strip()

    def _article(self) -> str:
        return ("an " if self.kind is int else "a ") + self.describe()

    def __call__(self, text: str) -> int | float:
        try:
            value = float(text) if self.kind is float else _as_int(text)
        except (TypeError, ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {self._article()}, got {text!r}") from None
        if self.kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite {self.describe()}, got {text!r}")
        low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        high = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        if low or high:
            raise argparse.ArgumentTypeError(f"expected {self._article()}, got {text!r}")
        return value

    @property
    def bad_values(self) -> list[str]:
        """Out-of-range inputs (for tests): just outside each bound, and text that is no number."""
        out = ["abc"] + (["nan", "inf"] if self.kind is float else ["1.5"])
        step = 1 if self.kind is int else 1e-3
        if self.lo is not None:
            out.append(str(self.lo if self.lo_open else self.lo - step))
        if self.hi is not None:
            out.append(str(self.hi if self.hi_open else self.hi + step))
        return out


def _as_int(text: Any) -> int:
    """``"5"`` or ``5.0`` (an NNI tuner's number) -> 5; ``"1.5"`` is refused."""
    if isinstance(text, float):
        if not text.is_integer():
            raise ValueError(text)
        return int(text)
    return int(str(text).strip())


def int_list(lo: int, hi: int, what: str = "values") -> Any:
    """An argparse ``type`` for comma-separated integers within ``[lo, hi]`` (e.g. space groups)."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in str(text).split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what} ({lo}..{hi}), "
                                             f"got {text!r}") from None
        bad = [v for v in values if not lo <= v <= hi]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"{what} must lie in {lo}..{hi}, got {text!r}")
        return values

    parse.__name__ = what
    parse.bad_values = ["x", f"{lo - 1}", f"{hi + 1}", ""]  # type: ignore[attr-defined]
    return parse


def writable_file(text: str) -> str:
    """An argparse ``type`` for an output file: its folder must exist (checked before any work)."""
    parent = Path(text).expanduser().resolve().parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: folder {parent} does not exist (create it first)")
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; pass a file name")
    return text


writable_file.bad_values = ["/nonexistent_folder_xrd/out.csv"]  # type: ignore[attr-defined]


def device_spec(text: str) -> str:
    """``--device``: 'cpu', a CUDA index, 'cuda' or 'cuda:N' (checked before any work starts)."""
    t = str(text).strip().lower()
    if t in ("cpu", "cuda") or t.isdigit() or (t.startswith("cuda:") and t[5:].isdigit()):
        return str(text).strip()
    raise argparse.ArgumentTypeError(f"expected 'cpu' or a CUDA index (0, 1, ...), got {text!r}")


device_spec.bad_values = ["gpu", "-1"]  # type: ignore[attr-defined]


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (``prog: error: ...``, exit code 2, no
    usage block, no traceback) and which runs cross-flag validators after parsing.

    Every float flag refuses nan/inf (also flags that plug-ins add with ``type=float``). A validator
    is ``fn(namespace) -> str | None``: a message names the flags and the fix; the parse then fails
    like a bad value does, before any work starts.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.validators: list[Callable[[argparse.Namespace], str | None]] = []

    def add_validator(self, fn: Callable[[argparse.Namespace], str | None]) -> None:
        self.validators.append(fn)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        for action in self._actions:  # plug-in flags declared with type=float: refuse nan/inf too
            if action.type is float:
                action.type = Bounded(float)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:
        ns = super().parse_args(args, namespace)
        self.validate(ns)
        return ns

    def validate(self, ns: argparse.Namespace) -> argparse.Namespace:
        """Run the cross-flag validators (also after NNI overrides); the first problem is an error."""
        for fn in self.validators:
            msg = fn(ns)
            if msg:
                self.error(msg)
        return ns

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())} (see --help)\n")
