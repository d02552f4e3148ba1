"""nnU-Net v2 trainer adding the IMPACT semantic feature loss to Dice+CE, for segmentation.

Boussot et al., "IMPACT: A Generic Semantic Loss for Multimodal Medical Image Registration", 2025,
https://arxiv.org/abs/2503.24121; :class:`medloss.losses.IMPACTLoss`.

IMPACT compares two images through a frozen, pretrained feature extractor. For segmentation,
the two images are the predicted foreground probabilities and the one-hot target: the term rewards predictions whose
*features* (shape, context, as seen by the extractor) match those of the reference mask. The extractor is a local
TorchScript file that the user provides (medloss never downloads one); see
:mod:`medloss.networks.impact_extractor` for the extractor contract and an export recipe.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import torch
from torch import nn

from medloss.nnunet.base import add_epoch_variants, nnUNetTrainerMedloss
from medloss.validation import prepare_input_target


class IMPACTSegmentationTerm(nn.Module):
    """IMPACT between foreground probabilities and the one-hot target, one class map at a time.

    Args:
        impact: an :class:`medloss.losses.IMPACTLoss` (``reduction="none"``) whose extractor takes ``in_channels``
            maps; each decoded channel (label datasets: softmax channels 1..C-1; region datasets: every sigmoid
            channel) is fed separately as a 1-channel image (repeated to ``in_channels`` by the loss).
        stats: ``[min, max, mean, std]`` handed to the extractor for both images. Probability maps and masks have no
            intensity scale of their own (an empty mask has std 0), so fixed statistics are used: the default
            ``[0, 1, 0.5, 0.5]`` maps [0, 1] to [-1, 1] for a z-scoring extractor. ``None`` lets each image use its
            own statistics (unsafe for empty patches).
        include_background, to_onehot_y, sigmoid, softmax: the MONAI flags that decode nnU-Net's logits and target
            (:func:`medloss.nnunet.loss_wiring.activation_kwargs`).

    Shapes:
        ``forward(logits, target)``: logits ``(B, C, *spatial)``; target ``(B, 1, *spatial)`` labels (with
        ``to_onehot_y``) or ``(B, C, *spatial)`` one-hot. Returns a scalar: the mean over samples and decoded
        channels.
    """

    def __init__(self, impact: nn.Module, stats: Optional[Sequence[float]] = (0.0, 1.0, 0.5, 0.5),
                 include_background: bool = False, to_onehot_y: bool = True, sigmoid: bool = False,
                 softmax: bool = True):
        super().__init__()
        self.impact = impact
        self.stats = None if stats is None else [float(s) for s in stats]
        self.activation = dict(include_background=include_background, to_onehot_y=to_onehot_y, sigmoid=sigmoid,
                               softmax=softmax)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # the extractor is a foreign network: run it in float32 even under nnU-Net's autocast
        with torch.autocast(device_type=logits.device.type, enabled=False):
            probs, onehot, _ = prepare_input_target(logits.float(), target, **self.activation)
            b, k = probs.shape[:2]
            probs = probs.reshape((b * k, 1) + tuple(probs.shape[2:]))
            onehot = onehot.reshape((b * k, 1) + tuple(onehot.shape[2:]))
            if self.stats is None:
                return self.impact(probs, onehot).mean()
            return self.impact(probs, onehot, stats=self.stats).mean()


class nnUNetTrainerMedlossIMPACT(nnUNetTrainerMedloss):
    """Dice+CE + ``weight`` x IMPACT feature loss (Boussot et al. 2025) on the full-resolution output.

    The foreground probabilities of the full-resolution output and the one-hot
    target go through a frozen TorchScript extractor (hyperparameter ``model``, required) and their features are
    compared layer by layer (``layer_weights``, ``distance``), see :class:`IMPACTSegmentationTerm`. The
    lower-resolution deep-supervision heads keep nnU-Net's Dice+CE only.

    Hyperparameters (``medloss_defaults``; plans ``"medloss"`` entry or ``MEDLOSS_<KEY>``):
        model: path of the TorchScript extractor (required; e.g. ``MEDLOSS_MODEL=/models/TS_M730.pt``), or a
            name found in ``$MEDLOSS_IMPACT_MODEL_DIR``. It must accept the patch size of the configuration.
        weight: weight of the IMPACT term (0.1, not tuned: the IMPACT paper is about registration and gives no
            segmentation weight; the feature distance is kept an auxiliary term next to Dice+CE).
        layer_weights: one weight per extractor layer, shallow to deep ([1.0]: the first layer).
        distance: per-layer distance (``"L1"``, the IMPACT default; see :class:`medloss.losses.IMPACTLoss`).
        in_channels / spatial_dims: what the extractor takes (1, 3); a 2D extractor sweeps the first patch axis.
        stats: fixed ``[min, max, mean, std]`` given to the extractor ([0, 1, 0.5, 0.5]; None: per image).
        warmup_fraction: as every medloss trainer.

    Raises:
        ValueError: ``model`` unset. FileNotFoundError: ``model`` not found. NotImplementedError: datasets with an
        ignore label (the feature comparison cannot mask voxels).
    """

    medloss_defaults = {"weight": 0.1, "warmup_fraction": 0.0, "model": None, "layer_weights": [1.0],
                        "distance": "L1", "in_channels": 1, "spatial_dims": 3, "stats": [0.0, 1.0, 0.5, 0.5]}
    medloss_full_resolution_only = True
    medloss_supports_ignore_label = False

    #: the resolved path of the extractor (set at initialisation)
    impact_model_path: Optional[str] = None

    def check_hyperparameters(self) -> None:
        """Resolve the ``model`` hyperparameter to an existing extractor file (:attr:`impact_model_path`)."""
        from medloss.networks.impact_extractor import resolve_model_path

        model = self.medloss["model"]
        if model is None or (isinstance(model, str) and not model.strip()):
            raise ValueError(
                f"{type(self).__name__} needs the IMPACT feature extractor: set the 'model' hyperparameter to the path "
                "of a TorchScript file, e.g. `export MEDLOSS_MODEL=/path/to/extractor.pt` or "
                "'\"medloss\": {\"model\": \"/path/to/extractor.pt\"}' in the plans configuration (see "
                "medloss.networks.impact_extractor for the extractor contract)."
            )
        if not isinstance(model, (str, os.PathLike)):
            raise ValueError(f"the 'model' hyperparameter must be a path, got {model!r}.")
        self.impact_model_path = str(resolve_model_path(model))

    def build_medloss_loss(self, **activation):
        from medloss.losses import IMPACTLoss

        patch = tuple(int(s) for s in self.configuration_manager.patch_size)
        spatial_dims = int(self.medloss["spatial_dims"])
        impact = IMPACTLoss(self.impact_model_path, weights=[float(w) for w in self.medloss["layer_weights"]],
                            distance=self.medloss["distance"], in_channels=int(self.medloss["in_channels"]),
                            spatial_dims=spatial_dims, probe_shape=patch[-spatial_dims:], reduction="none")
        return IMPACTSegmentationTerm(impact, stats=self.medloss["stats"], **activation)


_TRAINERS = [nnUNetTrainerMedlossIMPACT]
__all__ = ["IMPACTSegmentationTerm"] + [c.__name__ for c in _TRAINERS] + add_epoch_variants(_TRAINERS, globals())
