"""nnU-Net v2 trainer for fair error-bound scaling (FEBS, FairSeg): cross-entropy + group-scaled soft Dice.

Group file
----------
Each training case belongs to one identity group (race, sex, scanner, ...). The trainer reads the groups from a
file next to the dataset, looked up in this order:

1. the ``groups_file`` hyperparameter (a path; plans ``"medloss": {"groups_file": ...}`` or ``MEDLOSS_GROUPS_FILE``);
2. ``$nnUNet_raw/DatasetXXX_Name/groups.json`` or ``groups.csv``;
3. ``$nnUNet_preprocessed/DatasetXXX_Name/groups.json`` or ``groups.csv``.

A file found in the raw folder is copied to the preprocessed folder (so that training also works where only the
preprocessed data is present, as for nnU-Net's ``splits_final.json``), and the file used is copied into the
results folder (``<results>/<trainer>__<plans>__<configuration>/``) for provenance.

Formats (case identifiers are nnU-Net's: the image file name without ``_0000`` and the file ending)::

    groups.json   {"case_001": 0, "case_002": 1, ...}
    groups.csv    case,group            (header optional; "," or ";" or tab separated)
                  case_001,0
                  case_002,1

Group ids are integers in ``[0, num_groups)``; ``-1`` marks an explicitly unknown attribute (FEBS then gives that
sample a neutral weight, see :class:`medloss.losses.FairErrorBoundScalingLoss`). A case of the preprocessed dataset
that is missing from the file is an error (never a silent group 0); extra entries are ignored.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from typing import Dict, Iterable, Optional

import numpy as np
import torch
from torch import nn

from medloss.nnunet.base import add_epoch_variants, nnUNetTrainerMedloss

GROUP_FILE_NAMES = ("groups.json", "groups.csv")


def read_group_file(path: str) -> Dict[str, int]:
    """Read a ``groups.json`` / ``groups.csv`` file into ``{case_id: group}`` (see the module docstring).

    Raises:
        ValueError: unreadable content, a group that is not an integer >= -1, or a case listed twice (csv).
    """
    if path.endswith(".json"):
        with open(path) as f:
            try:
                raw = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"group file {path} is not valid JSON: {err}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"group file {path} must hold a JSON object {{case_id: group}}, got {type(raw).__name__}.")
        items = list(raw.items())
    else:
        with open(path, newline="") as f:
            text = f.read()
        try:
            dialect = csv.Sniffer().sniff(text[:2048], delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        rows = [r for r in csv.reader(text.splitlines(), dialect) if r and any(c.strip() for c in r)]
        if rows and not _is_int(rows[0][-1]):
            rows = rows[1:]  # header
        items = []
        seen = set()
        for i, row in enumerate(rows):
            if len(row) != 2:
                raise ValueError(f"group file {path}: expected two columns 'case,group' per row, got {row!r}.")
            case = row[0].strip()
            if case in seen:
                raise ValueError(f"group file {path}: case {case!r} is listed twice.")
            seen.add(case)
            items.append((case, row[1].strip()))
    groups = {}
    for case, group in items:
        if isinstance(group, bool) or not _is_int(group):
            raise ValueError(f"group file {path}: the group of case {case!r} must be an integer >= -1, got {group!r}.")
        value = int(group)
        if value < -1:
            raise ValueError(
                f"group file {path}: the group of case {case!r} must be >= -1 (-1 = unknown), got {value}.")
        groups[str(case)] = value
    return groups


def _is_int(value) -> bool:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return True
    if isinstance(value, float):
        return value.is_integer()
    try:
        int(str(value).strip())
        return True
    except ValueError:
        return False


def find_group_file(folders: Iterable[str], explicit: Optional[str] = None) -> str:
    """The group file to use: ``explicit`` if given, else the first ``groups.json``/``groups.csv`` in ``folders``."""
    if explicit:
        if not os.path.isfile(explicit):
            raise FileNotFoundError(f"groups_file {explicit!r} does not exist.")
        return explicit
    searched = []
    for folder in folders:
        for name in GROUP_FILE_NAMES:
            path = os.path.join(folder, name)
            searched.append(path)
            if os.path.isfile(path):
                return path
    raise FileNotFoundError(
        "fair error-bound scaling needs one group id per training case, but no group file was found. Searched:\n  "
        + "\n  ".join(searched)
        + "\nWrite groups.json ({\"case_id\": group, ...}) or groups.csv (case,group) into the raw dataset folder, "
        "or set the 'groups_file' hyperparameter (MEDLOSS_GROUPS_FILE)."
    )


class _GroupedTerm(nn.Module):
    """FEBS Dice called as ``(input, target)``: the groups of the current batch are set by the trainer."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss
        self.groups: Optional[torch.Tensor] = None
        self.weight_sum: Optional[torch.Tensor] = None
        self.weight_count = 0

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.groups is None:
            raise RuntimeError("the FEBS term was called before the trainer set the batch's groups.")
        value = self.loss(input, target, self.groups.to(input.device))
        if not torch.is_grad_enabled():  # validation: log the training weights only
            return value
        w = self.loss.last_group_weights.detach().cpu().double()
        self.weight_sum = w.nan_to_num(0.0) if self.weight_sum is None else self.weight_sum + w.nan_to_num(0.0)
        self.weight_count += 1
        return value


class nnUNetTrainerMedlossFairScaling(nnUNetTrainerMedloss):
    """Cross-entropy + fair error-bound scaling (FEBS) soft Dice (Tian et al., FairSeg, ICLR 2024).

    https://arxiv.org/abs/2311.02189. nnU-Net's soft Dice is replaced by the FEBS Dice of
    :class:`medloss.losses.FairErrorBoundScalingLoss`, in which every sample's probabilities are scaled by the weight
    ``tanh((min_k L_k / L_g) ** gamma)`` of its group (re-estimated per batch and, under DDP, over the global batch:
    the loss all-reduces its group statistics at every call, in the same order on every rank). The combination
    follows FairSeg's TransUNet recipe, ``loss = ce_weight * CE + weight * FEBS`` with 0.5 / 0.5 (FairSeg's SAMed
    recipe is 0.2 / 0.8), at every deep-supervision scale with nnU-Net's scale weights; the same groups are used at
    every scale, in training and in validation.

    The groups come from a group file (format and lookup in the module docstring of
    :mod:`medloss.nnunet.trainers_fairness`); every case of the preprocessed dataset must be listed. The trainer
    maps each batch's ``keys`` (case identifiers) to their groups before calling nnU-Net's ``train_step`` /
    ``validation_step``, and logs the mean group weights per epoch.

    Hyperparameters (``medloss_defaults``; plans ``"medloss"`` entry or ``MEDLOSS_<KEY>``):
        weight: weight of the FEBS Dice (0.5). ce_weight: weight of cross-entropy (0.5).
        gamma: FEBS exponent (1.0). mode: ``"guarded"`` (default) or ``"faithful"`` (released FairSeg rules).
        num_groups: number of groups (None: ``max(group id) + 1`` over the file).
        groups_file: explicit path of the group file (None: looked up).
        include_background: Dice over the background channel too (False, nnU-Net's convention; FairSeg: True).
        warmup_fraction: as every medloss trainer.

    Raises:
        FileNotFoundError: no group file. ValueError: a case missing from the file, bad group ids.
        NotImplementedError: datasets with an ignore label (FEBS has no voxel mask).
    """

    medloss_defaults = {"weight": 0.5, "warmup_fraction": 0.0, "ce_weight": 0.5, "gamma": 1.0, "mode": "guarded",
                        "num_groups": None, "groups_file": None, "include_background": False}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.case_groups: Optional[Dict[str, int]] = None
        self.group_file: Optional[str] = None
        self._grouped: Optional[_GroupedTerm] = None

    # ---- groups ----------------------------------------------------------------------------------------------
    def group_file_folders(self):
        """Folders searched for ``groups.json`` / ``groups.csv``: raw dataset, then preprocessed dataset."""
        from nnunetv2 import paths

        folders = []
        if paths.nnUNet_raw is not None:
            folders.append(os.path.join(paths.nnUNet_raw, self.plans_manager.dataset_name))
        return folders + [self.preprocessed_dataset_folder_base]

    def load_groups(self) -> Dict[str, int]:
        """Read the group file and check that it covers every case of the preprocessed dataset."""
        path = find_group_file(self.group_file_folders(), self.medloss["groups_file"])
        groups = read_group_file(path)
        folders = self.group_file_folders()
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

    # ---- loss --------------------------------------------------------------------------------------------------
    def build_medloss_loss(self, **activation):
        from medloss.losses import FairErrorBoundScalingLoss

        if self.case_groups is None:
            self.case_groups = self.load_groups()
        activation = dict(activation, include_background=bool(self.medloss["include_background"]))
        febs = FairErrorBoundScalingLoss(**activation, num_groups=self.num_groups, gamma=float(self.medloss["gamma"]),
                                         mode=self.medloss["mode"], lambda_dice=1.0, lambda_ce=0.0)
        self._grouped = _GroupedTerm(febs)
        return self._grouped

    def build_base_loss(self):
        from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss

        from medloss.nnunet.base import _MaskedBCE, _Scaled

        lm = self.label_manager
        ce: nn.Module = _MaskedBCE(False) if lm.has_regions else RobustCrossEntropyLoss()
        return self.deep_supervised(_Scaled(ce, float(self.medloss["ce_weight"])))

    # ---- steps: the batch's groups go to the loss before nnU-Net's step runs ----------------------------------------
    def _set_groups(self, batch: dict) -> None:
        if self._grouped is not None:
            self._grouped.groups = self.groups_of(list(batch["keys"])).to(self.device)

    def train_step(self, batch: dict) -> dict:
        self._set_groups(batch)
        return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        self._set_groups(batch)
        return super().validation_step(batch)

    def on_train_start(self):
        super().on_train_start()
        if self.local_rank == 0 and self.group_file is not None:
            shutil.copyfile(self.group_file, os.path.join(self.output_folder_base, os.path.basename(self.group_file)))

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        g = self._grouped
        if g is not None and g.weight_count:
            mean = (g.weight_sum / g.weight_count).tolist()
            self.print_to_log_file("medloss FEBS mean group weights: " + ", ".join(f"{w:.4f}" for w in mean))
            g.weight_sum, g.weight_count = None, 0


_METHOD_TRAINERS = [nnUNetTrainerMedlossFairScaling]
_variants = add_epoch_variants(_METHOD_TRAINERS, globals())

__all__ = [c.__name__ for c in _METHOD_TRAINERS] + _variants + ["read_group_file", "find_group_file"]
