"""Betti-Matching-3D, the reference implementation, as an optional oracle for tests and benchmarks.

Never used by medloss itself. The compiled ``betti_matching`` module is imported directly when installed on its
own, else from the copy inside the topolosses wheel by file path: importing topolosses' package would pull in
torchvision, which has no build for every torch.
"""

from __future__ import annotations

import glob
import importlib.util
import os


def load_betti_matching_3d():
    """The compiled ``betti_matching`` module (``compute_matching``), or ``None`` when it is not installed."""
    try:
        import betti_matching as mod

        # a script named betti_matching.py (our benchmark) shadows the module when run from its folder
        if hasattr(mod, "compute_matching"):
            return mod
    except Exception:  # any import problem means: not available this way
        pass
    try:
        spec = importlib.util.find_spec("topolosses")
    except Exception:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = list(spec.submodule_search_locations)[0]
    hits = glob.glob(os.path.join(root, "losses", "betti_matching", "src", "betti_matching*.so"))
    if not hits:
        return None
    spec = importlib.util.spec_from_file_location("betti_matching", hits[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
