"""nnU-Net's loss contract, without nnU-Net: label maps and region one-hots, ignore label, AMP, deep supervision."""

import pytest
import torch
from torch import nn

from medloss.nnunet.loss_wiring import AddedTerm, NnUNetTerm, activation_kwargs


class Recorder(nn.Module):
    """A loss that records what it was given and returns the mean probability."""

    def __init__(self, **flags):
        super().__init__()
        self.flags, self.seen = flags, []

    def forward(self, input, target, mask=None):
        self.seen.append((input.dtype, target.dtype, tuple(target.shape), None if mask is None else mask.clone()))
        return input.float().mean()


def test_activation_flags_follow_nnunet_decoding():
    assert activation_kwargs(False) == {"include_background": False, "to_onehot_y": True, "sigmoid": False,
                                        "softmax": True}
    assert activation_kwargs(True)["sigmoid"] and not activation_kwargs(True)["to_onehot_y"]


def test_label_target_upcast_and_long():
    rec = Recorder()
    term = NnUNetTerm(rec, has_regions=False)
    logits = torch.randn(2, 3, 8, 8, 8).half()
    target = torch.randint(0, 3, (2, 1, 8, 8, 8), dtype=torch.int16)
    term(logits, target)
    dtype, tdtype, shape, mask = rec.seen[0]
    assert dtype == torch.float32 and tdtype == torch.int64 and shape == (2, 1, 8, 8, 8) and mask is None


def test_label_ignore_becomes_mask_and_background():
    rec = Recorder()
    term = NnUNetTerm(rec, has_regions=False, ignore_label=3, ignore_kwarg="mask")
    target = torch.randint(0, 4, (1, 1, 6, 6), dtype=torch.int16)
    term(torch.randn(1, 3, 6, 6), target)
    _, _, _, mask = rec.seen[0]
    assert torch.equal(mask, target != 3)


def test_region_target_strips_ignore_channel():
    rec = Recorder()
    term = NnUNetTerm(rec, has_regions=True, ignore_label=2, ignore_kwarg="mask")
    target = torch.rand(2, 3, 5, 5, 5) > 0.5  # 2 regions + ignore channel
    term(torch.randn(2, 2, 5, 5, 5), target)
    _, tdtype, shape, mask = rec.seen[0]
    assert tdtype == torch.float32 and shape == (2, 2, 5, 5, 5)
    assert torch.equal(mask, ~target[:, -1:])


def test_batch_inputs_reach_the_loss_next_to_the_keep_mask():
    """The base trainer's wiring: BatchInputsLoss(NnUNetTerm(loss)) with per-batch values set by update()."""
    from medloss.losses import BatchInputsLoss

    seen = {}

    def loss(input, target, groups, mask):
        seen.update(groups=groups, mask=mask, target=target)
        return input.mean()

    term = BatchInputsLoss(NnUNetTerm(loss, has_regions=False, ignore_label=2, ignore_kwarg="mask"),
                           {"groups": "groups"})
    target = torch.tensor([0, 1, 2, 1]).reshape(1, 1, 4)
    with pytest.raises(ValueError, match="no batch inputs"):
        term(torch.zeros(1, 2, 4), target)
    term.update(groups=torch.tensor([3]))
    term(torch.zeros(1, 2, 4), target)
    assert seen["groups"].tolist() == [3]
    assert seen["mask"].tolist() == [[[True, True, False, True]]]
    assert seen["target"].tolist() == [[[0, 1, 0, 1]]]  # ignored voxels become background


def test_loss_without_masking_refuses_ignore_label():
    with pytest.raises(NotImplementedError, match="ignore label"):
        NnUNetTerm(Recorder(), has_regions=False, ignore_label=4, ignore_kwarg=None)


class Const(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, output, target):
        return torch.as_tensor(self.value * float(output.shape[-1]))


class Zero(nn.Module):
    """Stands in for nnU-Net's (deep-supervision wrapped) base loss."""

    def forward(self, output, target):
        return torch.zeros(())


def test_added_term_deep_supervision_weights_and_full_resolution():
    outs = [torch.zeros(1, 1, 8), torch.zeros(1, 1, 4), torch.zeros(1, 1, 2)]
    tgts = [torch.zeros(1, 1, 8), torch.zeros(1, 1, 4), torch.zeros(1, 1, 2)]
    every = AddedTerm(Zero(), Const(1.0), weight=2.0, ds_weights=(0.5, 0.5, 0.0))
    assert float(every(outs, tgts)) == pytest.approx(2.0 * (0.5 * 8 + 0.5 * 4))
    full = AddedTerm(Zero(), Const(1.0), weight=2.0, full_resolution_only=True, ds_weights=(0.5, 0.5, 0.0))
    assert float(full(outs, tgts)) == pytest.approx(2.0 * 8)
    assert full.calls == 1 and full.seconds >= 0
    full.enabled = False
    assert float(full(outs, tgts)) == 0.0
