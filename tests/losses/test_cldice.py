"""clDice losses: the paper's hard definition on hand cases, MONAI 1.6's SoftclDiceLoss / SoftDiceclDiceLoss where
they agree, the original code's batch-global sums, shapes, gradients and errors."""

import warnings

import numpy as np
import pytest
import torch
from monai.losses import DiceLoss, SoftclDiceLoss, SoftDiceclDiceLoss
from monai.losses.cldice import soft_skel
from skimage.morphology import skeletonize

from medloss.losses import ClDiceLoss, DiceClDiceLoss
from medloss.metrics import cldice


def hard_cldice(pred: np.ndarray, label: np.ndarray) -> float:
    """The paper's clDice with scikit-image skeletons: Tprec = |S_P & V_L| / |S_P|, Tsens = |S_L & V_P| / |S_L|."""
    s_p, s_l = skeletonize(pred > 0), skeletonize(label > 0)
    tprec = (s_p & (label > 0)).sum() / s_p.sum()
    tsens = (s_l & (pred > 0)).sum() / s_l.sum()
    return float(2 * tprec * tsens / (tprec + tsens))


def as_batch(*arrays):
    return [torch.as_tensor(a, dtype=torch.float64)[None, None] for a in arrays]


EXACT = ClDiceLoss(smooth_nr=0.0, smooth_dr=0.0)  # the paper's ratios, no smoothing


def test_one_pixel_lines_are_their_own_skeletons_hard_equals_soft():
    pred, label = np.zeros((9, 30)), np.zeros((9, 30))
    pred[4, 2:20] = 1
    label[4, 8:28] = 1
    label[2, 3:6] = 1  # a second, missed segment
    p, y = as_batch(pred, label)
    assert torch.equal(soft_skel(p, 3), p) and torch.equal(soft_skel(y, 3), y)
    # Tprec = 12 / 18, Tsens = 12 / 23
    expected = 2 * (12 / 18) * (12 / 23) / (12 / 18 + 12 / 23)
    assert hard_cldice(pred, label) == pytest.approx(expected, rel=1e-12)
    assert cldice(pred, label) == pytest.approx(expected, rel=1e-12)  # medloss's clDice metric
    assert float(EXACT(p, y)) == pytest.approx(1 - expected, rel=1e-12)


def test_3d_tube_soft_skeleton_is_the_scikit_image_skeleton():
    tube, line = np.zeros((11, 11, 24)), np.zeros((11, 11, 24))
    tube[4:7, 4:7, 2:18] = 1  # 3 x 3 cross-section: soft and hard skeletons are the central line (voxels 3..16)
    line[5, 5, 8:22] = 1
    p, y = as_batch(tube, line)
    assert np.array_equal(soft_skel(p, 3)[0, 0].numpy() > 0.5, skeletonize(tube > 0))
    expected = hard_cldice(tube, line)
    assert 0.5 < expected < 0.9
    assert float(EXACT(p, y)) == pytest.approx(1 - expected, rel=1e-12)


def test_thick_bar_matches_the_hard_definition_up_to_the_soft_skeleton():
    # a 5-pixel-wide bar: the soft skeleton (k=3) is its central row, scikit-image's adds a 2-pixel spur at one end
    bar, line = np.zeros((15, 30)), np.zeros((15, 30))
    bar[5:10, 3:27] = 1
    line[7, 3:27] = 1
    p, y = as_batch(bar, line)
    soft = soft_skel(p, 3)[0, 0].numpy()
    assert np.array_equal(np.argwhere(soft > 0.5), [[7, c] for c in range(5, 25)])
    assert float(EXACT(p, y)) == pytest.approx(0.0, abs=1e-12)  # soft: Tprec = 20 / 20, Tsens = 24 / 24
    assert 1 - hard_cldice(bar, line) == pytest.approx(1 - 2 * (19 / 21) / (1 + 19 / 21), rel=1e-12)
    # a broken prediction loses Tsens in both definitions alike
    broken = bar.copy()
    broken[:, 14:17] = 0
    p = as_batch(broken)[0]
    assert float(EXACT(p, y)) == pytest.approx(1 - 2 * (21 / 24) / (1 + 21 / 24), rel=1e-12)
    assert hard_cldice(broken, line) < 1 - float(EXACT(p, y)) + 0.06


def _data(spatial, channels=3, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn((batch, channels) + spatial, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, channels, (batch, 1) + spatial, generator=gen)
    return logits, labels


@pytest.mark.parametrize("spatial", [(12, 13), (8, 9, 7)], ids=["2d", "3d"])
@pytest.mark.parametrize("include_background", [True, False])
def test_equals_monai_per_sample(spatial, include_background):
    logits, labels = _data(spatial)
    kw = dict(include_background=include_background, softmax=True, to_onehot_y=True)
    # MONAI adds `smooth` to the harmonic mean's denominator (> 0 required); 1e-12 leaves the paper's value
    monai = SoftclDiceLoss(smooth=1e-12, reduction="none", **kw)(logits, labels)
    ours = ClDiceLoss(reduction="none", **kw)(logits, labels)
    assert ours.shape == (2, 1) + (1,) * len(spatial)
    torch.testing.assert_close(ours.flatten(), monai, rtol=1e-9, atol=1e-10)
    assert float(ClDiceLoss(**kw)(logits, labels)) == pytest.approx(float(monai.mean()), rel=1e-9)
    assert float(ClDiceLoss(reduction="sum", **kw)(logits, labels)) == pytest.approx(float(monai.sum()), rel=1e-9)
    # MONAI's default smooth=1e-4 differs by about 5e-5 at most
    default = SoftclDiceLoss(reduction="none", **kw)(logits, labels)
    assert float((default - ours.flatten()).abs().max()) < 1e-4


def test_sigmoid_binary_equals_monai():
    logits, labels = _data((10, 11), channels=1, batch=3)
    labels = (labels == 0).double()  # channels=1 draws zeros only: all foreground
    labels[:, :, :4] = 0
    monai = SoftclDiceLoss(smooth=1e-12, sigmoid=True, reduction="none")(logits, labels)
    torch.testing.assert_close(ClDiceLoss(sigmoid=True, reduction="none")(logits, labels).flatten(), monai)


def original_batch_cldice(prob, onehot, iter_=3, smooth=1.0):
    """The original code's soft clDice (https://github.com/jocpae/clDice, cldice.py): sums over the whole batch and
    the foreground channels."""
    skel_pred, skel_true = soft_skel(prob, iter_), soft_skel(onehot, iter_)
    tprec = ((skel_pred * onehot)[:, 1:].sum() + smooth) / (skel_pred[:, 1:].sum() + smooth)
    tsens = ((skel_true * prob)[:, 1:].sum() + smooth) / (skel_true[:, 1:].sum() + smooth)
    return 1 - 2 * tprec * tsens / (tprec + tsens)


@pytest.mark.parametrize("spatial", [(12, 13), (8, 9, 7)], ids=["2d", "3d"])
def test_batch_global_is_the_original_code(spatial):
    logits, labels = _data(spatial, batch=3)
    prob = torch.softmax(logits, 1)
    onehot = torch.cat([(labels == c) for c in range(3)], 1).double()
    loss = ClDiceLoss(include_background=False, batch=True, reduction="none")
    out = loss(prob, onehot)
    assert out.shape == (1,) * (len(spatial) + 1)  # DiceLoss(batch=True)'s (C, 1, ...) with one pooled channel
    assert float(out) == pytest.approx(float(original_batch_cldice(prob, onehot)), rel=1e-12)
    assert float(out) != pytest.approx(float(ClDiceLoss(include_background=False)(prob, onehot)), rel=1e-6)


def test_perfect_and_disjoint_predictions():
    label = torch.zeros(2, 1, 16, 16)
    label[:, :, 6:9, 2:14] = 1
    onehot = torch.cat([1 - label, label], 1)
    for loss in (ClDiceLoss(), ClDiceLoss(include_background=False, batch=True), DiceClDiceLoss()):
        assert float(loss(onehot, onehot)) == pytest.approx(0.0, abs=1e-6)
    cl = ClDiceLoss(smooth_nr=0.0, smooth_dr=0.0, include_background=False)
    assert float(cl(1 - onehot, onehot)) == pytest.approx(1.0)
    # nothing labelled and nothing predicted: 0 / 0 counts as a perfect match, not NaN
    empty = torch.zeros(1, 2, 8, 8)
    empty[:, 0] = 1
    assert float(cl(empty, empty)) == 0.0


@pytest.mark.parametrize("spatial", [(10, 11), (7, 8, 6)], ids=["2d", "3d"])
@pytest.mark.parametrize("include_background", [True, False])
def test_dice_cldice_equals_monai_with_shared_settings(spatial, include_background):
    logits, labels = _data(spatial)
    kw = dict(include_background=include_background, softmax=True, to_onehot_y=True)
    monai = SoftDiceclDiceLoss(alpha=0.3, smooth_nr=1.0, smooth_dr=1.0, smooth=1e-12, **kw)(logits, labels)
    ours = DiceClDiceLoss(alpha=0.3, smooth_nr=1.0, smooth_dr=1.0, **kw)(logits, labels)
    assert float(ours) == pytest.approx(float(monai), rel=1e-9)


@pytest.mark.parametrize("batch", [False, True])
def test_topomortar_composition_dice_with_background_cldice_without(batch):
    logits, labels = _data((14, 12), channels=2, batch=3)
    kw = dict(softmax=True, to_onehot_y=True, batch=batch)
    loss = DiceClDiceLoss(include_background=True, cldice_include_background=False, reduction="none", **kw)
    out = loss(logits, labels)
    dice = DiceLoss(include_background=True, smooth_nr=1e-5, smooth_dr=1e-5, reduction="none", **kw)(logits, labels)
    cl = ClDiceLoss(include_background=False, reduction="none", **kw)(logits, labels)
    assert out.shape == dice.shape  # (B, C, 1, 1), or (C, 1, 1) with batch
    torch.testing.assert_close(out, 0.5 * dice + 0.5 * cl)
    mean = DiceClDiceLoss(include_background=True, cldice_include_background=False, **kw)(logits, labels)
    assert float(mean) == pytest.approx(0.5 * float(dice.mean()) + 0.5 * float(cl.mean()), rel=1e-12)
    total = DiceClDiceLoss(include_background=True, cldice_include_background=False, reduction="sum", **kw)
    assert float(total(logits, labels)) == pytest.approx(float(out.sum()), rel=1e-12)
    if not batch:  # without batch, the clDice term is MONAI's for the foreground
        monai = SoftclDiceLoss(include_background=False, smooth=1e-12, softmax=True, to_onehot_y=True)
        assert float(cl.mean()) == pytest.approx(float(monai(logits, labels)), rel=1e-9)


@pytest.mark.parametrize("spatial", [(6, 7), (4, 5, 4)], ids=["2d", "3d"])
@pytest.mark.parametrize("batch", [False, True])
def test_gradcheck(spatial, batch):
    logits, labels = _data(spatial, channels=3 if len(spatial) == 2 else 2, batch=2, seed=3)
    logits.requires_grad_(True)
    for loss in (
        ClDiceLoss(softmax=True, to_onehot_y=True, batch=batch, include_background=False),
        DiceClDiceLoss(softmax=True, to_onehot_y=True, batch=batch, cldice_include_background=False),
    ):
        assert torch.autograd.gradcheck(lambda x: loss(x, labels), (logits,))
    grad = torch.autograd.grad(ClDiceLoss(softmax=True, to_onehot_y=True)(logits, labels), logits)[0]
    assert float(grad.abs().max()) > 0


def test_half_precision_and_gpu_free_dtypes():
    logits, labels = _data((9, 9), channels=2)
    out = ClDiceLoss(softmax=True, to_onehot_y=True)(logits.half(), labels)
    assert out.dtype == torch.float32 and torch.isfinite(out)


def test_clear_errors():
    with pytest.raises(ValueError, match="2D or 3D spatial"):  # MONAI: soft_erode returns None, AttributeError
        ClDiceLoss()(torch.rand(2, 1, 9), torch.rand(2, 1, 9))
    with pytest.raises(ValueError, match="iter_"):
        ClDiceLoss(iter_=-1)
    with pytest.raises(ValueError, match="iter_"):
        DiceClDiceLoss(iter_=2.5)
    with pytest.raises(ValueError, match="alpha"):
        DiceClDiceLoss(alpha=1.5)
    with pytest.raises(ValueError, match="smooth"):
        ClDiceLoss(smooth_nr=-1)
    with pytest.raises(ValueError, match="Incompatible"):
        DiceClDiceLoss(sigmoid=True, softmax=True)
    with pytest.raises(ValueError, match="NaN"):
        ClDiceLoss()(torch.full((1, 1, 5, 5), float("nan")), torch.zeros(1, 1, 5, 5))
    with pytest.raises(ValueError, match="label values"):
        DiceClDiceLoss(softmax=True, to_onehot_y=True)(torch.rand(1, 2, 5, 5), torch.full((1, 1, 5, 5), 3))
    with pytest.raises(ValueError, match="different shape"):
        ClDiceLoss()(torch.rand(1, 2, 5, 5), torch.rand(1, 3, 5, 5))


def test_single_channel_background_flag_warns_like_monai():
    x = torch.rand(1, 1, 6, 6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ClDiceLoss(include_background=False)(x, (x > 0.5).float())
    assert any("include_background=False" in str(w.message) for w in caught)
