"""FEBS trainer: group file lookup and checks, groups per batch through train/validation steps (CPU, tiny data)."""

import json

import numpy as np
import pytest
import torch

fair = pytest.importorskip("medloss.nnunet.trainers_fairness")

GROUPS = {"vessel_000": 0, "vessel_001": 1, "vessel_002": 0, "vessel_003": 1, "vessel_004": 2}


def make_trainer(dataset, name="nnUNetTrainerMedlossFairScaling", configuration="3d_tiny"):
    pre = dataset["preprocessed"]
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((pre / "dataset.json").read_text())
    return getattr(fair, name)(plans=plans, configuration=configuration, fold=0, dataset_json=dataset_json,
                               device=torch.device("cpu"))


@pytest.fixture
def raw_groups_csv(nnunet_dataset):
    path = nnunet_dataset["raw"] / "groups.csv"
    path.write_text("case,group\n" + "".join(f"{k},{v}\n" for k, v in GROUPS.items()))
    yield path
    path.unlink()
    (nnunet_dataset["preprocessed"] / "groups.csv").unlink(missing_ok=True)


def test_trains_with_groups_of_each_batch(nnunet_dataset, raw_groups_csv):
    torch.manual_seed(0)
    np.random.seed(0)  # nnU-Net's data loader draws cases and crops from numpy's global RNG
    tr = make_trainer(nnunet_dataset)
    tr.initialize()
    assert tr.group_file == str(raw_groups_csv) and tr.num_groups == 3
    # copied next to the preprocessed data and, at the start of training, into the results folder
    copy = nnunet_dataset["preprocessed"] / "groups.csv"
    assert copy.read_text() == raw_groups_csv.read_text()
    tr.on_train_start()
    try:
        assert open(tr.output_folder_base + "/groups.csv").read() == \
            raw_groups_csv.read_text()
        batch = next(tr.dataloader_train)
        losses = [float(tr.train_step(batch)["loss"]) for _ in range(6)]
        assert np.all(np.isfinite(losses)) and min(losses[-2:]) < losses[0], losses
        expected = [GROUPS[k] for k in batch["keys"]]
        assert tr._grouped.groups.tolist() == expected
        # the term was evaluated at both weighted deep-supervision scales of every step with these groups
        assert tr._grouped.weight_count == 2 * 6
        w = tr._grouped.loss.last_group_weights
        present = sorted(set(expected))
        assert torch.isfinite(w[present]).all() and (w[present] <= np.tanh(1) + 1e-6).all()
        assert all(torch.isnan(w[g]) for g in range(3) if g not in present)  # guarded mode: absent groups NaN

        # the composed loss is exactly ce_weight * CE + weight * FEBS(groups) at each scale, with nnU-Net's weights
        from medloss.losses import FairErrorBoundScalingLoss

        tr.network.eval()
        with torch.no_grad():
            out = tr.network(batch["data"])
            total = tr.loss(out, batch["target"])
            febs = FairErrorBoundScalingLoss(include_background=False, to_onehot_y=True, softmax=True, num_groups=3)
            groups = torch.tensor(expected)
            manual = 0.0
            for wds, o, t in zip(tr.loss.base.weight_factors, out, batch["target"]):
                if wds:
                    ce = torch.nn.functional.cross_entropy(o, t[:, 0].long())
                    manual += wds * (0.5 * ce + 0.5 * febs(o, t, groups))
        assert float(total) == pytest.approx(float(manual), rel=1e-5)

        val_batch = next(tr.dataloader_val)
        with torch.no_grad():
            val = tr.validation_step(val_batch)
        assert np.isfinite(val["loss"]) and tr._grouped.groups.tolist() == [GROUPS[k] for k in val_batch["keys"]]
        tr.on_train_epoch_end([{"loss": np.array(x)} for x in losses])
        assert "medloss FEBS mean group weights" in open(tr.log_file).read()
    finally:
        tr.on_train_end()


def test_missing_case_in_group_file_is_an_error(nnunet_dataset, tmp_path, monkeypatch):
    path = tmp_path / "groups.json"
    path.write_text(json.dumps({k: v for k, v in GROUPS.items() if k != "vessel_003"}))
    monkeypatch.setenv("MEDLOSS_GROUPS_FILE", str(path))
    tr = make_trainer(nnunet_dataset)
    with pytest.raises(ValueError, match="vessel_003"):
        tr.initialize()


def test_no_group_file_is_an_error(nnunet_dataset):
    tr = make_trainer(nnunet_dataset)
    with pytest.raises(FileNotFoundError, match="groups.json"):
        tr.initialize()


def test_num_groups_too_small_is_an_error(nnunet_dataset, tmp_path, monkeypatch):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(GROUPS))
    monkeypatch.setenv("MEDLOSS_GROUPS_FILE", str(path))
    monkeypatch.setenv("MEDLOSS_NUM_GROUPS", "2")
    with pytest.raises(ValueError, match="num_groups=2"):
        make_trainer(nnunet_dataset).initialize()


def test_group_file_formats(tmp_path):
    j = tmp_path / "groups.json"
    j.write_text('{"a": 0, "b": 2, "c": -1}')
    assert fair.read_group_file(str(j)) == {"a": 0, "b": 2, "c": -1}
    c = tmp_path / "groups.csv"
    c.write_text("a;1\nb;0\n")  # no header, semicolons
    assert fair.read_group_file(str(c)) == {"a": 1, "b": 0}
    c.write_text("case\tgroup\na\t1\n")
    assert fair.read_group_file(str(c)) == {"a": 1}
    for bad, match in (("case,group\na,x\n", "integer"), ("a,1\na,0\n", "twice"), ("a,-2\n", ">= -1"),
                       ("a,1,2\n", "two columns")):
        c.write_text(bad)
        with pytest.raises(ValueError, match=match):
            fair.read_group_file(str(c))
    j.write_text('[["a", 0]]')
    with pytest.raises(ValueError, match="JSON object"):
        fair.read_group_file(str(j))
    j.write_text('{"a": 1.5}')
    with pytest.raises(ValueError, match="integer"):
        fair.read_group_file(str(j))


def test_group_file_lookup_order(tmp_path):
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    raw.mkdir(), pre.mkdir()
    (pre / "groups.csv").write_text("a,0\n")
    assert fair.find_group_file([str(raw), str(pre)]) == str(pre / "groups.csv")
    (raw / "groups.json").write_text('{"a": 1}')
    assert fair.find_group_file([str(raw), str(pre)]) == str(raw / "groups.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fair.find_group_file([str(pre)], explicit=str(tmp_path / "nope.csv"))


def test_epoch_variant_pickles():
    import pickle

    cls = fair.nnUNetTrainerMedlossFairScaling_5epochs
    assert cls.trainer_overrides["num_epochs"] == 5 and pickle.loads(pickle.dumps(cls)) is cls
