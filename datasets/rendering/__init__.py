"""Peak physics, instrument/augmentation settings, the fast renderer, lattice augmentation."""
