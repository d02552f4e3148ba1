"""Data layer: dataset layouts, group files, multi-rater files, synthetic data and image writing."""
