"""The framework's own error types.

Every reader and validator raises one of these (never a bare ``ValueError`` from deep inside
numpy), with a message that names the offending file and says how to fix it. Tests and the
property-based fuzzers assert that only these types escape.
"""

from __future__ import annotations


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
