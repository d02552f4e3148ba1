"""MIPLoss (SPOCKMIP): anchor values with correctly aligned axes, hand-computed cases, options, gradients, bad input.

Reference data in tests/data/mip_pulaski/ (copied from shared/reference/mip_pulaski/): the anchor's pipeline cases
(patches in the anchor's (B, 1, D, W, L) layout; the z/y/x/multi files share their inputs, so only the multi file is
kept) and ``spockmip_summary.json`` with the anchor value and the values for aligned axes. The anchor's MIP values
contain 0.001 accumulator offsets: ``anchor = 0.001 + sum_l w_l (0.001 + sum_b sum_a FTL) / B``; medloss drops them.
Reference values are float32, so they are compared at float32 tolerance (1e-6 absolute).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from monai.losses import DiceLoss

from medloss.losses import FocalTverskyLoss, MIPLoss
from medloss.losses.mip import max_projection

DATA = Path(__file__).resolve().parents[1] / "data" / "mip_pulaski"
SUMMARY = json.loads((DATA / "spockmip_summary.json").read_text())
TOL = 1e-6
# anchor axis name -> spatial axis of its (D, W, L) patch (z = slice axis D, y = L, x = W)
SPATIAL_AXIS = {"z": 0, "y": 2, "x": 1}
AXIS_SETS = {"z": ("z",), "y": ("y",), "x": ("x",), "multi": ("z", "y", "x")}
DS_WEIGHTS = (1.0, 0.66, 0.34)  # the anchor's deep-supervision weights


def _load(name):
    return dict(np.load(DATA / name))


def _without_offsets(anchor_value, batch, level_weights=(1.0,)):
    return anchor_value - 0.001 - sum(level_weights) * 0.001 / batch


def _global_label_mip(case, names):
    """Anchor's cropped whole-volume label MIPs, broadcast back to the (B, n_axes, D, W, L) patch."""
    b, _, d, w, l_ = case["label_patch_BCDWL"].shape
    out = []
    for name in names:
        crop = torch.as_tensor(case[f"gt_mip_{name}_patch"])
        if name == "z":  # max over D, laid out (W, L)
            out.append(crop[:, None, :, :].expand(b, d, w, l_))
        elif name == "y":  # max over L, laid out (W, D)
            out.append(crop.transpose(1, 2)[:, :, :, None].expand(b, d, w, l_))
        else:  # x: max over W, laid out (L, D)
            out.append(crop.transpose(1, 2)[:, :, None, :].expand(b, d, w, l_))
    return torch.stack(out, 1)


def _mip_only(**kwargs):
    return MIPLoss(sigmoid=True, voxel_weight=0.0, mip_weight=1.0, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# anchor values (aligned axes)
@pytest.mark.parametrize("stub", ["random", "perfect_fulldepth"])
@pytest.mark.parametrize("axis", ["z", "y", "x", "multi"])
@pytest.mark.parametrize("label_mip", ["patch_local", "global"])
def test_anchor_aligned_values(stub, axis, label_mip):
    case = _load(f"spock_{stub}_p32_multi.npz")
    ref = SUMMARY[f"spock_{stub}_p32_{axis}.npz"][f"aligned_axes_{label_mip}_label_mip"]
    logits = torch.as_tensor(case["logits_level0"]).float()
    label = torch.as_tensor(case["label_patch_BCDWL"])
    names = AXIS_SETS[axis]
    loss = _mip_only(axes=[SPATIAL_AXIS[n] for n in names])
    lm = _global_label_mip(case, names) if label_mip == "global" else None
    value = loss(logits, label, label_mip=lm).item()
    assert abs(value - _without_offsets(ref, batch=2)) < TOL


@pytest.mark.parametrize("label_mip, key", [(False, "aligned_axes_patch_local_label_mip"),
                                            (True, "aligned_axes_global_label_mip")])
def test_anchor_partial_depth(label_mip, key):
    # volume deeper than the patch: the global label MIP penalises even a perfect patch prediction (0.366547)
    case = _load("spock_perfect_partialdepth_p32_z.npz")
    ref = SUMMARY["spock_perfect_partialdepth_p32_z.npz"][key]
    logits = torch.as_tensor(case["logits_level0"]).float()
    label = torch.as_tensor(case["label_patch_BCDWL"])
    lm = _global_label_mip(case, ("z",)) if label_mip else None
    value = _mip_only(axes=0)(logits, label, label_mip=lm).item()
    assert abs(value - _without_offsets(ref, batch=2)) < TOL
    if label_mip:
        assert value > 0.36


def test_anchor_total_single_level():
    # default MIPLoss = 0.7 batch-global voxel FTL + 0.3 per-sample MIP FTL (anchor total without its offsets)
    case = _load("spock_random_p32_multi.npz")
    ref = SUMMARY["spock_random_p32_z.npz"]
    logits = torch.as_tensor(case["logits_level0"]).float()
    label = torch.as_tensor(case["label_patch_BCDWL"])
    value = MIPLoss(sigmoid=True, axes=0)(logits, label, label_mip=_global_label_mip(case, ("z",))).item()
    expected = 0.7 * (ref["anchor_floss"] - 0.001) + 0.3 * _without_offsets(ref["aligned_axes_global_label_mip"], 2)
    assert abs(value - expected) < TOL
    voxel = FocalTverskyLoss(sigmoid=True)(logits, label).item()
    assert abs(voxel - (ref["anchor_floss"] - 0.001)) < TOL


def _deep_supervision_sum(loss, case, label_mip=None):
    """The anchor's combination: every level nearest-upsampled to the patch size, weighted 1 / 0.66 / 0.34."""
    label = torch.as_tensor(case["label_patch_BCDWL"])
    total = 0.0
    for level, w in enumerate(DS_WEIGHTS):
        logits = torch.as_tensor(case[f"logits_level{level}"]).float()
        logits = F.interpolate(logits, size=label.shape[2:], mode="nearest")
        total = total + w * loss(logits, label, label_mip=label_mip)
    return total


def test_anchor_deep_supervision_p64():
    case = _load("spock_random_deepsup3_p64_b1_z.npz")
    ref = SUMMARY["spock_random_deepsup3_p64_b1_z.npz"]
    lm = _global_label_mip(case, ("z",))
    mip_global = _deep_supervision_sum(_mip_only(axes=0), case, lm).item()
    assert abs(mip_global - _without_offsets(ref["aligned_axes_global_label_mip"], 1, DS_WEIGHTS)) < TOL
    mip_local = _deep_supervision_sum(_mip_only(axes=0), case).item()
    assert abs(mip_local - _without_offsets(ref["aligned_axes_patch_local_label_mip"], 1, DS_WEIGHTS)) < TOL
    # the anchor's voxel term and total (its voxel loss is not affected by the axis bug)
    floss = ref["anchor_floss"] - 0.001
    assert abs(_deep_supervision_sum(MIPLoss(sigmoid=True, mip_weight=0.0, voxel_weight=1.0), case).item()
               - floss) < TOL
    total = _deep_supervision_sum(MIPLoss(sigmoid=True, axes=0), case, lm).item()
    assert abs(total - (0.7 * floss + 0.3 * mip_global)) < TOL


def test_anchor_axis_bug_is_not_reproduced():
    # The anchor pairs the prediction's MIP over the last dim of (D, W, L) with the label's MIP over D (cubic
    # patches hide the mismatch). Written out here, that pairing gives the anchor's 0.919068 for a perfect
    # predictor; MIPLoss pairs the same axis and gives 0.
    case = _load("spock_perfect_fulldepth_p32_multi.npz")
    prob = torch.sigmoid(torch.as_tensor(case["logits_level0"]).float())
    label_mip_z = torch.as_tensor(case["gt_mip_z_patch"])
    ftl = FocalTverskyLoss()
    mispaired = [ftl(prob[b, 0].amax(2)[None, None], label_mip_z[b][None, None]) for b in range(2)]
    anchor = 0.001 + (0.001 + sum(mispaired).item()) / 2
    assert abs(anchor - SUMMARY["spock_perfect_fulldepth_p32_z.npz"]["anchor_mip_loss"]) < TOL
    ours = _mip_only(axes=0)(torch.as_tensor(case["logits_level0"]).float(),
                             torch.as_tensor(case["label_patch_BCDWL"]),
                             label_mip=_global_label_mip(case, ("z",)))
    assert ours.item() < 1e-6


# ---------------------------------------------------------------------------------------------------------------
# function-level anchor cases (patch-local, axis-correct)
@pytest.fixture(scope="module")
def fl():
    return _load("function_level_cases.npz")


@pytest.mark.parametrize("axis, name", [(0, "D"), (1, "H"), (2, "W")])
def test_function_level_per_axis(fl, axis, name):
    logits, label = torch.as_tensor(fl["ftl_logits"]).float(), torch.as_tensor(fl["mip_label"])
    per_sample = _mip_only(axes=axis, reduction="none")(logits, label)
    assert per_sample.shape == (2, 1, 1, 1, 1)
    np.testing.assert_allclose(per_sample.flatten().numpy(), fl[f"mip_{name}_ftl_per_sample"], atol=TOL, rtol=0)
    pooled = _mip_only(axes=axis, batch=True)(logits, label).item()
    assert abs(pooled - fl[f"mip_{name}_ftl_batch_global"]) < TOL


def test_function_level_multi_and_total(fl):
    logits, label = torch.as_tensor(fl["ftl_logits"]).float(), torch.as_tensor(fl["mip_label"])
    multi = _mip_only(axes=(0, 1, 2))(logits, label).item()
    assert abs(multi - fl["mip_multi_sum_of_axes_mean_over_batch"]) < TOL
    mean_axes = _mip_only(axes=(0, 1, 2), axis_reduction="mean")(logits, label).item()
    assert abs(mean_axes - multi / 3) < 1e-6
    total = MIPLoss(sigmoid=True, axes=0)(logits, label).item()
    assert abs(total - (fl["spock_style_total_zaxis"] - 0.7 * 0.001 - 0.3 * 0.0015)) < TOL


# ---------------------------------------------------------------------------------------------------------------
# hand-computable cases and properties
def test_single_bright_voxel():
    prob = torch.zeros(1, 1, 4, 5, 6, dtype=torch.float64)
    label = torch.zeros_like(prob)
    prob[0, 0, 1, 2, 3] = 0.8
    label[0, 0, 3, 2, 3] = 1.0  # same column along axis 0, another slice
    # along axis 0 both project to one pixel: TP = 0.8, FN = 0.2, FP = 0
    expected_mip = (1 - 1.8 / (0.8 + 0.7 * 0.2 + 1)) ** 0.75
    assert abs(MIPLoss(voxel_weight=0, mip_weight=1, axes=0)(prob, label).item() - expected_mip) < 1e-14
    # along axis 1 the projections are different pixels: TP = 0, FN = 1, FP = 0.8
    expected_off = (1 - 1 / (0.7 * 1 + 0.3 * 0.8 + 1)) ** 0.75
    assert abs(MIPLoss(voxel_weight=0, mip_weight=1, axes=1)(prob, label).item() - expected_off) < 1e-14
    # the voxel term sees the miss: TP = 0, FN = 1, FP = 0.8 as well
    total = MIPLoss(axes=0)(prob, label).item()
    assert abs(total - (0.7 * expected_off + 0.3 * expected_mip)) < 1e-14


@given(shift=st.integers(1, 5), axis=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_mip_term_invariant_to_shifts_along_the_axis(shift, axis, seed):
    gen = torch.Generator().manual_seed(seed)
    prob = torch.rand(2, 1, 6, 5, 4, generator=gen, dtype=torch.float64)
    label = (torch.rand(2, 1, 6, 5, 4, generator=gen) > 0.7).double()
    loss = MIPLoss(voxel_weight=0, mip_weight=1, axes=axis)
    rolled = torch.roll(prob, shift, dims=2 + axis)
    assert abs(loss(rolled, label).item() - loss(prob, label).item()) < 1e-12


def test_two_dimensional_projection_to_lines():
    gen = torch.Generator().manual_seed(3)
    prob = torch.rand(3, 1, 6, 7, generator=gen, dtype=torch.float64)
    label = (torch.rand(3, 1, 6, 7, generator=gen) > 0.6).double()
    ftl = FocalTverskyLoss(batch=False)
    for axis, dim in ((0, 2), (1, 3), (-1, 3), (-2, 2)):
        expected = ftl(prob.amax(dim, keepdim=True), label.amax(dim, keepdim=True))
        got = MIPLoss(voxel_weight=0, mip_weight=1, axes=axis)(prob, label)
        assert abs(got.item() - expected.item()) < 1e-14


def test_multiclass_softmax_per_foreground_channel():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 5, 6, 4, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 1, 5, 6, 4), generator=gen)
    loss = MIPLoss(include_background=False, to_onehot_y=True, softmax=True, axes=(0, 2), voxel_weight=0,
                   mip_weight=1, reduction="none")
    prob = torch.softmax(logits, 1)[:, 1:]
    onehot = F.one_hot(labels[:, 0], 3).permute(0, 4, 1, 2, 3)[:, 1:].double()
    ftl = FocalTverskyLoss(batch=False, reduction="none")
    expected = sum(ftl(prob.amax(d, keepdim=True), onehot.amax(d, keepdim=True)) for d in (2, 4))
    got = loss(logits, labels)
    assert got.shape == (2, 2, 1, 1, 1)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_label_mip_of_the_whole_patch_equals_the_patch_local_mip():
    # when the "volume" is the patch itself, the global label MIP is the patch-local one (multi-class, 2 axes)
    from medloss.transforms import LabelMIP

    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(2, 3, 5, 6, 4, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 1, 5, 6, 4), generator=gen)
    label_mip = torch.stack([LabelMIP(axes=(0, -1), num_classes=3)(lab) for lab in labels]).double()
    assert label_mip.shape == (2, 6, 5, 6, 4)
    loss = MIPLoss(include_background=False, to_onehot_y=True, softmax=True, axes=(0, -1))
    assert abs(loss(logits, labels, label_mip=label_mip).item() - loss(logits, labels).item()) < 1e-14


def test_reduction_none_and_sum():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 2, 5, 6, 4, generator=gen, dtype=torch.float64)
    label = (torch.rand(3, 2, 5, 6, 4, generator=gen) > 0.6).double()
    kw = dict(sigmoid=True, axes=(0, 1))
    voxel = FocalTverskyLoss(sigmoid=True, reduction="none")(logits, label)  # (C, 1, 1, 1)
    mip = MIPLoss(voxel_weight=0, mip_weight=1, reduction="none", **kw)(logits, label)  # (B, C, 1, 1, 1)
    none = MIPLoss(reduction="none", **kw)(logits, label)
    assert voxel.shape == (2, 1, 1, 1) and mip.shape == none.shape == (3, 2, 1, 1, 1)
    torch.testing.assert_close(none, 0.7 * voxel + 0.3 * mip)
    torch.testing.assert_close(MIPLoss(**kw)(logits, label), none.mean())
    torch.testing.assert_close(MIPLoss(reduction="sum", **kw)(logits, label), 0.7 * voxel.sum() + 0.3 * mip.sum())


def test_batch_global_mip():
    gen = torch.Generator().manual_seed(6)
    prob = torch.rand(3, 1, 5, 6, 4, generator=gen, dtype=torch.float64)
    label = (torch.rand(3, 1, 5, 6, 4, generator=gen) > 0.6).double()
    expected = FocalTverskyLoss(batch=True)(prob.amax(3, keepdim=True), label.amax(3, keepdim=True))
    got = MIPLoss(voxel_weight=0, mip_weight=1, axes=1, batch=True)(prob, label)
    assert abs(got.item() - expected.item()) < 1e-14


def test_slabs():
    gen = torch.Generator().manual_seed(7)
    prob = torch.rand(2, 1, 5, 4, 3, generator=gen, dtype=torch.float64)
    label = (torch.rand(2, 1, 5, 4, 3, generator=gen) > 0.6).double()
    per_sample = FocalTverskyLoss(batch=False)
    mip = lambda **kw: MIPLoss(voxel_weight=0, mip_weight=1, axes=0, **kw)(prob, label).item()  # noqa: E731
    # one slice per slab: no projection at all
    assert abs(mip(slab_size=1) - per_sample(prob, label).item()) < 1e-14
    # a slab at least as deep as the patch is the full-depth MIP
    assert mip(slab_size=5) == mip(slab_size=9) == mip()
    # slabs [0, 2), [2, 4), [4, 5): the last one shorter
    def slabs(x):
        return torch.stack([x[:, :, 0:2].amax(2), x[:, :, 2:4].amax(2), x[:, :, 4]], 2)
    assert abs(mip(slab_size=2) - per_sample(slabs(prob), slabs(label)).item()) < 1e-14
    assert max_projection(prob, 2, 2).shape == (2, 1, 3, 4, 3)


def test_max_projection_gradient_goes_to_the_maximum():
    x = torch.tensor([[0.1, 0.7, 0.3], [0.9, 0.2, 0.4]], requires_grad=True)
    max_projection(x, 1).sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]


def test_custom_losses():
    gen = torch.Generator().manual_seed(8)
    prob = torch.rand(2, 1, 5, 6, 4, generator=gen, dtype=torch.float64)
    label = (torch.rand(2, 1, 5, 6, 4, generator=gen) > 0.6).double()
    dice = DiceLoss()
    loss = MIPLoss(axes=(0, 2), mip_loss=dice, voxel_loss=dice, voxel_weight=0.5, mip_weight=2.0)
    expected = 0.5 * dice(prob, label) + 2.0 * sum(
        dice(prob.amax(d, keepdim=True), label.amax(d, keepdim=True)) for d in (2, 4))
    assert abs(loss(prob, label).item() - expected.item()) < 1e-14


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(9)
    # continuous random logits: no ties in the maxima, where max is differentiable
    logits = torch.randn(2, 2, 4, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    label = (torch.rand(2, 2, 4, 3, 5, generator=gen) > 0.6).double()
    label_mip = torch.cat([label.amax(d, keepdim=True).expand_as(label) for d in (2, 4)], 1)
    for kw, lm in (({"axes": (0, 1, 2)}, None), ({"axes": 1, "slab_size": 2, "batch": True}, None),
                   ({"axes": (0, 2)}, label_mip)):
        loss = MIPLoss(sigmoid=True, **kw)
        assert torch.autograd.gradcheck(lambda x: loss(x, label, label_mip=lm), (logits,))


def test_half_precision_is_computed_in_float32():
    case = _load("spock_random_p32_multi.npz")
    logits16 = torch.as_tensor(case["logits_level0"])
    label = torch.as_tensor(case["label_patch_BCDWL"])
    loss = MIPLoss(sigmoid=True, axes=(0, 1))
    half = loss(logits16, label)
    assert half.dtype == torch.float32
    assert half.item() == loss(logits16.float(), label).item()


def test_deep_supervision_wrapper_lower_resolutions():
    # nnU-Net hands every scale its own (downsampled) target; the loss needs no fixed patch size
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    gen = torch.Generator().manual_seed(10)
    label = (torch.rand(2, 1, 16, 16, 16, generator=gen) > 0.8).float()
    outputs = [torch.randn(2, 1, s, s, s, generator=gen, requires_grad=True) for s in (16, 8, 4)]
    targets = [F.interpolate(label, size=(s,) * 3, mode="nearest") for s in (16, 8, 4)]
    weights = (1.0, 0.5, 0.25)
    loss = MIPLoss(sigmoid=True, axes=(0, 1, 2))
    wrapped = DeepSupervisionWrapper(loss, weights)(outputs, targets)
    manual = sum(w * loss(o, t) for w, o, t in zip(weights, outputs, targets))
    assert abs(wrapped.item() - manual.item()) < 1e-6
    wrapped.backward()
    assert all(o.grad is not None and bool(torch.isfinite(o.grad).all()) for o in outputs)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    case = _load("spock_random_p32_multi.npz")
    logits = torch.as_tensor(case["logits_level0"])
    label = torch.as_tensor(case["label_patch_BCDWL"])
    lm = _global_label_mip(case, ("z", "y", "x"))
    loss = MIPLoss(sigmoid=True, axes=(0, 2, 1), slab_size=8)
    cpu = loss(logits.float(), label, label_mip=lm)
    gpu = loss(logits.cuda(), label.cuda(), label_mip=lm.cuda())  # half precision on the GPU, upcast inside
    assert gpu.device.type == "cuda"
    assert abs(gpu.item() - cpu.item()) < 1e-5


# ---------------------------------------------------------------------------------------------------------------
# bad input
def test_bad_input():
    prob = torch.rand(2, 1, 4, 5, 6)
    label = torch.zeros_like(prob)
    loss = MIPLoss(axes=0)
    with pytest.raises(ValueError, match="shape"):
        loss(prob, torch.zeros(2, 1, 4, 5, 7))
    bad = prob.clone()
    bad[1, 0, 2, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        loss(bad, label)
    with pytest.raises(ValueError, match="target"):
        loss(prob, label + 2)
    with pytest.raises(ValueError, match="prediction"):
        loss(prob - 0.5, label)
    with pytest.raises(ValueError, match="axes"):
        MIPLoss(axes=3)(prob, label)
    with pytest.raises(ValueError, match="axes"):
        MIPLoss(axes=-4)(prob, label)
    with pytest.raises(ValueError, match="axes"):
        MIPLoss(axes=2)(prob[..., 0], label[..., 0])  # 2D input has spatial axes 0 and 1
    with pytest.raises(ValueError, match="distinct"):
        MIPLoss(axes=(0, -3))(prob, label)
    with pytest.raises(ValueError, match="label_mip"):
        loss(prob, label, label_mip=torch.zeros(2, 2, 4, 5, 6))  # 2 channels for 1 axis and 1 class
    with pytest.raises(ValueError, match="label_mip"):
        loss(prob, label, label_mip=torch.zeros(2, 1, 4, 5, 5))
    with pytest.raises(ValueError, match="label_mip"):
        loss(prob, label, label_mip=torch.full((2, 1, 4, 5, 6), 2.0))
    with pytest.raises(ValueError, match="NaN"):
        loss(prob, label, label_mip=torch.full((2, 1, 4, 5, 6), float("nan")))
    with pytest.raises(ValueError, match="label values"):
        MIPLoss(softmax=True, to_onehot_y=True)(torch.rand(2, 3, 4, 5, 6), torch.full((2, 1, 4, 5, 6), 5))
    with pytest.raises(ValueError, match="spatial"):
        loss(torch.rand(2, 1, 4), torch.zeros(2, 1, 4))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"axes": ()},
        {"axes": 0.5},
        {"axes": (0, "z")},
        {"axis_reduction": "max"},
        {"slab_size": 0},
        {"slab_size": 2.5},
        {"voxel_weight": -1.0},
        {"voxel_weight": 0.0, "mip_weight": 0.0},
        {"reduction": "max"},
        {"batch": True, "mip_loss": DiceLoss()},
        {"mip_loss": "ftl"},
        {"sigmoid": True, "softmax": True},
    ],
)
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        MIPLoss(**kwargs)
