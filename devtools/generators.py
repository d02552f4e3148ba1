"""Input generators for the Betti matching benchmark and tests (not part of the medloss wheel)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np


def noisy_prediction_pair(shape: Sequence[int], seed: Optional[int] = 0) -> Tuple[np.ndarray, np.ndarray]:
    """The Betti matching benchmark inputs (Betti-Matching-3D reference data): a noisy prediction and its target.

    ``base`` = smoothed Gaussian noise (sigma 3, unit std), ``noise`` = smoothed Gaussian noise (sigma 1, unit
    std) from the same generator; returns ``(sigmoid(3 base + 1.5 noise), base > 0)`` as float64 arrays.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.standard_normal(shape), 3.0, mode="reflect")
    base /= base.std()
    noise = gaussian_filter(rng.standard_normal(shape), 1.0, mode="reflect")
    noise /= noise.std()
    pred = 1.0 / (1.0 + np.exp(-(3.0 * base + 1.5 * noise)))
    return pred, (base > 0).astype(np.float64)
