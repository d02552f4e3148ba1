"""Lazy attribute loading for the public subpackages.

``import medloss.losses`` must stay cheap and must not pull in optional or heavy dependencies (numba kernels,
nnU-Net): each public name is imported from its module on first access, which also keeps MONAI bundle
``_target_`` lookups (``medloss.losses.MIPLoss``) working.
"""

from __future__ import annotations

import importlib
from typing import Callable, Dict, List, Tuple


def attach(package: str, exports: Dict[str, str]) -> Tuple[Callable[[str], object], Callable[[], List[str]], List[str]]:
    """Return ``__getattr__``, ``__dir__`` and ``__all__`` for ``package`` given ``{name: ".module"}``."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        # cache on the package module so the import runs once
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> List[str]:
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
