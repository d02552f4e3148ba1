"""What the preprocessing steps that derive a configuration (``sauna-preprocess``, ``raters-preprocess``) share.

Both steps store extra segmentation channels (soft labels, rater maps) next to nnU-Net's preprocessed data, in a
new plans configuration ``<configuration>_<suffix>`` that inherits the source configuration and has its own
``data_identifier``, so that the standard preprocessed data stay untouched.

Both are transactions: :func:`load_plans_for_extra_channels` checks the environment, the dataset and the plans
before any work, and :func:`staged_configuration` writes the cases into a staging folder that replaces the
configuration's data folder, and then the plans file, only when every case was written. A failed run leaves the
data folder and the plans as they were; a second run overwrites the output of the first. (nnU-Net's blosc2 writer
refuses to write a ``.b2nd`` file that already exists, which is why cases are never written into an existing data
folder.)
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterator, Tuple

from medloss.data.outputs import check_output_file, check_output_folder, staged_folder, write_files_together

__all__ = ["nnunet_folder", "load_plans_for_extra_channels", "add_derived_configuration", "staged_configuration"]


def nnunet_folder(variable: str) -> str:
    """The folder named by one of nnU-Net's environment variables (``nnUNet_raw``, ``nnUNet_preprocessed``).

    Args:
        variable: the environment variable.

    Returns:
        Its value.

    Raises:
        ValueError: the variable is not set or names no folder.

    Example:
        >>> import os, tempfile
        >>> os.environ["medloss_doctest_folder"] = tempfile.gettempdir()
        >>> nnunet_folder("medloss_doctest_folder") == tempfile.gettempdir()
        True
        >>> del os.environ["medloss_doctest_folder"]
    """
    value = os.environ.get(variable)
    if not value:
        raise ValueError(f"the environment variable {variable} is not set: nnU-Net needs it to find its data "
                         f"(https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/setting_up_paths.md).")
    if not os.path.isdir(value):
        raise ValueError(f"the environment variable {variable}={value} names no folder.")
    return value


def _dataset_name(dataset: Any) -> str:
    """nnU-Net's name of ``dataset`` (an id or a ``DatasetXXX_Name``), found in nnU-Net's folders."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    if isinstance(dataset, str) and not dataset.startswith("Dataset") and not dataset.isdigit():
        raise ValueError(f"dataset {dataset!r}: expected an id (501) or a name (Dataset501_Name).")
    try:
        return maybe_convert_to_dataset_name(dataset)
    except RuntimeError as err:  # nnU-Net's error for an unknown or ambiguous id: its first sentence says which
        first = str(err).split(". ")[0].rstrip(".")
        folders = ", ".join(f"{v}={os.environ.get(v)}" for v in ("nnUNet_preprocessed", "nnUNet_raw"))
        raise ValueError(f"{first} ({folders}).") from None


def _read_json(path: str, what: str, hint: str) -> dict:
    if not os.path.isfile(path):
        raise ValueError(f"no {what} {path}: {hint}")
    try:
        with open(path) as f:
            content = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"the {what} {path} cannot be read as JSON ({err}).") from None
    if not isinstance(content, dict):
        raise ValueError(f"the {what} {path} holds a JSON {type(content).__name__}; expected an object.")
    return content


def load_plans_for_extra_channels(dataset: Any, configuration: str, plans_identifier: str, method: str,
                                  regions_note: str) -> Tuple[str, str, dict, dict]:
    """Check and read a dataset's plans and ``dataset.json`` for a step that stores extra segmentation channels.

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
        ValueError: ``nnUNet_preprocessed`` not set, an unknown dataset, a dataset that was not planned, a missing
            or unreadable plans file or ``dataset.json``, an unknown configuration.
        NotImplementedError: region-based labels or an ignore label.
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    preprocessed = nnunet_folder("nnUNet_preprocessed")
    name = _dataset_name(dataset)
    folder = os.path.join(preprocessed, name)
    plan_first = f"run nnUNetv2_plan_and_preprocess -d {dataset} first"
    if not os.path.isdir(folder):
        raise ValueError(f"dataset {name} has no folder in nnUNet_preprocessed ({folder}): {plan_first}.")
    plans_file = os.path.join(folder, plans_identifier + ".json")
    plans = _read_json(plans_file, "plans file", f"{plan_first}, or give the plans identifier (-p).")
    configurations = plans.get("configurations")
    if not isinstance(configurations, dict) or configuration not in configurations:
        known = list(configurations) if isinstance(configurations, dict) else []
        raise ValueError(f"{plans_file} has no configuration {configuration!r}; known: {known}.")
    dataset_json = _read_json(os.path.join(folder, "dataset.json"), "dataset.json", f"{plan_first}.")
    lm = PlansManager(plans).get_label_manager(dataset_json)
    if lm.has_regions or lm.has_ignore_label:
        raise NotImplementedError(f"{method} in nnU-Net needs a dataset with plain integer labels and no ignore "
                                  f"label (dataset.json of {name}): {regions_note}")
    return name, plans_file, plans, dataset_json


def add_derived_configuration(plans: dict, configuration: str, output_configuration: str, plans_identifier: str,
                              **medloss: Any) -> str:
    """Add ``output_configuration`` to ``plans`` (in place): inherits ``configuration``, own data folder.

    An existing entry of that name (from an earlier run) is replaced.

    Args:
        plans: the plans dict.
        configuration: the source configuration.
        output_configuration: the new configuration's name.
        plans_identifier: plans file name without ``.json`` (prefix of the new ``data_identifier``).
        medloss: entries added to the source's ``"medloss"`` entry (e.g. ``num_raters=3``), which the trainers read.

    Returns:
        The new configuration's ``data_identifier`` (its data folder's name).

    Raises:
        ValueError: ``output_configuration`` is ``configuration`` (it would inherit from itself).

    Example:
        >>> plans = {"configurations": {"3d_fullres": {"medloss": {"weight": 0.5}}}}
        >>> add_derived_configuration(plans, "3d_fullres", "3d_fullres_raters", "nnUNetPlans", num_raters=3)
        'nnUNetPlans_3d_fullres_raters'
        >>> plans["configurations"]["3d_fullres_raters"]["medloss"]
        {'weight': 0.5, 'num_raters': 3}
    """
    if output_configuration == configuration:
        raise ValueError(f"the output configuration must differ from the source configuration {configuration!r}.")
    data_identifier = f"{plans_identifier}_{output_configuration}"
    plans["configurations"][output_configuration] = {
        "inherits_from": configuration,
        "data_identifier": data_identifier,
        "medloss": {**plans["configurations"][configuration].get("medloss", {}), **medloss},
    }
    return data_identifier


@contextlib.contextmanager
def staged_configuration(plans: dict, plans_file: str, data_folder: str) -> Iterator[str]:
    """Write a derived configuration's cases as a transaction: ``with staged_configuration(...) as folder:``.

    The output locations are checked on entry. The block writes the cases into ``folder``, a new empty staging
    folder next to ``data_folder``; when it succeeds, the staging folder replaces ``data_folder`` (the output of an
    earlier run included) and then ``plans`` is written to ``plans_file`` (through a temporary file). When it fails,
    the staging folder is removed and ``data_folder`` and ``plans_file`` are left as they were.

    Args:
        plans: the plans with the derived configuration (:func:`add_derived_configuration`).
        plans_file: the plans file to update.
        data_folder: the derived configuration's data folder (``nnUNet_preprocessed/<dataset>/<data_identifier>``).

    Yields:
        The staging folder to write the cases into.

    Raises:
        ValueError: the plans file or the data folder cannot be written.

    Example:
        >>> import json, os, tempfile
        >>> root = tempfile.mkdtemp()
        >>> plans_file = os.path.join(root, "plans.json")
        >>> with staged_configuration({"configurations": {}}, plans_file, os.path.join(root, "data")) as folder:
        ...     open(os.path.join(folder, "case.pkl"), "w").close()
        >>> sorted(os.listdir(root)), os.listdir(os.path.join(root, "data"))
        (['data', 'plans.json'], ['case.pkl'])
    """
    check_output_file(plans_file, "plans file")
    check_output_folder(data_folder, "preprocessed data folder")
    with staged_folder(data_folder, replace=True) as staging:
        yield str(staging)
    # the data first: plans naming a configuration whose data are missing would break training
    write_files_together({plans_file: lambda f: json.dump(plans, f, sort_keys=False, indent=4)})
