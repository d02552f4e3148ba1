"""Plans edits shared by the preprocessing steps that derive a configuration (``sauna-preprocess``,
``raters-preprocess``).

Both steps store extra segmentation channels (soft labels, rater maps) next to nnU-Net's preprocessed data, in a
new plans configuration ``<configuration>_<suffix>`` that inherits the source configuration and has its own
``data_identifier``, so that the standard preprocessed data stay untouched.
"""

from __future__ import annotations

import os
from typing import Any, Tuple

__all__ = ["load_plans_for_extra_channels", "add_derived_configuration"]


def load_plans_for_extra_channels(dataset: Any, configuration: str, plans_identifier: str, method: str,
                                  regions_note: str) -> Tuple[str, str, dict, dict]:
    """Read a dataset's plans and ``dataset.json`` for a step that stores extra segmentation channels.

    Args:
        dataset: dataset id or name (``501`` / ``"Dataset501_Name"``).
        configuration: the source configuration; it must exist in the plans.
        plans_identifier: plans file name without ``.json``.
        method: the method's name, for the error messages.
        regions_note: why region-based labels are not supported (nnU-Net's region conversion keeps only the first
            segmentation channel, which drops the extra channels).

    Returns:
        ``(dataset name, plans file, plans, dataset.json)``; ``dataset.json`` is the preprocessed folder's copy.

    Raises:
        ValueError: an unknown configuration.
        NotImplementedError: region-based labels or an ignore label.
    """
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2 import paths
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    name = maybe_convert_to_dataset_name(dataset)
    plans_file = os.path.join(paths.nnUNet_preprocessed, name, plans_identifier + ".json")
    plans = load_json(plans_file)
    if configuration not in plans["configurations"]:
        raise ValueError(
            f"{plans_file} has no configuration {configuration!r}; known: {list(plans['configurations'])}.")
    dataset_json = load_json(os.path.join(paths.nnUNet_preprocessed, name, "dataset.json"))
    lm = PlansManager(plans).get_label_manager(dataset_json)
    if lm.has_regions or lm.has_ignore_label:
        raise NotImplementedError(f"{method} in nnU-Net needs a dataset with plain integer labels and no ignore "
                                  f"label (dataset.json of {name}): {regions_note}")
    return name, plans_file, plans, dataset_json


def add_derived_configuration(plans: dict, configuration: str, output_configuration: str, plans_identifier: str,
                              **medloss: Any) -> str:
    """Add ``output_configuration`` to ``plans`` (in place): inherits ``configuration``, own data folder.

    Args:
        plans: the plans dict.
        configuration: the source configuration.
        output_configuration: the new configuration's name.
        plans_identifier: plans file name without ``.json`` (prefix of the new ``data_identifier``).
        medloss: entries added to the source's ``"medloss"`` entry (e.g. ``num_raters=3``), which the trainers read.

    Returns:
        The new configuration's ``data_identifier`` (its data folder's name).

    Example:
        >>> plans = {"configurations": {"3d_fullres": {"medloss": {"weight": 0.5}}}}
        >>> add_derived_configuration(plans, "3d_fullres", "3d_fullres_raters", "nnUNetPlans", num_raters=3)
        'nnUNetPlans_3d_fullres_raters'
        >>> plans["configurations"]["3d_fullres_raters"]["medloss"]
        {'weight': 0.5, 'num_raters': 3}
    """
    data_identifier = f"{plans_identifier}_{output_configuration}"
    plans["configurations"][output_configuration] = {
        "inherits_from": configuration,
        "data_identifier": data_identifier,
        "medloss": {**plans["configurations"][configuration].get("medloss", {}), **medloss},
    }
    return data_identifier
