"""A tiny preprocessed nnU-Net dataset, built once per session.

nnU-Net reads nnUNet_raw / nnUNet_preprocessed / nnUNet_results when nnunetv2.paths is first imported, so the
variables are set here, at collection time, before any test imports nnunetv2.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("nnunetv2", reason="nnU-Net tests need the nnunet extra (pip install 'medloss[nnunet]')")

ROOT = Path(tempfile.mkdtemp(prefix="medloss_nnunet_"))
for _var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
    os.environ[_var] = str(ROOT / _var)
    (ROOT / _var).mkdir()
os.environ["nnUNet_n_proc_DA"] = "0"  # single-threaded augmenter: deterministic and no worker processes
os.environ["nnUNet_def_n_proc"] = "1"
os.environ["nnUNet_compile"] = "false"

DATASET_ID = 511
DATASET = "Dataset511_Vessels"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(ROOT, ignore_errors=True)


def _bin(name):
    return str(Path(sys.executable).parent / name)


@pytest.fixture(scope="session")
def nnunet_dataset():
    """Raw + preprocessed Dataset511 (5 training cases of 32^3, 2 test cases) with a narrow '3d_tiny' config."""
    from medloss.data import write_synthetic_dataset
    from medloss.nnunet.datasets import add_plans_configuration

    raw, phantom = Path(os.environ["nnUNet_raw"]) / DATASET, dict(n_trees=2, max_depth=2, root_radius=(1.5, 3.0))
    write_synthetic_dataset(raw, n_cases=5, size=32, case_prefix="vessel_", phantom=phantom)
    write_synthetic_dataset(raw, n_cases=2, size=32, split="Ts", case_prefix="vesselts_", phantom=phantom)
    env = dict(os.environ, nnUNet_n_proc_DA="1")  # the planner calls torch.set_num_threads(nnUNet_n_proc_DA)
    subprocess.run([_bin("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1",
                    "-npfp", "1", "--verify_dataset_integrity"], check=True, env=env, capture_output=True)
    pre = Path(os.environ["nnUNet_preprocessed"]) / DATASET
    add_plans_configuration(str(pre / "nnUNetPlans.json"), "3d_tiny", width=4,
                            medloss={"num_epochs": 1, "num_iterations_per_epoch": 2, "num_val_iterations_per_epoch": 1})
    return {"raw": Path(raw), "preprocessed": pre, "id": DATASET_ID}


@pytest.fixture
def make_trainer(nnunet_dataset):
    """``make_trainer(name, configuration="3d_tiny", dataset_json=None, plans=None)``: a medloss trainer on CPU.

    Plans and dataset.json are read from the preprocessed Dataset511 unless given (``plans`` is copied: nnU-Net's
    ``__init__`` pops ``continue_training`` from it).
    """
    import torch

    import medloss.nnunet

    pre = nnunet_dataset["preprocessed"]

    def make(name, configuration="3d_tiny", dataset_json=None, plans=None):
        plans = dict(plans or json.loads((pre / "nnUNetPlans.json").read_text()))
        plans["continue_training"] = False  # what nnU-Net's get_trainer_from_args adds
        if dataset_json is None:
            dataset_json = json.loads((pre / "dataset.json").read_text())
        cls = name if isinstance(name, type) else getattr(medloss.nnunet, name)
        return cls(plans=plans, configuration=configuration, fold=0, dataset_json=dataset_json,
                   device=torch.device("cpu"))

    return make


@pytest.fixture
def started(make_trainer):
    """``with started(name, seed=0, **make_trainer_kwargs) as tr``: an initialised trainer with its data loaders.

    Seeds torch and numpy (nnU-Net's data loader draws cases and crops from numpy's global RNG) and ends the
    training (data loader workers, log) on exit.
    """
    import numpy as np
    import torch

    @contextlib.contextmanager
    def start(name, seed=0, **kwargs):
        torch.manual_seed(seed)
        np.random.seed(seed)
        tr = make_trainer(name, **kwargs)
        tr.initialize()
        tr.on_train_start()
        try:
            yield tr
        finally:
            tr.on_train_end()

    return start
