"""Every medloss trainer, driven through nnU-Net's Python API on a tiny synthetic 3D dataset (CPU)."""

import json

import numpy as np
import pytest
import torch

trainers = pytest.importorskip("medloss.nnunet.trainers")

METHOD_TRAINERS = [
    "nnUNetTrainerMedlossMIP",
    "nnUNetTrainerMedlossMIPMultiAxis",
    "nnUNetTrainerMedlossJaccard",
    "nnUNetTrainerMedlossDiceSemimetric",
    "nnUNetTrainerMedlossBettiMatching",
]


def make_trainer(name, dataset, configuration="3d_tiny", fold=0):
    pre = dataset["preprocessed"]
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False  # what get_trainer_from_args adds; __init__ pops it
    dataset_json = json.loads((pre / "dataset.json").read_text())
    cls = getattr(trainers, name)
    tr = cls(plans=plans, configuration=configuration, fold=fold, dataset_json=dataset_json,
             device=torch.device("cpu"))
    return tr


@pytest.mark.parametrize("name", METHOD_TRAINERS)
def test_trainer_trains_and_loss_decreases(name, nnunet_dataset):
    torch.manual_seed(0)
    tr = make_trainer(name, nnunet_dataset)
    assert tr.num_epochs == 1 and tr.num_iterations_per_epoch == 2  # from the plans' "medloss" entry
    tr.initialize()
    tr.on_train_start()
    try:
        batch = next(tr.dataloader_train)
        assert isinstance(batch["target"], list)  # deep supervision is on
        losses = [float(tr.train_step(batch)["loss"]) for _ in range(8)]
        assert np.all(np.isfinite(losses))
        # the same batch eight times: an easy case that every loss must make progress on
        assert min(losses[-3:]) < losses[0], losses
        with torch.no_grad():
            val = tr.validation_step(next(tr.dataloader_val))
        assert np.isfinite(val["loss"]) and val["tp_hard"].shape == (1,)
        if name != "nnUNetTrainerMedlossJaccard" and "DiceSemimetric" not in name:
            assert tr._medloss_loss is not None and tr._medloss_loss.calls > 0
    finally:
        tr.on_train_end()


def test_hyperparameters_from_environment_are_logged(nnunet_dataset, monkeypatch):
    monkeypatch.setenv("MEDLOSS_WEIGHT", "0.25")
    monkeypatch.setenv("MEDLOSS_AXES", "[0, 2]")
    tr = make_trainer("nnUNetTrainerMedlossMIP", nnunet_dataset)
    assert tr.medloss["weight"] == 0.25 and tr.medloss["axes"] == [0, 2]
    log = open(tr.log_file).read()
    assert "weight=0.25 (env MEDLOSS_WEIGHT)" in log and "axes=[0, 2] (env MEDLOSS_AXES)" in log


def test_bad_hyperparameters_are_refused(nnunet_dataset, monkeypatch):
    monkeypatch.setenv("MEDLOSS_WEIGHT", "heavy")
    with pytest.raises(ValueError, match="MEDLOSS_WEIGHT"):
        make_trainer("nnUNetTrainerMedlossMIP", nnunet_dataset)


def test_epoch_variants_exist_and_pickle():
    import pickle

    cls = trainers.nnUNetTrainerMedlossBettiMatching_100epochs
    assert cls.trainer_overrides["num_epochs"] == 100
    assert pickle.loads(pickle.dumps(cls)) is cls
    assert cls.__module__ == "medloss.nnunet.trainers"


def test_ext_trainer_lookup_finds_medloss_trainers(monkeypatch):
    from medloss.nnunet import EXT_TRAINER_DIR, register_ext_trainers

    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    assert register_ext_trainers() == EXT_TRAINER_DIR
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    cls = recursive_find_trainer_class_by_name("nnUNetTrainerMedlossMIP")
    assert cls.__module__ == "medloss.nnunet.trainers"  # the shim keeps the real module (pickling)
