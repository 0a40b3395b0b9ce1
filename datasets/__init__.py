"""Layer 2: readers (NPY, LMDB, raw CIF CSV, peak lists, measured .xy) → DataBundle, rendering
and augmentation, samplers, and the simulator of the built-in benchmark.

Readers are imported explicitly so that ``@READERS.register`` runs on ``import datasets``.
"""

from datasets import lmdb_reader, npy_reader, peak_dataset, raw_csv  # noqa: F401  (registration)
from datasets.base import DataBundle, counts_from_labels
from datasets.registry import READERS
from datasets.source import resolve_data_source

__all__ = ["READERS", "DataBundle", "counts_from_labels", "resolve_data_source"]
from datasets import cifar_lt  # noqa: E402,F401  (CIFAR-LT readers)
