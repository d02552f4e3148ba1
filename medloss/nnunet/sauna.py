"""SAUNA signed soft labels inside nnU-Net: a preprocessing step and a trainer.

Dang et al., "SAUNA: Image-level Regression for Uncertainty-aware Retinal Vessel Segmentation", WACV 2025,
https://arxiv.org/abs/2405.16815; original implementation https://github.com/Oulu-IMEDS/SAUNA;
:func:`medloss.transforms.sauna_soft_label`, :class:`medloss.losses.SAUNALoss`.

Why a preprocessing step and not an in-loss computation: the SAUNA label of a voxel depends on the thickest vessel
of the *whole case* (its scale and window size), so computing it on a training patch gives other values than on
the case (``tests/nnunet/test_sauna.py`` shows the difference). :func:`preprocess_sauna` therefore computes the soft
labels once per case on nnU-Net's preprocessed grid (after resampling, with the configuration's physical spacing),
and stores them as extra channels of the segmentation in a new configuration ``<configuration>_sauna``. nnU-Net's
data loader and augmentation crop, flip and rotate all segmentation channels together (nearest-neighbour), so the
soft labels reach the loss aligned with the patch.

Storage: int16 channels ``round(32000 * soft)`` (resolution 3e-5, :data:`SCALE`). nnU-Net pads segmentations with -1
and maps -1 to 0; the SAUNA label is never 0, so a stored 0 means "outside the case" and is read back as -1
(background).

Training (:class:`nnUNetTrainerMedlossSAUNA`): nnU-Net's Dice+CE on the label channel plus ``weight`` x
:class:`medloss.losses.SAUNALoss` on the full-resolution output, where the signed output of foreground class c is
``2 p_c - 1`` (``p`` = nnU-Net's softmax). For two classes this is ``tanh(z/2)`` of the logit difference, SAUNA's
tanh head, and its zero level is nnU-Net's decision boundary, so inference is nnU-Net's own.

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
from medloss.nnunet.preprocessing import (add_derived_configuration, load_plans_for_extra_channels,
                                         staged_configuration)
from medloss.validation import prepare_input_target

#: Quantisation of the stored soft labels: ``int16(round(SCALE * soft))``.
SCALE = 32000.0
#: Why region-based labels are not supported.
REGIONS_NOTE = ("nnU-Net's conversion of a segmentation to regions keeps only its first channel, which would drop "
                "the stored soft labels.")


def preprocess_sauna(dataset: Any, configuration: str = "3d_fullres", plans_identifier: str = "nnUNetPlans",
                     output_configuration: Optional[str] = None, num_threads: int = 1, verbose: bool = True) -> str:
    """Add SAUNA soft-label channels to a preprocessed configuration; returns the new configuration's name.

    A transaction (:func:`medloss.nnunet.preprocessing.staged_configuration`): the dataset, the plans and every
    preprocessed case of ``configuration`` are checked before the first case is written; the cases are written into
    a staging folder that replaces the output configuration's data folder, and the plans are updated, only when all
    were written. Running it again recomputes the soft labels and overwrites the earlier output; a failed run leaves
    the earlier output and the plans as they were.

    Args:
        dataset: dataset id or name (``501`` / ``"Dataset501_Name"``), already preprocessed for ``configuration``.
        configuration: the source configuration (its data are read, not changed).
        plans_identifier: plans file name without ``.json``.
        output_configuration: default ``<configuration>_sauna``; it inherits ``configuration`` with its own
            ``data_identifier`` and a ``"medloss": {"sauna_channels": K}`` entry (K = foreground labels).
        num_threads: threads of the distance transform.
        verbose: show a progress bar.

    Raises:
        ValueError: ``nnUNet_preprocessed`` not set, an unknown dataset or configuration, no plans file, the source
            configuration was not preprocessed or one of its cases cannot be read, an output that cannot be written.
        NotImplementedError: region-based labels or an ignore label (see :class:`nnUNetTrainerMedlossSAUNA`).
    """
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from tqdm import tqdm

    from medloss.transforms import sauna_soft_label

    name, plans_file, plans, dataset_json = load_plans_for_extra_channels(
        dataset, configuration, plans_identifier, "SAUNA", REGIONS_NOTE)
    plans_manager = PlansManager(plans)
    source = plans_manager.get_configuration(configuration)
    pre_folder = os.path.dirname(plans_file)
    ds = _open_source_cases(os.path.join(pre_folder, source.data_identifier), dataset, configuration)
    keys = plans_manager.get_label_manager(dataset_json).foreground_labels
    output_configuration = output_configuration or f"{configuration}_sauna"
    out_folder = os.path.join(pre_folder, add_derived_configuration(
        plans, configuration, output_configuration, plans_identifier, sauna_channels=len(keys)))
    spacing = tuple(float(s) for s in source.spacing)
    with staged_configuration(plans, plans_file, out_folder) as staging:
        for identifier in tqdm(ds.identifiers, disable=not verbose, desc="SAUNA soft labels"):
            data, seg, properties = _load_source_case(ds, identifier)
            seg = seg.astype(np.int16)
            channels = []
            for key in keys:
                mask = seg[0] == key
                soft = sauna_soft_label(mask, spacing=spacing[-mask.ndim:], num_threads=num_threads)
                channels.append(np.round(soft * SCALE).astype(np.int16))
            seg_out = np.concatenate([seg[:1], np.stack(channels)], axis=0)
            kwargs = {}
            if isinstance(ds, nnUNetDatasetBlosc2):  # chunking matched to the patch size, as nnU-Net's preprocessor
                blocks, chunks = comp_blosc2_params(data.shape, tuple(source.patch_size), data.itemsize)
                blocks_seg, chunks_seg = comp_blosc2_params(seg_out.shape, tuple(source.patch_size),
                                                            seg_out.itemsize)
                kwargs = dict(chunks=chunks, blocks=blocks, chunks_seg=chunks_seg, blocks_seg=blocks_seg)
            type(ds).save_case(data, seg_out, properties, os.path.join(staging, identifier), **kwargs)
    return output_configuration


def _open_source_cases(folder: str, dataset: Any, configuration: str):
    """nnU-Net's dataset of the preprocessed ``folder``, every case opened once (headers and properties) to check it."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    if not os.path.isdir(folder) or not os.listdir(folder):
        raise ValueError(f"{folder} holds no preprocessed cases: run nnUNetv2_plan_and_preprocess -d {dataset} "
                         f"-c {configuration} first.")
    try:
        ds = infer_dataset_class(folder)(folder)
    except (AssertionError, KeyError) as err:  # nnU-Net's errors for mixed or unknown file endings
        raise ValueError(f"{folder} is not a folder of nnU-Net preprocessed cases ({err}).") from None
    if not ds.identifiers:
        raise ValueError(f"{folder} holds no preprocessed cases: run nnUNetv2_plan_and_preprocess -d {dataset} "
                         f"-c {configuration} first.")
    for identifier in ds.identifiers:
        data, seg, properties = _load_source_case(ds, identifier, read=False)
        if seg.ndim != data.ndim or seg.shape[1:] != data.shape[1:]:
            raise ValueError(f"preprocessed case {identifier!r} in {folder}: segmentation of shape {seg.shape} does "
                             f"not match the image of shape {data.shape}.")
    return ds


def _load_source_case(ds, identifier: str, read: bool = True):
    """``(data, seg, properties)`` of a preprocessed case (arrays read into memory unless ``read=False``)."""
    try:
        data, seg, _, properties = ds.load_case(identifier)
        if read:
            data, seg = np.asarray(data[:]), np.asarray(seg[:])
    except Exception as err:  # blosc2, numpy and pickle each raise their own errors on a corrupt file
        raise ValueError(f"preprocessed case {identifier!r} in {ds.source_folder} cannot be read "
                         f"({type(err).__name__}: {err}).") from None
    return data, seg, properties


class SAUNATerm(nn.Module):
    """SAUNA loss on nnU-Net logits: signed foreground outputs ``2 p - 1`` against the batch's soft labels.

    Args:
        sauna_loss: a :class:`medloss.losses.SAUNALoss` built with ``from_logits=False`` (it receives values in
            ``[-1, 1]``).
        include_background, to_onehot_y, sigmoid, softmax: the MONAI flags that decode nnU-Net's logits
            (:func:`medloss.nnunet.loss_wiring.activation_kwargs`); ``p`` are the probabilities they give.

    Shapes:
        ``forward(logits, target, soft_labels)``: logits ``(B, C, *spatial)``; ``target`` as nnU-Net gives it (only
        used by the decoding); ``soft_labels`` ``(B, K, *spatial)`` in ``[-1, 1]`` with K the decoded channels
        (the foreground classes). Returns the SAUNA loss.

    Raises:
        ValueError: soft labels whose shape differs from the decoded outputs.
    """

    def __init__(self, sauna_loss: nn.Module, include_background: bool = False, to_onehot_y: bool = True,
                 sigmoid: bool = False, softmax: bool = True):
        super().__init__()
        self.loss = sauna_loss
        self.activation = dict(include_background=include_background, to_onehot_y=to_onehot_y, sigmoid=sigmoid,
                               softmax=softmax)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, soft_labels: torch.Tensor) -> torch.Tensor:
        probs, _, _ = prepare_input_target(logits.float(), target, **self.activation)
        if probs.shape != soft_labels.shape:
            raise ValueError(f"soft labels of shape {tuple(soft_labels.shape)} do not match the decoded outputs "
                             f"{tuple(probs.shape)}.")
        return self.loss(2.0 * probs - 1.0, soft_labels)


class nnUNetTrainerMedlossSAUNA(nnUNetTrainerMedloss):
    """Dice+CE + ``weight`` x SAUNA loss (Focal-L1 + ``distance_weight`` x signed Jaccard) on SAUNA soft labels.

    Train on the ``<configuration>_sauna`` configuration made by ``medloss nnunet sauna-preprocess``
    (:func:`preprocess_sauna`). The SAUNA paper trains with the SAUNA loss alone (weight 1 for the Jaccard term);
    here it is added to nnU-Net's Dice+CE with ``weight`` 1 so that nnU-Net's validation, checkpoint selection and
    inference keep their meaning. :meth:`medloss_batch_inputs` reads the soft labels from the extra target channels
    and :meth:`medloss_step_batch` hands nnU-Net's step the label channel alone.

    Hyperparameters (``medloss_defaults``; plans ``"medloss"`` entry or ``MEDLOSS_<KEY>``):
        weight (1.0), distance_weight (1.0), warmup_fraction; ``sauna_channels`` is written by the preprocessing.

    Raises:
        ValueError: a configuration without soft labels. NotImplementedError: region-based labels or an ignore label
        (the SAUNA losses pool over the whole batch and have no voxel mask).
    """

    # sauna_channels is written into the plans by sauna-preprocess
    medloss_defaults = {"weight": 1.0, "warmup_fraction": 0.0, "distance_weight": 1.0, "sauna_channels": None}
    medloss_full_resolution_only = True
    medloss_supports_regions = False
    medloss_supports_ignore_label = False
    medloss_label_setup_note = REGIONS_NOTE
    medloss_batch_keywords = ("soft_labels",)

    def check_hyperparameters(self) -> None:
        if self.medloss["sauna_channels"] is None:
            configuration = self.configuration_name
            raise ValueError(
                f"configuration {configuration!r} carries no SAUNA soft labels: run `medloss nnunet sauna-preprocess "
                f"-d DATASET -c {configuration}` and train on the '{configuration}_sauna' configuration.")

    def build_medloss_loss(self, **activation):
        from medloss.losses import SAUNALoss

        return SAUNATerm(SAUNALoss(distance_weight=float(self.medloss["distance_weight"]), from_logits=False),
                         **activation)

    def medloss_batch_inputs(self, batch: dict) -> dict:
        """The dequantised soft labels ``(B, K, *spatial)`` of the full-resolution target's extra channels."""
        target = batch["target"]
        full = target[0] if isinstance(target, list) else target
        channels = int(self.medloss["sauna_channels"])
        if full.shape[1] != 1 + channels:
            raise ValueError(f"expected 1 label + {channels} SAUNA channels in the target, got "
                             f"{full.shape[1]} channels: was this configuration made by sauna-preprocess?")
        soft = full[:, 1:].float() / SCALE
        # 0 marks voxels outside the case (nnU-Net's -1 padding mapped to 0): background
        return {"soft_labels": torch.where(soft == 0, torch.full_like(soft, -1.0), soft)}

    def medloss_step_batch(self, batch: dict) -> dict:
        """The batch with the label channel alone as target (every deep-supervision scale)."""
        target = batch["target"]
        label = [t[:, :1] for t in target] if isinstance(target, list) else target[:, :1]
        return dict(batch, target=label)


_TRAINERS = [nnUNetTrainerMedlossSAUNA]
__all__ = ["preprocess_sauna", "SAUNATerm", "SCALE"] + [c.__name__ for c in _TRAINERS] + add_epoch_variants(
    _TRAINERS, globals())
