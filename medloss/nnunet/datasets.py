"""Plans edits for trying medloss trainers out on small datasets (tutorials, tests).

:func:`add_plans_configuration` adds a configuration inheriting ``3d_fullres`` (narrower network, shorter schedule,
a ``medloss`` entry) to a preprocessed plans file without re-preprocessing. A small synthetic raw dataset to
preprocess first is written by :func:`medloss.data.write_synthetic_dataset` into
``$nnUNet_raw/Dataset<ID>_<Name>``.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Dict, Optional

__all__ = ["add_plans_configuration"]


def add_plans_configuration(
    plans_file: str,
    name: str,
    inherits_from: str = "3d_fullres",
    width: Optional[int] = None,
    medloss: Optional[Dict[str, Any]] = None,
) -> None:
    """Add configuration ``name`` to an nnU-Net plans file (in place).

    Args:
        width: features of the first stage (doubling per stage); ``None`` keeps the network.
        medloss: the ``medloss`` entry read by medloss trainers (method hyperparameters and nnU-Net schedule
            attributes such as ``num_epochs``).
    """
    with open(plans_file) as f:
        plans = json.load(f)
    if inherits_from not in plans["configurations"]:
        raise ValueError(f"plans file {plans_file} has no configuration {inherits_from!r} to inherit from.")
    config: Dict[str, Any] = {"inherits_from": inherits_from}
    if width is not None:
        # plans inheritance is a shallow update: the whole architecture entry must be given
        arch = copy.deepcopy(plans["configurations"][inherits_from]["architecture"])
        n = arch["arch_kwargs"]["n_stages"]
        arch["arch_kwargs"]["features_per_stage"] = [min(width * 2 ** i, 320) for i in range(n)]
        config["architecture"] = arch
    if medloss:
        config["medloss"] = dict(medloss)
    plans["configurations"][name] = config
    with open(plans_file, "w") as f:
        json.dump(plans, f, indent=1)
