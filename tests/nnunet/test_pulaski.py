"""PULASki trainer: multi-rater preprocessing, identical crops, probabilistic wrapper, steps, inference (CPU)."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

pul = pytest.importorskip("medloss.nnunet.pulaski")

N_RATERS = 3


def _raters_of(label):
    """Rater 0 = the reference, rater 1 = one-voxel dilation, rater 2 = one-voxel erosion."""
    from scipy.ndimage import binary_dilation, binary_erosion

    return [label, binary_dilation(label > 0).astype(label.dtype), binary_erosion(label > 0).astype(label.dtype)]


@pytest.fixture(scope="module")
def rater_dataset(nnunet_dataset):
    """Dataset511 with 3 raters in ratersTr/ (medloss's one multi-rater layout), preprocessed into '3d_tiny_raters'."""
    import nibabel as nib

    from medloss.data import rater_path

    raw, pre = nnunet_dataset["raw"], nnunet_dataset["preprocessed"]
    plans_file = pre / "nnUNetPlans.json"
    plans_before = plans_file.read_text()
    (raw / "ratersTr").mkdir()
    for path in sorted((raw / "labelsTr").glob("*.nii.gz")):
        img = nib.load(path)
        case = path.name[: -len(".nii.gz")]
        for k, r in enumerate(_raters_of(np.asarray(img.dataobj))):
            nib.save(nib.Nifti1Image(r.astype(np.uint8), img.affine), rater_path(raw, case, k))
    # the command line (medloss nnunet raters-preprocess) runs preprocess_raters
    from medloss.cli import main

    assert main(["nnunet", "raters-preprocess", "-d", str(nnunet_dataset["id"]), "-c", "3d_tiny"]) == 0
    yield {**nnunet_dataset, "configuration": "3d_tiny_raters"}
    shutil.rmtree(raw / "ratersTr")
    shutil.rmtree(pre / "nnUNetPlans_3d_tiny_raters", ignore_errors=True)
    plans_file.write_text(plans_before)


NAME = "nnUNetTrainerMedlossPULASki"


def test_preprocessed_raters_are_stacked_with_the_reference(rater_dataset):
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    pre = rater_dataset["preprocessed"]
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    entry = plans["configurations"]["3d_tiny_raters"]
    assert entry["inherits_from"] == "3d_tiny" and entry["medloss"]["num_raters"] == N_RATERS
    assert entry["data_identifier"] == "nnUNetPlans_3d_tiny_raters"
    std = nnUNetDatasetBlosc2(str(pre / "nnUNetPlans_3d_fullres"))
    mr = nnUNetDatasetBlosc2(str(pre / "nnUNetPlans_3d_tiny_raters"))
    data0, seg0, _, _ = std.load_case("vessel_001")
    data, seg, _, _ = mr.load_case("vessel_001")
    seg, seg0 = np.asarray(seg), np.asarray(seg0)
    assert seg.shape == (1 + N_RATERS,) + seg0.shape[1:]
    np.testing.assert_array_equal(np.asarray(data), np.asarray(data0))
    np.testing.assert_array_equal(seg[0], seg0[0])
    np.testing.assert_array_equal(seg[1], seg0[0])  # rater 0 is a copy of the reference
    assert (seg[2] >= seg[0]).all() and (seg[3] <= np.maximum(seg[0], 0)).all() and (seg[2] != seg[0]).any()


def test_trains_on_three_raters_with_identical_crops(rater_dataset, started):
    with started(NAME, configuration=rater_dataset["configuration"]) as tr:
        batch = next(tr.dataloader_train)
        full = batch["target"][0]
        assert full.shape[1] == 1 + N_RATERS and batch["target"][1].shape[1] == 1 + N_RATERS
        # augmentation moved all channels together: rater 0 (a copy) still equals the reference everywhere,
        # the dilated rater still contains it and the eroded one is contained in it
        assert torch.equal(full[:, 1], full[:, 0])
        assert (full[:, 2] >= full[:, 0]).all() and (full[:, 3] <= full[:, 0]).all()
        # the base trainer's hooks: the raters to the loss, the reference alone to nnU-Net's step
        assert torch.equal(tr.medloss_batch_inputs(batch)["raters"], full[:, 1:])
        step = tr.medloss_step_batch(batch)
        assert all(torch.equal(t, b[:, :1]) for t, b in zip(step["target"], batch["target"]))
        losses = [float(tr.train_step(batch)["loss"]) for _ in range(6)]
        assert np.all(np.isfinite(losses)) and min(losses[-2:]) < losses[0], losses
        assert tr.medloss_loss.calls == 6
        net = pul.unwrap_network(tr.network)
        assert net.posterior_net.to_params.weight.grad is not None  # the KL / posterior path is trained
        with torch.no_grad():
            val = tr.validation_step(next(tr.dataloader_val))
        assert np.isfinite(val["loss"]) and val["tp_hard"].shape == (1,)


def test_objective_matches_pulaski_loss_and_ds_terms(rater_dataset, started):
    """Loss = PULASki(samples from the posterior, raters) + ds_weight * nnU-Net's Dice+CE on the lower heads."""
    from medloss.losses import PULASkiLoss

    with started(NAME, seed=1, configuration=rater_dataset["configuration"]) as tr:
        raw_batch = next(tr.dataloader_train)
        raters = tr.medloss_batch_inputs(raw_batch)["raters"]
        batch = tr.medloss_step_batch(raw_batch)
        tr.medloss_inputs.update(raters=raters)
        obj = tr.loss
        net = pul.unwrap_network(tr.network)
        with torch.no_grad():
            out = tr.network(batch["data"])
            torch.manual_seed(5)
            got = obj(out, batch["target"])
            out = tr.network(batch["data"])  # refills the cache
            torch.manual_seed(5)
            ref = PULASkiLoss(include_background=False, to_onehot_y=True, softmax=True, kl_weight=tr.kl_weight,
                              per_voxel=True)(pul.CachedFeatureSampler(net), batch["data"], raters.unsqueeze(2))
            w = obj.base.weight_factors
            aux = sum(w[k] * obj.base.loss(out[k], batch["target"][k]) for k in range(1, len(out)) if w[k])
        # the original implementation's KL balance in per-voxel units (energy distance: 1/sqrt(V))
        assert tr.kl_weight == pytest.approx(1 / np.sqrt(32 ** 3))
        assert float(ref) > 1e-4 and float(got) == pytest.approx(float(ref + aux), rel=1e-5)

        # warm-up: nnU-Net's Dice+CE on every head (prior mean at full resolution); posterior tied in with weight 0
        obj.enabled = False
        tr.network.zero_grad()
        out = tr.network(batch["data"])
        warm = obj(out, batch["target"])
        assert float(warm.detach()) == pytest.approx(float(obj.base(out, batch["target"]).detach()), rel=1e-6)
        warm.backward()
        grads = [p.grad for p in net.posterior_net.parameters()]
        assert all(g is not None and not g.any() for g in grads)


@pytest.mark.parametrize("distance", ["energy", "sinkhorn"])
def test_single_rater_on_a_plain_configuration(monkeypatch, distance, started):
    monkeypatch.setenv("MEDLOSS_DISTANCE", distance)
    with started(NAME) as tr:
        # the original implementation's KL balance in per-voxel units: 1/sqrt(V) (energy), 1/V (squared OT costs)
        assert tr.kl_weight == pytest.approx(32.0 ** -3 if distance == "sinkhorn" else 32.0 ** -1.5)
        batch = next(tr.dataloader_train)
        assert batch["target"][0].shape[1] == 1
        losses = [float(tr.train_step(batch)["loss"]) for _ in range(2)]
        assert np.all(np.isfinite(losses))
        assert torch.equal(tr.medloss_batch_inputs(batch)["raters"], batch["target"][0])  # R = 1: the reference


def test_wrong_number_of_raters_is_an_error(rater_dataset, monkeypatch, started):
    monkeypatch.setenv("MEDLOSS_NUM_RATERS", "2")
    with started(NAME, configuration=rater_dataset["configuration"]) as tr:
        with pytest.raises(ValueError, match="num_raters=2"):
            tr.train_step(next(tr.dataloader_train))


def _predictor(tr, state):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    net = pul.nnUNetTrainerMedlossPULASki.build_network_architecture(
        tr.plans_manager, tr.configuration_manager, tr.num_input_channels,
        tr.label_manager.num_segmentation_heads, enable_deep_supervision=False)
    net.load_state_dict(state)  # strict: the staticmethod rebuilds exactly the trained architecture
    # no Gaussian weighting: nnU-Net accumulates tiles in fp16, where its tiny border weights round the logits
    pred = nnUNetPredictor(tile_step_size=0.5, use_gaussian=False, use_mirroring=False,
                           perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                           allow_tqdm=False)
    pred.manual_initialization(net, tr.plans_manager, tr.configuration_manager, [state], tr.dataset_json,
                               type(tr).__name__, None)
    return pred, net


def test_inference_prior_mean_and_sample_average(monkeypatch, make_trainer):
    torch.manual_seed(0)
    np.random.seed(0)  # nnU-Net's data loader draws cases and crops from numpy's global RNG
    tr = make_trainer(NAME)
    tr.initialize()
    # make the latent matter (the untrained head starts at zero)
    net = pul.unwrap_network(tr.network)
    torch.nn.init.normal_(net.head_rest[-1].weight, std=0.5)
    torch.nn.init.normal_(net.prior_net.to_params.weight, std=0.5)
    state = net.state_dict()
    image = torch.randn(1, 32, 32, 32)
    pred, inf_net = _predictor(tr, state)
    logits = pred.predict_sliding_window_return_logits(image)
    assert logits.shape == (2, 32, 32, 32) and torch.isfinite(logits).all()
    with torch.no_grad():
        inf_net.eval()
        direct = inf_net(image[None])
        mean_z = inf_net.prior_net(image[None]).base_dist.loc[:, None]
        by_hand = inf_net.logits(_features(inf_net, image[None]), mean_z)[:, 0]
    assert torch.allclose(direct, by_hand, atol=1e-5)
    assert torch.allclose(logits.float(), direct[0], atol=1e-2, rtol=1e-3)  # one fp16 tile covers the image
    assert torch.equal(pred.predict_sliding_window_return_logits(image), logits)  # prior mean: deterministic

    monkeypatch.setenv("MEDLOSS_PREDICTION", "samples")
    monkeypatch.setenv("MEDLOSS_NUM_PREDICTION_SAMPLES", "4")
    pred_s, net_s = _predictor(tr, state)
    assert net_s.prediction == "samples" and net_s.num_prediction_samples == 4
    torch.manual_seed(3)
    avg = pred_s.predict_sliding_window_return_logits(image)
    assert avg.shape == (2, 32, 32, 32)
    assert torch.allclose(avg.float().exp().sum(0), torch.ones(32, 32, 32), atol=1e-2)  # log of mean probabilities
    torch.manual_seed(3)
    with torch.no_grad():
        net_s.eval()
        feats = _features(net_s, image[None])
        prior = net_s.prior_net(image[None])
        z = prior.base_dist.loc[:, None] + prior.base_dist.scale[:, None] * torch.randn(1, 4, net_s.latent_dim)
        expected = torch.softmax(net_s.logits(feats, z), 2).mean(1)[0]
    assert torch.allclose(avg.float().exp(), expected, atol=1e-2)
    assert (avg.float().exp() - torch.softmax(direct[0], 0)).abs().max() > 0.05  # not the prior-mean prediction


def _features(net, image):
    caught = []
    handle = net.net.decoder.seg_layers[-1].register_forward_pre_hook(lambda m, i: caught.append(i[0]))
    net.net(image)
    handle.remove()
    return caught[0]


def test_untrained_wrapper_predicts_like_plain_nnunet(make_trainer):
    tr = make_trainer(NAME)
    tr.initialize()
    net = pul.unwrap_network(tr.network).eval()
    image = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        out = net(image)
        plain = net.net(image)
    assert isinstance(out, list) and len(out) == len(plain)
    assert torch.allclose(out[0], plain[0], atol=1e-6) and all(torch.equal(a, b) for a, b in zip(out[1:], plain[1:]))


def test_missing_rater_file_is_named(rater_dataset):
    from medloss.data import rater_path

    path = rater_path(rater_dataset["raw"], "vessel_002", 1)
    content = path.read_bytes()
    path.unlink()
    try:
        with pytest.raises(ValueError, match="vessel_002"):
            pul.preprocess_raters(rater_dataset["id"], "3d_tiny", output_configuration="3d_tiny_broken")
    finally:
        path.write_bytes(content)
    pre = rater_dataset["preprocessed"]
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    assert "3d_tiny_broken" not in plans["configurations"]
    assert not (pre / "nnUNetPlans_3d_tiny_broken").exists() and not list(pre.glob(".*"))


def test_regions_ignore_label_and_bad_distance_are_refused(nnunet_dataset, monkeypatch, make_trainer):
    monkeypatch.setenv("MEDLOSS_DISTANCE", "wasserstein")
    with pytest.raises(ValueError, match="energy"):
        make_trainer(NAME)
    monkeypatch.delenv("MEDLOSS_DISTANCE")
    dataset_json = json.loads((nnunet_dataset["preprocessed"] / "dataset.json").read_text())
    dataset_json["labels"] = {"background": 0, "vessel": [1], "ignore": 2}
    with pytest.raises(NotImplementedError, match="nnUNetTrainerMedlossPULASki does not support .*ignore label"):
        make_trainer(NAME, dataset_json=dataset_json)
    dataset_json.update(labels={"background": 0, "vessel": [1, 2], "thin": 2}, regions_class_order=[1, 2])
    with pytest.raises(NotImplementedError, match="(?s)region-based labels.*drop the raters"):
        make_trainer(NAME, dataset_json=dataset_json)


def test_epoch_variant_pickles():
    import pickle

    cls = pul.nnUNetTrainerMedlossPULASki_50epochs
    assert pickle.loads(pickle.dumps(cls)) is cls and cls.trainer_overrides["num_epochs"] == 50


@pytest.mark.slow
def test_train_validate_and_predict_from_results_folder(rater_dataset, tmp_path, monkeypatch, make_trainer):
    """One epoch on the rater configuration, nnU-Net's final validation, then nnUNetPredictor from the results
    folder, which finds the trainer by name (nnUNet_extTrainer) and rebuilds the network with the staticmethod."""
    import nibabel as nib
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.manual_seed(0)
    np.random.seed(0)  # nnU-Net's data loader draws cases and crops from numpy's global RNG
    tr = make_trainer(NAME, rater_dataset["configuration"])
    tr.run_training()
    tr.perform_actual_validation(False)
    summary = json.loads(open(os.path.join(tr.output_folder, "validation", "summary.json")).read())
    assert summary["metric_per_case"]
    for case in summary["metric_per_case"]:  # scored against labelsTr (the reference), not against a rater
        name = os.path.basename(case["prediction_file"])
        reference = nib.load(rater_dataset["raw"] / "labelsTr" / name).dataobj
        pred_seg = np.asarray(nib.load(case["prediction_file"]).dataobj) == 1
        ref_seg = np.asarray(reference) == 1
        total = pred_seg.sum() + ref_seg.sum()
        dice = 2.0 * (pred_seg & ref_seg).sum() / total if total else float("nan")
        assert case["metrics"]["1"]["Dice"] == pytest.approx(dice, nan_ok=True)

    shim = tmp_path / "ext"
    shim.mkdir()
    (shim / "medloss_pulaski_shim.py").write_text("from medloss.nnunet.pulaski import *  # noqa\n")
    monkeypatch.setenv("nnUNet_extTrainer", str(shim))
    pred = nnUNetPredictor(tile_step_size=0.5, use_mirroring=False, perform_everything_on_device=False,
                           device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    pred.initialize_from_trained_model_folder(tr.output_folder_base, use_folds=(0,),
                                              checkpoint_name="checkpoint_final.pth")
    assert isinstance(pred.network, pul.ProbabilisticNnUNet)
    image = rater_dataset["raw"] / "imagesTs" / "vesselts_000_0000.nii.gz"
    out = tmp_path / "pred"
    pred.predict_from_files([[str(image)]], str(out), save_probabilities=False, overwrite=True,
                            num_processes_preprocessing=1, num_processes_segmentation_export=1)
    seg = np.asarray(nib.load(out / "vesselts_000.nii.gz").dataobj)
    assert seg.shape == nib.load(image).shape and set(np.unique(seg).tolist()) <= {0, 1}
