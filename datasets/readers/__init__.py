"""Readers of the formats users bring, and their converters."""
