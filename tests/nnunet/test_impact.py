"""IMPACT trainer: required extractor, full-resolution term, training steps with the tiny 3D extractor (CPU)."""

from pathlib import Path

import numpy as np
import pytest
import torch

imp = pytest.importorskip("medloss.nnunet.impact")

EXTRACTOR = Path(__file__).resolve().parents[1] / "data" / "fair_impact" / "tiny3d_impact.pt"


NAME = "nnUNetTrainerMedlossIMPACT"


def test_trains_with_tiny_extractor(make_trainer, monkeypatch):
    monkeypatch.setenv("MEDLOSS_MODEL", str(EXTRACTOR))
    monkeypatch.setenv("MEDLOSS_LAYER_WEIGHTS", "[1.0, 0.5]")
    monkeypatch.setenv("MEDLOSS_WEIGHT", "1.0")
    torch.manual_seed(0)
    np.random.seed(0)  # nnU-Net's data loader draws cases and crops from numpy's global RNG
    tr = make_trainer(NAME)
    assert tr.impact_model_path == str(EXTRACTOR)
    tr.initialize()
    tr.on_train_start()
    try:
        batch = next(tr.dataloader_train)
        losses = [float(tr.train_step(batch)["loss"]) for _ in range(6)]
        assert np.all(np.isfinite(losses)) and min(losses[-2:]) < losses[0], losses
        term = tr.medloss_loss
        assert term.full_resolution_only and term.calls == 6  # once per step, full resolution only

        # the added term is IMPACT(softmax foreground, one-hot foreground) on output[0] only, with fixed stats
        from medloss.losses import IMPACTLoss

        tr.network.eval()
        with torch.no_grad():
            out = tr.network(batch["data"])
            t0 = batch["target"][0]
            ref = IMPACTLoss(str(EXTRACTOR), weights=[1.0, 0.5], reduction="none")
            fg = torch.softmax(out[0], 1)[:, 1:]
            manual = ref(fg, (t0 == 1).float(), stats=[0.0, 1.0, 0.5, 0.5]).mean()
            assert float(term.term(out[0], t0)) == pytest.approx(float(manual), rel=1e-5)
            # and the trainer's loss is nnU-Net's Dice+CE + weight (1.0) x that term
            from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

            base = nnUNetTrainer._build_loss(tr)(out, batch["target"])
            assert float(manual) > 1e-4
            assert float(tr.loss(out, batch["target"])) == pytest.approx(float(base + manual), rel=1e-5)
            # a perfect prediction scores 0, a wrong one does not
            perfect = torch.cat([(t0 == 0).float(), (t0 == 1).float()], 1) * 40 - 20
            assert float(term.term(perfect, t0)) < 1e-6 < float(term.term(-perfect, t0))
            val = tr.validation_step(next(tr.dataloader_val))
        assert np.isfinite(val["loss"])
    finally:
        tr.on_train_end()


def test_model_is_required(make_trainer, monkeypatch):
    monkeypatch.delenv("MEDLOSS_MODEL", raising=False)
    with pytest.raises(ValueError, match="MEDLOSS_MODEL"):
        make_trainer(NAME)


def test_missing_model_file(make_trainer, monkeypatch, tmp_path):
    monkeypatch.setenv("MEDLOSS_MODEL", str(tmp_path / "nope.pt"))
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        make_trainer(NAME)


def test_wrong_number_of_layer_weights(make_trainer, monkeypatch):
    monkeypatch.setenv("MEDLOSS_MODEL", str(EXTRACTOR))
    monkeypatch.setenv("MEDLOSS_LAYER_WEIGHTS", "[1.0, 1.0, 1.0]")
    tr = make_trainer(NAME)
    with pytest.raises(ValueError, match="feature map"):
        tr.initialize()


def test_region_term_uses_sigmoid_channels():
    from medloss.losses import IMPACTLoss
    from medloss.nnunet.loss_wiring import activation_kwargs

    impact = IMPACTLoss(str(EXTRACTOR), weights=[1.0], reduction="none")
    term = imp.IMPACTSegmentationTerm(impact, **activation_kwargs(True))
    logits = torch.randn(2, 2, 16, 16, 16)
    target = torch.rand(2, 2, 16, 16, 16) > 0.5
    got = term(logits, target)
    manual = impact(torch.sigmoid(logits).reshape(4, 1, 16, 16, 16), target.float().reshape(4, 1, 16, 16, 16),
                    stats=[0.0, 1.0, 0.5, 0.5]).mean()
    assert float(got) == pytest.approx(float(manual), rel=1e-6)


def test_2d_extractor_sweeps_the_patch():
    from medloss.losses import IMPACTLoss

    impact = IMPACTLoss(str(EXTRACTOR.with_name("tiny2d_impact.pt")), weights=[1.0, 1.0], in_channels=3,
                        spatial_dims=2, probe_shape=(16, 16), reduction="none")
    term = imp.IMPACTSegmentationTerm(impact)  # label dataset: softmax, one-hot target without background
    target = (torch.rand(2, 1, 8, 16, 16) > 0.7).to(torch.int16)
    perfect = torch.cat([(target == 0).float(), (target == 1).float()], 1) * 40 - 20
    assert float(term(perfect, target)) < 1e-6
    logits = torch.randn(2, 2, 8, 16, 16, requires_grad=True)
    value = term(logits, target)
    value.backward()
    assert torch.isfinite(value) and value > 0 and logits.grad.abs().sum() > 0
