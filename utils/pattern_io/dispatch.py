"""Which reader reads a file: content first (an XRDML or RAS file under any name), then the suffix.

Known instrument formats that no reader here reads are refused with the way to export them
(:data:`UNSUPPORTED`); any other suffix is refused with the list of supported ones.
"""

from __future__ import annotations

import os
from pathlib import Path

from utils.errors import DataError, fail
from utils.pattern_io.base import FORMATS, MeasuredPattern, resolve_wavelength

# suffix -> (what it is, how to get a readable file)
UNSUPPORTED = {
    ".raw": ("a binary RAW file (Bruker, Philips or Rigaku; no maintained Python library reads it)",
             "export .xy (DIFFRAC.EVA: File > Export > Scan as XY; add a '# wavelength:' comment) "
             "or .xrdml"),
    ".brml": ("a Bruker BRML archive (no maintained Python library reads it)",
              "export .xy from DIFFRAC.EVA (File > Export > Scan as XY) and add '# wavelength: <Å>'"),
    ".rasx": ("a Rigaku RASX archive (SmartLab Studio II; not read here)",
              "export .ras (SmartLab Studio II: File > Export > RAS)"),
    ".uxd": ("a Bruker/Siemens UXD text file (not read here)", "export .xy or .xrdml"),
    ".udf": ("a Philips UDF file (not read here)", "export .xrdml or .xy"),
    ".gsa": ("a GSAS data file (not read here)", "export .xy (GSAS-II: Export > powder data as .xye)"),
    ".fxye": ("a GSAS data file (not read here)", "export .xy (GSAS-II: Export > powder data as .xye)"),
    ".cif": ("a CIF (a structure or pdCIF; not read as a pattern)",
             "for a structure simulate it (python -m datasets.simulate); for pdCIF export .xy"),
}


def suffixes() -> tuple[str, ...]:
    """Every suffix a registered reader owns (the files a folder scan picks up)."""
    return tuple(s for name in FORMATS.names() for s in FORMATS.get(name).suffixes)


def format_of(path: Path) -> str:
    """The registry name of the reader for ``path``.

    Raises:
        DataError: a missing file, a known but unsupported format, or an unknown suffix.
    """
    if not path.is_file():
        raise fail(DataError, path, "pattern file not found", "check the path")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    for name in FORMATS.names():
        if FORMATS.get(name).sniff(head):
            return name
    suffix = path.suffix.lower()
    for name in FORMATS.names():
        if suffix in FORMATS.get(name).suffixes:
            return name
    if suffix in UNSUPPORTED:
        what, fix = UNSUPPORTED[suffix]
        raise fail(DataError, path, f"{what}", fix)
    raise fail(DataError, path, f"unknown pattern format {suffix or '(no suffix)'!r}",
               f"pass one of {', '.join(suffixes())} (docs/DATA.md lists what each gives)")


def read_pattern(path: str | os.PathLike, wavelength: float | None = None,
                 require_wavelength: bool = True) -> MeasuredPattern:
    """Read any supported pattern file (:data:`utils.pattern_io.base.FORMATS`).

    Args:
        path: the file.
        wavelength: ``--wavelength`` [Å]: overrides the file's (a mismatch is reported).
        require_wavelength: raise when the wavelength stays unknown (the commands); False leaves
            ``pattern.wavelength`` None.

    Raises:
        DataError: unreadable, unsupported, not a powder scan, or (``require_wavelength``) an
            unknown wavelength; the message names the file and the fix.
    """
    path = Path(path)
    pattern = FORMATS.get(format_of(path)).read(path)
    if wavelength is None and not require_wavelength:
        return pattern
    return resolve_wavelength(pattern, wavelength)


def collect_pattern_files(paths: list[str | os.PathLike]) -> list[tuple[Path, bool]]:
    """``(file, named)`` pairs: the files named in ``paths`` (``named``: a bad one stops the
    command) and, sorted, the files of the named folders with a supported suffix (a bad one is
    reported and skipped). Known unsupported formats in a folder are listed too, so that the
    user learns why they were not read.

    Raises:
        DataError: a path does not exist, or nothing to read was found.
    """
    known = suffixes()
    files: list[tuple[Path, bool]] = []
    for s in paths:
        p = Path(s)
        if p.is_dir():
            files += [(f, False) for f in sorted(p.iterdir())
                      if f.is_file() and f.suffix.lower() in known + tuple(UNSUPPORTED)]
        elif p.is_file():
            files.append((p, True))
        else:
            raise DataError(f"{p}: not found. Fix: pass existing pattern files or folders")
    if not files:
        raise DataError(f"{', '.join(map(str, paths))}: no pattern files ({', '.join(known)}) "
                        "found. Fix: pass pattern files or a folder that holds them")
    return files
