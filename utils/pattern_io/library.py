"""The optional XRD library behind the instrument readers: xrayutilities (GPL-2, pip wheel).

It parses the data of PANalytical XRDML (``xrayutilities.io.XRDMLFile``: positions, counts per
second from the counting time and attenuation) and Rigaku RAS files (``xrayutilities.io.RASFile``:
the scans and their header lines). It is imported here only, lazily, so that plain text patterns
and the rest of the framework work without it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from utils.errors import DataError, fail

LIBRARY = "xrayutilities"


def xrayutilities_io(path: Path, what: str) -> ModuleType:
    """``xrayutilities.io``, or a DataError that says how to install it (``what``: the format)."""
    try:
        return importlib.import_module(f"{LIBRARY}.io")
    except ImportError as exc:
        raise fail(DataError, path, f"reading {what} files needs the {LIBRARY} package ({exc})",
                   f"pip install '{LIBRARY}>=1.8' (it is in requirements.txt), or export the scan "
                   "as two-column .xy text with a '# wavelength:' comment") from None
