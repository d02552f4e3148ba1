"""nnU-Net v2 trainer adding the IMPACT semantic feature loss to Dice+CE, for segmentation.

IMPACT (Boussot et al. 2025) compares two images through a frozen, pretrained feature extractor. For segmentation,
the two images are the predicted foreground probabilities and the one-hot target: the term rewards predictions whose
*features* (shape, context, as seen by the extractor) match those of the reference mask. The extractor is a local
TorchScript file that the user provides (medloss never downloads one); see :mod:`medloss.losses.impact` for the
extractor contract and an export recipe.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medloss.nnunet.base import add_epoch_variants, nnUNetTrainerMedloss


class IMPACTSegmentationTerm(nn.Module):
    """IMPACT between foreground probabilities and the one-hot target, one class map at a time.

    Args:
        impact: an :class:`medloss.losses.IMPACTLoss` (``reduction="none"``) whose extractor takes ``in_channels``
            maps; each foreground class (label datasets: softmax channels 1..C-1; region datasets: every sigmoid
            channel) is fed separately as a 1-channel image (repeated to ``in_channels`` by the loss).
        softmax: label dataset (softmax decoding, integer target) if True, region dataset (sigmoid, one-hot) if False.
        stats: ``[min, max, mean, std]`` handed to the extractor for both images. Probability maps and masks have no
            intensity scale of their own (an empty mask has std 0), so fixed statistics are used: the default
            ``[0, 1, 0.5, 0.5]`` maps [0, 1] to [-1, 1] for a z-scoring extractor. ``None`` lets each image use its
            own statistics (unsafe for empty patches).

    Shapes:
        ``forward(logits, target)``: logits ``(B, C, *spatial)``; target ``(B, 1, *spatial)`` labels (softmax) or
        ``(B, C, *spatial)`` one-hot (sigmoid). Returns a scalar: the mean over samples and foreground classes.
    """

    def __init__(self, impact: nn.Module, softmax: bool, stats: Optional[Sequence[float]] = (0.0, 1.0, 0.5, 0.5)):
        super().__init__()
        self.impact = impact
        self.softmax = softmax
        self.stats = None if stats is None else [float(s) for s in stats]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # the extractor is a foreign network: run it in float32 even under nnU-Net's autocast
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            if self.softmax:
                probs = torch.softmax(logits, 1)[:, 1:]
                onehot = F.one_hot(target[:, 0].long(), logits.shape[1]).movedim(-1, 1)[:, 1:].to(probs.dtype)
            else:
                probs, onehot = torch.sigmoid(logits), target.to(logits.dtype)
            b, k = probs.shape[:2]
            probs = probs.reshape((b * k, 1) + tuple(probs.shape[2:]))
            onehot = onehot.reshape((b * k, 1) + tuple(onehot.shape[2:]))
            if self.stats is None:
                return self.impact(probs, onehot).mean()
            return self.impact(probs, onehot, stats=self.stats).mean()


class nnUNetTrainerMedlossIMPACT(nnUNetTrainerMedloss):
    """Dice+CE + ``weight`` x IMPACT feature loss (Boussot et al. 2025) on the full-resolution output.

    https://arxiv.org/abs/2503.24121. The foreground probabilities of the full-resolution output and the one-hot
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

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.impact_model_path = self._resolve_model()

    def _resolve_model(self) -> str:
        from medloss.losses.impact import resolve_model_path

        model = self.medloss["model"]
        if model is None or (isinstance(model, str) and not model.strip()):
            raise ValueError(
                f"{type(self).__name__} needs the IMPACT feature extractor: set the 'model' hyperparameter to the path "
                "of a TorchScript file, e.g. `export MEDLOSS_MODEL=/path/to/extractor.pt` or "
                "'\"medloss\": {\"model\": \"/path/to/extractor.pt\"}' in the plans configuration (see "
                "medloss.losses.impact for the extractor contract)."
            )
        if not isinstance(model, (str, os.PathLike)):
            raise ValueError(f"the 'model' hyperparameter must be a path, got {model!r}.")
        return str(resolve_model_path(model))

    def build_medloss_loss(self, **activation):
        from medloss.losses import IMPACTLoss

        patch = tuple(int(s) for s in self.configuration_manager.patch_size)
        spatial_dims = int(self.medloss["spatial_dims"])
        impact = IMPACTLoss(self.impact_model_path, weights=[float(w) for w in self.medloss["layer_weights"]],
                            distance=self.medloss["distance"], in_channels=int(self.medloss["in_channels"]),
                            spatial_dims=spatial_dims, probe_shape=patch[-spatial_dims:], reduction="none")
        return IMPACTSegmentationTerm(impact, softmax=bool(activation["softmax"]), stats=self.medloss["stats"])


_METHOD_TRAINERS = [nnUNetTrainerMedlossIMPACT]
_variants = add_epoch_variants(_METHOD_TRAINERS, globals())

__all__ = [c.__name__ for c in _METHOD_TRAINERS] + _variants + ["IMPACTSegmentationTerm"]
