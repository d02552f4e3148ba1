"""The label transforms refuse a multi-channel label that is not one-hot: a 3D mask without its channel axis was read
as a multi-channel 2D one-hot and gave a result of the wrong shape without an error."""

import numpy as np
import pytest
import torch

from medloss.transforms import LabelMIP, LabelMIPd, SAUNATransform, SAUNATransformd

TRANSFORMS = {"SAUNATransform": lambda: SAUNATransform(), "LabelMIP": lambda: LabelMIP(axes=0)}


def _mask():
    mask = np.zeros((12, 16, 16), np.uint8)  # a 3D vessel mask (D, H, W)
    mask[3:9, 8, 2:14] = 1
    return mask


@pytest.mark.parametrize("to_tensor", [False, True], ids=["numpy", "tensor"])
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_volume_without_channel_axis_is_refused(name, to_tensor):
    make = TRANSFORMS[name]
    label = torch.from_numpy(_mask()) if to_tensor else _mask()
    with pytest.raises(ValueError, match=r"label must be a channel-first \(1, \*spatial\) label map or a one-hot "
                                         r"\(C, \*spatial\), got shape \(12, 16, 16\) whose channels are not one-hot"):
        make()(label)


@pytest.mark.parametrize("dict_transform", [SAUNATransformd, LabelMIPd], ids=lambda c: c.__name__)
def test_dictionary_versions_refuse_it_too(dict_transform):
    with pytest.raises(ValueError, match="whose channels are not one-hot"):
        dict_transform(keys="label")({"label": _mask()})


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_channel_first_label_and_one_hot_still_work(name):
    make = TRANSFORMS[name]
    mask = _mask()
    assert make()(mask[None]).shape[1:] == (12, 16, 16)
    # a real one-hot (background, vessel) gives the vessel channel of the label map
    np.testing.assert_array_equal(make()(np.stack([1 - mask, mask]))[-1], make()(mask[None])[-1])
    # values other than 0/1 in several channels are named as such
    with pytest.raises(ValueError, match="binary"):
        make()(np.stack([mask, 2 * mask]))
