"""BatchInputsLoss: per-batch keyword inputs of the losses (groups, label MIPs, keep masks, statistics, style
targets) routed from a batch dict, by hand and through MONAI's own SupervisedTrainer."""

import copy
from pathlib import Path

import pytest
import torch
from monai.utils import CommonKeys

from medloss.losses import (
    BatchInputsLoss,
    FairErrorBoundScalingLoss,
    IMPACTLoss,
    IMPACTSynthLoss,
    JaccardMetricLoss,
    MIPLoss,
)
from medloss.transforms import LabelMIP

EXTRACTOR = Path(__file__).resolve().parents[1] / "data" / "fair_impact" / "tiny3d_impact.pt"


def _segmentation_batch(seed=0, batch=4, channels=2, spatial=(6, 5, 4)):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn((batch, channels) + spatial, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, channels, (batch, 1) + spatial, generator=gen)
    return logits, labels


def test_update_from_batch_equals_direct_call_for_every_loss_with_extras():
    logits, labels = _segmentation_batch()
    _, whole_volume = _segmentation_batch(seed=5)  # stands for the labels of the whole case around each patch
    label_mip = torch.stack([LabelMIP(axes=(0, 2), num_classes=2)(lab) for lab in whole_volume]).double()
    keep = torch.rand(labels.shape, generator=torch.Generator().manual_seed(1)) > 0.3
    cases = [
        (FairErrorBoundScalingLoss(softmax=True, to_onehot_y=True), {"groups": "group"},
         {"group": torch.tensor([0, 1, 1, 0])}, {"groups": torch.tensor([0, 0, 0, 1])}),
        (MIPLoss(softmax=True, to_onehot_y=True, axes=(0, 2)), {"label_mip": "label_mip"},
         {"label_mip": label_mip}, {}),
        (JaccardMetricLoss(softmax=True, to_onehot_y=True), {"keep_mask": "keep"}, {"keep": keep}, {}),
    ]
    for loss, inputs, extras, other in cases:
        wrapped = BatchInputsLoss(loss, inputs=inputs)
        wrapped.update_from_batch({"image": None, "label": labels, **extras})
        direct = loss(logits, labels, **{kw: extras[key] for kw, key in inputs.items()})
        assert float(wrapped(logits, labels)) == float(direct)
        # the extras matter: without them (or with others) the value differs
        assert float(direct) != pytest.approx(float(loss(logits, labels, **other)), rel=1e-6)


def test_impact_statistics_and_style_targets_as_batch_inputs():
    gen = torch.Generator().manual_seed(2)
    image, target, style = (torch.rand(2, 1, 16, 16, 16, generator=gen) for _ in range(3))
    stats = torch.tensor([[0.0, 2.0, 1.0, 0.5], [0.0, 3.0, 1.5, 0.7]])
    impact = IMPACTLoss(EXTRACTOR, weights=[1.0, 1.0], probe_shape=(16, 16, 16))
    wrapped = BatchInputsLoss(impact, inputs={"stats": "stats"})
    wrapped.update(stats=stats)
    assert float(wrapped(image, target)) == float(impact(image, target, stats=stats))
    assert float(wrapped(image, target)) != float(impact(image, target))
    synth = IMPACTSynthLoss(EXTRACTOR, content_weights=[0, 1], style_weights=[1, 1], content_normalization="none",
                            style_normalization="none")
    wrapped = BatchInputsLoss(synth, inputs={"style_target": "mr"})
    wrapped.update_from_batch({"ct": target, "mr": style})
    assert float(wrapped(image, target)) == float(synth(image, target, style))


def test_tensor_extras_follow_the_input_device_and_errors():
    seen = {}

    def loss(input, target, groups):
        seen["device"] = groups.device
        return (input - target).abs().mean()

    wrapped = BatchInputsLoss(loss, inputs={"groups": "group"})
    with pytest.raises(ValueError, match="no batch inputs were set"):
        wrapped(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 3, 3))
    with pytest.raises(ValueError, match=r"no key\(s\) \['group'\]"):
        wrapped.update_from_batch({"image": 1, "label": 2})
    with pytest.raises(ValueError, match="as a dict"):
        wrapped.update_from_batch([1, 2])
    with pytest.raises(ValueError, match=r"missing batch input\(s\) \['groups'\]"):
        wrapped.update(group=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="non-empty mapping"):
        BatchInputsLoss(loss, inputs={})
    with pytest.raises(ValueError, match="callable"):
        BatchInputsLoss(None, inputs={"groups": "group"})
    wrapped.update(groups=torch.tensor([0, 1]))
    assert float(wrapped(torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3))) == 1.0
    assert seen["device"] == torch.device("cpu")
    if torch.cuda.is_available():
        wrapped(torch.ones(2, 1, 3, 3, device="cuda"), torch.zeros(2, 1, 3, 3, device="cuda"))
        assert seen["device"].type == "cuda"


def test_monai_supervised_trainer_feeds_groups_from_the_batch():
    """Two iterations of MONAI's own SupervisedTrainer: the loss is its loss_function and one of its handlers."""
    from ignite.engine import Events
    from monai.engines import SupervisedTrainer
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(4, 1, 16, 16, generator=gen)
    labels = (images > 0.5).long()
    data = [{"image": images[i], "label": labels[i], "group": g} for i, g in enumerate([0, 1, 1, 0])]
    loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=False)
    net = UNet(2, 1, 2, channels=(4, 8), strides=(2,), num_res_units=0)
    initial = copy.deepcopy(net)
    febs = FairErrorBoundScalingLoss(softmax=True, to_onehot_y=True, num_groups=2)
    seen = []
    febs.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["groups"].tolist()),
                                   with_kwargs=True)
    loss = BatchInputsLoss(febs, inputs={"groups": "group"})
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=loader, network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=loss, train_handlers=[loss],
    )
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED,
                              lambda e: losses.append(float(e.state.output[0][CommonKeys.LOSS])))
    trainer.run()
    assert trainer.state.iteration == 2
    assert seen == [[0, 1], [1, 0]]  # each iteration got its own batch's groups
    # the first iteration's loss is FEBS of the untrained network's prediction with the first batch's groups
    with torch.no_grad():
        first = FairErrorBoundScalingLoss(softmax=True, to_onehot_y=True, num_groups=2)(
            initial(images[:2]), labels[:2], groups=torch.tensor([0, 1]))
    assert losses[0] == pytest.approx(float(first), rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(net.parameters(), initial.parameters()))
