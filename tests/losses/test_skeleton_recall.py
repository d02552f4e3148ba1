"""Skeleton Recall loss: hand cases, the original SoftSkeletonRecallLoss's formula (oracle in the test), the
skeleton computed by the loss vs given, gradients only on the tube, shapes, errors and distributed sums."""


import numpy as np
import pytest
import torch
from monai.losses import DiceLoss

from devtools.distributed import run_on_ranks
from medloss.losses import SkeletonRecallLoss
from medloss.transforms import skeletonize_label


def _labels(spatial, batch=2, n_classes=3, seed=0):
    """Thick random bars of every class (several per sample), as a (B, 1, *spatial) label map."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((batch, 1) + spatial, np.int64)
    for b in range(batch):
        for c in range(1, n_classes):
            axis = rng.integers(len(spatial))
            centre = [rng.integers(2, s - 2) for s in spatial]
            index = [slice(max(p - 1, 0), p + 2) for p in centre]
            index[axis] = slice(1, spatial[axis] - 1)
            labels[(b, 0) + tuple(index)] = c
    return torch.from_numpy(labels)


def _tubes(labels, radius=2):
    return torch.from_numpy(np.stack([skeletonize_label(x.numpy(), radius) for x in labels]))


def original_recall_loss(prob, skel, batch_dice=False, smooth=1e-5):
    """SoftSkeletonRecallLoss.forward of https://github.com/MIC-DKFZ/Skeleton-Recall (apply_nonlin already applied,
    no loss mask): -mean over (b, c) or c of the foreground recall."""
    x = prob[:, 1:]
    y = torch.zeros_like(prob).scatter_(1, skel.long(), 1)[:, 1:]
    axes = list(range(2, prob.ndim))
    inter, total = (x * y).sum(axes), y.sum(axes)
    if batch_dice:
        inter, total = inter.sum(0), total.sum(0)
    return -((inter + smooth) / torch.clip(total + smooth, 1e-8)).mean()


@pytest.mark.parametrize("spatial", [(24, 20), (14, 16, 12)], ids=["2d", "3d"])
@pytest.mark.parametrize("batch", [False, True])
def test_equals_the_original_up_to_the_constant(spatial, batch):
    labels = _labels(spatial)
    logits = torch.randn((2, 3) + spatial, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    skel = _tubes(labels)
    assert set(torch.unique(skel).tolist()) == {0, 1, 2}
    loss = SkeletonRecallLoss(softmax=True, to_onehot_y=True, batch=batch)
    expected = 1 + original_recall_loss(torch.softmax(logits, 1), skel, batch)
    assert float(loss(logits, labels, skel)) == pytest.approx(float(expected), rel=1e-12)
    # computed by the loss from the label map, or from the one-hot target: the same
    assert float(loss(logits, labels)) == pytest.approx(float(expected), rel=1e-12)
    onehot = torch.cat([labels == c for c in range(3)], 1).double()
    assert float(SkeletonRecallLoss(softmax=True, batch=batch)(logits, onehot)) == pytest.approx(float(expected))
    # a one-hot like skeleton
    skel_onehot = torch.cat([skel == c for c in range(3)], 1).float()
    assert float(loss(logits, labels, skel_onehot)) == pytest.approx(float(expected), rel=1e-12)
    # reduction="none": MONAI DiceLoss's shape for the foreground channels
    none = SkeletonRecallLoss(softmax=True, to_onehot_y=True, batch=batch, reduction="none")(logits, labels, skel)
    dice = DiceLoss(softmax=True, to_onehot_y=True, include_background=False, batch=batch, reduction="none")
    assert none.shape == dice(logits, labels).shape
    assert float(none.mean()) == pytest.approx(float(expected), rel=1e-12)
    summed = SkeletonRecallLoss(softmax=True, to_onehot_y=True, batch=batch, reduction="sum")(logits, labels, skel)
    assert float(summed) == pytest.approx(float(none.sum()), rel=1e-12)


def test_hand_case_recall_of_the_tube():
    label = torch.zeros(1, 1, 9, 20, dtype=torch.long)
    label[0, 0, 4, 2:18] = 1  # a 1-pixel line (16 px): its own skeleton, and the tube cut to the label is the line
    skel = _tubes(label)
    assert torch.equal(skel, label)
    prob = torch.zeros(1, 2, 9, 20)
    prob[:, 0] = 1
    loss = SkeletonRecallLoss(to_onehot_y=True, smooth=0.0)
    assert float(loss(prob, label, skel)) == 1.0  # empty prediction
    prob[0, 1, 3:6, 2:6] = 1  # 4 of the 16 line pixels, and 8 pixels off the line (not penalised)
    prob[0, 1, 0, :] = 1
    prob[0, 0] = 1 - prob[0, 1]
    assert float(loss(prob, label, skel)) == pytest.approx(1 - 4 / 16)
    prob[0, 1] = 0.5  # half everywhere: recall 1/2
    prob[0, 0] = 0.5
    assert float(loss(prob, label, skel)) == pytest.approx(0.5)
    assert float(SkeletonRecallLoss(to_onehot_y=True, smooth=1.0)(prob, label)) == pytest.approx(1 - 9 / 17)
    perfect = torch.cat([1 - label, label], 1).float()
    assert float(SkeletonRecallLoss(to_onehot_y=True)(perfect, label)) == pytest.approx(0.0, abs=1e-7)
    assert float(SkeletonRecallLoss(to_onehot_y=True)(1 - perfect, label)) == pytest.approx(1.0, abs=1e-6)


def test_single_channel_sigmoid():
    label = torch.zeros(2, 1, 12, 12)
    label[:, :, 5:8, 1:11] = 1
    logits = torch.randn(2, 1, 12, 12, dtype=torch.float64)
    skel = _tubes(label.long())
    loss = SkeletonRecallLoss(sigmoid=True)
    expected = 1 - (torch.sigmoid(logits) * skel).sum((1, 2, 3)) / skel.sum((1, 2, 3))
    assert float(loss(logits, label)) == pytest.approx(float(expected.mean()), rel=1e-6)
    assert float(loss(logits, label, skel.float())) == pytest.approx(float(expected.mean()), rel=1e-6)


@pytest.mark.parametrize("spatial", [(16, 14), (10, 11, 9)], ids=["2d", "3d"])
def test_gradient_only_on_the_tube_and_gradcheck(spatial):
    labels = _labels(spatial, seed=4)
    skel = _tubes(labels)
    logits = torch.randn((2, 3) + spatial, dtype=torch.float64, requires_grad=True)
    loss = SkeletonRecallLoss(softmax=True, to_onehot_y=True)
    grad = torch.autograd.grad(loss(logits, labels, skel), logits)[0]
    on_tube = (skel > 0).expand_as(grad)
    assert float(grad[~on_tube].abs().max()) == 0.0
    assert bool((grad.abs().sum(1, keepdim=True) > 0)[skel > 0].all())
    small = logits.detach()[:, :, :6, :5].clone().requires_grad_(True)
    for batch in (False, True):
        recall = SkeletonRecallLoss(softmax=True, to_onehot_y=True, batch=batch)
        assert torch.autograd.gradcheck(lambda x: recall(x, labels[:, :, :6, :5], skel[:, :, :6, :5]), (small,))


def test_class_absent_from_the_skeleton_counts_as_recalled():
    label = torch.zeros(1, 1, 10, 10, dtype=torch.long)
    label[0, 0, 4:7, 1:9] = 1  # class 2 absent
    prob = torch.full((1, 3, 10, 10), 1 / 3)
    none = SkeletonRecallLoss(to_onehot_y=True, smooth=0.0, reduction="none")(prob, label)
    assert none.flatten().tolist() == pytest.approx([2 / 3, 0.0])


def test_clear_errors():
    prob = torch.softmax(torch.randn(1, 3, 8, 8), 1)
    label = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="background"):
        SkeletonRecallLoss(include_background=True)
    with pytest.raises(ValueError, match="smooth"):
        SkeletonRecallLoss(smooth=-1.0)
    with pytest.raises(ValueError, match="tube_radius"):
        SkeletonRecallLoss(tube_radius=-2)
    with pytest.raises(ValueError, match="Incompatible"):
        SkeletonRecallLoss(softmax=True, sigmoid=True)
    region = torch.zeros(1, 3, 8, 8)
    region[:, 1:, 2:5] = 1  # overlapping channels (nnU-Net regions)
    with pytest.raises(ValueError, match="region-based"):
        SkeletonRecallLoss()(prob, region)
    with pytest.raises(ValueError, match="skeleton has shape"):
        SkeletonRecallLoss(to_onehot_y=True)(prob, label, torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match="skeleton values"):
        SkeletonRecallLoss(to_onehot_y=True)(prob, label, torch.full((1, 1, 8, 8), 3))
    with pytest.raises(ValueError, match="one-hot like skeleton"):
        SkeletonRecallLoss(to_onehot_y=True)(prob, label, torch.full((1, 3, 8, 8), 2.0))
    with pytest.raises(ValueError, match="2D or 3D spatial"):
        SkeletonRecallLoss()(torch.rand(1, 2, 8), torch.rand(1, 2, 8))


# ------------------------------------------------------------------------------------------------------------------
_LOSSES_ON_RANKS = """
def run(rank, world, folder):
    import os
    import torch
    from medloss.losses import ClDiceLoss, SkeletonRecallLoss

    data = torch.load(os.path.join(folder, "data.pt"))
    part = slice(2 * rank, 2 * rank + 2)
    res = {}
    for name, loss in (("recall", SkeletonRecallLoss(softmax=True, to_onehot_y=True, batch=True)),
                       ("cldice", ClDiceLoss(softmax=True, to_onehot_y=True, batch=True))):
        x = data["logits"][part].clone().requires_grad_(True)
        value = loss(x, data["labels"][part])
        value.backward()
        res[name] = [value.item(), x.grad.flatten().tolist()]
    return res
"""


@pytest.mark.slow
def test_distributed_batch_sums_match_the_whole_batch(tmp_path):
    """2-process gloo group on CPU: with batch=True every rank gets the whole batch's loss, and its gradient is the
    whole batch's gradient on its samples (Skeleton Recall and clDice)."""
    from medloss.losses import ClDiceLoss

    labels = _labels((12, 12), batch=4, seed=6)
    logits = torch.randn(4, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    torch.save({"logits": logits, "labels": labels}, tmp_path / "data.pt")
    ranks = run_on_ranks(_LOSSES_ON_RANKS, tmp_path)
    for name, loss in (("recall", SkeletonRecallLoss(softmax=True, to_onehot_y=True, batch=True)),
                       ("cldice", ClDiceLoss(softmax=True, to_onehot_y=True, batch=True))):
        x = logits.clone().requires_grad_(True)
        value = loss(x, labels)
        value.backward()
        for r in range(2):
            assert ranks[r][name][0] == pytest.approx(value.item(), rel=1e-12)
            np.testing.assert_allclose(ranks[r][name][1], x.grad[2 * r:2 * r + 2].flatten().numpy(), rtol=1e-9,
                                       atol=1e-15)
