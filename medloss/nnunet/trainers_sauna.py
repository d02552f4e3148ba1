"""SAUNA signed soft labels inside nnU-Net: a preprocessing step and a trainer.

Why a preprocessing step and not an in-loss computation: the SAUNA label of a voxel depends on the thickest vessel
of the *whole case* (its scale M and window size k), so computing it on a training patch gives other values than on
the case (brief gotcha S7; ``tests/nnunet/test_trainers_sauna.py`` shows the difference). :func:`preprocess_sauna`
therefore computes the soft labels once per case on nnU-Net's preprocessed grid (after resampling, with the
configuration's physical spacing), and stores them as extra channels of the segmentation in a new configuration
``<configuration>_sauna``. nnU-Net's data loader and augmentation crop, flip and rotate all segmentation channels
together (nearest-neighbour), so the soft labels reach the loss aligned with the patch.

Storage: int16 channels ``round(32000 * soft)`` (resolution 3e-5). nnU-Net pads segmentations with -1 and maps
-1 to 0; the SAUNA label is never 0, so a stored 0 means "outside the case" and is read back as -1 (background).

Training (:class:`nnUNetTrainerMedlossSAUNA`): nnU-Net's Dice+CE on the label channel plus ``weight`` x
:class:`medloss.losses.SAUNALoss` on the full-resolution output, where the signed output of foreground class c is
``2 p_c - 1`` (``p`` = nnU-Net's softmax, or sigmoid for regions). For two classes this is ``tanh(z/2)`` of the logit
difference, SAUNA's tanh head, and its zero level is nnU-Net's decision boundary, so inference is nnU-Net's own.

Usage::

    nnUNetv2_plan_and_preprocess -d 501 -c 3d_fullres
    medloss nnunet sauna-preprocess -d 501 -c 3d_fullres
    medloss nnunet train 501 3d_fullres_sauna 0 -tr nnUNetTrainerMedlossSAUNA
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from medloss.nnunet.base import add_epoch_variants, nnUNetTrainerMedloss

SCALE = 32000.0

__all__ = ["preprocess_sauna", "SAUNATerm", "nnUNetTrainerMedlossSAUNA", "SCALE"]


def preprocess_sauna(dataset: Any, configuration: str = "3d_fullres", plans_identifier: str = "nnUNetPlans",
                     output_configuration: Optional[str] = None, num_threads: int = 1, verbose: bool = True) -> str:
    """Add SAUNA soft-label channels to a preprocessed configuration; returns the new configuration's name.

    Args:
        dataset: dataset id or name (``501`` / ``"Dataset501_Name"``), already preprocessed for ``configuration``.
        configuration: the source configuration (its data are read, not changed).
        plans_identifier: plans file name without ``.json``.
        output_configuration: default ``<configuration>_sauna``; it inherits ``configuration`` with its own
            ``data_identifier`` and a ``"medloss": {"sauna_channels": K}`` entry (K = foreground labels or regions).
        num_threads: threads of the distance transform.

    Raises:
        FileNotFoundError: the source configuration was not preprocessed.
        ValueError: unknown configuration.
    """
    from batchgenerators.utilities.file_and_folder_operations import load_json, save_json
    from nnunetv2 import paths
    from nnunetv2.training.dataloading.nnunet_dataset import (comp_blosc2_params, infer_dataset_class,
                                                               nnUNetDatasetBlosc2)
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from tqdm import tqdm

    from medloss.transforms.sauna import sauna_soft_label

    name = maybe_convert_to_dataset_name(dataset)
    pre_folder = os.path.join(paths.nnUNet_preprocessed, name)
    plans_file = os.path.join(pre_folder, plans_identifier + ".json")
    plans = load_json(plans_file)
    if configuration not in plans["configurations"]:
        raise ValueError(f"{plans_file} has no configuration {configuration!r}; known: {list(plans['configurations'])}.")
    plans_manager = PlansManager(plans)
    source = plans_manager.get_configuration(configuration)
    in_folder = os.path.join(pre_folder, source.data_identifier)
    if not os.path.isdir(in_folder) or not os.listdir(in_folder):
        raise FileNotFoundError(f"{in_folder} holds no preprocessed cases: run nnUNetv2_plan_and_preprocess -d "
                                f"{dataset} -c {configuration} first.")
    dataset_json = load_json(os.path.join(pre_folder, "dataset.json"))
    lm = plans_manager.get_label_manager(dataset_json)
    keys = lm.foreground_regions if lm.has_regions else lm.foreground_labels
    output_configuration = output_configuration or f"{configuration}_sauna"
    plans["configurations"][output_configuration] = {
        "inherits_from": configuration,
        "data_identifier": f"{plans_identifier}_{output_configuration}",
        "medloss": {**plans["configurations"][configuration].get("medloss", {}), "sauna_channels": len(keys)},
    }
    out_folder = os.path.join(pre_folder, plans["configurations"][output_configuration]["data_identifier"])
    os.makedirs(out_folder, exist_ok=True)
    ds_class = infer_dataset_class(in_folder)
    ds = ds_class(in_folder)
    spacing = tuple(float(s) for s in source.spacing)
    for identifier in tqdm(ds.identifiers, disable=not verbose, desc="SAUNA soft labels"):
        data, seg, _, properties = ds.load_case(identifier)
        data, seg = np.asarray(data[:]), np.asarray(seg[:]).astype(np.int16)
        channels = []
        for key in keys:
            mask = np.isin(seg[0], key if isinstance(key, (tuple, list)) else (key,))
            soft = sauna_soft_label(mask, spacing=spacing[-mask.ndim:], num_threads=num_threads)
            channels.append(np.round(soft * SCALE).astype(np.int16))
        seg_out = np.concatenate([seg[:1], np.stack(channels)], axis=0)
        kwargs = {}
        if ds_class is nnUNetDatasetBlosc2:  # chunking matched to the patch size, as nnU-Net's preprocessor does
            blocks, chunks = comp_blosc2_params(data.shape, tuple(source.patch_size), data.itemsize)
            blocks_seg, chunks_seg = comp_blosc2_params(seg_out.shape, tuple(source.patch_size), seg_out.itemsize)
            kwargs = dict(chunks=chunks, blocks=blocks, chunks_seg=chunks_seg, blocks_seg=blocks_seg)
        ds_class.save_case(data, seg_out, properties, os.path.join(out_folder, identifier), **kwargs)
    save_json(plans, plans_file, sort_keys=False)
    return output_configuration


class SAUNATerm(nn.Module):
    """SAUNA loss on nnU-Net logits: signed outputs ``2 p_c - 1`` of the foreground classes against stored soft
    labels (set :attr:`soft` to the dequantised ``(B, K, *spatial)`` labels before each call)."""

    def __init__(self, sauna_loss: nn.Module, has_regions: bool):
        super().__init__()
        self.loss, self.has_regions = sauna_loss, has_regions
        self.soft: Optional[torch.Tensor] = None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.soft is None:
            raise RuntimeError("SAUNATerm needs the batch's soft labels (set .soft) before it is called.")
        logits = logits.float()
        probs = torch.sigmoid(logits) if self.has_regions else torch.softmax(logits, 1)[:, 1:]
        if probs.shape != self.soft.shape:
            raise ValueError(f"soft labels of shape {tuple(self.soft.shape)} do not match the foreground outputs "
                             f"{tuple(probs.shape)}.")
        return self.loss(2.0 * probs - 1.0, self.soft)


class nnUNetTrainerMedlossSAUNA(nnUNetTrainerMedloss):
    """Dice+CE + ``weight`` x SAUNA loss (Focal-L1 + ``distance_weight`` x signed Jaccard) on SAUNA soft labels.

    Train on the ``<configuration>_sauna`` configuration made by ``medloss nnunet sauna-preprocess``. The SAUNA
    paper trains with the SAUNA loss alone (weight 1 for the Jaccard term); here it is added to nnU-Net's Dice+CE
    with ``weight`` 1 so that nnU-Net's validation, checkpoint selection and inference keep their meaning. The
    ignore label is not supported (the SAUNA losses pool over the whole batch).
    """

    # sauna_channels is written into the plans by sauna-preprocess
    medloss_defaults = {"weight": 1.0, "warmup_fraction": 0.0, "distance_weight": 1.0, "sauna_channels": None}
    medloss_full_resolution_only = True

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.sauna_channels = self.medloss["sauna_channels"]
        if self.sauna_channels is None:
            raise ValueError(
                f"configuration {configuration!r} carries no SAUNA soft labels: run `medloss nnunet sauna-preprocess "
                f"-d DATASET -c {configuration}` and train on the '{configuration}_sauna' configuration.")
        if self.label_manager.has_ignore_label:
            raise NotImplementedError("nnUNetTrainerMedlossSAUNA does not support datasets with an ignore label.")

    def build_medloss_loss(self, **activation):
        from medloss.losses import SAUNALoss

        return SAUNALoss(distance_weight=float(self.medloss["distance_weight"]), from_logits=False)

    def _build_loss(self):
        loss = super()._build_loss()
        # the SAUNA loss reads the stored soft labels, not nnU-Net's label target
        self._medloss_loss.term = self._sauna = SAUNATerm(self._medloss_loss.term.loss, self.label_manager.has_regions)
        return loss

    def _split_target(self, batch: dict) -> dict:
        target = batch["target"]
        full = target[0] if isinstance(target, list) else target
        if full.shape[1] != 1 + self.sauna_channels:
            raise ValueError(f"expected 1 label + {self.sauna_channels} SAUNA channels in the target, got "
                             f"{full.shape[1]} channels: was this configuration made by sauna-preprocess?")
        soft = full[:, 1:].float() / SCALE
        # 0 marks voxels outside the case (nnU-Net's -1 padding mapped to 0): background
        self._sauna.soft = torch.where(soft == 0, torch.full_like(soft, -1.0), soft).to(self.device)
        label = [t[:, :1] for t in target] if isinstance(target, list) else target[:, :1]
        return dict(batch, target=label)

    def train_step(self, batch: dict) -> dict:
        return super().train_step(self._split_target(batch))

    def validation_step(self, batch: dict) -> dict:
        return super().validation_step(self._split_target(batch))


__all__ += add_epoch_variants([nnUNetTrainerMedlossSAUNA], globals())
