"""The loss contract shared by every medloss loss: MONAI's ``_Loss`` base, one reduction check, and the shapes of
``reduction="none"`` (Dice-type losses: exactly MONAI ``DiceLoss``'s shape for the same flags; set losses: ``(B,)``).
"""

import inspect
from pathlib import Path

import pytest
import torch
from monai.losses import DiceLoss
from torch.nn.modules.loss import _Loss

import medloss.losses as losses
from medloss.losses import (
    BettiMatchingLoss,
    DiceSemimetricLoss,
    EnergyDistanceLoss,
    FairErrorBoundScalingLoss,
    FocalL1Loss,
    FocalTverskyLoss,
    IMPACTLoss,
    JaccardMetricLoss,
    MIPLoss,
    SAUNALoss,
    SignedJaccardLoss,
    SinkhornDistanceLoss,
    TverskyMetricLoss,
)

EXTRACTOR = Path(__file__).resolve().parents[1] / "data" / "fair_impact" / "tiny3d_impact.pt"


def _loss_classes():
    return [getattr(losses, name) for name in losses.__all__ if inspect.isclass(getattr(losses, name))]


def _with_reduction():
    return [c for c in _loss_classes() if "reduction" in inspect.signature(c.__init__).parameters]


def test_every_loss_is_a_monai_style_loss():
    classes = _loss_classes()
    assert len(classes) >= 14
    for cls in classes:
        # wrappers without a reduction of their own say why they are not a MONAI _Loss
        assert issubclass(cls, _Loss) or "``_Loss``" in cls.__doc__, cls.__name__
    assert len(_with_reduction()) >= 14
    assert all(issubclass(cls, _Loss) for cls in _with_reduction())


@pytest.mark.parametrize("cls", _with_reduction(), ids=lambda c: c.__name__)
def test_one_reduction_check_and_message(cls):
    # the reduction is checked first, before any other argument (so no model file is needed for IMPACT)
    args = (EXTRACTOR,) if cls in (losses.IMPACTLoss, losses.IMPACTSynthLoss) else ()
    with pytest.raises(ValueError) as err:
        cls(*args, reduction="average")
    assert str(err.value) == "reduction must be one of \"mean\", \"sum\", \"none\", got 'average'."


def _data(spatial, channels=3, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn((batch, channels) + spatial, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, channels, (batch, 1) + spatial, generator=gen)
    return logits, labels


DICE_TYPE = {
    "jaccard": lambda batch: JaccardMetricLoss(softmax=True, to_onehot_y=True, batch=batch, reduction="none"),
    "dice_semimetric": lambda batch: DiceSemimetricLoss(softmax=True, to_onehot_y=True, batch=batch,
                                                        reduction="none"),
    "tversky_metric": lambda batch: TverskyMetricLoss(softmax=True, to_onehot_y=True, alpha=0.3, beta=0.7,
                                                      batch=batch, reduction="none"),
    "focal_tversky": lambda batch: FocalTverskyLoss(softmax=True, to_onehot_y=True, batch=batch, reduction="none"),
    # batch configures the MIP term; with batch=True both terms are batch-global
    "mip": lambda batch: MIPLoss(softmax=True, to_onehot_y=True, batch=batch, reduction="none"),
}


@pytest.mark.parametrize("spatial", [(6, 7), (5, 6, 4)], ids=["2d", "3d"])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("name", sorted(DICE_TYPE))
def test_dice_type_none_shape_is_monais(name, batch, spatial):
    logits, labels = _data(spatial)
    expected = DiceLoss(softmax=True, to_onehot_y=True, batch=batch, reduction="none")(logits, labels).shape
    for include_background in (True, False):
        loss = DICE_TYPE[name](batch)
        loss.include_background = include_background
        out = loss(logits, labels)
        monai = DiceLoss(softmax=True, to_onehot_y=True, include_background=include_background, batch=batch,
                         reduction="none")(logits, labels)
        assert out.shape == monai.shape
    out = DICE_TYPE[name](batch)(logits, labels)
    assert out.shape == expected
    # "none" holds exactly the items that "mean" and "sum" reduce
    mean_loss, sum_loss = DICE_TYPE[name](batch), DICE_TYPE[name](batch)
    mean_loss.reduction, sum_loss.reduction = "mean", "sum"
    if name == "mip":  # mean/sum reduce each term on its own before weighting
        voxel = FocalTverskyLoss(softmax=True, to_onehot_y=True, reduction="none")(logits, labels)
        assert float(sum_loss(logits, labels)) > 0.7 * float(voxel.sum())
    else:
        assert float(mean_loss(logits, labels)) == pytest.approx(float(out.mean()), rel=1e-12)
        assert float(sum_loss(logits, labels)) == pytest.approx(float(out.sum()), rel=1e-12)


@pytest.mark.parametrize("spatial", [(8, 7), (6, 5, 4)], ids=["2d", "3d"])
def test_per_sample_and_class_losses_take_monais_shape(spatial):
    logits, labels = _data(spatial, channels=2, batch=3)
    per_sample = DiceLoss(softmax=True, to_onehot_y=True, reduction="none")(logits, labels).shape
    per_class = DiceLoss(softmax=True, to_onehot_y=True, batch=True, reduction="none")(logits, labels).shape
    assert BettiMatchingLoss(softmax=True, to_onehot_y=True, reduction="none")(logits, labels).shape == per_sample
    signed = torch.tanh(torch.randn(logits.shape, dtype=torch.float64))
    assert SignedJaccardLoss(reduction="none")(logits, signed).shape == per_class
    assert SignedJaccardLoss(reduction="none", batch=False)(logits, signed).shape == per_sample
    assert FocalL1Loss(reduction="none")(logits, signed).shape == per_sample
    assert SAUNALoss(reduction="none")(logits, signed).shape == per_class
    assert SAUNALoss(reduction="none", batch=False)(logits, signed).shape == per_sample
    febs = FairErrorBoundScalingLoss(softmax=True, to_onehot_y=True, reduction="none")  # pooled over the batch
    assert febs(logits, labels, groups=torch.tensor([0, 1, 1])).shape == per_class


def test_set_losses_return_one_value_per_sample():
    gen = torch.Generator().manual_seed(1)
    samples = torch.rand(3, 4, 1, 6, 5, generator=gen, dtype=torch.float64)
    raters = (torch.rand(3, 2, 1, 6, 5, generator=gen) > 0.5).double()
    for cls in (SinkhornDistanceLoss, EnergyDistanceLoss):
        values = cls(reduction="none")(samples, raters)
        assert values.shape == (3,)
        assert float(cls()(samples, raters)) == pytest.approx(float(values.mean()), rel=1e-12)
    image, target = torch.rand(2, 1, 16, 16, 16), torch.rand(2, 1, 16, 16, 16)
    impact = IMPACTLoss(EXTRACTOR, weights=[1.0, 1.0], reduction="none", probe_shape=(16, 16, 16))
    assert impact(image, target).shape == (2,)
