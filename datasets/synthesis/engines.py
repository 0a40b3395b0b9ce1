"""Registry of generation engines: ``build_engine("local", workers=4)``, ``build_engine("ray",
address="HEAD:6379")``. Every engine has ``imap_unordered(fn, jobs, on_fail=None)`` yielding
``(job, result)`` pairs, ``stats`` and ``close()`` (contract: :mod:`datasets.synthesis.engine_base`).
"""

from __future__ import annotations

from typing import Any

from datasets.synthesis.engine_local import LocalEngine
from datasets.synthesis.engine_ray import RayEngine
from utils.registry import Registry

ENGINES = Registry("engine")
ENGINES.register("local")(LocalEngine)
ENGINES.register("ray")(RayEngine)  # imports ray only when it connects


def build_engine(name: str, /, **kwargs: Any) -> Any:
    """Instantiate engine ``name`` with explicit keyword arguments (``KeyError`` lists the names)."""
    return ENGINES.build(name, **kwargs)
