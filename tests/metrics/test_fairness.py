"""Tests for medloss.metrics.fairness (FairSeg equity-scaled metrics).

Reference: tests/data/fair_impact/es_metrics_case.npz (shared/reference/fair_impact; cross-checked against FairSeg's
``equity_scaled_perf`` / ``equity_scaled_std_perf``).
"""

import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.metrics import compute_dice, compute_iou

from medloss.metrics import EquityScaledMetric, equity_scaled_metric
from medloss.metrics.fairness import per_sample_dice, per_sample_iou

DATA = Path(__file__).resolve().parents[1] / "data" / "fair_impact"


@pytest.fixture(scope="module")
def ref():
    d = np.load(DATA / "es_metrics_case.npz")
    return {k: d[k] for k in d.files}


def _fairseg_es(values, groups, n_groups, alpha=1.0, kind="sad"):
    """Transcription of FairSeg's test-time computation (lists of per-group scores, overall over all samples)."""
    overall = float(np.mean(values))
    per_group = [[v for v, g in zip(values, groups) if g == k] for k in range(n_groups)]
    means = [float(np.mean(p)) for p in per_group]
    if kind == "sad":
        return overall / (alpha * sum(abs(m - overall) for m in means) + 1)
    return overall / (alpha * statistics.stdev(means) + 1)


# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tag", ["dice", "iou"])
def test_reference_case(ref, tag):
    v, g = ref[tag], ref["groups"]
    res = equity_scaled_metric(v, g, num_groups=3, alpha=float(ref["alpha"]), return_details=True)
    np.testing.assert_allclose(res["es"], ref[f"es_{tag}"], rtol=1e-12)
    np.testing.assert_allclose(res["overall"], ref[f"{tag}_overall"], rtol=1e-12)
    np.testing.assert_allclose(res["group_means"], ref[f"{tag}_group_means"], rtol=1e-12)
    np.testing.assert_array_equal(res["group_counts"], [4, 3, 2])
    np.testing.assert_allclose(equity_scaled_metric(v, g, 3, kind="std"), ref[f"es_std_{tag}"], rtol=1e-12)
    np.testing.assert_allclose(equity_scaled_metric(v, g, 3, overall="known"), ref[f"es_{tag}_known_only_overall"],
                               rtol=1e-12)
    # num_groups inferred, torch input, per-class columns
    np.testing.assert_allclose(equity_scaled_metric(torch.tensor(v), torch.tensor(g)), ref[f"es_{tag}"], rtol=1e-12)
    both = equity_scaled_metric(np.stack([v, v[::-1]], 1), g, 3)
    assert both.shape == (2,)
    np.testing.assert_allclose(both[0], ref[f"es_{tag}"], rtol=1e-12)
    np.testing.assert_allclose(both[1], _fairseg_es(v[::-1], g, 3), rtol=1e-12)


@pytest.mark.parametrize("kind", ["sad", "std"])
@pytest.mark.parametrize("tag", ["dice", "iou"])
def test_reference_case_against_fairseg_transcription(ref, tag, kind):
    # num_groups inferred from the ids; unknown-group samples (-1) count in the overall mean only, as in FairSeg
    assert equity_scaled_metric(ref[tag], ref["groups"], kind=kind) == pytest.approx(
        _fairseg_es(ref[tag], ref["groups"], 3, kind=kind), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 3)), min_size=4, max_size=30),
    alpha=st.floats(0, 3),
    kind=st.sampled_from(["sad", "std"]),
)
def test_properties_against_fairseg_transcription(data, alpha, kind):
    values = np.array([v for v, _ in data])
    groups = np.array([g for _, g in data])
    if len(set(groups.tolist())) < 4:  # FairSeg's code needs every group populated
        groups[:4] = [0, 1, 2, 3]
    es = equity_scaled_metric(values, groups, 4, alpha=alpha, kind=kind)
    assert es == pytest.approx(_fairseg_es(values, groups, 4, alpha, kind), rel=1e-10, abs=1e-12)
    assert es <= values.mean() + 1e-12
    perm = np.random.default_rng(0).permutation(len(values))
    assert equity_scaled_metric(values[perm], groups[perm], 4, alpha=alpha, kind=kind) == pytest.approx(es, rel=1e-12)


def test_equal_groups_and_alpha_zero():
    values = np.array([0.8, 0.6, 0.8, 0.6, 0.5])
    groups = np.array([0, 0, 1, 1, -1])
    # equal group means, overall over known samples -> ES = overall
    assert equity_scaled_metric(values, groups, overall="known") == pytest.approx(0.7, rel=1e-15)
    assert equity_scaled_metric(values, groups, kind="std") == pytest.approx(values.mean(), rel=1e-15)
    # FairSeg's overall includes unknowns: |0.66 - 0.7| * 2 = 0.08
    assert equity_scaled_metric(values, groups) == pytest.approx(0.66 / 1.08, rel=1e-14)
    assert equity_scaled_metric([0.9, 0.1], [0, 1], alpha=0.0) == pytest.approx(0.5)


def test_nan_values_absent_groups_and_warnings():
    values = np.array([[0.9, np.nan], [0.7, 0.5], [0.5, 0.3], [np.nan, 0.1]])
    groups = np.array([0, 0, 1, 2])
    res = equity_scaled_metric(values, groups, 3, return_details=True)
    # class 0: group 2 has no value -> left out; class 1: sample 0 skipped
    np.testing.assert_allclose(res["group_means"][:, 0], [0.8, 0.5, np.nan])
    np.testing.assert_allclose(res["group_counts"], [[2, 1], [1, 1], [0, 1]])
    np.testing.assert_allclose(res["es"][0], 0.7 / (1 + 0.1 + 0.2), rtol=1e-14)
    np.testing.assert_allclose(res["es"][1], 0.3 / (1 + 0.2 + 0.0 + 0.2), rtol=1e-14)
    with pytest.raises(ValueError, match="NaN"):
        equity_scaled_metric(values, groups, 3, ignore_nan=False)
    with pytest.warns(RuntimeWarning, match="two groups"):
        out = equity_scaled_metric([0.5, 0.7], [0, 0], 2, kind="std")
    assert np.isnan(out)


@pytest.mark.parametrize(
    "values, groups, kwargs, match",
    [
        ([0.5, 0.6], [0, 1, 1], {}, r"shape \(2,\)"),
        ([0.5, 0.6], [0, 3], {"num_groups": 2}, r"got \[3\]"),
        ([0.5, 0.6], [0, 0.5], {"num_groups": 2}, "non-integer"),
        ([0.5, 0.6], [0, float("nan")], {"num_groups": 2}, "NaN"),
        ([0.5, np.inf], [0, 1], {}, "Inf"),
        ([], [], {}, "N > 0"),
        (np.zeros((2, 2, 2)), [0, 1], {}, r"\(N,\) or \(N, C\)"),
        ([0.5, 0.6], [0, 1], {"kind": "mad"}, "kind"),
        ([0.5, 0.6], [0, 1], {"overall": "some"}, "overall"),
        ([0.5, 0.6], [0, 1], {"alpha": -1.0}, "alpha"),
        (["a", "b"], [0, 1], {}, "numeric"),
    ],
)
def test_bad_inputs(values, groups, kwargs, match):
    with pytest.raises(ValueError, match=match):
        equity_scaled_metric(values, groups, **kwargs)


# ------------------------------------------------------------------------------------------------------------------
def _masks():
    """(4, 2, 4, 4) one-hot-like binary masks covering the empty-mask cases on channel 1."""
    pred = torch.zeros(4, 2, 4, 4)
    gt = torch.zeros(4, 2, 4, 4)
    pred[0, 1, :2, :2] = 1  # 4 px
    gt[0, 1, :2, :3] = 1  # 6 px, overlap 4 -> Dice 0.8, IoU 4/6
    pred[1, 1, 0, 0] = 1  # prediction only
    gt[2, 1, 0, 0] = 1  # GT only
    # sample 3: both empty
    pred[:, 0] = 1 - pred[:, 1]
    gt[:, 0] = 1 - gt[:, 1]
    return pred, gt


def test_per_sample_fairseg_convention():
    pred, gt = _masks()
    dice = per_sample_dice(pred, gt, include_background=False)
    iou = per_sample_iou(pred, gt, include_background=False)
    np.testing.assert_allclose(dice[:, 0].numpy(), [0.8, 1.0, 0.0, 0.0], rtol=1e-15)
    np.testing.assert_allclose(iou[:, 0].numpy(), [4 / 6, 1.0, 0.0, 0.0], rtol=1e-15)
    full = per_sample_dice(pred, gt)
    assert full.shape == (4, 2)
    np.testing.assert_allclose(full[0, 0].item(), 2 * 10 / (12 + 10), rtol=1e-15)
    # 3D works as well
    assert per_sample_dice(pred[..., None], gt[..., None]).shape == (4, 2)


@pytest.mark.parametrize("ignore_empty", [True, False])
def test_per_sample_monai_convention(ignore_empty):
    pred, gt = _masks()
    for ours, theirs in ((per_sample_dice, compute_dice), (per_sample_iou, compute_iou)):
        got = ours(pred, gt, include_background=False, convention="monai", ignore_empty=ignore_empty)
        expected = theirs(pred, gt, include_background=False, ignore_empty=ignore_empty)
        torch.testing.assert_close(got.float(), expected.float(), equal_nan=True)
    got = per_sample_dice(pred, gt, include_background=False, convention="monai", ignore_empty=ignore_empty)
    assert bool(torch.isnan(got[[1, 3], 0]).all()) == ignore_empty  # empty GT
    assert float(got[2, 0]) == 0.0


def test_per_sample_bad_inputs():
    pred, gt = _masks()
    with pytest.raises(ValueError, match="binary"):
        per_sample_dice(pred * 0.5, gt)
    with pytest.raises(ValueError, match="shape"):
        per_sample_dice(pred, gt[:, :1])
    with pytest.raises(ValueError, match="convention"):
        per_sample_iou(pred, gt, convention="medpy")
    with pytest.raises(ValueError, match=r"\(B, C, \*spatial\)"):
        per_sample_dice(pred[0, 0], gt[0, 0])


# ------------------------------------------------------------------------------------------------------------------
def test_cumulative_metric_matches_function():
    torch.manual_seed(0)
    pred = (torch.rand(10, 3, 8, 8) > 0.5).float()
    gt = (torch.rand(10, 3, 8, 8) > 0.4).float()
    groups = torch.tensor([0, 1, 2, 0, 1, 2, 0, -1, 1, 2])
    metric = EquityScaledMetric(num_groups=3, metric="iou", include_background=False)
    metric(y_pred=pred[:4], y=gt[:4], groups=groups[:4])
    metric(y_pred=list(pred[4:]), y=list(gt[4:]), groups=groups[4:].tolist())  # decollated batch
    out = metric.aggregate()
    values = per_sample_iou(pred, gt, include_background=False)
    ref = equity_scaled_metric(values, groups, 3, return_details=True)
    assert out["es"].shape == (2,) and out["group_means"].shape == (3, 2)
    np.testing.assert_allclose(out["es"].numpy(), ref["es"], rtol=1e-14)
    np.testing.assert_allclose(out["metric"].numpy(), values.mean(0).numpy(), rtol=1e-14)
    np.testing.assert_allclose(out["group_means"].numpy(), ref["group_means"], rtol=1e-14)
    metric.reset()
    with pytest.raises(ValueError, match="no values"):
        metric.aggregate()


def test_cumulative_metric_reference_and_options(ref):
    metric = EquityScaledMetric(num_groups=3, kind="std")
    metric.update(ref["dice"][:3], ref["groups"][:3])
    metric.update(torch.tensor(ref["dice"][3:]), torch.tensor(ref["groups"][3:]))
    np.testing.assert_allclose(metric.aggregate()["es"].numpy(), [ref["es_std_dice"]], rtol=1e-12)
    known = EquityScaledMetric(num_groups=3, overall="known")
    known.update(ref["dice"], ref["groups"])
    np.testing.assert_allclose(known.aggregate()["es"].item(), ref["es_dice_known_only_overall"], rtol=1e-12)
    # a custom per-sample metric
    custom = EquityScaledMetric(num_groups=2, metric=lambda p, y: (p == y).flatten(1).float().mean(1))
    pred, gt = _masks()
    custom(pred, gt, groups=[0, 0, 1, 1])
    out = custom.aggregate()
    acc = (pred == gt).flatten(1).float().mean(1).double()
    np.testing.assert_allclose(out["metric"].item(), acc.mean().item(), rtol=1e-14)


def test_cumulative_metric_bad_inputs():
    pred, gt = _masks()
    metric = EquityScaledMetric(num_groups=2)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        metric(pred, gt, groups=[0, 1])
    with pytest.raises(ValueError, match="got \\[2\\]"):
        metric(pred, gt, groups=[0, 1, 2, 1])
    with pytest.raises(ValueError, match="groups is required"):
        metric(pred, gt)
    with pytest.raises(ValueError, match="y \\(ground truth\\)"):
        metric(pred, None, groups=[0, 1, 1, 0])
    with pytest.raises(ValueError, match="Inf"):
        metric.update([0.5, float("inf")], [0, 1])
    for kwargs, match in (
        (dict(num_groups=0), "num_groups"),
        (dict(num_groups=2, metric="hd95"), "metric"),
        (dict(num_groups=2, kind="x"), "kind"),
        (dict(num_groups=2, overall="x"), "overall"),
        (dict(num_groups=2, convention="x"), "convention"),
        (dict(num_groups=2, alpha=float("nan")), "alpha"),
    ):
        with pytest.raises(ValueError, match=match):
            EquityScaledMetric(**kwargs)
