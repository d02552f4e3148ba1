"""Tests for generalized_energy_distance and max_dice (reference: PULASki test code, function_level_cases.npz)."""

from itertools import product
from pathlib import Path

import numpy as np
import pytest
import torch

from medloss.metrics import generalized_energy_distance, max_dice

DATA = Path(__file__).resolve().parents[1] / "data" / "mip_pulaski" / "function_level_cases.npz"


def _ged_brute(samples, raters, empty=0.0):
    """GED by explicit loops over all pairs (V-statistic), d = 1 - IoU."""

    def d(a, b):
        a, b = a.astype(bool), b.astype(bool)
        union = (a | b).sum()
        return empty if union == 0 else 1.0 - (a & b).sum() / union

    def mean(p, q):
        return np.mean([d(a, b) for a, b in product(p, q)])

    return 2 * mean(raters, samples) - mean(samples, samples) - mean(raters, raters)


def _random_masks(k, shape, seed, p=0.4):
    return np.random.default_rng(seed).random((k,) + shape) < p


def test_reference_ged_and_components():
    d = np.load(DATA)
    ged, d_ys, d_ss, d_yy = generalized_energy_distance(d["ged_samples"], d["ged_gts"], return_components=True)
    # the reference implementation accumulates in float32, hence 1e-6
    np.testing.assert_allclose([ged, d_ys, d_ss, d_yy],
                               [d["ged_value"], d["ged_dYS"], d["ged_dSS"], d["ged_dYY"]], atol=1e-6)
    np.testing.assert_allclose(ged, _ged_brute(d["ged_samples"], d["ged_gts"]), rtol=1e-12)


def test_empty_pair_reference_nan_and_safe_default():
    """PULASki's GED is NaN once an empty rater meets an empty sample (``ged_with_empty_pair``; the npz stores
    only the NaN, so the inputs are rebuilt from the GED case by emptying one rater and one sample)."""
    d = np.load(DATA)
    assert np.isnan(d["ged_with_empty_pair"])
    samples, raters = d["ged_samples"].copy(), d["ged_gts"].copy()
    samples[0] = 0
    raters[0] = 0
    assert np.isnan(generalized_energy_distance(samples, raters, empty_distance=float("nan")))
    value = generalized_energy_distance(samples, raters)
    assert np.isfinite(value)
    np.testing.assert_allclose(value, _ged_brute(samples, raters, empty=0.0), rtol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_ged_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, r = rng.integers(1, 5, 2)
    shape = (5, 4, 3) if seed % 2 else (6, 7)
    s, y = _random_masks(n, shape, seed), _random_masks(r, shape, seed + 100)
    if seed == 3:
        s[0] = False
        y[0] = False  # empty masks on both sides
    np.testing.assert_allclose(generalized_energy_distance(s, y), _ged_brute(s, y), rtol=1e-12, atol=1e-15)


def test_ged_properties():
    y = _random_masks(3, (6, 6), 1)
    assert generalized_energy_distance(y, y) == pytest.approx(0.0, abs=1e-15)
    s = _random_masks(4, (6, 6), 2)
    assert generalized_energy_distance(s, y) > 0
    # symmetric in its arguments, accepts torch tensors and uint8
    np.testing.assert_allclose(generalized_energy_distance(s, y), generalized_energy_distance(y, s), rtol=1e-12)
    np.testing.assert_allclose(
        generalized_energy_distance(torch.from_numpy(s), torch.from_numpy(y.astype(np.uint8))),
        generalized_energy_distance(s, y),
        rtol=1e-15,
    )


def test_ged_hand_case():
    a = np.zeros((1, 4), bool)
    a[0, :2] = True
    b = np.zeros((1, 4), bool)
    b[0, 1:3] = True
    # d(a, b) = 1 - 1/3; single masks: GED = 2 d(a, b) - 0 - 0
    assert generalized_energy_distance(a, b) == pytest.approx(2 * (1 - 1 / 3))
    assert generalized_energy_distance(a, np.zeros((1, 4))) == pytest.approx(2.0)  # empty vs non-empty: d = 1


def test_max_dice_definition():
    y = np.zeros((2, 4, 4), bool)
    y[0, :2] = True
    y[1, 2:] = True
    s = np.stack([y[0], np.zeros((4, 4), bool), np.ones((4, 4), bool)])
    # rater 0 is matched exactly by sample 0; rater 1's best is the all-ones sample: 2*8/(16+8)
    assert max_dice(s, y) == pytest.approx(0.5 * (1.0 + 2 * 8 / 24))
    assert max_dice(s, y[:1]) == 1.0
    assert max_dice(np.zeros((2, 3, 3)), np.zeros((1, 3, 3))) == 1.0  # empty vs empty
    assert max_dice(np.zeros((1, 3, 3)), np.ones((1, 3, 3))) == 0.0


def test_max_dice_matches_brute_force():
    s, y = _random_masks(5, (6, 5, 4), 3), _random_masks(3, (6, 5, 4), 4)
    dice = [[2 * (a & b).sum() / (a.sum() + b.sum()) for a in s] for b in y]
    np.testing.assert_allclose(max_dice(s, y), np.mean([max(row) for row in dice]), rtol=1e-12)
    np.testing.assert_allclose(max_dice(torch.from_numpy(s), torch.from_numpy(y)), max_dice(s, y))


@pytest.mark.parametrize("fn", [generalized_energy_distance, max_dice])
def test_bad_input_raises(fn):
    s, y = _random_masks(3, (4, 4), 5), _random_masks(2, (4, 4), 6)
    nan = s.astype(float)
    nan[0, 0, 0] = np.nan
    cases = {
        "at least one mask": (s[:0], y),
        "same spatial shape": (s, y[:, :3]),
        "NaN": (nan, y),
        "binary": (s, y * 0.5),
        "shape \\(K, \\*spatial\\)": (s[0, 0], y[0, 0]),
        "numeric or boolean": (s.astype(str), y.astype(str)),
    }
    for msg, (a, b) in cases.items():
        with pytest.raises(ValueError, match=msg):
            fn(a, b)
    with pytest.raises(ValueError, match="at least one mask"):
        fn(s, y[:0])
