"""MONAI bundles for every medloss method, shipped as package data (one folder per bundle).

``medloss bundle list`` names them and ``medloss bundle init NAME DIR`` copies one out (:mod:`medloss.bundles.cli`);
the pieces the configs use live in the library (:mod:`medloss.data`, :mod:`medloss.losses`,
:mod:`medloss.networks`, :mod:`medloss.transforms`).
"""
