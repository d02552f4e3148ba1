"""Tests for medloss.losses.betti.BettiMatchingLoss (against Betti-Matching-3D/topolosses reference data)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medloss.losses.betti import BettiMatchingLoss, _match

DATA = Path(__file__).resolve().parents[1] / "data" / "betti"
# every reference case whose target is binary (identical_2d compares two non-binary images)
BINARY_CASES = sorted(p.stem for p in DATA.glob("*.npz") if p.stem != "identical_2d")


def _case(name):
    return np.load(DATA / f"{name}.npz")


def _pair(name, dtype=torch.float64):
    d = _case(name)
    p = torch.tensor(d["pred"], dtype=dtype)[None, None].requires_grad_(True)
    g = torch.tensor(d["gt"], dtype=dtype)[None, None]
    return d, p, g


def _tie_free(shape, seed):
    """Probabilities with pairwise gaps far above the finite-difference step, and a binary target."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    values = 0.05 + 0.9 * (rng.permutation(n) + rng.uniform(0.2, 0.8, n)) / n
    g = (rng.uniform(size=shape) < 0.5).astype(np.float64)
    return torch.tensor(values.reshape(shape)), torch.tensor(g)


@pytest.mark.parametrize("name", BINARY_CASES)
def test_reference_loss_and_gradient(name):
    d, p, g = _pair(name)
    loss = BettiMatchingLoss()(p, g)
    loss.backward()
    assert loss.dtype == torch.float64
    np.testing.assert_allclose(loss.item(), float(d["loss_total"]), rtol=1e-9, atol=1e-12)
    # the reference gradient comes from topolosses in float32
    np.testing.assert_allclose(p.grad[0, 0].numpy(), d["grad_topolosses_wrt_pred"], rtol=0, atol=2e-6)


@pytest.mark.parametrize("name", ["broken_vessel_2d", "random_64x64_seed0", "torus_3d"])
def test_reference_float32(name):
    d, p, g = _pair(name, torch.float32)
    loss = BettiMatchingLoss()(p, g)
    loss.backward()
    assert loss.dtype == torch.float32
    np.testing.assert_allclose(loss.item(), float(d["loss_topolosses"]), rtol=1e-6)
    np.testing.assert_allclose(p.grad[0, 0].numpy(), d["grad_topolosses_wrt_pred"], rtol=0, atol=2e-6)


def test_broken_vessel_gradient_at_critical_voxels():
    _, p, g = _pair("broken_vessel_2d")
    loss = BettiMatchingLoss()(p, g)
    loss.backward()
    assert loss.item() == pytest.approx(0.49, rel=1e-12)
    grad = p.grad[0, 0]
    assert grad[14, 17].item() == pytest.approx(1.4, rel=1e-12)  # birth voxel of the spurious component
    assert grad[14, 16].item() == pytest.approx(-1.4, rel=1e-12)  # gap voxel: raising p closes the gap
    assert torch.count_nonzero(grad).item() == 2


@pytest.mark.parametrize(
    "name, expected", [("spurious_blob_2d", 0.4225), ("broken_ring_2d", 1.3), ("diagonal_line_2d", 0.28)]
)
def test_hand_computed_cases(name, expected):
    _, p, g = _pair(name)
    assert BettiMatchingLoss()(p, g).item() == pytest.approx(expected, rel=1e-12)


def test_identical_soft_inputs_are_fully_matched():
    # identical_2d has a soft "target"; the loss class only accepts binary targets, so run the matcher directly
    d = _case("identical_2d")
    p = torch.tensor(d["pred"])[None]
    pairs = _match(p, p.clone(), "superlevel", False, None, None)
    assert pairs.pred_unmatched[0].size == 0 and pairs.target_unmatched[0].size == 0
    assert pairs.matched[0].size > 0
    per_dim = BettiMatchingLoss()._assemble(1 - p, 1 - p, pairs, 2)
    assert torch.count_nonzero(per_dim).item() == 0


@pytest.mark.parametrize("name", ["random_32x32x32_seed0", "random_64x64_seed0"])
def test_gradient_equals_analytic_sum(name):
    # the paper's loss formula evaluated in float64 from the reference coordinates; several bars share critical
    # voxels in 3D, so this also checks that their contributions accumulate
    d, p, g = _pair(name)
    BettiMatchingLoss()(p, g).backward()
    x, y = d["input1"], d["input2"]
    dx = np.zeros_like(x)
    shared = 0
    for k in range(x.ndim):
        for a, b in (("birth", "birth"), ("death", "death")):
            pc, gc = d[f"matched_pred_{a}_d{k}"], d[f"matched_gt_{b}_d{k}"]
            np.add.at(dx, tuple(pc.T), 4 * (x[tuple(pc.T)] - y[tuple(gc.T)]))
        bc, dc = d[f"unmatched_pred_birth_d{k}"], d[f"unmatched_pred_death_d{k}"]
        diff = x[tuple(bc.T)] - x[tuple(dc.T)]
        np.add.at(dx, tuple(bc.T), 2 * diff)
        np.add.at(dx, tuple(dc.T), -2 * diff)
        coords = np.concatenate([d[f"matched_pred_birth_d{k}"], d[f"matched_pred_death_d{k}"], bc, dc])
        shared += int((np.unique(coords, axis=0, return_counts=True)[1] > 1).sum())
    np.testing.assert_allclose(p.grad[0, 0].numpy(), -dx, rtol=1e-12, atol=1e-14)
    if x.ndim == 3:
        assert shared > 0


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(bool, st.tuples(st.integers(3, 9), st.integers(3, 9))),
    st.data(),
)
def test_binary_inputs_loss_counts_unmatched_bars(pred, data):
    gt = data.draw(hnp.arrays(bool, pred.shape))
    from medloss.metrics.topology import betti_matching_error

    p = torch.tensor(pred, dtype=torch.float64)[None, None]
    g = torch.tensor(gt, dtype=torch.float64)[None, None]
    loss = BettiMatchingLoss()(p, g).item()
    bme = betti_matching_error(pred, gt)
    # the loss has no essential class; the metric counts it when exactly one image is empty
    assert loss == bme.total - int(pred.any() != gt.any())


@pytest.mark.parametrize("shape", [(7, 6), (4, 4, 3)])
@pytest.mark.parametrize("options", [{}, {"relative": True}, {"filtration": "both"}, {"push_unmatched_to_1_0": True}])
def test_gradcheck_tie_free(shape, options):
    p, g = _tie_free(shape, seed=sum(shape))
    p = p[None, None].requires_grad_(True)
    g = g[None, None]
    loss = BettiMatchingLoss(matched_weight=1.5, unmatched_weight=0.7, **options)
    assert loss(p, g).item() > 0
    assert torch.autograd.gradcheck(lambda x: loss(x, g), (p,), eps=1e-6, atol=1e-6)


def test_gradcheck_through_sigmoid():
    p, g = _tie_free((6, 6), seed=3)
    logits = torch.logit(p)[None, None].requires_grad_(True)
    loss = BettiMatchingLoss(sigmoid=True)
    assert torch.autograd.gradcheck(lambda x: loss(x, g[None, None]), (logits,), eps=1e-6, atol=1e-6)


def test_finite_differences_on_reference_case():
    # random_64x64_seed0: perturb each critical voxel by an eps below the smallest gap between distinct values
    d, p, g = _pair("random_64x64_seed0")
    loss_fn = BettiMatchingLoss()
    loss_fn(p, g).backward()
    grad = p.grad[0, 0].numpy()
    values = np.unique(np.concatenate([d["pred"].ravel(), [0.0, 1.0]]))
    eps = float(np.diff(values).min()) / 4
    assert eps > 1e-9
    base = d["pred"]
    for idx in map(tuple, np.argwhere(grad != 0)[:20]):
        fd = []
        for sign in (1, -1):
            q = base.copy()
            q[idx] += sign * eps
            fd.append(loss_fn(torch.tensor(q)[None, None], g).item())
        assert (fd[0] - fd[1]) / (2 * eps) == pytest.approx(grad[idx], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("spatial", [(12, 10), (6, 5, 4)])
def test_batch_mean_over_instances_and_reductions(spatial):
    torch.manual_seed(0)
    p = torch.rand((3, 2) + spatial, dtype=torch.float64)
    g = (torch.rand((3, 2) + spatial) > 0.5).double()
    single = torch.tensor(
        [[BettiMatchingLoss()(p[b : b + 1, c : c + 1], g[b : b + 1, c : c + 1]).item() for c in range(2)]
         for b in range(3)],
        dtype=torch.float64,
    )
    assert (single > 0).all()
    none = BettiMatchingLoss(reduction="none", num_workers=2)(p, g)
    assert none.shape == (3, 2) + (1,) * len(spatial)  # MONAI's DiceLoss(reduction="none") shape
    torch.testing.assert_close(none.reshape(3, 2), single, rtol=1e-12, atol=0)
    assert BettiMatchingLoss(reduction="mean")(p, g).item() == pytest.approx(single.mean().item(), rel=1e-12)
    total = BettiMatchingLoss(reduction="sum", num_workers=1)(p, g)
    assert total.item() == pytest.approx(single.sum().item(), rel=1e-12)


def test_multiclass_one_vs_rest_with_softmax_and_onehot():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 10, 10, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (2, 1, 10, 10))
    loss = BettiMatchingLoss(to_onehot_y=True, softmax=True, reduction="none")(logits, labels)
    prob = torch.softmax(logits.detach(), 1)
    onehot = torch.nn.functional.one_hot(labels[:, 0], 3).permute(0, 3, 1, 2).double()
    expected = BettiMatchingLoss(reduction="none")(prob, onehot)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-12, atol=0)
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0

    no_bg_loss = BettiMatchingLoss(include_background=False, to_onehot_y=True, softmax=True, reduction="none")
    no_bg = no_bg_loss(logits, labels)
    assert no_bg.shape == (2, 2, 1, 1)
    torch.testing.assert_close(no_bg.detach(), expected[:, 1:], rtol=1e-12, atol=0)


def test_single_channel_include_background_false_warns_and_keeps_channel():
    _, p, g = _pair("broken_vessel_2d")
    with pytest.warns(UserWarning, match="include_background"):
        loss = BettiMatchingLoss(include_background=False)(p, g)
    assert loss.item() == pytest.approx(0.49)


def test_sublevel_is_superlevel_of_complement_and_both_is_mean():
    d, p, g = _pair("random_64x64_seed0")
    sub = BettiMatchingLoss(filtration="sublevel")(p, g)
    q = (1 - p.detach()).requires_grad_(True)
    sup_of_complement = BettiMatchingLoss()(q, 1 - g)
    assert sub.item() == pytest.approx(sup_of_complement.item(), rel=1e-12)
    sub.backward()
    sup_of_complement.backward()
    torch.testing.assert_close(p.grad, -q.grad, rtol=1e-12, atol=1e-15)
    both = BettiMatchingLoss(filtration="both")(p, g)
    assert both.item() == pytest.approx(0.5 * (sub.item() + float(d["loss_total"])), rel=1e-12)


def test_relative_makes_border_to_border_break_a_cycle():
    # a horizontal vessel from border to border, broken at column 8
    p = torch.full((12, 16), 0.1, dtype=torch.float64)
    p[5, :] = 0.9
    p[5, 8] = 0.2
    g = torch.zeros(12, 16, dtype=torch.float64)
    g[5, :] = 1
    p = p[None, None].requires_grad_(True)
    g = g[None, None]
    assert BettiMatchingLoss()(p, g).item() == pytest.approx(2 * 0.0 + (0.8 - 0.1) ** 2)
    # relative to the border, the target vessel closes one relative 1-cycle [0, 1) (the frame's own loop is
    # dropped by the kernel); the prediction's cycle is closed by the gap voxel only at 1 - 0.2 = 0.8 and dies
    # with the background at 0.9: matched, 2 * (0.8^2 + 0.1^2); no dim-0 bar (both halves touch the border)
    loss = BettiMatchingLoss(relative=True)(p, g)
    assert loss.item() == pytest.approx(2 * (0.8**2 + 0.1**2), rel=1e-12)
    loss.backward()
    assert p.grad[0, 0, 5, 8].item() == pytest.approx(-4 * 0.8, rel=1e-12)
    assert torch.count_nonzero(p.grad).item() == 2


def test_relative_ignores_components_touching_the_border():
    p = torch.full((16, 16), 0.05, dtype=torch.float64)
    g = torch.zeros(16, 16, dtype=torch.float64)
    g[6:10, 6:10] = 1
    p[6:10, 6:10] = 0.95
    p[0:3, 0:3] = 0.7  # spurious blob in the corner
    p, g = p[None, None], g[None, None]
    assert BettiMatchingLoss()(p, g).item() == pytest.approx((0.7 - 0.05) ** 2, rel=1e-12)
    # relative: the corner blob joins the frame (no bar); the interior square is now a finite bar, matched:
    # 2 * ((0.05 - 0)^2 + (0.95 - 1)^2)
    assert BettiMatchingLoss(relative=True)(p, g).item() == pytest.approx(2 * (0.05**2 + 0.05**2), rel=1e-12)


def test_weights_threshold_and_push():
    _, vessel, vessel_gt = _pair("broken_vessel_2d")  # one unmatched dim-0 bar (0.1, 0.8)
    _, ring, ring_gt = _pair("broken_ring_2d")  # one matched dim-1 pair, loss 1.3
    assert BettiMatchingLoss(unmatched_weight=3.0)(vessel, vessel_gt).item() == pytest.approx(1.47)
    assert BettiMatchingLoss(matched_weight=3.0)(vessel, vessel_gt).item() == pytest.approx(0.49)
    assert BettiMatchingLoss(matched_weight=2.0)(ring, ring_gt).item() == pytest.approx(2.6)
    assert BettiMatchingLoss(dimension_weights=(1.0, 0.0))(ring, ring_gt).item() == 0.0
    assert BettiMatchingLoss(dimension_weights=(0.0, 2.0))(ring, ring_gt).item() == pytest.approx(2.6)
    assert BettiMatchingLoss(dimension_weights=(0.5, 0.0))(vessel, vessel_gt).item() == pytest.approx(0.245)
    assert BettiMatchingLoss(barcode_length_threshold=0.65)(vessel, vessel_gt).item() == pytest.approx(0.49)
    assert BettiMatchingLoss(barcode_length_threshold=0.75)(vessel, vessel_gt).item() == 0.0
    # push to (1, 0) in the transformed filtration: 2 * ((0.1 - 1)^2 + 0.8^2)
    assert BettiMatchingLoss(push_unmatched_to_1_0=True)(vessel, vessel_gt).item() == pytest.approx(2.9)


def test_subpatch_is_a_crop_of_the_image():
    torch.manual_seed(5)
    p = torch.rand(1, 1, 14, 13, dtype=torch.float64)
    g = (torch.rand(1, 1, 14, 13) > 0.5).double()
    full = BettiMatchingLoss()
    assert BettiMatchingLoss(subpatch_size=32)(p, g).item() == pytest.approx(full(p, g).item(), rel=1e-12)
    torch.manual_seed(0)
    patched = BettiMatchingLoss(subpatch_size=(8, 6))(p, g).item()
    torch.manual_seed(0)
    assert BettiMatchingLoss(subpatch_size=(8, 6))(p, g).item() == patched  # reproducible under manual_seed
    crops = {
        full(p[..., i : i + 8, j : j + 6], g[..., i : i + 8, j : j + 6]).item()
        for i in range(14 - 7)
        for j in range(13 - 5)
    }
    assert any(c == pytest.approx(patched, rel=1e-12) for c in crops)

    q = p.clone().requires_grad_(True)
    BettiMatchingLoss(subpatch_size=6)(q, g).backward()
    rows, cols = torch.nonzero(q.grad[0, 0], as_tuple=True)
    assert rows.numel() > 0
    assert rows.max() - rows.min() < 6 and cols.max() - cols.min() < 6


def test_half_precision_and_3d_batch():
    _, p, g = _pair("torus_3d", torch.float16)
    loss = BettiMatchingLoss()(p, g)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(1.0, rel=1e-2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gradient_matches_cpu():
    d, p, g = _pair("random_64x64_seed0")
    pc = p.detach().cuda().requires_grad_(True)
    loss = BettiMatchingLoss()(pc, g.cuda())
    loss.backward()
    assert pc.grad.device.type == "cuda"
    np.testing.assert_allclose(loss.item(), float(d["loss_total"]), rtol=1e-9)
    np.testing.assert_allclose(pc.grad[0, 0].cpu().numpy(), d["grad_topolosses_wrt_pred"], atol=2e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sigmoid": True, "softmax": True},
        {"filtration": "bothlevels"},
        {"reduction": "max"},
        {"matched_weight": -1.0},
        {"unmatched_weight": float("nan")},
        {"barcode_length_threshold": -0.1},
        {"dimension_weights": (1.0, -1.0)},
        {"subpatch_size": 0},
        {"subpatch_size": (8, 2.5)},
        {"num_workers": 0},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        BettiMatchingLoss(**kwargs)


def _bad_inputs():
    ok = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    gt = (torch.rand(1, 1, 8, 8) > 0.5).double()
    nan = ok.clone()
    nan[0, 0, 1, 1] = float("nan")
    inf = ok.clone()
    inf[0, 0, 2, 2] = float("inf")
    return [
        (nan, gt, "NaN"),
        (ok, torch.where(gt > 0, torch.tensor(float("inf"), dtype=torch.float64), gt), "NaN/Inf"),
        (inf, gt, "NaN"),
        (ok, gt[..., :7], "shape"),
        (ok.repeat(1, 2, 1, 1), gt, "shape"),
        (torch.rand(1, 1, 8), torch.ones(1, 1, 8), "spatial"),
        (torch.rand(1, 1, 3, 3, 3, 3), torch.ones(1, 1, 3, 3, 3, 3), "spatial"),
        (torch.rand(0, 1, 8, 8), torch.ones(0, 1, 8, 8), "empty"),
        (ok, gt * 0.5, "binary"),
        (ok * 3, gt, r"\[0.0, 1.0\]"),
    ]


@pytest.mark.parametrize("pred, gt, match", _bad_inputs())
def test_bad_inputs_raise(pred, gt, match):
    with pytest.raises(ValueError, match=match):
        BettiMatchingLoss()(pred, gt)


def test_bad_dimension_weights_and_subpatch_length():
    _, p, g = _pair("broken_tube_3d")
    with pytest.raises(ValueError, match="dimension_weights"):
        BettiMatchingLoss(dimension_weights=(1.0, 1.0))(p, g)
    with pytest.raises(ValueError, match="subpatch_size"):
        BettiMatchingLoss(subpatch_size=(4, 4))(p, g)
