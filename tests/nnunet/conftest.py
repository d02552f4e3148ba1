"""A tiny preprocessed nnU-Net dataset, built once per session.

nnU-Net reads nnUNet_raw / nnUNet_preprocessed / nnUNet_results when nnunetv2.paths is first imported, so the
variables are set here, at collection time, before any test imports nnunetv2.
"""

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
    from medloss.nnunet.datasets import add_plans_configuration, write_synthetic_dataset

    raw = write_synthetic_dataset(os.environ["nnUNet_raw"], DATASET_ID, "Vessels", n_train=5, n_test=2, size=32)
    env = dict(os.environ, nnUNet_n_proc_DA="1")  # the planner calls torch.set_num_threads(nnUNet_n_proc_DA)
    subprocess.run([_bin("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1",
                    "-npfp", "1", "--verify_dataset_integrity"], check=True, env=env, capture_output=True)
    pre = Path(os.environ["nnUNet_preprocessed"]) / DATASET
    add_plans_configuration(str(pre / "nnUNetPlans.json"), "3d_tiny", width=4,
                            medloss={"num_epochs": 1, "num_iterations_per_epoch": 2, "num_val_iterations_per_epoch": 1})
    return {"raw": Path(raw), "preprocessed": pre, "id": DATASET_ID}
