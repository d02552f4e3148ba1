"""MONAI bundles for every medloss method (shipped as package data) and the glue they use."""
