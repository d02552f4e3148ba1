"""Every loss checks its hyper-parameters in ``__init__``: type, range and finiteness, with a ``ValueError`` that
names the argument (issue: ``TverskyMetricLoss(alpha=nan)`` returned NaN, ``FocalL1Loss(alpha=inf)`` inf,
``FocalTverskyLoss(alpha=inf)`` 0 or 1, ``SinkhornDistanceLoss(blur=inf)`` failed inside numpy and
``BettiMatchingLoss(subpatch_size=1.5)`` with "'float' object is not iterable")."""

import inspect
import math

import pytest
import torch

import medloss.losses as losses
from medloss.losses import (
    BatchInputsLoss,
    BettiMatchingLoss,
    DiceSemimetricLoss,
    EnergyDistanceLoss,
    FairErrorBoundScalingLoss,
    FocalL1Loss,
    FocalTverskyLoss,
    IMPACTLoss,
    IMPACTSynthLoss,
    JaccardMetricLoss,
    MIPLoss,
    PULASkiLoss,
    SAUNALoss,
    SignedJaccardLoss,
    SinkhornDistanceLoss,
    TverskyMetricLoss,
    WeightedSumLoss,
)

NAN, INF = float("nan"), float("inf")


class _Features(torch.nn.Module):
    """A stand-in IMPACT extractor (the arguments are checked before it is probed)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 2, 3, padding=1)

    def forward(self, x):
        return [self.conv(x)]


def _impact(**kwargs):
    return IMPACTLoss(_Features(), probe_shape=(4, 4, 4), **kwargs)


def _impact_synth(**kwargs):
    return IMPACTSynthLoss(_Features(), **kwargs)


# (constructor, keyword arguments, fragment of the message)
CASES = [
    # the examples
    (TverskyMetricLoss, {"alpha": NAN}, "alpha must be a finite number >= 0, got nan"),
    (FocalL1Loss, {"alpha": INF}, "alpha must be a finite number > 0, got inf"),
    (FocalTverskyLoss, {"alpha": INF}, "alpha must be a finite number >= 0, got inf"),
    (SinkhornDistanceLoss, {"blur": INF}, "blur must be a finite number > 0, got inf"),
    (BettiMatchingLoss, {"subpatch_size": 1.5}, "subpatch_size must be an integer >= 1, got 1.5"),
    # Tversky / Jaccard / Dice semimetric
    (TverskyMetricLoss, {"beta": -1}, "beta must be a finite number >= 0, got -1"),
    (TverskyMetricLoss, {"alpha": 0, "beta": 0}, "must not both be 0"),
    (TverskyMetricLoss, {"gamma": 0.5}, "gamma must be a finite number >= 1, got 0.5"),
    (TverskyMetricLoss, {"gamma": INF}, "gamma must be a finite number >= 1, got inf"),
    (TverskyMetricLoss, {"norm": NAN}, "norm must be a finite number >= 1"),
    (TverskyMetricLoss, {"smooth": NAN}, "smooth must be a finite number >= 0, got nan"),
    (TverskyMetricLoss, {"smooth": "1e-3"}, "smooth must be a finite number >= 0, got '1e-3'"),
    (TverskyMetricLoss, {"threshold": 1.0}, "threshold must be a finite number in [0, 1), got 1.0"),
    (TverskyMetricLoss, {"class_weights": [1.0, NAN]}, "class_weights must be finite, >= 0 and not all 0"),
    (TverskyMetricLoss, {"class_weights": ["a"]}, "class_weights must be finite, >= 0 and not all 0"),
    (TverskyMetricLoss, {"reduction_weights": (1, NAN, 0)}, "reduction_weights[1] must be a finite number >= 0"),
    (TverskyMetricLoss, {"reduction_weights": (1, 1)}, "reduction_weights must hold 3 values"),
    (TverskyMetricLoss, {"active_classes_hard": 1}, "active_classes_hard must be one of ('all', 'present')"),
    (TverskyMetricLoss, {"to_onehot_y": True, "ignore_index": 0.5}, "ignore_index must be None or an integer"),
    (TverskyMetricLoss, {"batch": "False"}, "batch must be None, True or False, got 'False'"),
    (TverskyMetricLoss, {"include_background": "no"}, "include_background must be True or False"),
    (TverskyMetricLoss, {"sigmoid": 1}, "sigmoid must be True or False, got 1"),
    (JaccardMetricLoss, {"smooth": -1.0}, "smooth must be a finite number >= 0, got -1.0"),
    (JaccardMetricLoss, {"log_loss": "yes"}, "log_loss must be True or False"),
    (DiceSemimetricLoss, {"gamma": NAN}, "gamma must be a finite number >= 1, got nan"),
    (DiceSemimetricLoss, {"per_image": 1}, "per_image must be None, True or False, got 1"),
    # SAUNA
    (SignedJaccardLoss, {"smooth": INF}, "smooth must be None or a finite number >= 0, got inf"),
    (SignedJaccardLoss, {"signed": "yes"}, "signed must be True or False"),
    (SignedJaccardLoss, {"class_weights": [0.0, 0.0]}, "class_weights must be finite, >= 0 and not all 0"),
    (FocalL1Loss, {"beta": 0}, "beta must be a finite number > 0, got 0"),
    (FocalL1Loss, {"pos_weight": NAN}, "pos_weight must be a finite number >= 0, got nan"),
    (FocalL1Loss, {"opposite_sign_weight": "zero"}, "opposite_sign_weight must be one of ('one', 'clamp')"),
    (FocalL1Loss, {"detach_weight": None}, "detach_weight must be True or False, got None"),
    (SAUNALoss, {"distance_weight": INF}, "distance_weight must be a finite number >= 0, got inf"),
    (SAUNALoss, {"alpha": -2.0}, "alpha must be a finite number > 0, got -2.0"),
    (SAUNALoss, {"batch": "true"}, "batch must be True or False"),
    # Focal Tversky / MIP
    (FocalTverskyLoss, {"gamma": 0}, "gamma must be a finite number > 0, got 0"),
    (FocalTverskyLoss, {"smooth_nr": NAN}, "smooth_nr must be a finite number >= 0, got nan"),
    (FocalTverskyLoss, {"smooth_dr": -1}, "smooth_dr must be a finite number >= 0, got -1"),
    (FocalTverskyLoss, {"batch": "no"}, "batch must be True or False"),
    (MIPLoss, {"voxel_weight": NAN}, "voxel_weight must be a finite number >= 0, got nan"),
    (MIPLoss, {"mip_weight": INF}, "mip_weight must be a finite number >= 0, got inf"),
    (MIPLoss, {"voxel_weight": 0, "mip_weight": 0}, "must not both be 0"),
    (MIPLoss, {"slab_size": 2.0}, "slab_size must be None or an integer >= 1, got 2.0"),
    (MIPLoss, {"axis_reduction": "max"}, "axis_reduction must be one of ('sum', 'mean')"),
    (MIPLoss, {"axes": 0.5}, "axes must be an int or a non-empty sequence of ints"),
    (MIPLoss, {"batch": 1}, "batch must be None, True or False, got 1"),
    # Betti matching
    (BettiMatchingLoss, {"subpatch_size": (8, 0)}, "subpatch_size[1] must be an integer >= 1, got 0"),
    (BettiMatchingLoss, {"subpatch_size": "8"}, "subpatch_size must be an integer >= 1, got '8'"),
    (BettiMatchingLoss, {"matched_weight": NAN}, "matched_weight must be a finite number >= 0, got nan"),
    (BettiMatchingLoss, {"unmatched_weight": INF}, "unmatched_weight must be a finite number >= 0, got inf"),
    (BettiMatchingLoss, {"barcode_length_threshold": -0.1}, "barcode_length_threshold must be a finite number >= 0"),
    (BettiMatchingLoss, {"dimension_weights": (1.0, NAN)}, "dimension_weights[1] must be a finite number >= 0"),
    (BettiMatchingLoss, {"num_workers": 0}, "num_workers must be None or an integer >= 1, got 0"),
    (BettiMatchingLoss, {"filtration": "upper"}, "filtration must be one of ('superlevel', 'sublevel', 'both')"),
    (BettiMatchingLoss, {"relative": "yes"}, "relative must be True or False"),
    # set distances and PULASki
    (SinkhornDistanceLoss, {"blur": 0}, "blur must be a finite number > 0, got 0"),
    (SinkhornDistanceLoss, {"blur": 1e200}, "temperature blur ** 2 in the float64 range"),
    (SinkhornDistanceLoss, {"scaling": 1.0}, "scaling must be a finite number in (0, 1), got 1.0"),
    (SinkhornDistanceLoss, {"diameter": NAN}, "diameter must be None or a finite number > 0, got nan"),
    (SinkhornDistanceLoss, {"per_voxel": "yes"}, "per_voxel must be True or False"),
    (EnergyDistanceLoss, {"per_voxel": 1}, "per_voxel must be True or False, got 1"),
    (EnergyDistanceLoss, {"softmax": "True"}, "softmax must be True or False"),
    (PULASkiLoss, {"kl_weight": NAN}, "kl_weight must be a finite number >= 0, got nan"),
    (PULASkiLoss, {"num_samples": 2.5}, "num_samples must be None or an integer >= 1, got 2.5"),
    (PULASkiLoss, {"blur": INF}, "blur must be a finite number > 0, got inf"),
    (PULASkiLoss, {"scaling": 0}, "scaling must be a finite number in (0, 1), got 0"),
    (PULASkiLoss, {"seed": 1.5}, "seed must be None or an integer >= 0, got 1.5"),
    (PULASkiLoss, {"generator": 0}, "generator must be None or a torch.Generator"),
    (PULASkiLoss, {"same_rater_for_batch": "no"}, "same_rater_for_batch must be True or False"),
    # FairSeg FEBS
    (FairErrorBoundScalingLoss, {"gamma": INF}, "gamma must be a finite number >= 0, got inf"),
    (FairErrorBoundScalingLoss, {"num_groups": 2.0}, "num_groups must be an integer >= 1, got 2.0"),
    (FairErrorBoundScalingLoss, {"lambda_dice": NAN}, "lambda_dice must be a finite number >= 0, got nan"),
    (FairErrorBoundScalingLoss, {"lambda_dice": 0}, "lambda_dice and lambda_ce must not both be 0"),
    (FairErrorBoundScalingLoss, {"smooth_nr": "x"}, "smooth_nr must be a finite number >= 0, got 'x'"),
    (FairErrorBoundScalingLoss, {"mode": "fair"}, "mode must be one of ('guarded', 'faithful')"),
    (FairErrorBoundScalingLoss, {"sync_group_stats": None}, "sync_group_stats must be True or False"),
    # clDice and Skeleton Recall (their own modules; the fragment is the argument's name)
    (losses.ClDiceLoss, {"iter_": 1.5}, "iter_ must be"),
    (losses.ClDiceLoss, {"smooth_nr": NAN}, "smooth_nr"),
    (losses.DiceClDiceLoss, {"alpha": NAN}, "alpha must"),
    (losses.SkeletonRecallLoss, {"tube_radius": 1.5}, "tube_radius must be"),
    (losses.SkeletonRecallLoss, {"smooth": NAN}, "smooth must be"),
    # wrappers
    (lambda **kw: WeightedSumLoss([torch.nn.L1Loss()], **kw), {"weights": [NAN]}, "weights[0] must be a finite"),
    (lambda **kw: WeightedSumLoss([torch.nn.L1Loss()], **kw), {"weights": [1.0, 2.0]}, "one finite weight per loss"),
    (WeightedSumLoss, {"losses": [torch.nn.L1Loss(), 3]}, "entries [1] are not"),
    (BatchInputsLoss, {"loss": torch.nn.L1Loss(), "inputs": {"groups": 1}}, "non-empty mapping"),
    # IMPACT
    (_impact, {"weights": [INF]}, "weights[0] must be a finite number, got inf"),
    (_impact, {"weights": []}, "weights must be a non-empty sequence"),
    (_impact, {"in_channels": 1.5}, "in_channels must be an integer >= 1, got 1.5"),
    (_impact, {"spatial_dims": 2.5}, "spatial_dims must be an integer in [2, 3], got 2.5"),
    (_impact, {"shape": (8, 8, 0.5)}, "shape[2] must be an integer >= 1, got 0.5"),
    (_impact, {"shape": (8, 8)}, "shape must hold 3 values"),
    (_impact, {"lncc_kernel": 3.5}, "lncc_kernel must be an integer >= 1, got 3.5"),
    (_impact, {"lncc_kernel": 4}, "lncc_kernel must be a positive odd integer"),
    (_impact, {"sweep_batch": 0}, "sweep_batch must be an integer >= 1, got 0"),
    (_impact, {"stats_from": "image"}, "stats_from must be one of ('own', 'target', 'none')"),
    (_impact, {"convention": "elastix"}, "convention must be one of ('konfai', 'itk')"),
    (_impact, {"direction": [[1, 0, 0], [0, NAN, 0], [0, 0, 1]]}, "direction must be a finite 3x3 matrix"),
    (_impact_synth, {"content_weights": [NAN]}, "content_weights[0] must be a finite number, got nan"),
    (_impact_synth, {"style_in_channels": 0}, "style_in_channels must be an integer >= 1, got 0"),
    (_impact_synth, {"style_spatial_dims": 4}, "style_spatial_dims must be None or an integer in [2, 3], got 4"),
]


def _name(case):
    ctor, kwargs, _ = case
    return f"{getattr(ctor, '__name__', 'loss')}-{'-'.join(f'{k}={v!r}' for k, v in kwargs.items())}"


@pytest.mark.parametrize("ctor, kwargs, message", CASES, ids=[_name(c) for c in CASES])
def test_bad_hyperparameter_is_refused_with_its_name(ctor, kwargs, message):
    with pytest.raises(ValueError) as err:
        ctor(**kwargs)
    assert message in str(err.value)


def test_every_loss_has_a_case():
    covered = set()
    for ctor, _, _ in CASES:
        covered.add(ctor)
    covered |= {IMPACTLoss, IMPACTSynthLoss}  # through _impact / _impact_synth
    covered.add(WeightedSumLoss)
    classes = {getattr(losses, n) for n in losses.__all__ if inspect.isclass(getattr(losses, n))}
    missing = sorted(c.__name__ for c in classes - covered)
    assert not missing, f"add hyper-parameter cases for {missing}"


@pytest.mark.parametrize("ctor, kwargs", [
    (TverskyMetricLoss, {"alpha": 0.3, "beta": 0.7, "gamma": 2, "smooth": 0, "threshold": 0.0}),
    (TverskyMetricLoss, {"active_classes_hard": "ALL", "reduction_weights": (1, 1, 0)}),
    (FocalL1Loss, {"alpha": 1, "beta": 0.5, "pos_weight": 0}),
    (BettiMatchingLoss, {"subpatch_size": (4, 4), "num_workers": 1, "dimension_weights": [1, 0]}),
    (SinkhornDistanceLoss, {"blur": 1, "scaling": 0.9, "diameter": 2}),
    (MIPLoss, {"slab_size": 2, "batch": True}),
    (PULASkiLoss, {"num_samples": 2, "seed": 0}),
])
def test_good_hyperparameters_of_any_numeric_type_are_kept(ctor, kwargs):
    loss = ctor(**kwargs)
    for name, value in kwargs.items():
        kept = getattr(loss, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and kept is not None:
            assert kept == value and not math.isnan(kept)

