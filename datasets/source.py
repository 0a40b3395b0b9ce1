"""Which reader reads which folder (``--data_format auto``)."""

from __future__ import annotations

from pathlib import Path

from utils.errors import DataError, fail


def resolve_data_source(data_format: str = "auto", use_processed_npy: bool = False,
                        processed_data_dir: str | None = None, data_dir: str | None = None,
                        default_dir: str | Path | None = None,
                        dataset: str | None = None) -> tuple[str, Path]:
    """Return (reader name, root folder).

    ``--use_processed_npy`` (the seed's flag) selects the NPY layout under ``--processed_data_dir``.
    Otherwise ``--data_dir`` is inspected: ``peaks_train.npz`` → peaks, ``lmdb/train/data.mdb`` (or
    ``train/data.mdb``) → lmdb, ``train*.csv`` → raw, ``cifar-10-batches-py`` / ``cifar-100-python``
    (that folder or its parent; ``dataset`` = cifar10_lt / cifar100_lt picks one when both are
    there) → the CIFAR-LT readers; with no folder given, the built-in default set.
    """
    if use_processed_npy or data_format == "npy":
        root = processed_data_dir or data_dir
        if not root:
            raise DataError("--use_processed_npy needs --processed_data_dir D. Fix: pass the folder "
                            "that holds {name}_sg_train/ and {name}_sg_test/")
        return "npy", Path(root)
    root = Path(data_dir) if data_dir else (Path(default_dir) if default_dir else None)
    if root is None:
        raise DataError("no data given. Fix: pass --data_dir DIR or --use_processed_npy "
                        "--processed_data_dir DIR")
    if not root.exists():
        raise fail(DataError, root, "data folder not found",
                   "generate the built-in set with `python -m datasets.simulate --out DIR` or pass "
                   "the folder of your data")
    if data_format != "auto":
        return data_format, root
    if (root / "peaks_train.npz").is_file() or (root / "peaks_test.npz").is_file():
        return "peaks", root
    if (root / "lmdb" / "train" / "data.mdb").is_file() or (root / "train" / "data.mdb").is_file():
        return "lmdb", root
    if any(root.glob("train*.csv")):
        return "raw", root
    if any(root.glob("*_sg_train")):
        return "npy", root
    cifar = [fmt for fmt, folder, first in (("cifar10_lt", "cifar-10-batches-py", "data_batch_1"),
                                            ("cifar100_lt", "cifar-100-python", "train"))
             if (root / folder / first).is_file() or (root.name == folder and (root / first).is_file())]
    if len(cifar) == 1 or dataset in cifar:
        return (dataset if dataset in cifar else cifar[0]), root
    raise fail(DataError, root, "cannot tell the data format (no peaks_train.npz, lmdb/, train*.csv, "
               "*_sg_train/ or a single CIFAR folder)", "pass --data_format {npy,lmdb,raw,peaks,cifar10_lt,"
               "cifar100_lt} or point --data_dir at a dataset folder")
