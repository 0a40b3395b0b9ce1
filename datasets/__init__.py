"""Layer 2: everything between files on disk and batches.

Sub-packages, each importing only downward (``tests/test_layers.py`` enforces the order):

* core (this folder): ``base`` (DataBundle, batch contract), ``registry`` (READERS), ``peaks``
  (PeakTable storage), ``samplers``, ``views`` (multi-view plans), ``source`` (which reader reads a
  folder), ``crystal_tables`` (reference tables from pyxtal/spglib);
* ``rendering``: peak physics (Bragg, Lorentz–polarisation, form factors, widths), the instrument
  and augmentation settings, the fast renderer, lattice augmentation from reflection families;
* ``readers``: the formats users bring (NPY, LMDB, CIF CSV, ``.xy`` patterns, peak lists) and
  their converters;
* ``synthesis``: the built-in benchmark's generator (job plan, random structures, reflection
  families, engines: local processes and Ray, the on-the-fly stream);
* ``cifar``: CIFAR-10/100-LT readers for the long-tail baselines' sanity checks.

Readers are imported explicitly so that ``@READERS.register`` runs on ``import datasets``.
"""

from datasets.base import DataBundle, counts_from_labels
from datasets.cifar import cifar_lt  # noqa: F401  (registration)
from datasets.readers import cif_csv, lmdb_peaks, npy, peak_lists  # noqa: F401  (registration)
from datasets.registry import READERS
from datasets.source import resolve_data_source

__all__ = ["READERS", "DataBundle", "counts_from_labels", "resolve_data_source"]
