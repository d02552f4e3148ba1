"""FocalTverskyLoss: anchor values (SPOCKMIP/DS6/PULASki evaluate.py), MONAI equivalence, gradients, bad input.

Reference: tests/data/mip_pulaski/function_level_cases.npz (copied from shared/reference/mip_pulaski/), computed
with the anchor's own FocalTverskyLoss in float32.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.losses import DiceLoss, TverskyLoss

from medloss.losses import FocalTverskyLoss

DATA = Path(__file__).resolve().parents[1] / "data" / "mip_pulaski" / "function_level_cases.npz"
TOL = 1e-6  # float32 tolerance of the FTL/MIP reference values


@pytest.fixture(scope="module")
def cases():
    return dict(np.load(DATA))


def _prob_label(cases, dtype=torch.float32):
    prob = torch.sigmoid(torch.as_tensor(cases["ftl_logits"]).to(dtype))
    return prob, torch.as_tensor(cases["ftl_label"]).to(dtype)


def test_anchor_batch_global_from_logits(cases):
    logits = torch.as_tensor(cases["ftl_logits"]).float()
    loss = FocalTverskyLoss(sigmoid=True)(logits, torch.as_tensor(cases["ftl_label"]))
    assert abs(loss.item() - cases["ftl_batch_global"]) < TOL


def test_anchor_per_sample(cases):
    prob, label = _prob_label(cases)
    per = FocalTverskyLoss(batch=False, reduction="none")(prob, label)
    assert per.shape == (2, 1) + (1,) * (prob.ndim - 2)
    np.testing.assert_allclose(per.flatten().numpy(), cases["ftl_per_sample"], atol=TOL, rtol=0)
    mean = FocalTverskyLoss(batch=False)(prob, label)
    assert abs(mean.item() - cases["ftl_per_sample"].mean()) < TOL


@pytest.mark.parametrize(
    "key, make",
    [
        ("ftl_empty_label_vs_prob", lambda p, g: (p, torch.zeros_like(g))),
        ("ftl_empty_label_vs_zero_pred", lambda p, g: (torch.zeros_like(p), torch.zeros_like(g))),
        ("ftl_perfect", lambda p, g: (g.clone(), g)),
        ("ftl_all_ones_pred", lambda p, g: (torch.ones_like(p), g)),
    ],
)
def test_anchor_edge_cases(cases, key, make):
    prob, label = _prob_label(cases)
    loss = FocalTverskyLoss()(*make(prob, label))
    assert abs(loss.item() - float(cases[key])) < TOL


def test_empty_label_closed_form():
    # empty target, predicted mass P: TI = 1 / (1 + 0.3 P), loss = (1 - TI) ** 0.75
    prob = torch.zeros(1, 1, 4, 5, 6, dtype=torch.float64)
    prob[0, 0, :2, :2, :2] = 1.25 / 8  # total mass 1.25 on 8 voxels
    mass = prob.sum().item()
    expected = (1 - 1 / (1 + 0.3 * mass)) ** 0.75
    assert abs(FocalTverskyLoss()(prob, torch.zeros_like(prob)).item() - expected) < 1e-14


def test_hand_computed_with_own_parameters():
    prob = torch.tensor([0.9, 0.2, 0.6, 0.0], dtype=torch.float64).view(1, 1, 2, 2)
    label = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64).view(1, 1, 2, 2)
    tp, fp, fn = 1.5, 0.2, 1.5
    a, b, g, snr, sdr = 0.4, 0.9, 1.5, 0.5, 2.0
    expected = (1 - (tp + snr) / (tp + a * fp + b * fn + sdr)) ** g
    loss = FocalTverskyLoss(alpha=a, beta=b, gamma=g, smooth_nr=snr, smooth_dr=sdr)(prob, label)
    assert abs(loss.item() - expected) < 1e-14


@pytest.mark.parametrize("batch", [True, False])
def test_equals_monai_tversky_power(batch):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 6, 7, 5, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 4, (3, 1, 6, 7, 5), generator=gen)
    kw = dict(include_background=False, to_onehot_y=True, softmax=True, batch=batch, reduction="none")
    ours = FocalTverskyLoss(**kw)(logits, labels)
    monai = TverskyLoss(alpha=0.3, beta=0.7, smooth_nr=1.0, smooth_dr=1.0, **kw)(logits, labels)
    # the shape of MONAI's DiceLoss for the same flags (MONAI's TverskyLoss does not keep the spatial dims)
    assert ours.shape == DiceLoss(**kw)(logits, labels).shape
    monai = monai.reshape(ours.shape) ** 0.75
    torch.testing.assert_close(ours, monai, rtol=1e-12, atol=1e-14)


def test_reductions_2d():
    gen = torch.Generator().manual_seed(1)
    prob = torch.rand(2, 3, 8, 9, generator=gen, dtype=torch.float64)
    label = (torch.rand(2, 3, 8, 9, generator=gen) > 0.5).double()
    none = FocalTverskyLoss(batch=False, reduction="none")(prob, label)
    assert none.shape == (2, 3, 1, 1)
    assert torch.isclose(FocalTverskyLoss(batch=False, reduction="sum")(prob, label), none.sum())
    assert torch.isclose(FocalTverskyLoss(batch=False)(prob, label), none.mean())


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 2, 3, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    label = (torch.rand(2, 2, 3, 4, 3, generator=gen) > 0.6).double()
    for batch in (True, False):
        loss = FocalTverskyLoss(sigmoid=True, batch=batch)
        assert torch.autograd.gradcheck(lambda x: loss(x, label), (logits,))


def test_perfect_prediction_has_finite_gradient():
    # gamma < 1: d/dx x ** 0.75 is infinite at 0; the loss takes it as 0 instead of NaN
    label = torch.zeros(1, 1, 4, 4, 4, dtype=torch.float64)
    label[0, 0, 1:3, 1:3, 1:3] = 1
    prob = label.clone().requires_grad_(True)
    loss = FocalTverskyLoss(smooth_nr=0.0, smooth_dr=0.0)(prob, label)
    loss.backward()
    assert loss.item() == 0.0
    assert bool(torch.isfinite(prob.grad).all())


def test_no_smoothing_empty_is_perfect():
    zero = torch.zeros(1, 1, 3, 3)
    assert FocalTverskyLoss(smooth_nr=0.0, smooth_dr=0.0)(zero, zero).item() == 0.0


def test_half_precision_is_computed_in_float32(cases):
    logits = torch.as_tensor(cases["ftl_logits"])  # float16, as stored
    loss = FocalTverskyLoss(sigmoid=True)(logits, torch.as_tensor(cases["ftl_label"]))
    assert loss.dtype == torch.float32
    assert abs(loss.item() - cases["ftl_batch_global"]) < TOL


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(cases):
    logits = torch.as_tensor(cases["ftl_logits"]).float()
    label = torch.as_tensor(cases["ftl_label"])
    cpu = FocalTverskyLoss(sigmoid=True)(logits, label)
    gpu = FocalTverskyLoss(sigmoid=True)(logits.cuda(), label.cuda())
    assert gpu.device.type == "cuda"
    assert abs(gpu.item() - cpu.item()) < 1e-6


def test_bad_input():
    loss = FocalTverskyLoss()
    prob = torch.rand(2, 1, 4, 4, 4)
    with pytest.raises(ValueError, match="shape"):
        loss(prob, torch.zeros(2, 1, 4, 4, 5))
    with pytest.raises(ValueError, match="shape"):
        loss(prob[0, 0], torch.zeros(4, 4, 4))
    bad = prob.clone()
    bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        loss(bad, torch.zeros_like(prob))
    with pytest.raises(ValueError, match="target"):
        loss(prob, 2 * torch.ones_like(prob))
    with pytest.raises(ValueError, match="prediction"):
        loss(prob * 3 - 1, torch.zeros_like(prob))  # logits given without sigmoid=True
    with pytest.raises(ValueError, match="floating point"):
        loss(torch.ones(2, 1, 4, 4, 4, dtype=torch.long), torch.zeros_like(prob))
    with pytest.raises(ValueError, match="label values"):
        FocalTverskyLoss(softmax=True, to_onehot_y=True)(torch.rand(2, 3, 4, 4), torch.full((2, 1, 4, 4), 3))
    with pytest.raises(ValueError, match="empty"):
        loss(torch.zeros(0, 1, 4, 4), torch.zeros(0, 1, 4, 4))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gamma": 0.0},
        {"alpha": -0.1},
        {"alpha": 0.0, "beta": 0.0},
        {"smooth_nr": -1.0},
        {"reduction": "max"},
        {"sigmoid": True, "softmax": True},
    ],
)
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        FocalTverskyLoss(**kwargs)
