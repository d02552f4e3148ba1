"""The clDice and Skeleton Recall trainers: the skeleton channel in nnU-Net's data pipeline, the loss at every
deep-supervision scale, label set-ups, names, and a tiny 2D training run of each trainer (slow)."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

skeleton = pytest.importorskip("medloss.nnunet.skeleton")

import medloss.nnunet as nnunet  # noqa: E402
from medloss.data import vessel_phantom  # noqa: E402
from medloss.losses import ClDiceLoss, SkeletonRecallLoss  # noqa: E402
from medloss.transforms import skeletonize_label  # noqa: E402

CLDICE, RECALL = "nnUNetTrainerMedlossClDice", "nnUNetTrainerMedlossSkeletonRecall"
REGIONS = {"labels": {"background": 0, "vessel": [1, 2], "thin_vessel": 2}, "regions_class_order": [1, 2]}
IGNORE = {"labels": {"background": 0, "vessel": 1, "ignore": 2}}


def _dataset_json(nnunet_dataset, **update):
    return dict(json.loads((nnunet_dataset["preprocessed"] / "dataset.json").read_text()), **update)


def _labels(n=2, size=32, seed=0):
    """``n`` vessel phantoms ``(1, size, size, size)`` int16, the label maps of nnU-Net's data loader."""
    return [torch.from_numpy(vessel_phantom((size,) * 3, seed=seed + i, root_radius=(1.5, 3.0)).astype(np.int16))[None]
            for i in range(n)]


def _through(pipeline, labels):
    """Each label through ``pipeline`` (per sample, as nnU-Net's data loader), collated: a list of scales (deep
    supervision) or a tensor."""
    out = [pipeline(image=torch.zeros(1, *s.shape[1:]), segmentation=s.clone())["segmentation"] for s in labels]
    if isinstance(out[0], torch.Tensor):
        return torch.stack(out)
    return [torch.stack([o[k] for o in out]) for k in range(len(out[0]))]


def _default_loss(tr):
    """nnU-Net's own Dice+CE with its deep-supervision weights, built by nnU-Net's trainer (not by medloss)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    return nnUNetTrainer._build_loss(tr)


def _random_outputs(target, channels=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape[0], channels, *t.shape[2:], generator=g).requires_grad_() for t in target]


# ---- Skeleton Recall: the data pipeline ---------------------------------------------------------------------------
def test_skeleton_channel_sits_before_deep_supervision_downsampling(make_trainer):
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

    tr = make_trainer(RECALL)
    scales = tr._get_deep_supervision_scales()
    rotation, dummy_2d, _, mirror_axes = tr.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    pipelines = [tr.get_training_transforms(tr.configuration_manager.patch_size, rotation, scales, mirror_axes,
                                            dummy_2d), tr.get_validation_transforms(scales)]
    for pipeline in pipelines:
        kinds = [type(t) for t in pipeline.transforms]
        assert kinds.count(skeleton.SkeletonChannelTransform) == 1 and kinds[-1] is DownsampleSegForDSTransform
        assert kinds[-2] is skeleton.SkeletonChannelTransform  # after all augmentation, before the downsampling
        assert pipeline.transforms[-2].tube_radius == 2
    # without deep supervision it comes last
    assert isinstance(tr.get_validation_transforms(None).transforms[-1], skeleton.SkeletonChannelTransform)


def test_skeleton_is_downsampled_with_the_label_at_every_scale(make_trainer):
    """Each deep-supervision scale carries the label and its own skeleton, both downsampled by nnU-Net."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    tr = make_trainer(RECALL)
    scales = tr._get_deep_supervision_scales()
    labels = _labels()
    target = _through(tr.get_validation_transforms(scales), labels)
    plain = nnUNetTrainer.get_validation_transforms(scales)  # nnU-Net's own pipeline: the oracle of the scales
    expected_labels = _through(plain, labels)
    tubes = [torch.from_numpy(skeletonize_label(s.numpy())) for s in labels]
    expected_skeletons = _through(plain, tubes)
    assert len(target) == len(scales) > 2
    for k, t in enumerate(target):
        assert t.shape[1] == 2 and t.dtype == torch.int16
        assert torch.equal(t[:, :1], expected_labels[k])
        assert torch.equal(t[:, 1:], expected_skeletons[k])
        assert (t[:, 1] > 0).any()  # every scale has a skeleton to recall
    full = target[0]
    on_tube = full[:, 1] > 0
    assert torch.equal(full[:, 1][on_tube], full[:, 0][on_tube])  # tube voxels carry the class under them
    assert 0 < on_tube.sum() < (full[:, 0] > 0).sum()


def test_recall_term_at_every_scale(make_trainer):
    """total = nnU-Net's Dice+CE + weight x sum_k w_k SkeletonRecall(out_k, skeleton_k), each scale its own skeleton."""
    tr = make_trainer(RECALL)
    tr.initialize()
    batch = {"data": None, "keys": ["a", "b"],
             "target": _through(tr.get_validation_transforms(tr._get_deep_supervision_scales()), _labels())}
    inputs = tr.medloss_batch_inputs(batch)
    tr.medloss_inputs.update(**inputs)
    target = tr.medloss_step_batch(batch)["target"]
    assert all(t.shape[1] == 1 for t in target) and len(inputs["skeletons"]) == len(target)
    out = _random_outputs(target)
    total = tr.loss(out, target)
    base_loss = _default_loss(tr)
    base = base_loss(out, target)
    recall = SkeletonRecallLoss(include_background=False, to_onehot_y=True, softmax=True,
                                batch=tr.configuration_manager.batch_dice)
    terms = [recall(o, t.long(), skeleton=s.long()) for o, t, s in zip(out, target, inputs["skeletons"])]
    weights, w = base_loss.weight_factors, tr.medloss["weight"]
    assert w == 1.0  # the original implementation's weight
    expected = base + w * sum(wk * term for wk, term in zip(weights, terms) if wk)
    assert float(total.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    for k, wk in enumerate(weights):
        if not wk:
            continue
        assert 0.1 < float(terms[k].detach()) < 0.9  # random logits recall part of the skeleton at this scale
        # the term's gradient reaches this scale's logits: total - base has exactly w * w_k * d term_k
        grad = torch.autograd.grad(total - base, out[k], retain_graph=True)[0]
        grad_term = torch.autograd.grad(w * wk * terms[k], out[k], retain_graph=True)[0]
        assert grad.abs().sum() > 0
        torch.testing.assert_close(grad, grad_term, rtol=1e-4, atol=1e-8)
        # gradient only on the tube: nothing off this scale's skeleton
        off = inputs["skeletons"][k][:, 0] == 0
        assert off.any() and float(grad_term.movedim(1, -1)[off].abs().max()) == 0.0


def test_recall_term_zeroes_the_skeleton_where_the_label_is_ignored(make_trainer, nnunet_dataset):
    """As the original implementation: the skeleton runs through ignored voxels, then is zeroed there."""
    tr = make_trainer(RECALL, dataset_json=_dataset_json(nnunet_dataset, **IGNORE))
    tr.enable_deep_supervision = False
    tr.initialize()
    label = _labels(1)[0]
    label[:, :10] = 2  # the first 10 slices are ignored
    batch = {"data": None, "keys": ["a"], "target": _through(tr.get_validation_transforms(None), [label])}
    assert (batch["target"][:, 1] == 2).any()  # ignored voxels are skeletonised as foreground ...
    tr.medloss_inputs.update(**tr.medloss_batch_inputs(batch))
    target = tr.medloss_step_batch(batch)["target"]
    logits = torch.randn(1, 2, 32, 32, 32)
    other = logits.clone()
    other[:, :, :10] = torch.randn(1, 2, 10, 32, 32)  # different predictions where the label is ignored
    # ... and zeroed there (class 2 would not even fit the two output channels): ignored voxels change nothing
    assert float(tr.loss(logits, target)) == pytest.approx(float(tr.loss(other, target)), rel=1e-6)
    changed = logits.clone()
    changed[:, :, 10:] = torch.randn(1, 2, 22, 32, 32)
    assert float(tr.loss(changed, target)) != pytest.approx(float(tr.loss(logits, target)), rel=1e-6)


def test_recall_term_needs_a_matching_skeleton():
    term = skeleton.SkeletonRecallTerm(SkeletonRecallLoss(to_onehot_y=True, softmax=True))
    logits, target = torch.randn(2, 2, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="no skeleton matches"):
        term(logits, target, skeletons=[torch.zeros(2, 1, 4, 4, dtype=torch.long)])


def test_missing_skeleton_channel_is_a_clear_error(make_trainer):
    tr = make_trainer(RECALL)
    with pytest.raises(ValueError, match="2 channels"):
        tr.medloss_batch_inputs({"target": [torch.zeros(2, 1, 8, 8, 8)]})


def test_skeleton_recall_trains_on_real_batches(started):
    """nnU-Net's own data loader delivers the skeleton at every scale; train and validation steps run."""
    with started(RECALL) as tr:
        batch = next(tr.dataloader_train)
        assert isinstance(batch["target"], list) and all(t.shape[1] == 2 for t in batch["target"])
        assert all((t[:, 1] > 0).any() for t in batch["target"][:-1])
        losses = [float(tr.train_step(batch)["loss"]) for _ in range(6)]
        assert np.all(np.isfinite(losses)) and min(losses[-2:]) < losses[0], losses
        assert tr.medloss_loss.calls == 6
        with torch.no_grad():
            val = tr.validation_step(next(tr.dataloader_val))  # nnU-Net's online Dice sees the label channel alone
        assert np.isfinite(val["loss"]) and val["tp_hard"].shape == (1,)


def test_skeleton_transform_pickles_for_augmentation_workers():
    t = pickle.loads(pickle.dumps(skeleton.SkeletonChannelTransform(tube_radius=1)))
    assert isinstance(t, skeleton.SkeletonChannelTransform) and t.tube_radius == 1


# ---- clDice -------------------------------------------------------------------------------------------------------
def _cldice_case(make_trainer, **kwargs):
    tr = make_trainer(CLDICE, **kwargs)
    tr.initialize()
    return tr, _through(tr.get_validation_transforms(tr._get_deep_supervision_scales()), _labels())


def test_cldice_term_at_every_scale(make_trainer):
    """total = nnU-Net's Dice+CE + weight x sum_k w_k (1 - clDice(out_k, target_k)), foreground classes only."""
    tr, target = _cldice_case(make_trainer)
    out = _random_outputs(target)
    total = tr.loss(out, target)
    base_loss = _default_loss(tr)
    cldice = ClDiceLoss(iter_=3, smooth_nr=1.0, smooth_dr=1.0, include_background=False, to_onehot_y=True,
                        softmax=True, batch=tr.configuration_manager.batch_dice)
    terms = [cldice(o, t.long()) for o, t in zip(out, target)]
    weights = base_loss.weight_factors
    expected = base_loss(out, target) + sum(wk * term for wk, term in zip(weights, terms) if wk)
    assert float(total.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    for k, wk in enumerate(weights):
        if wk:
            assert float(terms[k].detach()) > 1e-3
            assert torch.autograd.grad(total, out[k], retain_graph=True)[0].abs().sum() > 0


def test_cldice_on_region_labels_uses_sigmoid(make_trainer, nnunet_dataset):
    tr = make_trainer(CLDICE, dataset_json=_dataset_json(nnunet_dataset, **REGIONS))
    tr.enable_deep_supervision = False
    tr.initialize()
    label = _labels(2)
    target = torch.cat([torch.stack(label) > 0, torch.zeros(2, 1, 32, 32, 32, dtype=torch.bool)], 1)  # 2 regions
    logits = torch.randn(2, 2, 32, 32, 32)
    cldice = ClDiceLoss(include_background=True, sigmoid=True, batch=tr.configuration_manager.batch_dice)
    expected = _default_loss(tr)(logits, target) + cldice(logits, target.float())
    assert float(tr.loss(logits, target)) == pytest.approx(float(expected), rel=1e-6)


# ---- label set-ups, hyperparameters, names -------------------------------------------------------------------------
def test_region_labels_are_refused_by_skeleton_recall(make_trainer, nnunet_dataset):
    with pytest.raises(NotImplementedError, match=f"{RECALL} does not support region-based labels"):
        make_trainer(RECALL, dataset_json=_dataset_json(nnunet_dataset, **REGIONS))


def test_ignore_label_is_refused_by_cldice(make_trainer, nnunet_dataset):
    with pytest.raises(NotImplementedError, match=f"{CLDICE} does not support nnU-Net's ignore label"):
        make_trainer(CLDICE, dataset_json=_dataset_json(nnunet_dataset, **IGNORE))


@pytest.mark.parametrize("name, env, value", [(RECALL, "MEDLOSS_TUBE_RADIUS", "-1"),
                                              (CLDICE, "MEDLOSS_ITERATIONS", "-2"),
                                              (CLDICE, "MEDLOSS_SMOOTH", "-1.0")])
def test_bad_hyperparameters_are_refused(name, env, value, make_trainer, monkeypatch):
    monkeypatch.setenv(env, value)
    with pytest.raises(ValueError, match=env[len("MEDLOSS_"):].lower()):
        make_trainer(name)


def test_tube_radius_reaches_the_pipeline(make_trainer, monkeypatch):
    monkeypatch.setenv("MEDLOSS_TUBE_RADIUS", "0")
    tr = make_trainer(RECALL)
    assert tr.get_validation_transforms(None).transforms[-1].tube_radius == 0


def test_trainers_are_registered_with_epoch_variants():
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    for name in (CLDICE, RECALL):
        assert name in nnunet.METHOD_TRAINERS
        cls = getattr(nnunet, name)
        assert cls.__module__ == "medloss.nnunet.skeleton"
        variant = getattr(nnunet, nnunet.epoch_variant_name(name, 100))
        assert issubclass(variant, cls) and variant.trainer_overrides["num_epochs"] == 100
        assert pickle.loads(pickle.dumps(variant)) is variant
    out = subprocess.run([sys.executable, "-m", "medloss", "nnunet", "trainers"], capture_output=True, text=True,
                         check=True)
    listed = out.stdout.split()
    assert CLDICE in listed and RECALL in listed and f"{RECALL}_5epochs" in listed
    env_before = os.environ.get("nnUNet_extTrainer")
    try:
        nnunet.register_ext_trainers()
        assert recursive_find_trainer_class_by_name(f"{CLDICE}_1epoch") is getattr(nnunet, f"{CLDICE}_1epoch")
    finally:
        if env_before is None:
            os.environ.pop("nnUNet_extTrainer", None)
        else:
            os.environ["nnUNet_extTrainer"] = env_before


# ---- a tiny 2D training run of each trainer ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset_2d():
    """Dataset512: 5 2D vessel images of 64x64 preprocessed for nnU-Net's '2d', with a narrow '2d_tiny' config."""
    from medloss.data import write_synthetic_dataset
    from medloss.nnunet.datasets import add_plans_configuration

    raw = Path(os.environ["nnUNet_raw"]) / "Dataset512_Vessels2D"
    write_synthetic_dataset(raw, n_cases=5, size=64, spatial_dims=2, case_prefix="vessel_",
                            phantom=dict(n_trees=2, max_depth=2, root_radius=(1.5, 3.0)))
    env = dict(os.environ, nnUNet_n_proc_DA="1")  # the planner calls torch.set_num_threads(nnUNet_n_proc_DA)
    subprocess.run([str(Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"), "-d", "512", "-c", "2d",
                    "-np", "1", "-npfp", "1"], check=True, env=env, capture_output=True)
    pre = Path(os.environ["nnUNet_preprocessed"]) / raw.name
    add_plans_configuration(str(pre / "nnUNetPlans.json"), "2d_tiny", inherits_from="2d", width=4,
                            medloss={"num_epochs": 1, "num_iterations_per_epoch": 2, "num_val_iterations_per_epoch": 1})
    return pre


@pytest.mark.slow
@pytest.mark.parametrize("name", [CLDICE, RECALL])
def test_tiny_2d_training_run(name, dataset_2d):
    torch.manual_seed(0)
    np.random.seed(0)  # nnU-Net's data loader draws cases and crops from numpy's global RNG
    plans = json.loads((dataset_2d / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False
    tr = getattr(nnunet, name)(plans=plans, configuration="2d_tiny", fold=0,
                               dataset_json=json.loads((dataset_2d / "dataset.json").read_text()),
                               device=torch.device("cpu"))
    tr.run_training()
    assert (Path(tr.output_folder) / "checkpoint_final.pth").exists()
    train_losses = tr.logger.get_value("train_losses", step=None)
    assert len(train_losses) == 1 and np.isfinite(train_losses[0])
    log = Path(tr.log_file).read_text()
    assert f"medloss {name}:" in log and "ms per loss call (2 calls)" in log
