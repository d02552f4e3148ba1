"""The medloss trainers through nnU-Net's Python API on a tiny synthetic 3D dataset (CPU): the base trainer's hooks,
the composed loss, label set-ups, lazy names, epoch variants and nnU-Net's trainer lookup."""

import json

import numpy as np
import pytest
import torch

trainers = pytest.importorskip("medloss.nnunet.trainers")

import medloss.nnunet as nnunet  # noqa: E402

SIMPLE_TRAINERS = [
    "nnUNetTrainerMedlossMIP",
    "nnUNetTrainerMedlossMIPMultiAxis",
    "nnUNetTrainerMedlossJaccard",
    "nnUNetTrainerMedlossDiceSemimetric",
    "nnUNetTrainerMedlossBettiMatching",
]


def dataset_json_of(dataset):
    return json.loads((dataset["preprocessed"] / "dataset.json").read_text())


@pytest.mark.parametrize("name", SIMPLE_TRAINERS)
def test_trainer_trains_and_loss_decreases(name, started):
    with started(name) as tr:
        assert tr.num_epochs == 1 and tr.num_iterations_per_epoch == 2  # from the plans' "medloss" entry
        batch = next(tr.dataloader_train)
        assert isinstance(batch["target"], list)  # deep supervision is on
        losses = [float(tr.train_step(batch)["loss"]) for _ in range(8)]
        assert np.all(np.isfinite(losses))
        # the same batch eight times: an easy case that every loss must make progress on
        assert min(losses[-3:]) < losses[0], losses
        assert tr.loss is tr.medloss_loss and tr.medloss_loss.calls == 8
        with torch.no_grad():
            val = tr.validation_step(next(tr.dataloader_val))
        assert np.isfinite(val["loss"]) and val["tp_hard"].shape == (1,)


def _nnunet_default_loss(tr):
    """nnU-Net's own Dice+CE with its deep-supervision weights, built by nnU-Net's trainer (not by medloss)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    return nnUNetTrainer._build_loss(tr)


def _expected_loss(name, tr, out, target):
    """The trainer's loss recomputed from its parts: (base, weight * term) with medloss's and torch's losses."""
    from medloss.losses import BettiMatchingLoss, DiceSemimetricLoss, JaccardMetricLoss, MIPLoss

    flags = dict(include_background=False, to_onehot_y=True, softmax=True)
    o0, t0 = out[0].float(), target[0].long()
    weight = tr.medloss["weight"]
    if "MIP" in name:
        mip = MIPLoss(**flags, axes=tr.medloss["axes"], voxel_weight=0.0, mip_weight=1.0)
        return _nnunet_default_loss(tr)(out, target), weight * mip(o0, t0)
    if "Betti" in name:
        return _nnunet_default_loss(tr)(out, target), weight * BettiMatchingLoss(**flags)(o0, t0)
    metric = (JaccardMetricLoss if "Jaccard" in name else DiceSemimetricLoss)(
        **flags, batch=tr.configuration_manager.batch_dice)
    ds = _nnunet_default_loss(tr).weight_factors
    base = sum(w * tr.medloss["ce_weight"] * torch.nn.functional.cross_entropy(o.float(), t[:, 0].long())
               for w, o, t in zip(ds, out, target) if w)
    term = sum(w * metric(o.float(), t.long()) for w, o, t in zip(ds, out, target) if w)
    return base, weight * term


@pytest.mark.parametrize("name", SIMPLE_TRAINERS)
def test_loss_is_base_plus_weighted_term(name, started):
    """The medloss term really contributes: total = base + weight x term, with a term that is not zero."""
    with started(name) as tr:
        batch = tr.medloss_step_batch(next(tr.dataloader_train))
        out = [o.detach().requires_grad_() for o in tr.network(batch["data"])]
        total = tr.loss(out, batch["target"])
        base, weighted_term = _expected_loss(name, tr, out, batch["target"])
        assert abs(float(weighted_term.detach())) > 1e-3
        assert float(total.detach()) == pytest.approx(float((base + weighted_term).detach()), rel=1e-5, abs=1e-6)
        # and it reaches the gradient of the logits: total - base has the term's non-zero gradient
        grad_total = torch.autograd.grad(total, out[0], retain_graph=True)[0]
        grad_base = torch.autograd.grad(base, out[0], retain_graph=True)[0]
        grad_term = torch.autograd.grad(weighted_term, out[0])[0]
        assert grad_term.abs().sum() > 0
        torch.testing.assert_close(grad_total - grad_base, grad_term, rtol=1e-4, atol=1e-7)


def test_warm_up_switches_the_term_off(started, monkeypatch):
    monkeypatch.setenv("MEDLOSS_WARMUP_FRACTION", "0.5")
    with started("nnUNetTrainerMedlossMIP") as tr:
        tr.num_epochs = 4
        tr.on_train_epoch_start()  # epoch 0 of 4: off until epoch 2
        batch = tr.medloss_step_batch(next(tr.dataloader_train))
        with torch.no_grad():
            out = tr.network(batch["data"])
            off = float(tr.loss(out, batch["target"]))
            assert off == pytest.approx(float(_nnunet_default_loss(tr)(out, batch["target"])), rel=1e-6)
            tr.current_epoch = 2
            tr.on_train_epoch_start()
            assert float(tr.loss(out, batch["target"])) > off
        assert "off until epoch 2 (warm-up)" in open(tr.log_file).read()


def test_hyperparameters_from_environment_are_logged(make_trainer, monkeypatch):
    monkeypatch.setenv("MEDLOSS_WEIGHT", "0.25")
    monkeypatch.setenv("MEDLOSS_AXES", "[0, 2]")
    tr = make_trainer("nnUNetTrainerMedlossMIP")
    assert tr.medloss["weight"] == 0.25 and tr.medloss["axes"] == [0, 2]
    log = open(tr.log_file).read()
    assert "weight=0.25 (env MEDLOSS_WEIGHT)" in log and "axes=[0, 2] (env MEDLOSS_AXES)" in log


def test_bad_hyperparameters_are_refused(make_trainer, monkeypatch):
    monkeypatch.setenv("MEDLOSS_WEIGHT", "heavy")
    with pytest.raises(ValueError, match="MEDLOSS_WEIGHT"):
        make_trainer("nnUNetTrainerMedlossMIP")


def test_unknown_plans_key_is_refused(make_trainer, nnunet_dataset):
    plans = json.loads((nnunet_dataset["preprocessed"] / "nnUNetPlans.json").read_text())
    plans["configurations"]["3d_tiny"]["medloss"]["wieght"] = 0.5
    with pytest.raises(ValueError, match="wieght"):
        make_trainer("nnUNetTrainerMedlossMIP", plans=plans)


# ---- label set-ups: refused at initialisation, naming the trainer -----------------------------------------------
REGIONS = {"labels": {"background": 0, "vessel": [1, 2], "thin_vessel": 2}, "regions_class_order": [1, 2]}
IGNORE = {"labels": {"background": 0, "vessel": 1, "ignore": 2}}
NO_REGIONS = {"nnUNetTrainerMedlossSAUNA", "nnUNetTrainerMedlossPULASki", "nnUNetTrainerMedlossSkeletonRecall"}
NO_IGNORE = (NO_REGIONS - {"nnUNetTrainerMedlossSkeletonRecall"}) | {
    "nnUNetTrainerMedlossMIP", "nnUNetTrainerMedlossMIPMultiAxis", "nnUNetTrainerMedlossBettiMatching",
    "nnUNetTrainerMedlossFairScaling", "nnUNetTrainerMedlossIMPACT", "nnUNetTrainerMedlossClDice"}


@pytest.mark.parametrize("setup", ["regions", "ignore"])
@pytest.mark.parametrize("name", nnunet.METHOD_TRAINERS)
def test_unsupported_label_setups_fail_at_initialisation(name, setup, make_trainer, nnunet_dataset, monkeypatch):
    monkeypatch.setenv("MEDLOSS_MODEL", __file__)  # IMPACT checks that its extractor file exists
    dataset_json = dataset_json_of(nnunet_dataset)
    dataset_json.update(REGIONS if setup == "regions" else IGNORE)
    unsupported = NO_REGIONS if setup == "regions" else NO_IGNORE
    if name in unsupported:
        what = "region-based labels" if setup == "regions" else "ignore label"
        with pytest.raises(NotImplementedError, match=f"{name} does not support .*{what}"):
            make_trainer(name, dataset_json=dataset_json)
    else:
        try:
            tr = make_trainer(name, dataset_json=dataset_json)
        except ValueError as err:  # SAUNA needs its preprocessed configuration: a later, different check
            assert name == "nnUNetTrainerMedlossSAUNA" and "sauna-preprocess" in str(err)
        else:
            assert tr.label_manager.has_regions == (setup == "regions")


def test_ignore_label_reaches_the_loss_as_a_keep_mask(make_trainer, nnunet_dataset):
    """The Jaccard trainer masks the ignore label: voxels labelled 2 do not change its loss."""
    dataset_json = dict(dataset_json_of(nnunet_dataset), **IGNORE)
    tr = make_trainer("nnUNetTrainerMedlossJaccard", dataset_json=dataset_json)
    tr.enable_deep_supervision = False
    tr.initialize()
    loss = tr.loss
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 8, 8, 8)
    target = (torch.rand(2, 1, 8, 8, 8) > 0.7).long()
    ignored = target.clone()
    ignored[:, :, :3] = 2
    other = logits.clone()
    other[:, :, :3] = torch.randn(2, 2, 3, 8, 8)  # different predictions where the label is ignored
    assert float(loss(logits, ignored)) == pytest.approx(float(loss(other, ignored)), rel=1e-6)
    assert float(loss(logits, target)) != pytest.approx(float(loss(other, target)), rel=1e-6)


# ---- the batch hooks ----------------------------------------------------------------------------------------------
def test_batch_inputs_need_declared_keywords(make_trainer):
    class Undeclared(nnunet.nnUNetTrainerMedlossMIP):
        def medloss_batch_inputs(self, batch):
            return {"groups": torch.zeros(2)}

    tr = make_trainer(Undeclared)
    with pytest.raises(RuntimeError, match="medloss_batch_keywords"):
        tr.train_step({"data": None, "target": None, "keys": []})


# ---- names ----------------------------------------------------------------------------------------------------------
def test_every_trainer_is_a_lazy_package_name():
    assert set(trainers.__all__) == set(nnunet.TRAINERS)
    for name in nnunet.TRAINERS:
        cls = getattr(nnunet, name)
        assert cls is getattr(trainers, name) and cls.__name__ == name
        # the defining module of its method family, never the registry: that is the path it pickles with
        assert cls.__module__.startswith("medloss.nnunet.") and cls.__module__ != "medloss.nnunet.trainers"
    with pytest.raises(AttributeError, match="no attribute"):
        getattr(nnunet, "nnUNetTrainerMedlossNothing")


def test_epoch_variants_exist_and_pickle():
    import pickle

    from medloss.nnunet import nnUNetTrainerMedlossBettiMatching_100epochs as cls

    assert cls.trainer_overrides["num_epochs"] == 100
    assert issubclass(cls, nnunet.nnUNetTrainerMedlossBettiMatching)
    assert pickle.loads(pickle.dumps(cls)) is cls
    assert cls.__module__ == "medloss.nnunet.betti"
    for name in nnunet.METHOD_TRAINERS:
        assert all(nnunet.epoch_variant_name(name, n) in nnunet.TRAINERS for n in nnunet.EPOCH_VARIANTS)


def test_ext_trainer_lookup_finds_medloss_trainers(monkeypatch):
    from medloss.nnunet import EXT_TRAINER_DIR, register_ext_trainers

    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    assert register_ext_trainers() == EXT_TRAINER_DIR
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    for name in ("nnUNetTrainerMedlossMIP", "nnUNetTrainerMedlossPULASki_5epochs"):
        cls = recursive_find_trainer_class_by_name(name)
        assert cls is getattr(nnunet, name)  # the shim keeps the real class and module (pickling)
