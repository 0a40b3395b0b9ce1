"""The framework's own error types.

Every reader and validator raises one of these (never a bare ``ValueError`` from deep inside
numpy), with a message that names the offending file and says how to fix it. Tests and the
property-based fuzzers assert that only these types escape.
"""

from __future__ import annotations

import errno


class XRDError(Exception):
    """Base class of all documented framework errors."""


class DataError(XRDError, ValueError):
    """Input data is missing, malformed or inconsistent (bad shape, NaN, label out of range...)."""


class GridMismatchError(DataError):
    """Data was produced on another 2θ grid / wavelength than the model expects."""


class RuleMatrixError(DataError):
    """A rule matrix is not 230×230, not symmetric, has NaN or values outside [0, 1]."""


class CheckpointError(XRDError, RuntimeError):
    """A checkpoint is missing, truncated or does not match the requested model."""


class ConfigError(XRDError, ValueError):
    """A configuration (flags, YAML preset, NNI parameters) is invalid."""


def fail(cls: type[XRDError], path: object, problem: str, fix: str) -> XRDError:
    """Build an error whose message always has the same three parts: where, what, how to fix.

    Args:
        cls: the error class.
        path: the offending file (or any object with a useful ``str``).
        problem: what is wrong.
        fix: what the user should do.
    """
    return cls(f"{path}: {problem}. Fix: {fix}")


class StorageError(XRDError, OSError):
    """The operating system refused a write or read: full disk, no permission, read-only mount."""


# errno -> (what happened, how to fix it)
_OS_PROBLEMS = {
    errno.ENOSPC: ("no space left on the device", "free space (or write elsewhere), then run again"),
    errno.EDQUOT: ("disk quota exceeded", "free space in your quota (or write elsewhere), then run again"),
    errno.EACCES: ("permission denied", "make the folder writable for this user, or write elsewhere"),
    errno.EPERM: ("operation not permitted", "make the folder writable for this user, or write elsewhere"),
    errno.EROFS: ("read-only file system", "write to a folder on a writable file system"),
}


def storage_error(exc: OSError, path: object = None, kept: str = "") -> StorageError | None:
    """A one-line :class:`StorageError` for a full disk / permission / read-only error (None for
    any other ``OSError``, which stays as it is): the path, what happened, what was kept, the fix."""
    if isinstance(exc, StorageError):
        return exc
    if exc.errno not in _OS_PROBLEMS:
        return None
    problem, fix = _OS_PROBLEMS[exc.errno]
    where = path if path is not None else (exc.filename or "a file")
    return StorageError(exc.errno, f"{where}: {problem}" + (f"; {kept}" if kept else "")
                        + f". Fix: {fix}")


def exit_message(exc: BaseException) -> str | None:
    """The one line a command prints for a documented error (an :class:`XRDError`, or an OS error
    that :func:`storage_error` describes); None for anything else (a bug: keep the traceback)."""
    if isinstance(exc, OSError) and not isinstance(exc, XRDError):
        exc = storage_error(exc) or exc
    if isinstance(exc, StorageError):
        return f"StorageError: {exc.strerror}"
    if isinstance(exc, XRDError):
        return f"{type(exc).__name__}: {exc}"
    return None
