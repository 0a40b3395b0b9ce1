"""Registry of dataset readers (npy, lmdb, raw, peaks)."""

from utils.registry import Registry

READERS = Registry("reader")
