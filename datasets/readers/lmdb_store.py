"""LMDB storage of peak lists: a writer and a read-only, multi-worker-safe torch Dataset.

Layout: one LMDB environment (a folder holding ``data.mdb``) per split, e.g. ``OUT/lmdb/train``.
Keys and values (no pickle anywhere, so opening a file never runs code):

* ``b"%08d" % i`` for sample ``i`` (0..N-1): a record ::

      b"XRDP" | uint32 little-endian header length H | H bytes of UTF-8 JSON header
             | n float32 LE two_theta [deg] | n float32 LE intensity (max 100)

  with header ``{"v": 1, "n": n, "sg": 1..230, "formula": str, "lattice": [a, b, c, α, β, γ],
  "source": str, ...}`` (extra metadata keys are allowed and preserved).
* ``b"__len__"``: N as ASCII decimal.
* ``b"__meta__"``: UTF-8 JSON ``{"format": "xrd-peaks-lmdb", "version": 1, "wavelength": float,
  "split": str, ...}``.
* ``b"__sg__"``: N int16 LE labels (1..230), so class counts and samplers need no full scan.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from datasets.peaks import PeakTable
from utils.crystal import SG_TO_CS
from utils.errors import DataError, fail

MAGIC = b"XRDP"
FORMAT = "xrd-peaks-lmdb"
VERSION = 1
_FIX = "regenerate it with `python -m datasets.simulate --out DIR --lmdb`"


def encode_record(two_theta: np.ndarray, intensity: np.ndarray, header: dict[str, Any]) -> bytes:
    """One sample as bytes (see module docstring). ``header`` must hold at least ``sg``."""
    tt = np.ascontiguousarray(two_theta, dtype="<f4")
    it = np.ascontiguousarray(intensity, dtype="<f4")
    if tt.shape != it.shape or tt.ndim != 1:
        raise ValueError(f"two_theta {tt.shape} and intensity {it.shape} must be equal 1-D shapes")
    h = json.dumps({"v": VERSION, **header, "n": int(tt.size)}, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(h)) + h + tt.tobytes() + it.tobytes()


def decode_record(buf: bytes, where: object = "record") -> tuple[np.ndarray, np.ndarray, dict]:
    """Inverse of :func:`encode_record`; raises DataError on any inconsistency."""
    if len(buf) < 8 or buf[:4] != MAGIC:
        raise fail(DataError, where, "not an XRD peak record (bad magic)", _FIX)
    (hlen,) = struct.unpack("<I", buf[4:8])
    try:
        header = json.loads(bytes(buf[8:8 + hlen]).decode())
        if not isinstance(header, dict):
            raise TypeError("header is not a JSON object")
        n = int(header["n"])
        int(header["sg"])
    except Exception as exc:
        raise fail(DataError, where, f"corrupt record header ({type(exc).__name__})", _FIX) from exc
    body = memoryview(buf)[8 + hlen:]
    if len(body) != 8 * n:
        raise fail(DataError, where, f"record holds {len(body)} bytes of peaks, expected {8 * n}", _FIX)
    arr = np.frombuffer(body, dtype="<f4")
    if not np.isfinite(arr).all():
        raise fail(DataError, where, "NaN/inf in the peak positions or intensities", _FIX)
    return arr[:n].astype(np.float32), arr[n:].astype(np.float32), header


def write_lmdb(path: str | os.PathLike, table: PeakTable, meta: dict[str, Any] | None = None,
               source: str = "") -> Path:
    """Write a PeakTable as one LMDB environment, atomically (build aside, then rename).

    Args:
        path: environment folder to create (replaced if it exists).
        table: the peak lists; its ``meta`` arrays ``formula``, ``lattice`` and ``source`` (and any
            other per-sample 1-D/2-D arrays) go into each record's header.
        meta: extra JSON-able dataset metadata for ``__meta__``.
        source: default ``source`` field when the table has no ``meta['source']``.
    """
    import lmdb

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    n = len(table)
    size = 8 * len(table.two_theta) + 600 * n + (1 << 20)
    env = lmdb.open(str(tmp), map_size=int(size * 2 + (16 << 20)), subdir=True, lock=True)
    try:
        with env.begin(write=True) as txn:
            for i in range(n):
                tt, it = table.peaks(i)
                h = {"sg": int(table.sg[i]), "source": source}
                for k, v in table.meta.items():
                    x = v[i]
                    h[k] = x.tolist() if isinstance(x, np.ndarray) else getattr(x, "item", lambda x=x: x)()
                txn.put(b"%08d" % i, encode_record(tt, it, h))
            txn.put(b"__len__", str(n).encode())
            txn.put(b"__sg__", np.ascontiguousarray(table.sg, dtype="<i2").tobytes())
            m = {"format": FORMAT, "version": VERSION, "wavelength": float(table.wavelength),
                 **(meta or {})}
            txn.put(b"__meta__", json.dumps(m).encode())
        env.sync()
    finally:
        env.close()
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


# One read-only environment per (process, data file): LMDB forbids opening the same file twice in
# a process, and a handle inherited through fork must not be used (nor can the file be reopened
# until that inherited handle is closed in the child).
_ENVS: dict[tuple, tuple[int, Any, tuple]] = {}


def _shared_env(path: Path):
    import lmdb

    try:
        st = os.stat(path / "data.mdb")
    except OSError as exc:
        raise fail(DataError, path, "LMDB folder (with data.mdb) not found", _FIX) from exc
    key = (st.st_dev, st.st_ino)
    stamp = (st.st_mtime_ns, st.st_size)  # an inode number is reused once a file is deleted
    pid = os.getpid()
    hit = _ENVS.get(key)
    if hit is not None and hit[0] == pid and hit[2] == stamp:
        return hit[1]
    if hit is not None:  # inherited from the parent process, or a stale file: release it, never use it
        try:
            hit[1].close()
        except lmdb.Error:
            pass
        del _ENVS[key]
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True,
                        max_readers=256)
    except lmdb.Error as exc:
        raise fail(DataError, path, f"cannot open LMDB ({type(exc).__name__}: {exc})", _FIX) from exc
    # A truncated data.mdb maps pages past the end of the file, and touching them kills the process
    # with SIGBUS (not an exception): compare the size the meta page promises with the real size.
    need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    if st.st_size < need:
        env.close()
        raise fail(DataError, path, f"data.mdb is truncated ({st.st_size} bytes, its header says "
                   f"{need})", _FIX)
    _ENVS[key] = (pid, env, stamp)
    return env


def release_envs() -> None:
    """Close this process's cached read-only environments (e.g. before rewriting a file)."""
    pid = os.getpid()
    for key, (p, env, _) in list(_ENVS.items()):
        if p == pid:
            env.close()
        del _ENVS[key]


class LmdbPeakDataset(Dataset):
    """Read-only peak lists from one LMDB environment.

    The environment is opened read-only and lazily, and re-opened when the process id changes,
    because an LMDB handle must not cross a ``fork`` (DataLoader workers).

    Each item: ``{"two_theta": (n,) float32, "intensity": (n,) float32, "y_sg": int in [0, 230),
    "y_cs": int in [0, 7), "idx": int}`` — the peak-list dataset's per-sample contract; a collate
    renders them onto the grid.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._env = None
        self._pid = None
        if not self.path.is_dir() or not (self.path / "data.mdb").is_file():
            raise fail(DataError, self.path, "LMDB folder (with data.mdb) not found", _FIX)
        try:
            with self._txn() as txn:
                raw_len, raw_meta, raw_sg = txn.get(b"__len__"), txn.get(b"__meta__"), txn.get(b"__sg__")
        except DataError:
            raise
        except Exception as exc:  # lmdb.CorruptedError and friends
            raise fail(DataError, self.path, f"corrupt LMDB ({type(exc).__name__})", _FIX) from exc
        missing = [k for k, v in (("__len__", raw_len), ("__meta__", raw_meta), ("__sg__", raw_sg))
                   if v is None]
        if missing:
            raise fail(DataError, self.path, f"LMDB lacks the keys {missing}", _FIX)
        try:
            self.n = int(raw_len.decode())
            self.meta = json.loads(raw_meta.decode())
            if not isinstance(self.meta, dict):
                raise TypeError("__meta__ is not a JSON object")
        except Exception as exc:
            raise fail(DataError, self.path, "unreadable __len__/__meta__", _FIX) from exc
        if self.meta.get("format") != FORMAT:
            raise fail(DataError, self.path, f"__meta__ format is {self.meta.get('format')!r}, "
                       f"expected {FORMAT!r}", _FIX)
        if len(raw_sg) % 2:
            raise fail(DataError, self.path, f"__sg__ holds {len(raw_sg)} bytes, not int16 labels", _FIX)
        self.sg = np.frombuffer(raw_sg, dtype="<i2").astype(np.int64)
        if len(self.sg) != self.n or (self.n and (self.sg.min() < 1 or self.sg.max() > 230)):
            raise fail(DataError, self.path, "__sg__ labels do not match __len__ or leave 1..230", _FIX)
        try:
            self.wavelength = float(self.meta.get("wavelength", 1.5406))
        except (TypeError, ValueError):
            self.wavelength = float("nan")
        if not (np.isfinite(self.wavelength) and self.wavelength > 0):
            raise fail(DataError, self.path, f"__meta__ wavelength {self.meta.get('wavelength')!r} is not "
                       "a positive number of Å", _FIX)

    def _txn(self):
        if self._env is None or self._pid != os.getpid():
            self._env = _shared_env(self.path)
            self._pid = os.getpid()
        try:
            return self._env.begin(write=False, buffers=False)
        except Exception as exc:
            raise fail(DataError, self.path, f"cannot read LMDB ({type(exc).__name__}: {exc})", _FIX) from exc

    def _close(self) -> None:
        """Forget the handle (the process-wide environment stays open for other readers)."""
        self._env, self._pid = None, None

    def __getstate__(self) -> dict:
        d = self.__dict__.copy()
        d["_env"], d["_pid"] = None, None
        return d

    def __len__(self) -> int:
        return self.n

    @property
    def labels(self) -> np.ndarray:
        """(N,) 0-based space-group labels."""
        return self.sg - 1

    def record(self, i: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """(two_theta, intensity, header) of sample ``i``."""
        if not 0 <= i < self.n:
            raise IndexError(i)
        try:
            with self._txn() as txn:
                buf = txn.get(b"%08d" % i)
        except DataError:
            raise
        except Exception as exc:
            raise fail(DataError, self.path, f"corrupt LMDB at record {i} ({type(exc).__name__})",
                       _FIX) from exc
        if buf is None:
            raise fail(DataError, self.path, f"record {i} is missing", _FIX)
        return decode_record(buf, f"{self.path} record {i}")

    def __getitem__(self, i: int) -> dict[str, Any]:
        tt, it, h = self.record(int(i))
        sg0 = int(h["sg"]) - 1
        if sg0 != int(self.sg[i]) - 1:
            raise fail(DataError, self.path, f"record {i} label {sg0 + 1} differs from __sg__", _FIX)
        return {"two_theta": tt, "intensity": it, "y_sg": sg0, "y_cs": int(SG_TO_CS[sg0]), "idx": int(i)}


def lmdb_to_peak_table(path: str | os.PathLike) -> PeakTable:
    """Read a whole LMDB environment into a PeakTable (meta: formula, lattice, source)."""
    ds = LmdbPeakDataset(path)
    tts, its, sgs, formula, lattice, source = [], [], [], [], [], []
    for i in range(len(ds)):
        tt, it, h = ds.record(i)
        tts.append(tt)
        its.append(it)
        if int(h["sg"]) != int(ds.sg[i]):
            raise fail(DataError, ds.path, f"record {i} label {h['sg']} differs from __sg__", _FIX)
        sgs.append(int(ds.sg[i]))
        formula.append(str(h.get("formula", "")))
        lattice.append(h.get("lattice", [np.nan] * 6))
        source.append(str(h.get("source", "")))
    ds._close()
    try:
        lat = np.array(lattice, np.float32).reshape(-1, 6)
    except (TypeError, ValueError) as exc:
        raise fail(DataError, path, f"a record's 'lattice' is not 6 numbers ({exc})", _FIX) from exc
    meta = {"formula": np.array(formula, dtype=str), "lattice": lat, "source": np.array(source, dtype=str)}
    return PeakTable.from_lists(tts, its, sgs, ds.wavelength, meta).validate(path)
