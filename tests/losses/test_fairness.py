"""Tests for medloss.losses.fairness (FairSeg fair error-bound scaling).

Reference values: tests/data/fair_impact/febs_case*.npz (shared/reference/fair_impact, cross-checked against the
FairSeg code). Those were computed with float32 probabilities and float32 group errors; the group error of the best
group (1.4e-4, a sum of ``1 - dice`` with dice ~ 1) carries a float32 cancellation error of ~1e-3 relative, which
passes into the stored weights. Hence three layers of checks:

* the weight rule on the stored (float64) group errors, and the scaled Dice on the stored weights: 1e-9 relative;
* an independent float64 transcription of the FairSeg formulas (``_oracle`` below; it reproduces the stored group
  errors when run in float32): 1e-10 relative, end to end;
* end-to-end against the stored float32-derived values with a tolerance that covers their rounding.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from devtools.distributed import run_on_ranks
from medloss.losses import FairErrorBoundScalingLoss
from medloss.losses.fairness import febs_group_weights
from medloss.validation import check_group_ids

DATA = Path(__file__).resolve().parents[1] / "data" / "fair_impact"
CASES = ("febs_case1_all_groups", "febs_case2_group_absent")
MODES = {"faithful": "official", "guarded": "present_min"}
SMOOTH = 1e-5


def load(case):
    d = np.load(DATA / f"{case}.npz")
    return {k: d[k] for k in d.files}


def tensors(d, dtype=torch.float64):
    logits = torch.tensor(d["logits"]).to(dtype)
    labels = torch.tensor(d["labels"])[:, None]
    return logits, labels, torch.tensor(d["attr"])


def febs(mode="guarded", gamma=1.0, **kw):
    kw.setdefault("lambda_dice", 1.0)
    kw.setdefault("lambda_ce", 0.0)
    return FairErrorBoundScalingLoss(to_onehot_y=True, softmax=True, num_groups=3, gamma=gamma, mode=mode, **kw)


class FixedWeights(FairErrorBoundScalingLoss):
    """Same loss with the group weights imposed (to test the scaled Dice on the stored weights)."""

    def __init__(self, weights, **kw):
        super().__init__(**kw)
        self.fixed = torch.as_tensor(weights, dtype=torch.float64)

    def _weights(self, stats, num_classes):
        return torch.cat([self.fixed, self.fixed[-1:]])


# ------------------------------------------------------------------------------------------------------------------
# independent float64 oracle: the FairSeg formulas written out with loops over groups and classes
def _soft_dice(p, g):
    return 1 - (2 * (p * g).sum() + SMOOTH) / ((p * p).sum() + (g * g).sum() + SMOOTH)


def _oracle(prob, onehot, attr, n_groups, gamma, mode, unknown_weight=None):
    attr = np.asarray(attr)
    errors = np.zeros(n_groups)
    present = np.zeros(n_groups, bool)
    known = sorted(set(attr.tolist()) - {-1}) if mode == "guarded" else sorted(set(attr.tolist()))
    for a in known:  # faithful: -1 first (sorted), overwritten by group G-1 when present (numpy negative index)
        sel = torch.as_tensor(attr == a)
        errors[a] = sum(float(_soft_dice(prob[sel, c], onehot[sel, c])) for c in range(prob.shape[1]))
        present[a] = True
    with np.errstate(divide="ignore", invalid="ignore"):
        if mode == "faithful":
            w = np.tanh((errors.min() / errors) ** gamma)
        else:
            lo = errors[present].min()
            w = np.where(present, np.tanh((lo / np.where(errors > 0, errors, 1.0)) ** gamma), np.nan)
    per_sample = np.array([w[a] if a >= 0 or mode == "faithful" else np.tanh(1.0) for a in attr])
    ws = torch.as_tensor(per_sample, dtype=prob.dtype).view(-1, 1, 1)
    value = sum(_soft_dice(prob[:, c] * ws, onehot[:, c]) for c in range(prob.shape[1])) / prob.shape[1]
    return w, value


# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", list(MODES))
def test_weight_rule_on_stored_group_errors(case, mode):
    d = load(case)
    tag = MODES[mode]
    for i, gamma in enumerate(d["gammas"]):
        w = febs_group_weights(torch.tensor(d["group_losses"]), torch.tensor(d["present"]), float(gamma), mode)
        ref = d[f"weights_{tag}"][i]
        present = d["present"] if mode == "guarded" else np.ones(3, bool)
        np.testing.assert_allclose(w.numpy()[present], ref[present], rtol=1e-12, atol=0, equal_nan=True)
        if mode == "guarded":
            assert np.isnan(w.numpy()[~d["present"]]).all()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", list(MODES))
def test_scaled_dice_on_stored_weights(case, mode):
    """FEBS Dice, TransUNet/SAMed totals, gradient and per-sample gradient norms with the stored weights."""
    d = load(case)
    tag = MODES[mode]
    logits, labels, attr = tensors(d, torch.float32)
    prob32 = torch.softmax(logits, 1).double()  # the reference's float32 probabilities, evaluated in float64
    for i, gamma in enumerate(d["gammas"]):
        w = np.nan_to_num(d[f"weights_{tag}"][i], nan=0.0)
        loss = FixedWeights(w, to_onehot_y=True, num_groups=3, lambda_dice=1.0, lambda_ce=0.0, mode=mode)
        np.testing.assert_allclose(float(loss(prob32, labels, attr)), d[f"febs_dice_{tag}"][i], rtol=1e-9)
    w1 = np.nan_to_num(d[f"weights_{tag}"][1], nan=0.0)
    for lam_d, lam_ce, key in ((0.5, 0.5, "transunet"), (0.8, 0.2, "samed")):
        loss = FixedWeights(w1, to_onehot_y=True, softmax=True, num_groups=3, lambda_dice=lam_d, lambda_ce=lam_ce)
        x = logits.double().requires_grad_(True)
        total = loss(x, labels, attr)
        np.testing.assert_allclose(float(total.detach()), d[f"{key}_total_gamma1_{tag}"], rtol=1e-6)
        if key == "transunet":
            total.backward()
            ref = d[f"transunet_total_gamma1_{tag}_grad"]
            np.testing.assert_allclose(x.grad.numpy(), ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
    for term, weights in (("febs", w1), ("plain", np.ones(3))):
        loss = FixedWeights(weights, to_onehot_y=True, softmax=True, num_groups=3, lambda_dice=1.0, lambda_ce=0.0)
        x = logits.double().requires_grad_(True)
        loss(x, labels, attr).backward()
        norms = x.grad.flatten(1).norm(dim=1).numpy()
        ref = d[f"gradnorm_per_sample_{term}_gamma1_{tag}"]
        np.testing.assert_allclose(norms, ref, rtol=1e-4, atol=1e-9)


def test_oracle_reproduces_stored_group_errors_in_float32():
    """The oracle is the reference's formula: in float32 it gives the stored (float32-rounded) group errors."""
    for case in CASES:
        d = load(case)
        logits, labels, attr = tensors(d, torch.float32)
        prob = torch.softmax(logits, 1)
        onehot = F.one_hot(labels[:, 0], 3).movedim(-1, 1).float()
        for a in np.unique(d["attr"]):
            sel = torch.as_tensor(d["attr"] == a)
            err = sum(float(_soft_dice(prob[sel, c], onehot[sel, c])) for c in range(3))
            np.testing.assert_allclose(err, d["group_losses"][a], rtol=1e-9)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 0.5])
def test_end_to_end_matches_float64_oracle(case, mode, gamma):
    d = load(case)
    logits, labels, attr = tensors(d)
    prob = torch.softmax(logits, 1)
    onehot = F.one_hot(labels[:, 0], 3).movedim(-1, 1).double()
    w_ref, v_ref = _oracle(prob, onehot, d["attr"], 3, gamma, mode)
    loss = febs(mode, gamma)
    value = loss(logits, labels, attr)
    assert value.dtype == torch.float64
    w = loss.last_group_weights.numpy()
    if mode == "faithful":
        np.testing.assert_allclose(w, w_ref, rtol=1e-10, equal_nan=True)
    else:
        np.testing.assert_allclose(w[d["present"]], w_ref[d["present"]], rtol=1e-10)
        assert np.isnan(w[~d["present"]]).all()
    np.testing.assert_allclose(float(value), float(v_ref), rtol=1e-10)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_end_to_end_matches_stored_values(case, mode, dtype):
    """Loose tolerance: the stored weights carry float32 rounding of ~1e-3 (gamma=1) in the best group's error."""
    d = load(case)
    tag = MODES[mode]
    logits, labels, attr = tensors(d, dtype)
    for i, gamma in enumerate(d["gammas"]):
        loss = febs(mode, float(gamma))
        value = loss(logits, labels, attr)
        assert value.dtype == dtype
        np.testing.assert_allclose(float(value), d[f"febs_dice_{tag}"][i], rtol=1e-4)
        ref_w = d[f"weights_{tag}"][i]
        keep = d["present"] & np.isfinite(ref_w)
        np.testing.assert_allclose(loss.last_group_weights.numpy()[keep], ref_w[keep], rtol=2.5e-3 * gamma + 1e-6)
    loss = febs(mode, 1.0, lambda_dice=0.5, lambda_ce=0.5)
    np.testing.assert_allclose(float(loss(logits, labels, attr)), d[f"transunet_total_gamma1_{tag}"], rtol=1e-4)
    loss = febs(mode, 1.0, lambda_dice=0.8, lambda_ce=0.2)
    np.testing.assert_allclose(float(loss(logits, labels, attr)), d[f"samed_total_gamma1_{tag}"], rtol=1e-4)


def test_reference_headline_numbers():
    d1, d2 = load(CASES[0]), load(CASES[1])
    logits, labels, attr = tensors(d1)
    loss = febs("faithful", 1.0)
    assert float(loss(logits, labels, attr)) == pytest.approx(0.67386, abs=5e-5)
    np.testing.assert_allclose(loss.last_group_weights.numpy(), [0.7616, 0.00108, 0.0554], rtol=3e-3)
    assert float(febs("faithful", 0.0)(logits, labels, attr)) == pytest.approx(0.06013, abs=1e-5)
    _, _, attr2 = tensors(d2)
    loss = febs("guarded", 1.0)
    assert float(loss(logits, labels, attr2)) == pytest.approx(0.0938925, rel=1e-4)
    np.testing.assert_allclose(loss.last_group_weights.numpy()[[0, 2]], [0.6286, 0.7616], atol=1e-4)


# ------------------------------------------------------------------------------------------------------------------
def test_faithful_pitfalls():
    d = load(CASES[1])
    logits, labels, attr = tensors(d)
    onehot = F.one_hot(labels[:, 0], 3).movedim(-1, 1).double()
    # (1) a group absent from the batch: every weight 0, constant Dice term, zero gradient (FairSeg issue #9)
    x = logits.clone().requires_grad_(True)
    value = febs("faithful", 1.0)(x, labels, attr)
    expected = np.mean([1 - SMOOTH / (float(onehot[:, c].sum()) + SMOOTH) for c in range(3)])
    assert float(value.detach()) == pytest.approx(expected, rel=1e-12)
    value.backward()
    assert float(x.grad.abs().max()) == 0.0
    # guarded mode on the same batch trains
    x = logits.clone().requires_grad_(True)
    febs("guarded", 1.0)(x, labels, attr).backward()
    assert float(x.grad.abs().max()) > 1e-4
    # (2) gamma = 0 is not plain Dice: uniform tanh(1) scaling
    logits1, labels1, attr1 = tensors(load(CASES[0]))
    loss = febs("faithful", 0.0)
    v0 = float(loss(logits1, labels1, attr1))
    np.testing.assert_allclose(loss.last_group_weights.numpy(), np.tanh(1.0), rtol=1e-15)
    plain = float(FixedWeights(np.ones(3), to_onehot_y=True, softmax=True, num_groups=3, lambda_ce=0.0,
                               lambda_dice=1.0)(logits1, labels1, attr1))
    assert plain == pytest.approx(float(load(CASES[0])["plain_dice_loss"]), rel=1e-6)
    assert v0 > 2 * plain
    # (3) the worst group (group 1) gets the smallest weight and a shrunk Dice gradient
    loss = febs("faithful", 1.0)
    x = logits1.clone().requires_grad_(True)
    loss(x, labels1, attr1).backward()
    w = loss.last_group_weights
    assert int(torch.argmin(w)) == 1
    x0 = logits1.clone().requires_grad_(True)
    FixedWeights(np.ones(3), to_onehot_y=True, softmax=True, num_groups=3, lambda_ce=0.0, lambda_dice=1.0)(
        x0, labels1, attr1
    ).backward()
    for b in (1, 2):
        assert x.grad[b].norm() < 0.01 * x0.grad[b].norm()


def test_unknown_group_faithful_merges_into_last_slot_guarded_ignores():
    d = load(CASES[0])
    logits, labels, _ = tensors(d)
    prob = torch.softmax(logits, 1)
    onehot = F.one_hot(labels[:, 0], 3).movedim(-1, 1).double()
    for attr in ([0, 1, 1, -1], [0, 2, 1, -1], [-1, -1, 1, 0]):
        for mode in MODES:
            w_ref, v_ref = _oracle(prob, onehot, attr, 3, 1.0, mode)
            loss = febs(mode, 1.0)
            value = loss(logits, labels, torch.tensor(attr))
            np.testing.assert_allclose(float(value), float(v_ref), rtol=1e-10)
            got = loss.last_group_weights.numpy()
            np.testing.assert_allclose(got, w_ref, rtol=1e-10, equal_nan=True)
    # faithful: with group 2 absent, the -1 sample's error fills slot 2 (weights finite, no collapse)
    loss = febs("faithful", 1.0)
    loss(logits, labels, torch.tensor([0, 1, 1, -1]))
    assert torch.isfinite(loss.last_group_weights).all()
    # guarded: a -1 sample does not create a group, so slot 2 stays absent
    loss = febs("guarded", 1.0)
    loss(logits, labels, torch.tensor([0, 1, 1, -1]))
    assert torch.isnan(loss.last_group_weights[2])


def test_guarded_single_group_does_not_collapse():
    logits, labels, _ = tensors(load(CASES[0]))
    attr = torch.zeros(4, dtype=torch.long)
    x = logits.clone().requires_grad_(True)
    loss = febs("guarded", 1.0)
    value = loss(x, labels, attr)
    np.testing.assert_allclose(loss.last_group_weights.numpy(), [np.tanh(1.0), np.nan, np.nan], equal_nan=True)
    fixed = FixedWeights(np.full(3, np.tanh(1.0)), to_onehot_y=True, softmax=True, num_groups=3, lambda_ce=0.0,
                         lambda_dice=1.0)
    assert float(value.detach()) == pytest.approx(float(fixed(logits, labels, attr)), rel=1e-12)
    value.backward()
    assert float(x.grad.abs().max()) > 1e-4
    x = logits.clone().requires_grad_(True)
    febs("faithful", 1.0)(x, labels, attr).backward()  # the released rule collapses here
    assert float(x.grad.abs().max()) == 0.0


def test_guarded_zero_error_group():
    """A perfect group: ratio 0/0 read as 1 for it, 0 for the others (finite, no NaN)."""
    labels = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    labels[:, :, 1:3, 1:3] = 1
    target = F.one_hot(labels[:, 0], 2).movedim(-1, 1).double()
    prob = target.clone()
    prob[1] = 0.5
    loss = FairErrorBoundScalingLoss(num_groups=2, lambda_ce=0.0, lambda_dice=1.0, smooth_nr=0.0, smooth_dr=0.0)
    value = loss(prob, target, torch.tensor([0, 1]))
    np.testing.assert_allclose(loss.last_group_weights.numpy(), [np.tanh(1.0), 0.0])
    assert torch.isfinite(value)


@pytest.mark.parametrize("mode", list(MODES))
def test_invariant_to_sample_order_and_group_relabelling(mode):
    torch.manual_seed(4)
    logits = torch.randn(6, 3, 5, 5, dtype=torch.float64)
    labels = torch.randint(0, 3, (6, 1, 5, 5))
    groups = torch.tensor([0, 1, 2, 2, 1, 0])
    loss = febs(mode, 1.3, lambda_dice=0.6, lambda_ce=0.4)
    ref = loss(logits, labels, groups)
    w = loss.last_group_weights.clone()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert float(loss(logits[perm], labels[perm], groups[perm])) == pytest.approx(float(ref), rel=1e-13)
    torch.testing.assert_close(loss.last_group_weights, w, rtol=1e-13, atol=0)
    relabel = torch.tensor([2, 0, 1])  # group k -> relabel[k]
    assert float(loss(logits, labels, relabel[groups])) == pytest.approx(float(ref), rel=1e-13)
    torch.testing.assert_close(loss.last_group_weights[relabel], w, rtol=1e-13, atol=0)


def test_detached_weights_and_gradcheck():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (4, 1, 5, 4))
    # weights fixed by construction: one group (guarded) and gamma = 0 -> the whole loss is a smooth function
    for loss, groups in (
        (febs("guarded", 1.0, lambda_dice=0.7, lambda_ce=0.3), torch.tensor([1, 1, 1, 1])),
        (febs("faithful", 0.0, lambda_dice=0.5, lambda_ce=0.5), torch.tensor([0, 1, 2, 2])),
    ):
        assert torch.autograd.gradcheck(lambda x: loss(x, labels, groups), (logits,), eps=1e-6, atol=1e-7)
    # non-uniform weights: gradient = gradient with the weights held constant
    fixed = FixedWeights([0.7, 0.2, 0.5], to_onehot_y=True, softmax=True, num_groups=3, lambda_ce=0.5)
    assert torch.autograd.gradcheck(lambda x: fixed(x, labels, torch.tensor([0, 1, 2, 1])), (logits,))
    loss = febs("guarded", 2.0)
    groups = torch.tensor([0, 1, 2, 1])
    x = logits.detach().clone().requires_grad_(True)
    loss(x, labels, groups).backward()
    assert not loss.last_group_weights.requires_grad
    fixed = FixedWeights(loss.last_group_weights, to_onehot_y=True, softmax=True, num_groups=3, lambda_ce=0.0,
                         lambda_dice=1.0)
    y = logits.detach().clone().requires_grad_(True)
    fixed(y, labels, groups).backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-12, atol=0)


def test_3d_sigmoid_include_background_and_half_precision():
    torch.manual_seed(1)
    logits = torch.randn(3, 2, 4, 4, 3)
    target = (torch.rand(3, 2, 4, 4, 3) > 0.5).float()
    groups = torch.tensor([0, 1, 0])
    loss = FairErrorBoundScalingLoss(sigmoid=True, num_groups=2, include_background=False, lambda_dice=0.5,
                                     lambda_ce=0.5)
    value = loss(logits, target, groups)
    # by hand: Dice term on channel 1 only; BCE on both channels
    p, y = torch.sigmoid(logits)[:, 1:], target[:, 1:]
    e = [_soft_dice(p[groups == g, 0], y[groups == g, 0]).item() for g in (0, 1)]
    w = np.tanh((min(e) / np.array(e)) ** 1.0)
    ws = torch.tensor(w, dtype=torch.float32)[groups].view(-1, 1, 1, 1)
    expected = 0.5 * _soft_dice(p[:, 0] * ws, y[:, 0]) + 0.5 * F.binary_cross_entropy_with_logits(logits, target)
    assert float(value) == pytest.approx(float(expected), rel=1e-5)
    half = loss(logits.half(), target.half(), groups)
    assert half.dtype == torch.float32 and float(half) == pytest.approx(float(value), rel=5e-3)


def test_soft_target_cross_entropy_and_reductions():
    torch.manual_seed(2)
    logits = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    target = torch.softmax(torch.randn(4, 3, 6, 6, dtype=torch.float64), 1)
    groups = [0, 1, 1, 0]
    base = FairErrorBoundScalingLoss(softmax=True, lambda_dice=0.0, lambda_ce=1.0)
    assert float(base(logits, target, groups)) == pytest.approx(float(F.cross_entropy(logits, target)), rel=1e-12)
    per_class = FairErrorBoundScalingLoss(softmax=True, lambda_dice=1.0, lambda_ce=0.0, reduction="none")
    v = per_class(logits, target, groups)
    assert v.shape == (3, 1, 1)  # per class, pooled over the batch: MONAI's DiceLoss(batch=True) shape
    summed = FairErrorBoundScalingLoss(softmax=True, lambda_dice=1.0, lambda_ce=0.0, reduction="sum")
    assert float(summed(logits, target, groups)) == pytest.approx(float(v.sum()), rel=1e-12)


def test_wraps_monai_dice_loss():
    from monai.losses import DiceLoss

    torch.manual_seed(3)
    logits = torch.randn(5, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (5, 1, 6, 6))
    groups = torch.tensor([0, 1, 1, 0, -1])
    dice = DiceLoss(reduction="none")
    loss = FairErrorBoundScalingLoss(to_onehot_y=True, softmax=True, num_groups=2, base_loss=dice, lambda_ce=0.0,
                                     lambda_dice=1.0)
    value = loss(logits, labels, groups)
    # by hand: per-sample MONAI Dice, group errors = group means, guarded weights, -1 neutral
    p = torch.softmax(logits.detach(), 1)
    y = F.one_hot(labels[:, 0], 3).movedim(-1, 1).double()
    per_sample = dice(p, y).flatten(1).mean(1)
    e = np.array([float(per_sample[groups == g].mean()) for g in (0, 1)])
    w = np.tanh(e.min() / e)
    np.testing.assert_allclose(loss.last_group_weights.numpy(), w, rtol=1e-12)
    ws = torch.tensor(np.append(w, np.tanh(1.0)))[torch.where(groups < 0, 2, groups)].view(-1, 1, 1, 1)
    assert float(value.detach()) == pytest.approx(float(dice(p * ws, y).mean()), rel=1e-12)
    value.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().max() > 0
    assert torch.autograd.gradcheck(lambda x: loss(x, labels, torch.zeros(5, dtype=torch.long)),
                                    (logits.detach().clone().requires_grad_(True),))


def _per_sample(fn, p, y):
    return torch.stack([fn(p[b : b + 1], y[b : b + 1]).mean() for b in range(p.shape[0])])


def test_base_loss_per_sample_medloss_and_monai():
    """Dice-type losses with their defaults (scalar), batch-pooled or per-sample outputs all work as base_loss."""
    from monai.losses import DiceLoss

    from medloss.losses import JaccardMetricLoss

    torch.manual_seed(4)
    logits = torch.randn(5, 3, 6, 6, dtype=torch.float64)
    labels = torch.randint(0, 3, (5, 1, 6, 6))
    groups = torch.tensor([0, 1, 1, 0, -1])
    p = torch.softmax(logits, 1)
    y = F.one_hot(labels[:, 0], 3).movedim(-1, 1).double()
    families = {
        "jaccard": (JaccardMetricLoss(), [JaccardMetricLoss(), JaccardMetricLoss(batch=False, reduction="none"),
                                          JaccardMetricLoss(batch=True, reduction="none")]),
        "monai_dice": (DiceLoss(), [DiceLoss(), DiceLoss(reduction="none"), DiceLoss(batch=True, reduction="none")]),
    }
    values = {}
    for name, (reference, variants) in families.items():
        # by hand: per-sample losses, group means, guarded weights (tanh(1) for the unknown group)
        per_sample = _per_sample(reference, p, y)
        e = np.array([float(per_sample[groups == g].mean()) for g in (0, 1)])
        w = np.tanh(e.min() / e)
        ws = torch.tensor(np.append(w, np.tanh(1.0)))[torch.where(groups < 0, 2, groups)].view(-1, 1, 1, 1)
        expected = float(_per_sample(reference, p * ws, y).mean())
        for base in variants:
            loss = FairErrorBoundScalingLoss(to_onehot_y=True, softmax=True, num_groups=2, base_loss=base)
            value = loss(logits, labels, groups)
            np.testing.assert_allclose(loss.last_group_weights.numpy(), w, rtol=1e-12)
            assert float(value) == pytest.approx(expected, rel=1e-12)
        values[name] = expected
        # reduction="none": per-sample values, MONAI-shaped when base_loss returns them so
        none = FairErrorBoundScalingLoss(to_onehot_y=True, softmax=True, num_groups=2, base_loss=variants[1],
                                         reduction="none")(logits, labels, groups)
        assert none.shape == (5, 3, 1, 1)
        assert float(none.mean()) == pytest.approx(expected, rel=1e-12)
        scalar_base = FairErrorBoundScalingLoss(to_onehot_y=True, softmax=True, num_groups=2, base_loss=variants[0],
                                                reduction="none")(logits, labels, groups)
        assert scalar_base.shape == (5,)
        assert float(scalar_base.mean()) == pytest.approx(expected, rel=1e-12)
    assert values["jaccard"] != pytest.approx(values["monai_dice"], rel=1e-3)  # the base loss matters


def test_device_and_buffers_follow_input():
    loss = febs("guarded", 1.0)
    logits, labels, attr = tensors(load(CASES[0]), torch.float32)
    loss(logits, labels, attr.numpy())  # numpy ids
    assert loss.last_group_weights.device == logits.device
    loss(logits, labels, [0.0, 1.0, 1.0, 2.0])  # whole-number floats are accepted
    if torch.cuda.is_available():
        value = loss(logits.cuda(), labels.cuda(), attr)
        assert value.device.type == "cuda" and loss.last_group_weights.device.type == "cuda"


# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "groups, match",
    [
        (torch.tensor([0, 1, 3, 0]), r"group ids must be in \[0, 2\].*got \[3\]"),
        (torch.tensor([0, 1, -2, 0]), r"got \[-2\]"),
        (torch.tensor([0, 1, 1]), r"shape \(4,\).*got shape \(3,\)"),
        (torch.tensor([[0, 1], [1, 0]]), r"shape \(4,\)"),
        (torch.tensor([0.0, 1.5, 1.0, 0.0]), "non-integer"),
        (torch.tensor([0.0, float("nan"), 1.0, 0.0]), "NaN"),
        (["a", "b", "c", "d"], "integer group ids"),
        (None, "groups is required"),
    ],
)
def test_bad_groups(groups, match):
    logits, labels, _ = tensors(load(CASES[0]))
    with pytest.raises(ValueError, match=match):
        febs()(logits, labels, groups)


def test_bad_inputs_and_arguments():
    logits, labels, attr = tensors(load(CASES[0]))
    loss = febs()
    bad = logits.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        loss(bad, labels, attr)
    with pytest.raises(ValueError, match="label values"):
        loss(logits, labels + 3, attr)
    with pytest.raises(ValueError, match="ground truth"):
        loss(logits, labels[..., :4], attr)
    with pytest.raises(ValueError, match="shape"):
        loss(logits[:, 0, 0, 0], labels, attr)
    with pytest.raises(ValueError, match="mode"):
        FairErrorBoundScalingLoss(mode="official")
    with pytest.raises(ValueError, match="gamma"):
        FairErrorBoundScalingLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="num_groups"):
        FairErrorBoundScalingLoss(num_groups=0)
    with pytest.raises(ValueError, match="Incompatible"):
        FairErrorBoundScalingLoss(sigmoid=True, softmax=True)
    with pytest.raises(ValueError, match="needs logits"):
        FairErrorBoundScalingLoss(lambda_ce=0.5)
    with pytest.raises(ValueError, match="lambda_ce=0"):
        FairErrorBoundScalingLoss(softmax=True, lambda_ce=0.5, reduction="none")
    with pytest.raises(ValueError, match="lambda_dice"):
        FairErrorBoundScalingLoss(lambda_dice=float("nan"))
    with pytest.raises(ValueError, match="smooth_dr"):
        FairErrorBoundScalingLoss(smooth_dr=-1.0)
    from monai.losses import DiceLoss

    for kwargs, match in (
        (dict(softmax=True, reduction="none"), "softmax=False"),
        (dict(to_onehot_y=True, reduction="none"), "to_onehot_y=False"),
        (dict(include_background=False, reduction="none"), "include_background"),
    ):
        with pytest.raises(ValueError, match=match):
            FairErrorBoundScalingLoss(base_loss=DiceLoss(**kwargs))
    loss = FairErrorBoundScalingLoss(softmax=True, to_onehot_y=True, num_groups=3, base_loss=lambda p, y: 0.5)
    with pytest.raises(ValueError, match="must return a tensor"):
        loss(logits, labels, attr)


def test_group_id_helper():
    assert check_group_ids(np.array([1, -1, 0]), 3, 2).tolist() == [1, -1, 0]
    assert check_group_ids(torch.tensor([[1], [0]]), 2, 2).tolist() == [1, 0]
    assert check_group_ids([True, False], 2, 2).tolist() == [1, 0]


# ------------------------------------------------------------------------------------------------------------------
_FEBS_ON_RANKS = """
def run(rank, world, folder):
    import torch
    from monai.losses import DiceLoss
    from medloss.losses import FairErrorBoundScalingLoss

    g = torch.Generator().manual_seed(5)
    logits = torch.randn(8, 3, 6, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (8, 1, 6, 6), generator=g)
    groups = torch.tensor([0, 1, 0, 1, 2, 1, 2, -1])  # rank 0 lacks group 2, rank 1 lacks group 0
    part = slice(4 * rank, 4 * rank + 4)
    configs = {"guarded": {}, "faithful": dict(mode="faithful"),
               "monai_dice": dict(base_loss=DiceLoss(reduction="none"))}
    res = {}
    for name, kw in configs.items():
        loss = FairErrorBoundScalingLoss(to_onehot_y=True, softmax=True, num_groups=3, gamma=1.5, **kw)
        x = logits[part].clone().requires_grad_(True)
        loss(x, labels[part], groups[part]).backward()
        res[name] = loss.last_group_weights.tolist()
    return res
"""


def test_distributed_group_statistics_match_concatenated_batch(tmp_path):
    """2-process gloo group on CPU: every rank's weights equal a single process's on the whole batch."""
    from monai.losses import DiceLoss

    ranks = run_on_ranks(_FEBS_ON_RANKS, tmp_path, timeout=120)

    g = torch.Generator().manual_seed(5)
    logits = torch.randn(8, 3, 6, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (8, 1, 6, 6), generator=g)
    groups = torch.tensor([0, 1, 0, 1, 2, 1, 2, -1])
    configs = {"guarded": {}, "faithful": dict(mode="faithful"),
               "monai_dice": dict(base_loss=DiceLoss(reduction="none"))}
    for name, kw in configs.items():
        loss = FairErrorBoundScalingLoss(to_onehot_y=True, softmax=True, num_groups=3, gamma=1.5, **kw)
        loss(logits, labels, groups)
        single = loss.last_group_weights.numpy()
        assert np.isfinite(single).all() and len(set(np.round(single, 12))) == 3
        for r in range(2):
            np.testing.assert_allclose(ranks[r][name], single, rtol=1e-12)
        # without synchronisation each rank would see a different (collapsed or partial) batch
        local = FairErrorBoundScalingLoss(to_onehot_y=True, softmax=True, num_groups=3, gamma=1.5, **kw)
        local(logits[:4], labels[:4], groups[:4])
        assert not np.allclose(local.last_group_weights.numpy(), single, equal_nan=True)
