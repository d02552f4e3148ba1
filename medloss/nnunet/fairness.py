"""nnU-Net v2 trainer for fair error-bound scaling (FEBS, FairSeg): cross-entropy + group-scaled soft Dice.

Tian et al., "FairSeg: A Large-Scale Medical Image Segmentation Dataset for Fairness Learning Using Segment Anything
Model with Fair Error-Bound Scaling", ICLR 2024, https://arxiv.org/abs/2311.02189; original implementation
https://github.com/Harvard-Ophthalmology-AI-Lab/FairSeg; :class:`medloss.losses.FairErrorBoundScalingLoss`.

Group file: each training case belongs to one identity group (race, sex, scanner, ...). The groups come from a group
file in the format of :mod:`medloss.data.groups` (``groups.json`` or ``groups.csv``, integer ids, ``-1`` = unknown),
looked up in this order:

1. the ``groups_file`` hyperparameter (a path; plans ``"medloss": {"groups_file": ...}`` or ``MEDLOSS_GROUPS_FILE``);
2. ``$nnUNet_raw/DatasetXXX_Name/groups.json`` or ``groups.csv``;
3. ``$nnUNet_preprocessed/DatasetXXX_Name/groups.json`` or ``groups.csv``.

A file found in the raw folder is copied to the preprocessed folder (so that training also works where only the
preprocessed data is present, as for nnU-Net's ``splits_final.json``), and the file used is copied into the
results folder (``<results>/<trainer>__<plans>__<configuration>/``) for provenance. A case of the preprocessed
dataset that is missing from the file is an error (never a silent group 0); extra entries are ignored.
"""

from __future__ import annotations

import os
import shutil
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn

from medloss.data import find_group_file, read_group_file
from medloss.nnunet.base import add_epoch_variants, nnUNetTrainerMedloss


class nnUNetTrainerMedlossFairScaling(nnUNetTrainerMedloss):
    """Cross-entropy + fair error-bound scaling (FEBS) soft Dice (Tian et al., FairSeg, ICLR 2024).

    nnU-Net's soft Dice is replaced by the FEBS Dice of :class:`medloss.losses.FairErrorBoundScalingLoss`, in which
    every sample's probabilities are scaled by the weight ``tanh((min_k L_k / L_g) ** gamma)`` of its group
    (re-estimated per batch and, under DDP, over the global batch: the loss all-reduces its group statistics at
    every call, in the same order on every rank). The combination follows FairSeg's TransUNet recipe,
    ``loss = ce_weight * CE + weight * FEBS`` with 0.5 / 0.5 (FairSeg's SAMed recipe is 0.2 / 0.8), at every
    deep-supervision scale with nnU-Net's scale weights; the same groups are used at every scale, in training and
    in validation.

    The groups come from a group file (format and lookup in the module docstring); every case of the preprocessed
    dataset must be listed. :meth:`medloss_batch_inputs` maps each batch's ``keys`` (case identifiers) to their
    group ids, which reach the loss's ``groups`` keyword. The mean group weights are logged per epoch.

    Hyperparameters (``medloss_defaults``; plans ``"medloss"`` entry or ``MEDLOSS_<KEY>``):
        weight: weight of the FEBS Dice (0.5). ce_weight: weight of cross-entropy (0.5).
        gamma: FEBS exponent (1.0). mode: ``"guarded"`` (default) or ``"faithful"`` (the original implementation's
        rules). num_groups: number of groups (None: ``max(group id) + 1`` over the dataset's cases).
        groups_file: explicit path of the group file (None: looked up).
        include_background: Dice over the background channel too (False, nnU-Net's convention; FairSeg: True).
        warmup_fraction: as every medloss trainer.

    Raises:
        FileNotFoundError: no group file (at initialisation). ValueError: a case missing from the file, bad group
        ids, ``num_groups`` too small. NotImplementedError: datasets with an ignore label (FEBS pools Dice sums
        over the batch and has no voxel mask).
    """

    medloss_defaults = {"weight": 0.5, "warmup_fraction": 0.0, "ce_weight": 0.5, "gamma": 1.0, "mode": "guarded",
                        "num_groups": None, "groups_file": None, "include_background": False}
    medloss_supports_ignore_label = False
    medloss_batch_keywords = ("groups",)

    # set when the loss is built (group file, its groups, the FEBS loss) and while training (mean group weights)
    case_groups: Optional[Dict[str, int]] = None
    group_file: Optional[str] = None
    num_groups: Optional[int] = None
    febs: Optional[nn.Module] = None
    group_weight_sum: Optional[torch.Tensor] = None
    group_weight_count = 0

    # ---- groups ----------------------------------------------------------------------------------------------
    def group_file_folders(self) -> List[str]:
        """Folders searched for ``groups.json`` / ``groups.csv``: raw dataset, then preprocessed dataset."""
        from nnunetv2 import paths

        folders = []
        if paths.nnUNet_raw is not None:
            folders.append(os.path.join(paths.nnUNet_raw, self.plans_manager.dataset_name))
        return folders + [self.preprocessed_dataset_folder_base]

    def load_groups(self) -> Dict[str, int]:
        """Read the group file and check that it covers every case of the preprocessed dataset.

        Returns:
            ``{case: group id}`` for the cases of the preprocessed dataset; sets :attr:`num_groups` and
            :attr:`group_file`.
        """
        folders = self.group_file_folders()
        try:
            path = find_group_file(folders, self.medloss["groups_file"])
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{type(self).__name__} needs one group id per training case: {err}\nOr set the "
                                    "'groups_file' hyperparameter (MEDLOSS_GROUPS_FILE).") from None
        groups = read_group_file(path)
        if self.local_rank == 0 and len(folders) == 2 and os.path.dirname(os.path.abspath(path)) == os.path.abspath(
                folders[0]):
            shutil.copyfile(path, os.path.join(folders[1], os.path.basename(path)))
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

        folder = self.preprocessed_dataset_folder
        cases = sorted(infer_dataset_class(folder).get_identifiers(folder))
        missing = [c for c in cases if c not in groups]
        if missing:
            raise ValueError(
                f"group file {path} has no group for {len(missing)} of the {len(cases)} cases of the dataset: "
                f"{missing[:10]}{' ...' if len(missing) > 10 else ''}. Every case needs a group id (use -1 for an "
                "unknown attribute)."
            )
        known = [groups[c] for c in cases]
        num_groups = self.medloss["num_groups"]
        if num_groups is None:
            num_groups = max(max(known) + 1, 1)
        elif max(known) >= int(num_groups):
            raise ValueError(f"group file {path} has group ids up to {max(known)} but num_groups={num_groups}.")
        self.num_groups = int(num_groups)
        self.group_file = path
        counts = np.bincount([g for g in known if g >= 0], minlength=self.num_groups)
        self.print_to_log_file(
            f"medloss FEBS groups from {path}: {self.num_groups} groups, cases per group {counts.tolist()}"
            + (f", {known.count(-1)} unknown (-1)" if -1 in known else ""), also_print_to_console=True)
        return {c: groups[c] for c in cases}

    def groups_of(self, keys) -> torch.Tensor:
        """``(B,)`` group ids of the batch's case identifiers."""
        missing = [k for k in keys if k not in self.case_groups]
        if missing:
            raise ValueError(f"no group for case(s) {missing} in the group file {self.group_file}.")
        return torch.tensor([self.case_groups[k] for k in keys], dtype=torch.long)

    # ---- hooks -----------------------------------------------------------------------------------------------
    def build_medloss_loss(self, **activation):
        from medloss.losses import FairErrorBoundScalingLoss

        if self.case_groups is None:
            self.case_groups = self.load_groups()
        activation = dict(activation, include_background=bool(self.medloss["include_background"]))
        self.febs = FairErrorBoundScalingLoss(**activation, num_groups=self.num_groups,
                                              gamma=float(self.medloss["gamma"]), mode=self.medloss["mode"],
                                              lambda_dice=1.0, lambda_ce=0.0)
        self.febs.register_forward_hook(self._record_group_weights)
        return self.febs

    def build_base_loss(self):
        return self.cross_entropy_loss(self.medloss["ce_weight"])

    def medloss_batch_inputs(self, batch: dict) -> dict:
        return {"groups": self.groups_of(list(batch["keys"]))}

    # ---- logging -----------------------------------------------------------------------------------------------
    def _record_group_weights(self, module: nn.Module, inputs, output) -> None:
        if not torch.is_grad_enabled():  # validation: log the training weights only
            return
        w = module.last_group_weights.detach().cpu().double().nan_to_num(0.0)
        self.group_weight_sum = w if self.group_weight_sum is None else self.group_weight_sum + w
        self.group_weight_count += 1

    def on_train_start(self):
        super().on_train_start()
        if self.local_rank == 0 and self.group_file is not None:
            shutil.copyfile(self.group_file, os.path.join(self.output_folder_base, os.path.basename(self.group_file)))

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        if self.group_weight_count:
            mean = (self.group_weight_sum / self.group_weight_count).tolist()
            self.print_to_log_file("medloss FEBS mean group weights: " + ", ".join(f"{w:.4f}" for w in mean))
            self.group_weight_sum, self.group_weight_count = None, 0


_TRAINERS = [nnUNetTrainerMedlossFairScaling]
__all__ = [c.__name__ for c in _TRAINERS] + add_epoch_variants(_TRAINERS, globals())
