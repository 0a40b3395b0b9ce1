"""Layer 0: shared utilities (registry, crystallography, checkpoints, logging, seeding, meters).

Modules here import only the standard library, numpy and torch.
"""
