"""Lazy attribute loading for the public subpackages.

``import medloss.losses`` must stay cheap and must not pull in optional or heavy dependencies (numba kernels,
nnU-Net): each public name is imported from its module on first access, which also keeps MONAI bundle
``_target_`` lookups (``medloss.losses.MIPLoss``) working.

A package lists its public names once, in the ``__init__.pyi`` stub next to its ``__init__.py``
(``from .module import Name as Name``): type checkers read the stub, and :func:`attach_stub` turns the same lines
into the lazy table at run time (the scheme of scientific Python's ``lazy_loader``).
"""

from __future__ import annotations

import ast
import importlib
import os
from typing import Callable, Dict, List, Tuple

__all__ = ["attach", "attach_stub"]


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


def stub_exports(stub_file: str) -> Dict[str, str]:
    """``{name: ".module"}`` from the ``from .module import Name as Name`` lines of a ``.pyi`` stub."""
    with open(stub_file) as f:
        tree = ast.parse(f.read(), stub_file)
    exports: Dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                if alias.asname not in (None, alias.name):
                    raise ValueError(f"{stub_file}: {alias.name} is re-exported as {alias.asname}; use 'as {alias.name}'.")
                exports[alias.name] = "." + node.module
        elif not isinstance(node, ast.Expr):  # the docstring
            raise ValueError(f"{stub_file}, line {node.lineno}: only 'from .module import Name as Name' lines belong here.")
    return exports


def attach_stub(package: str, init_file: str) -> Tuple[Callable[[str], object], Callable[[], List[str]], List[str]]:
    """:func:`attach` with the names read from ``__init__.pyi`` next to ``init_file`` (the package's ``__file__``)."""
    return attach(package, stub_exports(os.path.splitext(init_file)[0] + ".pyi"))
