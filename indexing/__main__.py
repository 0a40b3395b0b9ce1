"""``python -m indexing PATTERN… [--wavelength Å] [--csv OUT] [--top N] [--sticks]``: see
``indexing.cli``."""

from indexing.cli import main

if __name__ == "__main__":
    main()
