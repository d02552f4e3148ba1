"""Scoring folders of NIfTI predictions against ground truth."""
