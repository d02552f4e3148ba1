"""Jaccard metric / Dice semimetric / Tversky losses: JDTLoss HEAD reference values, MONAI parity, metric properties."""

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.losses import DiceLoss, TverskyLoss

from medloss.losses.jaccard import DiceSemimetricLoss, JaccardMetricLoss, TverskyMetricLoss

J, D, T = JaccardMetricLoss, DiceSemimetricLoss, TverskyMetricLoss


DATA = Path(__file__).resolve().parents[1] / "data" / "sauna"


@pytest.fixture(scope="module")
def ref():
    with np.load(DATA / "jdt_cases.npz") as f:
        return {k: f[k] for k in f.files}


def _t(ref, key):
    return torch.from_numpy(ref[key])


# key -> (loss factory, logits key, target kind, forward kwargs); target kinds: soft / hard / ign / ign_clamped
_HARD = dict(softmax=True, to_onehot_y=True)
CASES_2D = {
    "soft_jaccard_default": (lambda: J(softmax=True), "logits", "soft", False),
    "soft_dice": (lambda: D(softmax=True), "logits", "soft", False),
    "soft_tversky_a03_b07": (lambda: T(softmax=True, alpha=0.3, beta=0.7), "logits", "soft", False),
    "soft_jaccard_mIoUI": (lambda: J(softmax=True, reduction_weights=(0, 1, 0)), "logits", "soft", False),
    "soft_jaccard_mIoUC": (lambda: J(softmax=True, reduction_weights=(0, 0, 1)), "logits", "soft", False),
    "soft_jaccard_log": (lambda: J(softmax=True, log_loss=True), "logits", "soft", False),
    "soft_jaccard_gamma2": (lambda: J(softmax=True, gamma=2), "logits", "soft", False),
    # JDTLoss stores the weights as float32: passing the same float32 values reproduces it exactly
    "soft_jaccard_cw": (lambda: J(softmax=True, class_weights=torch.tensor([0.2, 0.3, 0.5])), "logits", "soft", False),
    "soft_jaccard_norm2": (lambda: J(softmax=True, norm=2), "logits", "soft", False),
    "soft_dice_norm2": (lambda: D(softmax=True, norm=2), "logits", "soft", False),
    "soft_jaccard_smooth0": (lambda: J(softmax=True, smooth=0), "logits", "soft", False),
    "soft_jaccard_smooth1": (lambda: J(softmax=True, smooth=1), "logits", "soft", False),
    "soft_dice_smooth1": (lambda: D(softmax=True, smooth=1), "logits", "soft", False),
    "soft_jaccard_keepmask": (lambda: J(softmax=True), "logits", "soft", True),
    "soft_jaccard_present": (lambda: J(softmax=True, active_classes_soft="present"), "logits", "soft", False),
    "hard_jaccard_present": (lambda: J(**_HARD), "logits", "hard", False),
    "hard_jaccard_all": (lambda: J(**_HARD, active_classes_hard="all"), "logits", "hard", False),
    "hard_dice_present": (lambda: D(**_HARD), "logits", "hard", False),
    "hard_jaccard_mIoUI_present": (lambda: J(**_HARD, per_image=True), "logits", "hard", False),
    "hard_jaccard_mIoUC_present": (lambda: J(**_HARD, reduction_weights=(0, 0, 1)), "logits", "hard", False),
    "hard_jaccard_mIoUI_all": (lambda: J(**_HARD, batch=False, active_classes_hard="all"), "logits", "hard", False),
    "hardign_jaccard_ignore255": (lambda: J(**_HARD, ignore_index=255), "logits", "ign", False),
    "hardign_dice_ignore255_smooth0": (lambda: D(**_HARD, ignore_index=255, smooth=0), "logits", "ign", False),
    # JDTLoss clamps 255 to the last class silently; here the clamp has to be explicit (unclamped 255 raises)
    "hardign_jaccard_NO_ignore_index": (lambda: J(**_HARD), "logits", "ign_clamped", False),
    "hardpred_hardlabel_jaccard_smooth0": (lambda: J(**_HARD, smooth=0), "hardpred_logits", "hard", False),
    "hardpred_hardlabel_dice_smooth0": (lambda: D(**_HARD, smooth=0), "hardpred_logits", "hard", False),
    # old (Oct 2023, per_image) API and first-commit JML1: the ones this API can express
    "old_soft_jaccard_perbatch_All": (lambda: J(softmax=True, smooth=1), "logits", "soft", False),
    "old_soft_jaccard_perimage_All": (lambda: J(softmax=True, smooth=1, per_image=True), "logits", "soft", False),
    "old_soft_jaccard_perbatch_Present": (
        lambda: J(softmax=True, smooth=1, active_classes_soft="present"), "logits", "soft", False),
    "old_soft_dice_perbatch_All": (lambda: D(softmax=True, smooth=1), "logits", "soft", False),
    "old_hard_jaccard_perbatch_Present": (lambda: J(**_HARD, smooth=1), "logits", "hard", False),
    "old_hard_jaccard_perimage_Present": (lambda: J(**_HARD, smooth=1, per_image=True), "logits", "hard", False),
    "old_hardign_jaccard_perimage_ignore255": (
        lambda: J(**_HARD, smooth=1, per_image=True, ignore_index=255), "logits", "ign", False),
    "old_soft_jaccard_perbatch_All_smooth0": (lambda: J(softmax=True, smooth=0), "logits", "soft", False),
    "v0_JML1_soft_all_smooth0": (lambda: J(softmax=True, smooth=0), "logits", "soft", False),
    # MONAI 1.6.1 values (s_monai = 2 s here for Dice/Jaccard)
    "monai_dice_soft_batch_s2e-3": (lambda: D(softmax=True, batch=True), "logits", "soft", False),
    "monai_jaccard_soft_batch_s2e-3": (lambda: J(softmax=True, batch=True), "logits", "soft", False),
    "monai_tversky_soft_batch_a03_b07_s1e-3": (
        lambda: T(softmax=True, alpha=0.3, beta=0.7, batch=True), "logits", "soft", False),
    "monai_dice_soft_perimage_s2e-3": (lambda: D(softmax=True, batch=False), "logits", "soft", False),
}


def _target(ref, kind, suffix=""):
    if kind == "soft":
        return _t(ref, "soft_label" + suffix)
    if kind == "hard":
        return _t(ref, "hard_label" + suffix)[:, None]
    lab = _t(ref, "hard_label_ignore255")[:, None]
    return lab if kind == "ign" else lab.clamp(0, 2)


@pytest.mark.parametrize("key", sorted(CASES_2D))
def test_jdt_reference_2d(ref, key):
    make, logits_key, kind, use_keep = CASES_2D[key]
    logits = _t(ref, logits_key).clone().requires_grad_(True)
    kwargs = {"keep_mask": _t(ref, "keep_mask")[:, None]} if use_keep else {}
    value = make()(logits, _target(ref, kind), **kwargs)
    assert value.dtype == torch.float64 and value.ndim == 0
    np.testing.assert_allclose(value.item(), ref["val__" + key], rtol=1e-12, atol=1e-15)
    if "grad__" + key in ref:
        value.backward()
        grad = ref["grad__" + key]
        np.testing.assert_allclose(logits.grad.numpy(), grad, rtol=1e-9, atol=1e-12 * np.abs(grad).max())


CASES_3D = {
    "3d_soft_jaccard_default": (lambda: J(softmax=True), "soft"),
    "3d_soft_dice_default": (lambda: D(softmax=True), "soft"),
    "3d_soft_jaccard_mIoUI": (lambda: J(softmax=True, per_image=True), "soft"),
    "3d_hard_jaccard_present": (lambda: J(**_HARD), "hard"),
    "3d_hard_dice_present": (lambda: D(**_HARD), "hard"),
}


@pytest.mark.parametrize("key", sorted(CASES_3D))
def test_jdt_reference_3d(ref, key):
    make, kind = CASES_3D[key]
    value = make()(_t(ref, "logits_3d"), _target(ref, kind, "_3d"))
    np.testing.assert_allclose(value.item(), ref["val__" + key], rtol=1e-12)


def test_hard_prediction_hard_label_is_one_minus_iou_and_dice(ref):
    assert ref["val__hardpred_hardlabel_jaccard_smooth0"] == pytest.approx(ref["val__exact_1_minus_mIoU"], abs=1e-15)
    gen = torch.Generator().manual_seed(0)
    for shape in ((3, 4, 9, 7), (2, 3, 5, 6, 4)):
        pred_lab = torch.randint(0, shape[1], (shape[0], 1) + shape[2:], generator=gen)
        true_lab = torch.randint(0, shape[1], (shape[0], 1) + shape[2:], generator=gen)
        pred = torch.zeros(shape, dtype=torch.float64).scatter_(1, pred_lab, 1.0)
        true = torch.zeros(shape, dtype=torch.float64).scatter_(1, true_lab, 1.0)
        inter = (pred * true).sum((0, *range(2, len(shape))))
        n_pred, n_true = pred.sum((0, *range(2, len(shape)))), true.sum((0, *range(2, len(shape))))
        iou = inter / (n_pred + n_true - inter)
        dice = 2 * inter / (n_pred + n_true)
        assert J(smooth=0)(pred, true).item() == pytest.approx(1 - iou.mean().item(), abs=1e-15)
        assert D(smooth=0)(pred, true).item() == pytest.approx(1 - dice.mean().item(), abs=1e-15)
        # label map path (to_onehot_y) gives the same
        assert J(smooth=0, to_onehot_y=True, active_classes_hard="all")(pred, true_lab).item() == pytest.approx(
            1 - iou.mean().item(), abs=1e-15)


def test_hard_label_soft_prediction_equals_product_form():
    gen = torch.Generator().manual_seed(1)
    prob = torch.softmax(torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64), 1)
    lab = torch.randint(0, 3, (2, 1, 8, 8), generator=gen)
    onehot = torch.zeros_like(prob).scatter_(1, lab, 1.0)
    inter = (prob * onehot).sum((0, 2, 3))
    union = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) - inter
    assert J(smooth=0)(prob, onehot).item() == pytest.approx(1 - (inter / union).mean().item(), rel=1e-13)


def _random_soft(gen, shape, dtype=torch.float64):
    return torch.softmax(3 * torch.randn(shape, generator=gen, dtype=dtype), 1)


_MONAI_SOFT = "soft_label" in inspect.signature(DiceLoss).parameters  # MONAI >= 1.5


@pytest.mark.skipif(not _MONAI_SOFT, reason="MONAI < 1.5 has no soft_label option (stored MONAI values still checked)")
@pytest.mark.parametrize("batch", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 7, 6), (3, 2, 4, 5, 3), (1, 4, 6, 6)])
def test_equals_monai_soft_label(batch, shape):
    gen = torch.Generator().manual_seed(sum(shape))
    logits = torch.randn(shape, generator=gen, dtype=torch.float64)
    target = _random_soft(gen, shape)
    s = 1e-3
    monai_dice = DiceLoss(softmax=True, soft_label=True, smooth_nr=2 * s, smooth_dr=2 * s, batch=batch)
    monai_jacc = DiceLoss(softmax=True, soft_label=True, jaccard=True, smooth_nr=2 * s, smooth_dr=2 * s, batch=batch)
    monai_tv = TverskyLoss(softmax=True, soft_label=True, alpha=0.3, beta=0.7, smooth_nr=s, smooth_dr=s, batch=batch)
    for ours, theirs in (
        (D(softmax=True, smooth=s, batch=batch), monai_dice),
        (J(softmax=True, smooth=s, batch=batch), monai_jacc),
        (T(softmax=True, alpha=0.3, beta=0.7, smooth=s, batch=batch), monai_tv),
    ):
        np.testing.assert_allclose(ours(logits, target).item(), theirs(logits, target).item(), rtol=1e-12)
    # per image and class ("none") matches MONAI's unreduced output
    ours = D(softmax=True, smooth=s, batch=False, reduction="none")(logits, target)
    theirs = DiceLoss(softmax=True, soft_label=True, smooth_nr=2 * s, smooth_dr=2 * s, reduction="none")(logits, target)
    assert ours.shape == theirs.shape  # MONAI's broadcastable (B, C, 1, 1)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12)


def test_monai_product_formula_differs_on_soft_labels(ref):
    # MONAI's default (soft_label=False) is the product form: a different, wrong value on soft labels
    assert abs(ref["val__monai_dice_HARDformula_on_soft_batch"] - D(softmax=True)(
        _t(ref, "logits"), _t(ref, "soft_label")).item()) > 0.1


def test_zero_iff_equal():
    gen = torch.Generator().manual_seed(2)
    x = _random_soft(gen, (2, 3, 6, 5))
    for loss in (J(), D(), T(alpha=0.3, beta=0.7), J(smooth=0), J(gamma=2), J(log_loss=True), J(per_image=True),
                 J(norm=2), D(reduction_weights=(1, 1, 1))):
        assert abs(loss(x, x).item()) < 1e-15
        y = x.clone()
        y[0, 0, 0, 0] = (y[0, 0, 0, 0] + 0.3) % 1.0
        assert loss(x, y).item() > 0


def _pairwise(loss, a, b):
    """Loss of each pair of rows of ``a`` and ``b`` (vectors in [0,1]^k), computed in one call."""
    return loss(a[:, None, :, None], b[:, None, :, None]).reshape(-1)


def test_jml_triangle_inequality_and_dml_counterexample():
    gen = torch.Generator().manual_seed(3)
    x, y, z = (torch.rand(2000, 5, generator=gen, dtype=torch.float64) for _ in range(3))
    jml = J(smooth=0, batch=False, reduction="none")
    dml = D(smooth=0, batch=False, reduction="none")
    d_xy, d_xz, d_zy = _pairwise(jml, x, y), _pairwise(jml, x, z), _pairwise(jml, z, y)
    assert bool((d_xy <= d_xz + d_zy + 1e-12).all())
    # symmetric
    torch.testing.assert_close(d_xy, _pairwise(jml, y, x), rtol=0, atol=1e-15)
    # Ruzicka form sum(min)/sum(max)
    torch.testing.assert_close(d_xy, 1 - torch.minimum(x, y).sum(1) / torch.maximum(x, y).sum(1), rtol=0, atol=1e-14)
    # DML violates it on random triples and on the paper's counterexample
    assert bool((_pairwise(dml, x, y) > _pairwise(dml, x, z) + _pairwise(dml, z, y) + 1e-12).any())
    cx, cz, cy = (torch.tensor([v], dtype=torch.float64) for v in ([1.0, 0.0], [1.0, 1.0], [0.0, 1.0]))
    assert _pairwise(dml, cx, cy).item() == pytest.approx(1.0)
    assert _pairwise(dml, cx, cz).item() == pytest.approx(1 / 3)
    assert _pairwise(dml, cx, cy).item() > _pairwise(dml, cx, cz).item() + _pairwise(dml, cz, cy).item()
    assert _pairwise(jml, cx, cy).item() <= _pairwise(jml, cx, cz).item() + _pairwise(jml, cz, cy).item()


@pytest.mark.parametrize(
    "make",
    [
        lambda: J(softmax=True),
        lambda: D(softmax=True, per_image=True),
        lambda: T(softmax=True, alpha=0.3, beta=0.7, reduction_weights=(0.5, 0.3, 0.2)),
        lambda: J(softmax=True, gamma=2.5, log_loss=True, class_weights=[1.0, 2.0, 0.5]),
        lambda: D(softmax=True, norm=3, include_background=False),
        lambda: J(sigmoid=True, batch=False, reduction="none"),
    ],
)
def test_gradcheck_soft(make):
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    target = _random_soft(gen, (2, 3, 4, 3))
    loss = make()
    assert torch.autograd.gradcheck(lambda z: loss(z, target), (logits,))


def test_gradcheck_hard_ignore_keep_3d():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 3, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (2, 1, 3, 3, 2), generator=gen)
    labels[0, 0, 0] = 255
    keep = torch.rand(2, 1, 3, 3, 2, generator=gen) > 0.3
    loss = J(softmax=True, to_onehot_y=True, ignore_index=255, reduction_weights=(1, 1, 1))
    assert torch.autograd.gradcheck(lambda z: loss(z, labels, keep_mask=keep), (logits,))


def test_keep_mask_equals_cropping():
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    target = _random_soft(gen, (2, 3, 8, 8))
    keep = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    keep[..., :5] = True
    # probabilities, so that the masked-out voxels cannot influence the kept ones through the softmax
    prob = torch.softmax(logits, 1)
    for loss in (J(), D(per_image=True)):
        np.testing.assert_allclose(loss(prob, target, keep_mask=keep).item(),
                                   loss(prob[..., :5], target[..., :5]).item(), rtol=1e-13)
        # float 0/1 masks are accepted too
        np.testing.assert_allclose(loss(prob, target, keep_mask=keep.double()).item(),
                                   loss(prob[..., :5], target[..., :5]).item(), rtol=1e-13)


def test_ignore_index_equals_keep_mask():
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 3, 6, 6, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 1, 6, 6), generator=gen)
    ignored = labels.clone()
    ignored[:, :, :2] = -1
    keep = ignored != -1
    a = J(softmax=True, to_onehot_y=True, ignore_index=-1)(logits, ignored)
    b = J(softmax=True, to_onehot_y=True)(logits, labels, keep_mask=keep)
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-14)


def test_active_classes_present_vs_all():
    prob = torch.full((1, 3, 4, 4), 1 / 3, dtype=torch.float64)
    labels = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    labels[..., :2] = 1  # class 2 absent
    per_class = J(to_onehot_y=True, reduction="none", active_classes_hard="all")(prob, labels)
    assert per_class.shape == (3, 1, 1)  # MONAI's DiceLoss(batch=True, reduction="none") shape
    per_class = per_class.flatten()
    present = J(to_onehot_y=True)(prob, labels)
    every = J(to_onehot_y=True, active_classes_hard="all")(prob, labels)
    np.testing.assert_allclose(present.item(), per_class[:2].mean().item(), rtol=1e-14)
    np.testing.assert_allclose(every.item(), per_class.mean().item(), rtol=1e-14)
    # "none" zeroes inactive entries
    none = J(to_onehot_y=True, reduction="none")(prob, labels).flatten()
    assert none[2].item() == 0 and torch.equal(none[:2], per_class[:2])


def test_reduction_none_and_sum_shapes():
    gen = torch.Generator().manual_seed(8)
    x, y = _random_soft(gen, (4, 3, 5, 5)), _random_soft(gen, (4, 3, 5, 5))
    per_image = D(batch=False, reduction="none")(x, y)
    assert per_image.shape == (4, 3, 1, 1)
    np.testing.assert_allclose(D(batch=False, reduction="sum")(x, y).item(), per_image.sum().item(), rtol=1e-14)
    np.testing.assert_allclose(D(batch=False)(x, y).item(), per_image.mean().item(), rtol=1e-14)
    assert D(reduction="none")(x, y).shape == (3, 1, 1)
    assert D(reduction_weights=(0, 0, 1), reduction="none")(x, y).shape == (4, 3, 1, 1)
    # per-image losses equal single-image batch losses
    for b in range(4):
        torch.testing.assert_close(per_image[b], D(reduction="none")(x[b:b + 1], y[b:b + 1]))
    assert not torch.allclose(per_image[0], per_image[1])  # the images differ, so must their losses


def test_include_background_and_class_weights():
    gen = torch.Generator().manual_seed(9)
    x, y = _random_soft(gen, (2, 4, 5, 5)), _random_soft(gen, (2, 4, 5, 5))
    full = J(reduction="none")(x, y).flatten()
    nobg = J(include_background=False, reduction="none")(x, y).flatten()
    torch.testing.assert_close(nobg, full[1:])
    w = [0.0, 1.0, 2.0, 3.0]
    np.testing.assert_allclose(J(class_weights=w)(x, y).item(), (full * torch.tensor(w, dtype=x.dtype)).mean().item(),
                               rtol=1e-14)
    loss = J(class_weights=w)
    assert "class_weights" in dict(loss.named_buffers())
    assert loss.to(torch.float32).class_weights.dtype == torch.float32


def test_sigmoid_binary_single_channel():
    gen = torch.Generator().manual_seed(10)
    z = torch.randn(3, 1, 6, 6, generator=gen, dtype=torch.float64)
    y = torch.rand(3, 1, 6, 6, generator=gen, dtype=torch.float64)
    p = torch.sigmoid(z)
    expected = 1 - (torch.minimum(p, y).sum() + 1e-3) / (torch.maximum(p, y).sum() + 1e-3)
    np.testing.assert_allclose(J(sigmoid=True)(z, y).item(), expected.item(), rtol=1e-13)
    # the 2-channel softmax trick of JDTLoss gives the same
    z2 = torch.cat([torch.zeros_like(z), z], 1)
    y2 = torch.cat([1 - y, y], 1)
    np.testing.assert_allclose(J(softmax=True, include_background=False)(z2, y2).item(), expected.item(), rtol=1e-13)


def test_dtypes_and_half_upcast():
    gen = torch.Generator().manual_seed(11)
    z = torch.randn(2, 3, 6, 6, generator=gen)
    y = _random_soft(gen, (2, 3, 6, 6), torch.float32)
    v32 = J(softmax=True)(z, y)
    v64 = J(softmax=True)(z.double(), y.double())
    assert v32.dtype == torch.float32 and v64.dtype == torch.float64
    np.testing.assert_allclose(v32.item(), v64.item(), rtol=1e-5)
    v16 = J(softmax=True)(z.half(), y.half())
    assert v16.dtype == torch.float32
    np.testing.assert_allclose(v16.item(), v64.item(), rtol=5e-3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(12)
    z = torch.randn(2, 3, 6, 6, generator=gen, dtype=torch.float64)
    lab = torch.randint(0, 3, (2, 1, 6, 6), generator=gen)
    lab[0, 0, 0] = 255
    loss = J(softmax=True, to_onehot_y=True, ignore_index=255, class_weights=[1.0, 2.0, 3.0], per_image=True)
    cpu = loss(z, lab)
    gpu = loss.cuda()(z.cuda(), lab.cuda())
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(gpu.item(), cpu.item(), rtol=1e-12)


def _ok():
    gen = torch.Generator().manual_seed(13)
    return torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64), _random_soft(gen, (2, 3, 4, 4))


def _put(t, value):
    t = t.clone()
    t[0, 0, 0, 0] = value
    return t


@pytest.mark.parametrize(
    "loss, inputs, match",
    [
        (J(softmax=True), lambda x, y: (x, y[:, :2]), "shape"),
        (J(softmax=True), lambda x, y: (x, y[..., :3]), "shape"),
        (J(softmax=True), lambda x, y: (x[0], y[0]), "shape"),
        (J(softmax=True), lambda x, y: (x[:, :, :0], y[:, :, :0]), "empty"),
        (J(softmax=True), lambda x, y: (_put(x, float("nan")), y), "NaN"),
        (J(softmax=True), lambda x, y: (_put(x, float("inf")), y), "NaN/Inf"),
        (J(softmax=True), lambda x, y: (x, _put(y, float("nan"))), "target contains"),
        (J(softmax=True), lambda x, y: (x, y * 2), r"\[0.0, 1.0\]"),
        (J(softmax=True), lambda x, y: (x, y - 0.5), r"\[0.0, 1.0\]"),
        (J(), lambda x, y: (x, y), "prediction"),
        (J(softmax=True), lambda x, y: (x.long(), y), "floating point"),
        (J(softmax=True, to_onehot_y=True), lambda x, y: (x, torch.full((2, 1, 4, 4), 3)), r"\[0, 2\]"),
        (J(softmax=True, to_onehot_y=True), lambda x, y: (x, torch.full((2, 1, 4, 4), 0.5)), "integer"),
        (J(softmax=True, to_onehot_y=True), lambda x, y: (x, y), r"\(B, 1, \*spatial\)"),
        (J(softmax=True, class_weights=[1.0, 2.0]), lambda x, y: (x, y), "class_weights has 2"),
    ],
)
def test_bad_input_raises(loss, inputs, match):
    x, y = inputs(*_ok())
    with pytest.raises(ValueError, match=match):
        loss(x, y)


def test_bad_keep_mask_raises():
    x, y = _ok()
    with pytest.raises(ValueError, match="keep_mask must have shape"):
        J(softmax=True)(x, y, keep_mask=torch.ones(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="binary"):
        J(softmax=True)(x, y, keep_mask=torch.full((2, 1, 4, 4), 0.5))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sigmoid=True, softmax=True), "Incompatible"),
        (dict(softmax=True, other_act=torch.tanh), "Incompatible"),
        (dict(alpha=-1.0), "alpha"),
        (dict(alpha=0.0, beta=0.0), "both be 0"),
        (dict(gamma=0.5), "gamma"),
        (dict(norm=0.5), "norm"),
        (dict(smooth=-1.0), "smooth"),
        (dict(active_classes_soft="prob"), "active_classes_soft"),
        (dict(reduction="avg"), "reduction"),
        (dict(batch=True, per_image=True), "at most one"),
        (dict(reduction_weights=(0, 0, 0)), "reduction_weights"),
        (dict(reduction_weights=(1, 0)), "reduction_weights"),
        (dict(reduction_weights=(1, 1, 0), reduction="none"), "single reduction level"),
        (dict(ignore_index=255), "to_onehot_y"),
        (dict(class_weights=[1.0, -1.0]), "class_weights"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        T(**kwargs)


def test_single_channel_label_map_must_be_binary():
    z = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    labels = torch.zeros(2, 1, 4, 4)
    labels[0, 0, 0, 0] = 2
    with pytest.warns(UserWarning, match="single channel"), pytest.raises(ValueError, match="binary"):
        J(sigmoid=True, to_onehot_y=True)(z, labels)
    labels[0, 0, 0, 0] = 1
    with pytest.warns(UserWarning, match="single channel"):
        value = J(sigmoid=True, to_onehot_y=True)(z, labels)
    np.testing.assert_allclose(value.item(), J(sigmoid=True)(z, labels.double()).item(), rtol=1e-15)
