"""SAUNA losses: released-code reference values and gradients, closed forms, hypercube metric, input checks."""

from pathlib import Path

import numpy as np
import pytest
import torch

from medloss.losses.sauna import FocalL1Loss, SAUNALoss, SignedJaccardLoss

DATA = Path(__file__).resolve().parents[1] / "data" / "sauna"


@pytest.fixture(scope="module")
def ref2d():
    with np.load(DATA / "sauna_losses_2d.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def ref3d():
    with np.load(DATA / "sauna_losses_3d.npz") as f:
        return {k: f[k] for k in f.files}


def _soft(gt):
    """The reference targets are the SAUNA loader's (B, 2, ...) = [hard, soft]; the losses take the soft channel."""
    return torch.from_numpy(gt[:, 1:])


CASES = {
    "total": (SAUNALoss, {}),
    "focal_l1": (FocalL1Loss, {}),
    "sjm_type2": (SignedJaccardLoss, {}),
    "sjm_type1": (SignedJaccardLoss, {"pooled": False}),
}


@pytest.mark.parametrize("labels", ["sauna", "rand"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_2d_values_and_gradients(ref2d, labels, case):
    cls, kwargs = CASES[case]
    logits = torch.from_numpy(ref2d["logits"]).clone().requires_grad_(True)
    value = cls(**kwargs)(logits, _soft(ref2d[f"gt_{labels}"]))
    key = f"{labels}_{case}"
    # type 1: the anchor adds 1e-8 to the denominator only, here to both (difference ~1e-8 / U)
    rtol = 1e-10 if case == "sjm_type1" else 1e-12
    np.testing.assert_allclose(value.item(), ref2d[key], rtol=rtol)
    value.backward()
    grad = ref2d[key + "_grad"]
    np.testing.assert_allclose(logits.grad.numpy(), grad, rtol=1e-7, atol=1e-10 * np.abs(grad).max())


def test_reference_2d_unsigned_branch(ref2d):
    logits = torch.from_numpy(ref2d["logits"]).clone().requires_grad_(True)
    target = _soft(ref2d["gt01"])
    value = SignedJaccardLoss(signed=False)(logits, target)
    np.testing.assert_allclose(value.item(), ref2d["unsigned_sjm"], rtol=1e-12)
    value.backward()
    np.testing.assert_allclose(logits.grad.numpy(), ref2d["unsigned_sjm_grad"], rtol=1e-9, atol=1e-15)
    # no data-dependent switching: [0,1] labels in signed mode stay on the tanh hypercube loss
    signed = SignedJaccardLoss()(logits, target).item()
    x = torch.tanh(logits.detach())
    expected = _hypercube_closed_form(x, target)
    np.testing.assert_allclose(signed, expected, rtol=1e-12)
    assert abs(signed - ref2d["unsigned_sjm"]) > 1e-3


def _hypercube_closed_form(x, y):
    same = x * y > 0
    ax, ay = x.abs(), y.abs()
    m = torch.where(same, torch.minimum(ax, ay), torch.zeros_like(ax))
    big = torch.where(same, torch.maximum(ax, ay), ax + ay)
    return (1 - m.sum() / big.sum()).item()


def test_type2_pixelwise_closed_form(ref2d):
    x = torch.tanh(torch.from_numpy(ref2d["logits"]))
    y = _soft(ref2d["gt_sauna"])
    np.testing.assert_allclose(SignedJaccardLoss(from_logits=False)(x, y).item(), _hypercube_closed_form(x, y),
                               rtol=1e-13)


def test_hard_labels_closed_forms(ref2d):
    logits = torch.from_numpy(ref2d["logits_hard"])
    gt = ref2d["gt_hard"]
    pred_fg, true_fg = logits.numpy() > 0, gt[:, 1:] > 0
    tp, tn = int((pred_fg & true_fg).sum()), int((~pred_fg & ~true_fg).sum())
    fp, fn = int((pred_fg & ~true_fg).sum()), int((~pred_fg & true_fg).sum())
    assert [tp, tn, fp, fn] == ref2d["hard_counts"].tolist()
    type2 = SignedJaccardLoss()(logits, _soft(gt)).item()
    type1 = SignedJaccardLoss(pooled=False)(logits, _soft(gt)).item()
    np.testing.assert_allclose(type2, 1 - (tp + tn) / (tp + tn + 2 * (fp + fn)), rtol=1e-13)
    np.testing.assert_allclose(type1, (1 - tp / (tp + fp + fn)) + (1 - tn / (tn + fp + fn)), rtol=1e-10)
    np.testing.assert_allclose(type2, ref2d["hard_sjm_type2"], rtol=1e-13)
    np.testing.assert_allclose(type1, ref2d["hard_sjm_type1"], rtol=1e-10)


def test_reference_3d_intended_values(ref3d):
    logits = torch.from_numpy(ref3d["logits"])
    target = _soft(ref3d["gt"])
    np.testing.assert_allclose(SignedJaccardLoss()(logits, target).item(), ref3d["sjm_type2"], rtol=1e-12)
    focal = FocalL1Loss()(logits, target).item()
    np.testing.assert_allclose(focal, ref3d["focal_l1_intended"], rtol=1e-12)
    # the anchor's reduction over dims (0, 2, 3) gives W times the mean on 5-D input; not reproduced
    assert ref3d["focal_l1_raw_code_on_5d"] == pytest.approx(8 * focal, rel=1e-12)
    np.testing.assert_allclose(SAUNALoss()(logits, target).item(), ref3d["total_intended"], rtol=1e-12)
    # 3D equals 2D on the volume reshaped to slices (the voxel mean / pooled sums do not see the layout)
    flat_logits, flat_target = logits.reshape(2, 1, 64, 8), target.reshape(2, 1, 64, 8)
    np.testing.assert_allclose(SAUNALoss()(flat_logits, flat_target).item(), ref3d["total_intended"], rtol=1e-12)


def test_equal_input_gives_zero(ref2d):
    y = _soft(ref2d["gt_sauna"])
    assert ref2d["equal_input_sjm_type2"] == 0.0
    for loss in (SignedJaccardLoss(from_logits=False), SignedJaccardLoss(from_logits=False, pooled=False),
                 SignedJaccardLoss(from_logits=False, batch=False), FocalL1Loss(from_logits=False),
                 SAUNALoss(from_logits=False)):
        assert loss(y, y).item() == 0.0
    y01 = y.clamp_min(0)
    assert SignedJaccardLoss(signed=False, from_logits=False)(y01, y01).item() == 0.0
    # all zero: 0/0 is a perfect match, not NaN
    zero = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    assert SignedJaccardLoss(from_logits=False)(zero, zero).item() == 0.0


def _pairwise(loss, a, b):
    return loss(a[:, None, :, None], b[:, None, :, None]).reshape(-1)


def test_hypercube_jaccard_is_a_metric():
    gen = torch.Generator().manual_seed(0)
    x, y, z = (2 * torch.rand(2000, 5, generator=gen, dtype=torch.float64) - 1 for _ in range(3))
    loss = SignedJaccardLoss(from_logits=False, batch=False, reduction="none")
    d_xy, d_xz, d_zy = _pairwise(loss, x, y), _pairwise(loss, x, z), _pairwise(loss, z, y)
    assert bool((d_xy <= d_xz + d_zy + 1e-12).all())
    torch.testing.assert_close(d_xy, _pairwise(loss, y, x), rtol=0, atol=1e-15)
    assert bool((d_xy > 0).all()) and bool((d_xy <= 1 + 1e-12).all())
    assert bool((_pairwise(loss, x, x) == 0).all())
    # a sign flip of one coordinate is seen (x -> (x+, x-) is injective)
    x2 = x.clone()
    x2[:, 0] = -x2[:, 0]
    assert bool((_pairwise(loss, x, x2) > 0).all())


def test_focal_l1_hand_computed():
    x = torch.tensor([0.5, -0.5, 0.2, 0.0, -0.9, 0.8], dtype=torch.float64).reshape(1, 1, 2, 3)
    y = torch.tensor([0.25, 0.5, 0.6, -0.4, -0.3, 1.0], dtype=torch.float64).reshape(1, 1, 2, 3)
    e = (x - y).abs().flatten()  # 0.25, 1.0, 0.4, 0.4, 0.6, 0.2
    same = torch.tensor([1, 0, 1, 0, 1, 1], dtype=torch.bool)  # x = 0 counts as opposite
    w = torch.where(same, 2 * e, torch.ones_like(e))
    np.testing.assert_allclose(FocalL1Loss(from_logits=False)(x, y).item(), (w * e).mean().item(), rtol=1e-15)
    pos = (y.flatten() > 0).double()
    w_pos = w * (1 + 2 * pos)
    np.testing.assert_allclose(FocalL1Loss(from_logits=False, pos_weight=3.0)(x, y).item(), (w_pos * e).mean().item(),
                               rtol=1e-15)
    w_clamp = torch.where(same, 2 * e, (2 * e).clamp_min(1))
    np.testing.assert_allclose(FocalL1Loss(from_logits=False, opposite_sign_weight="clamp")(x, y).item(),
                               (w_clamp * e).mean().item(), rtol=1e-15)
    w_beta = torch.where(same, 3 * e**2, torch.ones_like(e))
    np.testing.assert_allclose(FocalL1Loss(from_logits=False, alpha=3, beta=2)(x, y).item(),
                               (w_beta * e).mean().item(), rtol=1e-15)


def test_focal_l1_weight_gradient_detached_or_not():
    x = torch.tensor([0.5, -0.5], dtype=torch.float64).reshape(1, 1, 1, 2).requires_grad_(True)
    y = torch.tensor([0.25, 0.5], dtype=torch.float64).reshape(1, 1, 1, 2)
    FocalL1Loss(from_logits=False)(x, y).backward()
    # same sign: d(2 e^2)/dx = 4 e sign(x - y); opposite sign: d(e)/dx = sign(x - y); mean over 2 voxels
    np.testing.assert_allclose(x.grad.flatten().numpy(), [4 * 0.25 / 2, -1 / 2], rtol=1e-15)
    x.grad = None
    FocalL1Loss(from_logits=False, detach_weight=True)(x, y).backward()
    np.testing.assert_allclose(x.grad.flatten().numpy(), [2 * 0.25 / 2, -1 / 2], rtol=1e-15)


def test_class_weights_and_anchor_multiclass_sum():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(2, 3, 6, 6, generator=gen, dtype=torch.float64)
    y = 2 * torch.rand(2, 3, 6, 6, generator=gen, dtype=torch.float64) - 1
    per_ch = torch.stack([SignedJaccardLoss()(z[:, c:c + 1], y[:, c:c + 1]) for c in range(3)])
    torch.testing.assert_close(SignedJaccardLoss(reduction="none")(z, y), per_ch.view(3, 1, 1))
    w = torch.tensor([1.0, 0.5, 0.5], dtype=torch.float64)
    # the anchor's multi-class total L(1) + w2 * sum_{c>=2} L(c) is the weighted "sum"
    np.testing.assert_allclose(SignedJaccardLoss(class_weights=w, reduction="sum")(z, y).item(),
                               (per_ch * w).sum().item(), rtol=1e-14)
    np.testing.assert_allclose(SignedJaccardLoss(class_weights=w)(z, y).item(),
                               ((per_ch * w).sum() / w.sum()).item(), rtol=1e-14)
    # Focal-L1: the anchor's sum_c w_c l_c / sum_c w_c
    focal_ch = torch.stack([FocalL1Loss()(z[:, c:c + 1], y[:, c:c + 1]) for c in range(3)])
    np.testing.assert_allclose(FocalL1Loss(class_weights=w)(z, y).item(), ((focal_ch * w).sum() / w.sum()).item(),
                               rtol=1e-14)
    total = SAUNALoss(class_weights=w, distance_weight=0.5)(z, y).item()
    np.testing.assert_allclose(total, (((focal_ch + 0.5 * per_ch) * w).sum() / w.sum()).item(), rtol=1e-14)
    assert "class_weights" in dict(SAUNALoss(class_weights=w).named_buffers())


def test_reduction_shapes_and_per_image():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(3, 2, 5, 4, 3, generator=gen, dtype=torch.float64)
    y = 2 * torch.rand(3, 2, 5, 4, 3, generator=gen, dtype=torch.float64) - 1
    # MONAI's DiceLoss shapes: (C, 1, 1, 1) pooled over the batch, (B, C, 1, 1, 1) per image
    assert SignedJaccardLoss(reduction="none")(z, y).shape == (2, 1, 1, 1)
    per_image = SignedJaccardLoss(reduction="none", batch=False)(z, y)
    assert per_image.shape == (3, 2, 1, 1, 1)
    for b in range(3):
        torch.testing.assert_close(per_image[b], SignedJaccardLoss(reduction="none")(z[b:b + 1], y[b:b + 1]))
    assert not torch.allclose(per_image[0], per_image[1])
    focal = FocalL1Loss(reduction="none")(z, y)
    assert focal.shape == (3, 2, 1, 1, 1)
    np.testing.assert_allclose(focal.mean().item(), FocalL1Loss()(z, y).item(), rtol=1e-14)
    np.testing.assert_allclose(FocalL1Loss(reduction="sum")(z, y).item(), focal.sum().item(), rtol=1e-14)
    assert SAUNALoss(reduction="none")(z, y).shape == (2, 1, 1, 1)
    assert SAUNALoss(reduction="none", batch=False)(z, y).shape == (3, 2, 1, 1, 1)
    np.testing.assert_allclose(SAUNALoss(reduction="none")(z, y).mean().item(), SAUNALoss()(z, y).item(), rtol=1e-14)


@pytest.mark.parametrize(
    "loss",
    [
        SignedJaccardLoss(),
        SignedJaccardLoss(pooled=False, batch=False),
        SignedJaccardLoss(signed=False),
        FocalL1Loss(),
        FocalL1Loss(opposite_sign_weight="clamp", pos_weight=2.0, beta=2.0),
        SAUNALoss(class_weights=[1.0, 0.3]),
    ],
)
def test_gradcheck(loss):
    # detach_weight=True has by design not the derivative of its value: tested by hand above
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(2, 2, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    low = 0.0 if getattr(loss, "signed", True) is False else -1.0
    y = low + (1 - low) * torch.rand(2, 2, 4, 3, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: loss(t, y), (z,))


def test_dtypes_and_half_upcast(ref2d):
    z = torch.from_numpy(ref2d["logits"])
    y = _soft(ref2d["gt_sauna"])
    v64 = SAUNALoss()(z, y)
    v32 = SAUNALoss()(z.float(), y.float())
    v16 = SAUNALoss()(z.half(), y.half())
    assert v64.dtype == torch.float64 and v32.dtype == torch.float32 and v16.dtype == torch.float32
    np.testing.assert_allclose(v32.item(), v64.item(), rtol=1e-5)
    np.testing.assert_allclose(v16.item(), v64.item(), rtol=5e-3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(ref2d):
    z = torch.from_numpy(ref2d["logits"])
    y = _soft(ref2d["gt_sauna"])
    loss = SAUNALoss(class_weights=[1.0])
    gpu = loss.cuda()(z.cuda(), y.cuda())
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(gpu.item(), ref2d["sauna_total"], rtol=1e-12)


def _ok():
    gen = torch.Generator().manual_seed(4)
    return (torch.randn(2, 1, 4, 4, generator=gen, dtype=torch.float64),
            2 * torch.rand(2, 1, 4, 4, generator=gen, dtype=torch.float64) - 1)


def _put(t, value):
    t = t.clone()
    t[0, 0, 0, 0] = value
    return t


@pytest.mark.parametrize("make", [SignedJaccardLoss, FocalL1Loss, SAUNALoss])
@pytest.mark.parametrize(
    "inputs, match",
    [
        (lambda x, y: (x, torch.cat([y, y], 1)), "shape"),
        (lambda x, y: (x, y[..., :3]), "shape"),
        (lambda x, y: (x[0], y[0]), "shape"),
        (lambda x, y: (x[..., :0], y[..., :0]), "empty"),
        (lambda x, y: (_put(x, float("nan")), y), "NaN"),
        (lambda x, y: (x, _put(y, float("inf"))), "NaN/Inf"),
        (lambda x, y: (x, _put(y, 1.5)), r"\[-1.0, 1.0\]"),
        (lambda x, y: (x, _put(y, -1.01)), r"\[-1.0, 1.0\]"),
        (lambda x, y: (x.long(), y), "floating point"),
        (lambda x, y: (x, y.numpy()), "torch.Tensor"),
    ],
)
def test_bad_input_raises(make, inputs, match):
    x, y = inputs(*_ok())
    with pytest.raises(ValueError, match=match):
        make()(x, y)


def test_bad_input_raises_specific():
    x, y = _ok()
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\]"):
        SignedJaccardLoss(signed=False)(x, y)  # negative labels in unsigned mode
    with pytest.raises(ValueError, match="from_logits=False"):
        SignedJaccardLoss(from_logits=False)(3 * x, y)
    with pytest.raises(ValueError, match="from_logits=False"):
        FocalL1Loss(from_logits=False)(3 * x, y)
    with pytest.raises(ValueError, match="class_weights has 2"):
        FocalL1Loss(class_weights=[1.0, 2.0])(x, y)
    with pytest.raises(ValueError, match="class_weights has 3"):
        SAUNALoss(class_weights=[1.0, 2.0, 3.0])(x, y)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SignedJaccardLoss(signed=False, pooled=False), "type 1"),
        (lambda: SignedJaccardLoss(smooth=-1.0), "smooth"),
        (lambda: SignedJaccardLoss(reduction="avg"), "reduction"),
        (lambda: SignedJaccardLoss(class_weights=[0.0, 0.0]), "class_weights"),
        (lambda: FocalL1Loss(alpha=0.0), "alpha"),
        (lambda: FocalL1Loss(beta=-1.0), "beta"),
        (lambda: FocalL1Loss(pos_weight=-1.0), "pos_weight"),
        (lambda: FocalL1Loss(opposite_sign_weight="max"), "opposite_sign_weight"),
        (lambda: SAUNALoss(distance_weight=-0.5), "distance_weight"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()
