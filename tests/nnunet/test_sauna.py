"""SAUNA in nnU-Net: soft labels computed on whole preprocessed cases, carried through the data pipeline."""

import json

import numpy as np
import pytest
import torch

from medloss.transforms import sauna_soft_label

sauna = pytest.importorskip("medloss.nnunet.sauna")


@pytest.fixture(scope="module")
def sauna_config(nnunet_dataset):
    return sauna.preprocess_sauna(nnunet_dataset["id"], configuration="3d_tiny", verbose=False)


def _trainer(name, nnunet_dataset, configuration):
    from medloss import nnunet

    pre = nnunet_dataset["preprocessed"]
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((pre / "dataset.json").read_text())
    return getattr(nnunet, name)(plans=plans, configuration=configuration, fold=0, dataset_json=dataset_json,
                                   device=torch.device("cpu"))


def test_stored_soft_labels_are_whole_case_sauna_labels(nnunet_dataset, sauna_config):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    plans = json.loads((nnunet_dataset["preprocessed"] / "nnUNetPlans.json").read_text())
    cfg = plans["configurations"][sauna_config]
    assert cfg["inherits_from"] == "3d_tiny" and cfg["medloss"]["sauna_channels"] == 1
    folder = nnunet_dataset["preprocessed"] / cfg["data_identifier"]
    ds = infer_dataset_class(str(folder))(str(folder))
    _, seg, _, _ = ds.load_case(ds.identifiers[0])
    seg = np.asarray(seg[:])
    assert seg.shape[0] == 2
    whole = sauna_soft_label(seg[0] == 1)
    np.testing.assert_allclose(seg[1] / sauna.SCALE, whole, atol=1.0 / sauna.SCALE)
    # the reason for a preprocessing step: on a patch the label differs (its scale M is the patch's, not the case's)
    patch = (slice(8, 24),) * 3
    assert np.abs(sauna_soft_label(seg[0][patch] == 1) - whole[patch]).max() > 0.05


def test_sauna_trainer_trains_with_aligned_soft_labels(nnunet_dataset, sauna_config):
    torch.manual_seed(0)
    np.random.seed(0)
    tr = _trainer("nnUNetTrainerMedlossSAUNA", nnunet_dataset, sauna_config)
    tr.initialize()
    tr.on_train_start()
    try:
        batch = next(tr.dataloader_train)
        full = batch["target"][0]
        assert full.shape[1] == 2
        label, soft = full[:, 0], full[:, 1].float() / sauna.SCALE
        inside = soft != 0
        # after nnU-Net's cropping and augmentation the soft label still agrees with the label voxel by voxel
        assert torch.equal((soft > 0)[inside], (label == 1)[inside])
        # the base trainer's hooks: soft labels to the loss, the label channel alone to nnU-Net's step
        soft_labels = tr.medloss_batch_inputs(batch)["soft_labels"]
        expected = torch.where(soft == 0, torch.full_like(soft, -1.0), soft)[:, None]
        assert torch.equal(soft_labels, expected)
        step = tr.medloss_step_batch(batch)
        assert all(t.shape[1] == 1 and torch.equal(t[:, 0], b[:, 0]) for t, b in zip(step["target"], batch["target"]))
        losses = [float(tr.train_step(batch)["loss"]) for _ in range(8)]
        assert np.all(np.isfinite(losses)) and min(losses[-3:]) < losses[0], losses
        assert tr.medloss_loss.calls == 8

        # the loss is nnU-Net's Dice+CE on the label + weight x SAUNA(2 p - 1, soft labels) at full resolution
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        from medloss.losses import SAUNALoss

        tr.network.eval()
        with torch.no_grad():
            out = tr.network(batch["data"])
            tr.medloss_inputs.update(soft_labels=soft_labels)
            total = float(tr.loss(out, step["target"]))
            base = float(nnUNetTrainer._build_loss(tr)(out, step["target"]))
            term = float(SAUNALoss(from_logits=False)(2 * torch.softmax(out[0], 1)[:, 1:] - 1, soft_labels))
        assert abs(term) > 1e-3 and total == pytest.approx(base + term, rel=1e-5)
        with torch.no_grad():
            val = tr.validation_step(next(tr.dataloader_val))
        assert np.isfinite(val["loss"])
    finally:
        tr.on_train_end()


def test_preprocessing_refuses_region_datasets(nnunet_dataset):
    pre = nnunet_dataset["preprocessed"]
    dataset_json = json.loads((pre / "dataset.json").read_text())
    before = (pre / "dataset.json").read_text()
    dataset_json.update(labels={"background": 0, "vessel": [1, 2], "thin": 2}, regions_class_order=[1, 2])
    (pre / "dataset.json").write_text(json.dumps(dataset_json))
    try:
        with pytest.raises(NotImplementedError, match="region"):
            sauna.preprocess_sauna(nnunet_dataset["id"], configuration="3d_tiny", verbose=False)
    finally:
        (pre / "dataset.json").write_text(before)


def test_sauna_trainer_refuses_plain_configuration(nnunet_dataset):
    with pytest.raises(ValueError, match="sauna-preprocess"):
        _trainer("nnUNetTrainerMedlossSAUNA", nnunet_dataset, "3d_tiny")


def test_sauna_term_uses_signed_softmax_outputs():
    from medloss.losses import SAUNALoss
    from medloss.nnunet.loss_wiring import activation_kwargs

    term = sauna.SAUNATerm(SAUNALoss(from_logits=False), **activation_kwargs(False))
    logits = torch.randn(2, 2, 6, 6, 6)
    soft = torch.rand(2, 1, 6, 6, 6) * 2 - 1
    target = torch.zeros(2, 1, 6, 6, 6, dtype=torch.long)
    p = torch.softmax(logits, 1)[:, 1:]
    expected = SAUNALoss(from_logits=False)(2 * p - 1, soft)
    assert torch.allclose(term(logits, target, soft_labels=soft), expected)
    with pytest.raises(ValueError, match="do not match"):
        term(logits, target, soft_labels=soft.expand(2, 2, 6, 6, 6))
    # for two classes 2 p - 1 is SAUNA's tanh head on the logit difference
    assert torch.allclose(2 * p - 1, torch.tanh((logits[:, 1:] - logits[:, :1]) / 2), atol=1e-6)
