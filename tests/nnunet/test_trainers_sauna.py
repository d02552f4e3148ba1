"""SAUNA in nnU-Net: soft labels computed on whole preprocessed cases, carried through the data pipeline."""

import json

import numpy as np
import pytest
import torch

from medloss.transforms.sauna import sauna_soft_label

trainers_sauna = pytest.importorskip("medloss.nnunet.trainers_sauna")


@pytest.fixture(scope="module")
def sauna_config(nnunet_dataset):
    return trainers_sauna.preprocess_sauna(nnunet_dataset["id"], configuration="3d_tiny", verbose=False)


def _trainer(name, nnunet_dataset, configuration):
    from medloss.nnunet import trainers

    pre = nnunet_dataset["preprocessed"]
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((pre / "dataset.json").read_text())
    return getattr(trainers, name)(plans=plans, configuration=configuration, fold=0, dataset_json=dataset_json,
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
    np.testing.assert_allclose(seg[1] / trainers_sauna.SCALE, whole, atol=1.0 / trainers_sauna.SCALE)
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
        label, soft = full[:, 0], full[:, 1].float() / trainers_sauna.SCALE
        inside = soft != 0
        # after nnU-Net's cropping and augmentation the soft label still agrees with the label voxel by voxel
        assert torch.equal((soft > 0)[inside], (label == 1)[inside])
        losses = [float(tr.train_step(batch)["loss"]) for _ in range(8)]
        assert np.all(np.isfinite(losses)) and min(losses[-3:]) < losses[0], losses
        assert tr._medloss_loss.calls == 8
        with torch.no_grad():
            val = tr.validation_step(next(tr.dataloader_val))
        assert np.isfinite(val["loss"])
    finally:
        tr.on_train_end()


def test_sauna_trainer_refuses_plain_configuration(nnunet_dataset):
    with pytest.raises(ValueError, match="sauna-preprocess"):
        _trainer("nnUNetTrainerMedlossSAUNA", nnunet_dataset, "3d_tiny")


def test_sauna_term_uses_signed_softmax_outputs():
    from medloss.losses import SAUNALoss

    term = trainers_sauna.SAUNATerm(SAUNALoss(from_logits=False), has_regions=False)
    logits = torch.randn(2, 2, 6, 6, 6)
    soft = torch.rand(2, 1, 6, 6, 6) * 2 - 1
    term.soft = soft
    p = torch.softmax(logits, 1)[:, 1:]
    expected = SAUNALoss(from_logits=False)(2 * p - 1, soft)
    assert torch.allclose(term(logits, None), expected)
    # for two classes 2 p - 1 is SAUNA's tanh head on the logit difference
    assert torch.allclose(2 * p - 1, torch.tanh((logits[:, 1:] - logits[:, :1]) / 2), atol=1e-6)
