"""Tests for medloss.bundles.data: synthetic cases, nnU-Net layout listing, the training glue."""

import copy
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medloss.bundles.data import (
    LossIteration,
    MeanPredictionNet,
    WeightedSumLoss,
    list_nnunet_cases,
    synthesis_dataset,
    vessel_dataset,
    write_synthetic_vessels,
)


def _save(array, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4)), str(path))


def test_synthetic_cases_are_written_and_listed(tmp_path):
    cases = vessel_dataset(None, tmp_path, n_cases=3, size=12, seed=5, n_raters=2, with_groups=True, num_groups=2)
    assert [c["case"] for c in cases] == ["vessel_tr000", "vessel_tr001", "vessel_tr002"]
    assert [c["group"] for c in cases] == [0, 1, 0]
    for c in cases:
        image = nib.load(c["image"]).get_fdata()
        label = nib.load(c["label"]).get_fdata()
        assert image.shape == label.shape == (12, 12, 12)
        assert set(np.unique(label)) <= {0.0, 1.0} and label.sum() > 0
        assert len(c["raters"]) == 2
        for r in c["raters"]:
            assert set(np.unique(nib.load(r).get_fdata())) <= {0.0, 1.0}
        # the image is the phantom's angiography: vessels are brighter than background
        assert image[label > 0].mean() > image[label == 0].mean()
    # the phantom is the one medloss.data.synthetic makes with that seed
    from medloss.data.synthetic import vessel_phantom

    np.testing.assert_array_equal(nib.load(cases[1]["label"]).get_fdata(), vessel_phantom((12, 12, 12), seed=6))


def test_synthetic_cache_is_reused_and_test_split_differs(tmp_path):
    first = vessel_dataset(None, tmp_path, n_cases=2, size=10)
    stamp = Path(first[0]["image"]).stat().st_mtime_ns
    again = vessel_dataset(None, tmp_path, n_cases=2, size=10)
    assert again == first and Path(again[0]["image"]).stat().st_mtime_ns == stamp
    test = vessel_dataset(None, tmp_path, n_cases=2, size=10, split="Ts")
    assert [c["case"] for c in test] == ["vessel_ts000", "vessel_ts001"]
    assert not np.array_equal(nib.load(test[0]["label"]).get_fdata(), nib.load(first[0]["label"]).get_fdata())
    # another parameter set goes to another folder
    other = vessel_dataset(None, tmp_path, n_cases=2, size=12)
    assert Path(other[0]["image"]).parent != Path(first[0]["image"]).parent


def test_synthetic_2d_and_synthesis_pairs(tmp_path):
    cases = vessel_dataset(None, tmp_path, n_cases=1, size=16, spatial_dims=2)
    assert nib.load(cases[0]["image"]).shape == (16, 16)
    pairs = synthesis_dataset(None, tmp_path, n_cases=2, size=12)
    assert set(pairs[0]) == {"case", "image", "target"}
    src, tgt = nib.load(pairs[0]["image"]).get_fdata(), nib.load(pairs[0]["target"]).get_fdata()
    assert src.shape == tgt.shape == (12, 12, 12)
    # the target shows the same vessels with the opposite contrast
    assert np.corrcoef(src.ravel(), tgt.ravel())[0, 1] < -0.3
    assert set(synthesis_dataset(None, tmp_path, n_cases=1, size=12, split="Ts", require_targets=False)[0]) == {
        "case", "image"}


def test_dataset_dir_listing(tmp_path):
    root = tmp_path / "Dataset001_X"
    for case in ("b", "a"):
        for ch in (0, 1):
            _save(np.zeros((4, 4, 4), np.float32), root / "imagesTr" / f"{case}_{ch:04d}.nii.gz")
        _save(np.zeros((4, 4, 4), np.uint8), root / "labelsTr" / f"{case}.nii.gz")
        for k in (10, 2):  # sorted numerically, not as text
            _save(np.zeros((4, 4, 4), np.uint8), root / "ratersTr" / f"{case}_rater{k}.nii.gz")
    (root / "groups.json").write_text(json.dumps({"a": 1, "b": -1}))
    cases = list_nnunet_cases(root, n_raters=1, with_groups=True)
    assert [c["case"] for c in cases] == ["a", "b"]
    assert [Path(p).name for p in cases[0]["image"]] == ["a_0000.nii.gz", "a_0001.nii.gz"]
    assert Path(cases[0]["label"]).name == "a.nii.gz"
    assert [Path(p).name for p in cases[0]["raters"]] == ["a_rater2.nii.gz", "a_rater10.nii.gz"]
    assert [c["group"] for c in cases] == [1, -1]
    # vessel_dataset with a dataset_dir lists it and ignores the synthetic parameters
    assert vessel_dataset(str(root), None, n_cases=99, with_groups=True)[1]["group"] == -1
    # test split without labels
    _save(np.zeros((4, 4, 4), np.float32), root / "imagesTs" / "c_0000.nii.gz")
    assert list_nnunet_cases(root, split="Ts", require_labels=False) == [
        {"case": "c", "image": str(root / "imagesTs" / "c_0000.nii.gz")}]


@pytest.mark.parametrize(
    "setup, kwargs, message",
    [
        (lambda r: None, {}, "is not a folder"),
        (lambda r: r.mkdir(), {}, "no imagesTr/ folder"),
        (lambda r: (r / "imagesTr").mkdir(parents=True), {}, "holds no"),
        (lambda r: _save(np.zeros((2, 2, 2)), r / "imagesTr" / "x.nii.gz"), {}, "holds no"),
        (lambda r: _save(np.zeros((2, 2, 2)), r / "imagesTr" / "a_0000.nii.gz"), {}, "has no label"),
        (lambda r: _save(np.zeros((2, 2, 2)), r / "imagesTr" / "a_0000.nii.gz"),
         {"require_labels": False, "n_raters": 2}, "no rater masks"),
        (lambda r: _save(np.zeros((2, 2, 2)), r / "imagesTr" / "a_0000.nii.gz"),
         {"require_labels": False, "with_groups": True}, "groups.json"),
        (lambda r: _save(np.zeros((2, 2, 2)), r / "imagesTr" / "a_0000.nii.gz"),
         {"require_labels": False, "with_target": True}, "no target image"),
        (lambda r: _save(np.zeros((2, 2, 2)), r / "imagesTr" / "a_0000.nii.gz"),
         {"split": "Val"}, "split must be"),
    ],
)
def test_dataset_dir_errors(tmp_path, setup, kwargs, message):
    root = tmp_path / "ds"
    setup(root)
    with pytest.raises(ValueError, match=message):
        list_nnunet_cases(root, **kwargs)


def _two_cases(root: Path) -> None:
    for case in ("a", "b"):
        _save(np.zeros((2, 2, 2)), root / "imagesTr" / f"{case}_0000.nii.gz")


@pytest.mark.parametrize(
    "groups, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold an object"),
        ('{"a": 0, "b": 1.5}', "integers >= -1"),
        ('{"a": 0, "b": -2}', "integers >= -1"),
        ('{"a": 0, "b": true}', "integers >= -1"),
        ('{"a": 0}', "'b' has no entry"),
    ],
)
def test_malformed_groups(tmp_path, groups, message):
    _two_cases(tmp_path)
    (tmp_path / "groups.json").write_text(groups)
    with pytest.raises(ValueError, match=message):
        list_nnunet_cases(tmp_path, require_labels=False, with_groups=True)


def test_inconsistent_cases(tmp_path):
    _two_cases(tmp_path)
    _save(np.zeros((2, 2, 2)), tmp_path / "labelsTr" / "a.nii.gz")
    with pytest.raises(ValueError, match="1 of 2 cases"):
        list_nnunet_cases(tmp_path, require_labels=False)
    _save(np.zeros((2, 2, 2)), tmp_path / "imagesTr" / "b_0001.nii.gz")
    with pytest.raises(ValueError, match="number of input channels"):
        list_nnunet_cases(tmp_path, require_labels=False)
    for name in ("a_rater0", "b_rater0", "b_rater1"):
        _save(np.zeros((2, 2, 2)), tmp_path / "ratersTr" / f"{name}.nii.gz")
    (tmp_path / "imagesTr" / "b_0001.nii.gz").unlink()
    with pytest.raises(ValueError, match="number of rater masks"):
        list_nnunet_cases(tmp_path, require_labels=False, n_raters=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"n_cases": 0}, "n_cases"), ({"size": 7}, "size"), ({"n_raters": -1}, "n_raters"),
     ({"num_groups": 0}, "num_groups"), ({"spatial_dims": 4}, "spatial_dims"), ({"split": "tr"}, "split")],
)
def test_synthetic_argument_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_synthetic_vessels(tmp_path, **kwargs)


def test_synthetic_needs_cache_dir():
    with pytest.raises(ValueError, match="cache_dir is required"):
        vessel_dataset(None, None)


def test_weighted_sum_loss():
    x, y = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    loss = WeightedSumLoss([torch.nn.L1Loss(), lambda a, b: ((a - b) ** 2).sum((1, 2, 3))], [2.0, 0.5])
    expected = 2.0 * (x - y).abs().mean() + 0.5 * ((x - y) ** 2).sum((1, 2, 3)).mean()
    torch.testing.assert_close(loss(x, y), expected)
    with pytest.raises(ValueError, match="one finite weight per loss"):
        WeightedSumLoss([torch.nn.L1Loss()], [1.0, 2.0])
    with pytest.raises(ValueError, match="non-zero"):
        WeightedSumLoss([torch.nn.L1Loss()], [0.0])
    with pytest.raises(ValueError, match="at least one loss"):
        WeightedSumLoss([])


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0))

    def mean_prediction(self, image):
        return image * self.w


def test_mean_prediction_net():
    net = _Net()
    x = torch.rand(1, 1, 4, 4)
    torch.testing.assert_close(MeanPredictionNet(net)(x), x)
    with pytest.raises(ValueError, match="mean_prediction"):
        MeanPredictionNet(torch.nn.Identity())


def test_loss_iteration_passes_batch_keys_and_steps():
    from monai.engines import SupervisedTrainer

    net = torch.nn.Conv2d(1, 1, 1)
    seen = {}

    def loss_fn(pred, label, group):
        seen["group"] = group
        return ((pred - label) ** 2).mean() * (1 + group.float().mean())

    batch = {"image": torch.rand(2, 1, 4, 4), "label": torch.rand(2, 1, 4, 4), "group": torch.tensor([0, 1]),
             "case": ["a", "b"]}
    before = copy.deepcopy(net)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[batch], network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=loss_fn,
        iteration_update=LossIteration(("pred", "label", "group")), decollate=False,
    )
    trainer.run()
    out = trainer.state.output
    assert torch.equal(seen["group"], torch.tensor([0, 1]))
    with torch.no_grad():  # prediction and loss of the forward pass before the optimizer step
        pred = before(batch["image"])
        torch.testing.assert_close(out["pred"].detach(), pred)
        torch.testing.assert_close(out["loss"], ((pred - batch["label"]) ** 2).mean() * 1.5)
    assert not torch.equal(net.weight.detach(), before.weight.detach())  # the optimizer stepped

    # the model itself as an argument (PULASki-style), a missing key
    calls = []
    trainer2 = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[batch], network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=lambda model, image: calls.append(model) or model(image).mean(),
        iteration_update=LossIteration(("network", "image")), decollate=False,
    )
    trainer2.run()
    assert calls == [net] and "pred" not in trainer2.state.output
    with pytest.raises(ValueError, match="no key"):
        LossIteration(("pred", "raters"))(trainer2, batch)
    with pytest.raises(ValueError, match="non-empty sequence"):
        LossIteration("pred")
