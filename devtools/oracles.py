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


def gudhi_betti_numbers(mask, connectivity: int = 1):
    """Betti numbers of a binary mask by gudhi, as TopoMortar's ``measure.py`` computes them (connectivity = ndim).

    ``connectivity=1``: ``CubicalComplex(vertices=1 - mask)`` (V-construction, 4/6-connected foreground);
    ``connectivity=ndim``: ``CubicalComplex(top_dimensional_cells=1 - mask)`` (T-construction, 8/26-connected).
    ``persistent_betti_numbers(inf, -inf)`` counts every interval of positive length, the essential class of the
    whole complex included, so an empty mask has ``beta_0 = 1``. Returns an int64 array ``(ndim,)``.
    """
    import gudhi
    import numpy as np

    cells = 1.0 - np.asarray(mask, dtype=np.float64)
    key = "vertices" if connectivity == 1 else "top_dimensional_cells"
    cc = gudhi.CubicalComplex(**{key: cells})
    cc.compute_persistence(homology_coeff_field=2)
    betti = list(cc.persistent_betti_numbers(np.inf, -np.inf))[: cells.ndim]
    return np.array(betti + [0] * (cells.ndim - len(betti)), np.int64)


def gudhi_barcode(image, connectivity: int = 1):
    """Finite intervals of positive length of the sublevel filtration of ``image`` by gudhi, per dimension.

    ``connectivity=1``: V-construction (``vertices=``), ``ndim``: T-construction (``top_dimensional_cells=``).
    Returns one sorted list of ``(birth, death)`` tuples per homology dimension ``0 .. ndim-1``.
    """
    import gudhi
    import numpy as np

    image = np.asarray(image, dtype=np.float64)
    key = "vertices" if connectivity == 1 else "top_dimensional_cells"
    cc = gudhi.CubicalComplex(**{key: image})
    cc.compute_persistence(homology_coeff_field=2, min_persistence=-1)
    out = []
    for d in range(image.ndim):
        iv = np.asarray(cc.persistence_intervals_in_dimension(d)).reshape(-1, 2)
        iv = iv[np.isfinite(iv[:, 1]) & (iv[:, 1] > iv[:, 0])]
        out.append(sorted(map(tuple, iv.tolist())))
    return out
