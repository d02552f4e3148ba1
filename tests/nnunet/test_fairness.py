"""FEBS trainer: group file lookup and checks, groups per batch through the base trainer's batch hook (CPU)."""

import json

import numpy as np
import pytest
import torch

fair = pytest.importorskip("medloss.nnunet.fairness")

GROUPS = {"vessel_000": 0, "vessel_001": 1, "vessel_002": 0, "vessel_003": 1, "vessel_004": 2}


NAME = "nnUNetTrainerMedlossFairScaling"


@pytest.fixture
def no_group_files(nnunet_dataset):
    """No group file in the raw or preprocessed folder during the test (the synthetic writer puts one in raw)."""
    paths = [nnunet_dataset[f] / n for f in ("raw", "preprocessed") for n in ("groups.json", "groups.csv")]
    saved = {p: p.read_bytes() for p in paths if p.exists()}
    for p in saved:
        p.unlink()
    yield
    for p in paths:
        p.unlink(missing_ok=True)
    for p, content in saved.items():
        p.write_bytes(content)


@pytest.fixture
def raw_groups_csv(nnunet_dataset, no_group_files):
    path = nnunet_dataset["raw"] / "groups.csv"
    path.write_text("case;group\n" + "".join(f"{k};{v}\n" for k, v in GROUPS.items()))
    return path


def test_trains_with_groups_of_each_batch(nnunet_dataset, raw_groups_csv, make_trainer):
    torch.manual_seed(0)
    np.random.seed(0)  # nnU-Net's data loader draws cases and crops from numpy's global RNG
    tr = make_trainer(NAME)
    tr.initialize()
    assert tr.group_file == str(raw_groups_csv) and tr.num_groups == 3
    # copied next to the preprocessed data and, at the start of training, into the results folder
    copy = nnunet_dataset["preprocessed"] / "groups.csv"
    assert copy.read_text() == raw_groups_csv.read_text()
    tr.on_train_start()
    try:
        assert open(tr.output_folder_base + "/groups.csv").read() == raw_groups_csv.read_text()
        batch = next(tr.dataloader_train)
        expected = [GROUPS[k] for k in batch["keys"]]
        assert tr.medloss_batch_inputs(batch)["groups"].tolist() == expected
        losses = [float(tr.train_step(batch)["loss"]) for _ in range(6)]
        assert np.all(np.isfinite(losses)) and min(losses[-2:]) < losses[0], losses
        # the term was evaluated at both weighted deep-supervision scales of every step
        assert tr.group_weight_count == 2 * 6
        w = tr.febs.last_group_weights
        present = sorted(set(expected))
        assert torch.isfinite(w[present]).all() and (w[present] <= np.tanh(1) + 1e-6).all()
        assert all(torch.isnan(w[g]) for g in range(3) if g not in present)  # guarded mode: absent groups NaN

        # the composed loss is exactly ce_weight * CE + weight * FEBS(groups) at each scale, with nnU-Net's weights:
        # the groups of the batch reached the loss (other groups give another value)
        from medloss.losses import FairErrorBoundScalingLoss

        tr.network.eval()
        febs = FairErrorBoundScalingLoss(include_background=False, to_onehot_y=True, softmax=True, num_groups=3)

        def manual(groups):
            total = 0.0
            for wds, o, t in zip(tr.loss.base.weight_factors, out, batch["target"]):
                if wds:
                    ce = torch.nn.functional.cross_entropy(o, t[:, 0].long())
                    total += wds * (0.5 * ce + 0.5 * febs(o, t, torch.tensor(groups)))
            return float(total)

        with torch.no_grad():
            out = tr.network(batch["data"])
            tr.medloss_inputs.update(**tr.medloss_batch_inputs(batch))
            total = float(tr.loss(out, batch["target"]))
        assert total == pytest.approx(manual(expected), rel=1e-5)
        other = [0] * len(expected) if len(set(expected)) > 1 else [0] + [1] * (len(expected) - 1)
        assert abs(manual(other) - total) > 1e-6

        val_batch = next(tr.dataloader_val)
        with torch.no_grad():
            val = tr.validation_step(val_batch)
        assert np.isfinite(val["loss"])
        tr.on_train_epoch_end([{"loss": np.array(x)} for x in losses])
        assert "medloss FEBS mean group weights" in open(tr.log_file).read()
    finally:
        tr.on_train_end()


def test_missing_case_in_group_file_is_an_error(nnunet_dataset, tmp_path, monkeypatch, make_trainer):
    path = tmp_path / "groups.json"
    path.write_text(json.dumps({k: v for k, v in GROUPS.items() if k != "vessel_003"}))
    monkeypatch.setenv("MEDLOSS_GROUPS_FILE", str(path))
    tr = make_trainer(NAME)
    with pytest.raises(ValueError, match="vessel_003"):
        tr.initialize()


def test_no_group_file_is_an_error(nnunet_dataset, no_group_files, make_trainer):
    tr = make_trainer(NAME)
    with pytest.raises(FileNotFoundError, match=f"(?s){NAME}.*groups.json.*MEDLOSS_GROUPS_FILE"):
        tr.initialize()


def test_malformed_group_file_names_the_line(nnunet_dataset, tmp_path, monkeypatch, make_trainer):
    path = tmp_path / "groups.csv"
    path.write_text("vessel_000,0\nvessel_001,true\n")
    monkeypatch.setenv("MEDLOSS_GROUPS_FILE", str(path))
    with pytest.raises(ValueError, match="line 2"):
        make_trainer(NAME).initialize()


def test_num_groups_too_small_is_an_error(nnunet_dataset, tmp_path, monkeypatch, make_trainer):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(GROUPS))
    monkeypatch.setenv("MEDLOSS_GROUPS_FILE", str(path))
    monkeypatch.setenv("MEDLOSS_NUM_GROUPS", "2")
    with pytest.raises(ValueError, match="num_groups=2"):
        make_trainer(NAME).initialize()


def test_group_file_lookup_prefers_the_raw_folder(nnunet_dataset, no_group_files, make_trainer):
    pre, raw = nnunet_dataset["preprocessed"], nnunet_dataset["raw"]
    (pre / "groups.csv").write_text("".join(f"{k},0\n" for k in GROUPS))
    tr = make_trainer(NAME)
    tr.initialize()
    assert tr.group_file == str(pre / "groups.csv") and tr.num_groups == 1
    (raw / "groups.json").write_text(json.dumps(GROUPS))
    tr = make_trainer(NAME)
    tr.initialize()
    assert tr.group_file == str(raw / "groups.json") and tr.num_groups == 3


def test_epoch_variant_pickles():
    import pickle

    cls = fair.nnUNetTrainerMedlossFairScaling_5epochs
    assert cls.trainer_overrides["num_epochs"] == 5 and pickle.loads(pickle.dumps(cls)) is cls
