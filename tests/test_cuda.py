"""Every public loss, and every transform with a torch path, on a device: the value on the device is the CPU value,
the gradient lies on the input's device and equals the CPU gradient, and tensors a loss keeps (e.g.
``FairErrorBoundScalingLoss.last_group_weights``) follow the input.

One helper per kind (:func:`_check_loss_device`, :func:`_check_transform_device`) runs with ``"cpu"`` in the default
run, so that every row (constructor, inputs, forward and backward) is exercised on this machine, and with ``"cuda"``
in the tests marked ``cuda`` (``python -m pytest -m cuda``, or ``bash benchmarks/gpu_check.sh`` on a GPU machine).
The losses are NOT moved with ``.to(device)``: MONAI engines and nnU-Net call a loss built on the CPU with CUDA
tensors, so its buffers must follow the input by themselves.
"""

import copy
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

import medloss.losses as losses
from medloss.networks import ProbabilisticUNet
from medloss.transforms import LabelMIP, SAUNADecode, SAUNATransform, SkeletonizeLabel, sauna_to_label

EXTRACTOR = Path(__file__).resolve().parent / "data" / "fair_impact" / "tiny3d_impact.pt"
SPATIAL = (10, 9, 8)


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _logits(channels=3, spatial=SPATIAL, batch=2, seed=0):
    return torch.randn((batch, channels) + spatial, generator=_generator(seed), dtype=torch.float64)


def _labels(channels=3, spatial=SPATIAL, batch=2, seed=1):
    """Class maps of a few thick bars (so that skeletons and Betti numbers are not empty)."""
    labels = torch.randint(0, channels, (batch, 1) + spatial, generator=_generator(seed))
    labels[..., 2:-2, 3:5] = 1
    return labels


def _signed(channels=3, spatial=SPATIAL, batch=2, seed=2):
    return torch.tanh(torch.randn((batch, channels) + spatial, generator=_generator(seed), dtype=torch.float64))


def _sets(seed=3):
    """``(B, N, C, *spatial)`` samples in ``(0, 1)`` and ``(B, R, C, *spatial)`` binary rater masks."""
    gen = _generator(seed)
    samples = torch.rand((2, 4, 1, 6, 5), generator=gen, dtype=torch.float64)
    raters = (torch.rand((2, 3, 1, 6, 5), generator=gen) > 0.5).double()
    return samples, raters


def _pulaski():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the model's initial weights (the copy on the device has the same ones)
        model = ProbabilisticUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(4, 8), strides=(2,),
                                  latent_dim=2).double()
    image = torch.randn((2, 1, 16, 16), generator=_generator(4), dtype=torch.float64)
    raters = (torch.rand((2, 3, 1, 16, 16), generator=_generator(5)) > 0.5).double()
    # seeded CPU generators for the rater draw and the latent noise: the same draws on every device
    loss = losses.PULASkiLoss(sigmoid=True, seed=0, model_generator=_generator(6))
    return loss, (model, image, raters), 1


def _impact(loss, n_images):
    """The TorchScript extractor in float64 (kept when it is loaded again on the input's device), so that the
    comparison is not one of float32 convolutions (TF32 on recent GPUs)."""
    images = tuple(torch.rand((2, 1, 8, 8, 8), generator=_generator(7 + i), dtype=torch.float64)
                   for i in range(n_images))
    return loss.double(), images, 0


def _batch_inputs():
    loss = losses.BatchInputsLoss(losses.FairErrorBoundScalingLoss(softmax=True, to_onehot_y=True, num_groups=2),
                                  inputs={"groups": "group"})
    loss.update(groups=torch.tensor([0, 1]))  # a CPU tensor: moved to the input's device by the wrapper
    return loss, (_logits(), _labels()), 0


# name -> () -> (loss, inputs on the CPU, index of the input that gets a gradient); a fresh loss per call
LOSSES = {
    "JaccardMetricLoss": lambda: (losses.JaccardMetricLoss(softmax=True, to_onehot_y=True, class_weights=[1, 2, 3]),
                                  (_logits(), _labels()), 0),
    "DiceSemimetricLoss": lambda: (losses.DiceSemimetricLoss(softmax=True, to_onehot_y=True, per_image=True),
                                   (_logits(), _labels()), 0),
    "TverskyMetricLoss": lambda: (losses.TverskyMetricLoss(softmax=True, to_onehot_y=True, alpha=0.3, beta=0.7),
                                  (_logits(), _labels()), 0),
    "SignedJaccardLoss": lambda: (losses.SignedJaccardLoss(), (_logits(), _signed()), 0),
    "FocalL1Loss": lambda: (losses.FocalL1Loss(), (_logits(), _signed()), 0),
    "SAUNALoss": lambda: (losses.SAUNALoss(class_weights=[1, 2, 3]), (_logits(), _signed()), 0),
    "BettiMatchingLoss": lambda: (losses.BettiMatchingLoss(softmax=True, to_onehot_y=True, include_background=False),
                                  (_logits(2, (16, 16)), _labels(2, (16, 16))), 0),
    "FocalTverskyLoss": lambda: (losses.FocalTverskyLoss(softmax=True, to_onehot_y=True), (_logits(), _labels()), 0),
    "MIPLoss": lambda: (losses.MIPLoss(softmax=True, to_onehot_y=True, axes=(0, 1, 2)), (_logits(), _labels()), 0),
    "SinkhornDistanceLoss": lambda: (losses.SinkhornDistanceLoss(), _sets(), 0),
    "EnergyDistanceLoss": lambda: (losses.EnergyDistanceLoss(), _sets(), 0),
    "PULASkiLoss": _pulaski,
    "FairErrorBoundScalingLoss": lambda: (losses.FairErrorBoundScalingLoss(softmax=True, to_onehot_y=True,
                                                                           num_groups=2),
                                          (_logits(), _labels(), torch.tensor([0, 1])), 0),
    "BatchInputsLoss": _batch_inputs,
    "WeightedSumLoss": lambda: (losses.WeightedSumLoss([losses.DiceSemimetricLoss(softmax=True, to_onehot_y=True),
                                                        losses.FocalTverskyLoss(softmax=True, to_onehot_y=True)],
                                                       weights=[1.0, 0.5]),
                                (_logits(), _labels()), 0),
    "IMPACTLoss": lambda: _impact(losses.IMPACTLoss(EXTRACTOR, weights=[1.0, 1.0], probe_shape=(8, 8, 8)), 2),
    "IMPACTSynthLoss": lambda: _impact(losses.IMPACTSynthLoss(EXTRACTOR, content_weights=[0, 1], style_weights=[1, 1],
                                                              content_normalization="none",
                                                              style_normalization="none"), 3),
    "ClDiceLoss": lambda: (losses.ClDiceLoss(softmax=True, to_onehot_y=True), (_logits(), _labels()), 0),
    "DiceClDiceLoss": lambda: (losses.DiceClDiceLoss(softmax=True, to_onehot_y=True), (_logits(), _labels()), 0),
    "SkeletonRecallLoss": lambda: (losses.SkeletonRecallLoss(softmax=True, to_onehot_y=True), (_logits(), _labels()),
                                   0),
}


def _to(x, device):
    if isinstance(x, torch.nn.Module):
        return copy.deepcopy(x).to(device)
    return x.to(device) if isinstance(x, torch.Tensor) else x


def _run_loss(name, device):
    """(value, gradient of the differentiated input, the loss) of one row on ``device``."""
    loss, inputs, grad_index = LOSSES[name]()
    inputs = [_to(x, device) for x in inputs]
    inputs[grad_index] = inputs[grad_index].detach().requires_grad_(True)
    value = loss(*inputs)
    value.backward()
    return value, inputs[grad_index].grad, loss


def _check_loss_device(name, device):
    device = torch.device(device)
    rtol = 1e-6  # float64 everywhere: only the order of the sums differs
    expected, expected_grad, _ = _run_loss(name, "cpu")
    value, grad, loss = _run_loss(name, device)
    assert value.device.type == device.type and value.ndim == 0 and torch.isfinite(value)
    assert grad is not None and grad.device.type == device.type
    assert float(expected_grad.abs().max()) > 0  # the row tests a gradient that exists
    np.testing.assert_allclose(value.item(), expected.item(), rtol=rtol)
    scale = float(expected_grad.abs().max())
    np.testing.assert_allclose(grad.cpu().numpy(), expected_grad.numpy(), rtol=rtol, atol=rtol * scale)
    # tensors a loss (or a loss it wraps) keeps for logging live where the input is
    kept = {f"{type(m).__name__}.{k}": v for m in loss.modules() for k, v in vars(m).items()
            if isinstance(v, torch.Tensor)}
    assert all(t.device.type == device.type for t in kept.values()), {k: t.device for k, t in kept.items()}
    return kept


def _public_loss_classes():
    return sorted(name for name in losses.__all__ if inspect.isclass(getattr(losses, name)))


def test_every_public_loss_has_a_device_row():
    assert sorted(LOSSES) == _public_loss_classes()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_rows_on_cpu(name):
    kept = _check_loss_device(name, "cpu")
    if name in ("FairErrorBoundScalingLoss", "BatchInputsLoss"):  # the check of kept tensors sees them
        assert list(kept) == ["FairErrorBoundScalingLoss.last_group_weights"]


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_on_cuda_matches_cpu(name):
    _check_loss_device(name, "cuda")


# ------------------------------------------------------------------------------------------------------- transforms
def _label_map(spatial=SPATIAL):
    return _labels(4, spatial, batch=1)[0]  # (1, *spatial) class map, classes 0..3


TRANSFORMS = {
    "SAUNATransform": lambda: (SAUNATransform(num_classes=4), _label_map()),
    "SAUNADecode": lambda: (SAUNADecode(), _signed()[0]),
    "sauna_to_label (per channel)": lambda: (lambda x: sauna_to_label(x, exclusive=False), _signed()[0]),
    "LabelMIP": lambda: (LabelMIP(axes=(0, 2), num_classes=4), _label_map()),
    "SkeletonizeLabel": lambda: (SkeletonizeLabel(tube_radius=1), _label_map()),
}


def _check_transform_device(name, device):
    device = torch.device(device)
    transform, data = TRANSFORMS[name]()
    expected = transform(data)
    out = transform(data.to(device))
    assert isinstance(out, torch.Tensor) and out.device.type == device.type
    assert out.dtype == expected.dtype and out.shape == expected.shape
    assert bool(expected.any())  # a row that produces something
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transform_rows_on_cpu(name):
    _check_transform_device(name, "cpu")


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transform_on_cuda_matches_cpu(name):
    _check_transform_device(name, "cuda")


def test_every_cuda_only_test_is_marked():
    """A test skipped without CUDA carries the ``cuda`` mark, so that ``pytest -m cuda`` runs it on a GPU machine."""
    needle = "skipif(not torch.cuda" + ".is_available()"  # not this line's own text
    unmarked = []
    for path in Path(__file__).resolve().parent.rglob("test_*.py"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if needle in line and "@pytest.mark.cuda" not in lines[max(i - 3, 0):i]:
                unmarked.append(f"{path.name}:{i + 1}")
    assert not unmarked
