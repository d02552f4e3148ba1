"""Tests for medloss.metrics.centerline (clDice, centre-line Dice)."""

import math

import numpy as np
import pytest
import torch

from medloss.metrics.centerline import ClDiceMetric, cldice


def _line(shape, row, cols, depth=None):
    a = np.zeros(shape)
    if depth is None:
        a[row, cols[0] : cols[1]] = 1
    else:
        a[row, cols[0] : cols[1], depth] = 1
    return a


@pytest.mark.parametrize("shape, depth", [((10, 18), None), ((10, 18, 9), 4)])
def test_identical_disjoint_and_shifted_lines(shape, depth):
    a = _line(shape, 4, (2, 13), depth)
    assert cldice(a, a) == 1.0
    # parallel line two rows away: no centre-line pixel inside the other mask
    assert cldice(_line(shape, 7, (2, 13), depth), a) == 0.0
    # shifted along its axis by 3: 8 of 11 centre-line pixels inside the other line, both ways -> 8/11
    assert cldice(_line(shape, 4, (5, 16), depth), a) == pytest.approx(8 / 11)
    # one line half the length of the other: Tprec = 1, Tsens = 6/12 -> 2/3
    assert cldice(_line(shape, 4, (2, 8), depth), _line(shape, 4, (2, 14), depth)) == pytest.approx(2 / 3)


def test_thick_tube_vs_its_centre_line_3d():
    # Dice would be 2*11/(11+99) = 0.2; the centre line of the 3x3 tube lies on the predicted line -> clDice 1
    tube = np.zeros((10, 16, 10))
    tube[4:7, 2:13, 4:7] = 1
    line = _line(tube.shape, 5, (2, 13), 5)
    assert cldice(line, tube) == 1.0


def test_threshold_and_torch_input():
    a = _line((8, 16), 3, (1, 15))
    prob = torch.tensor(a * 0.8 + 0.1)
    assert cldice(prob, torch.tensor(a)) == 1.0
    assert cldice(prob, torch.tensor(a), threshold=0.95) == 0.0


def test_empty_conventions():
    empty = np.zeros((8, 8))
    a = _line((8, 8), 3, (1, 7))
    assert cldice(empty, empty) == 1.0
    assert math.isnan(cldice(empty, empty, ignore_empty=True))
    assert math.isnan(cldice(a, empty, ignore_empty=True))
    assert cldice(a, empty) == 0.0
    assert cldice(empty, a) == 0.0


def test_objects_erased_by_thinning_count_as_their_own_skeleton():
    cube = np.zeros((6, 6, 6))
    cube[2:4, 2:4, 2:4] = 1  # scikit-image's 3D thinning removes this cube completely
    assert cldice(cube, cube) == 1.0
    shifted = np.zeros_like(cube)
    shifted[3:5, 2:4, 2:4] = 1
    # half of each cube lies in the other one
    assert cldice(shifted, cube) == pytest.approx(0.5)


def test_batched_and_include_background():
    a = _line((8, 16), 3, (1, 12))
    b = _line((8, 16), 3, (4, 15))
    pred = np.stack([np.stack([1 - a, a, b]), np.stack([1 - b, b, a])])
    gt = np.stack([np.stack([1 - a, a, a]), np.stack([1 - b, b, b])])
    out = cldice(pred, gt)
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[:, 1], [1.0, 1.0])
    np.testing.assert_allclose(out[:, 2], [8 / 11, 8 / 11])
    np.testing.assert_allclose(cldice(pred, gt, include_background=False), out[:, 1:])


def test_cumulative_metric():
    a = _line((8, 16), 3, (1, 12))
    b = _line((8, 16), 3, (4, 15))
    empty = np.zeros_like(a)
    y_pred = torch.tensor(np.stack([np.stack([a, b]), np.stack([a, a])]))
    y = torch.tensor(np.stack([np.stack([a, a]), np.stack([empty, a])]))
    metric = ClDiceMetric(get_not_nans=True)
    metric(y_pred=y_pred, y=y)
    raw, _ = metric.aggregate("none")
    assert math.isnan(raw[1, 0].item())
    f, not_nans = metric.aggregate()
    # channel means over not-NaN entries ([1, 8/11] and [1]), then the batch mean
    assert f.item() == pytest.approx(((1 + 8 / 11) / 2 + 1) / 2, rel=1e-6)
    assert not_nans.item() == 2
    keep = ClDiceMetric(ignore_empty=False, reduction="mean_channel")
    keep(y_pred=y_pred, y=y)
    np.testing.assert_allclose(keep.aggregate().numpy(), [(1 + 8 / 11) / 2, 0.5], rtol=1e-6)


def test_bad_inputs():
    ok = np.zeros((6, 6))
    with pytest.raises(ValueError, match="same shape"):
        cldice(ok, np.zeros((5, 6)))
    with pytest.raises(ValueError, match="spatial"):
        cldice(np.zeros(6), np.zeros(6))
    with pytest.raises(ValueError, match="spatial"):
        cldice(np.zeros((1, 1, 2, 2, 2, 2)), np.zeros((1, 1, 2, 2, 2, 2)))
    with pytest.raises(ValueError, match="empty"):
        cldice(np.zeros((0, 6)), np.zeros((0, 6)))
    with pytest.raises(ValueError, match="NaN"):
        cldice(ok + np.nan, ok)
    with pytest.raises(ValueError, match="binary"):
        cldice(ok, ok + 0.3)
    with pytest.raises(ValueError, match="y_pred"):
        ClDiceMetric()(y_pred=torch.zeros(1, 6, 6), y=torch.zeros(1, 6, 6))


def test_bfloat16_input_gives_the_float32_values():
    # numpy has no bfloat16: the metrics read it through float32 (medloss.validation.to_numpy)
    from medloss.metrics import betti_matching_error, betti_number_error

    gen = torch.Generator().manual_seed(3)
    prob = torch.rand(2, 1, 16, 16, generator=gen)
    target = (torch.rand(2, 1, 16, 16, generator=gen) > 0.6).float()
    prob[prob.round(decimals=2) == 0.5] = 0.25  # no probability that bfloat16 rounds across the threshold
    for dtype in (torch.bfloat16, torch.float16):
        np.testing.assert_array_equal(cldice(prob.to(dtype), target.to(dtype)), cldice(prob, target))
        for fn in (betti_number_error, betti_matching_error):
            low, ref = fn(prob.to(dtype), target.to(dtype)), fn(prob, target)
            np.testing.assert_array_equal(low.per_dim, ref.per_dim)
            np.testing.assert_array_equal(low.total, ref.total)
    metric = ClDiceMetric(reduction="none")
    np.testing.assert_array_equal(metric(prob.bfloat16(), target.bfloat16()).numpy(), metric(prob, target).numpy())
