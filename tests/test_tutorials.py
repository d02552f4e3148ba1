"""Every tutorial runs end to end with its small settings, as a user would start it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


def run_tutorial(name, *args, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    out = subprocess.run([sys.executable, str(TUTORIALS / name), "--small", *args], capture_output=True, text=True,
                         timeout=timeout, env=env, cwd=TUTORIALS.parent, check=False)
    assert out.returncode == 0, f"{name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_every_tutorial_is_listed_in_the_readme():
    readme = (TUTORIALS / "README.md").read_text()
    scripts = sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.py"))
    assert len(scripts) == 4
    for script in scripts:
        assert script in readme


def test_tour_of_losses_and_transforms():
    out = run_tutorial("01_tour_of_losses_and_transforms.py")
    # the semimetric is zero at the soft label, and the Betti gap example costs (0.8 - 0.1)^2
    assert re.search(r"DiceSemimetricLoss\(soft, soft\).*\s0\.0000\n", out), out
    assert re.search(r"BettiMatchingLoss.*\s0\.4900\n", out), out
    assert "IMPACTSynthLoss" in out and "tour finished" in out


@pytest.mark.slow
def test_nnunet_with_medloss(tmp_path):
    pytest.importorskip("nnunetv2")
    import nibabel as nib
    import numpy as np

    out = run_tutorial("02_nnunet_with_medloss.py", "--out", str(tmp_path))
    dice = float(re.search(r"^foreground mean Dice: (\S+)$", out, re.MULTILINE).group(1))
    # nnU-Net trained and predicted: a checkpoint, and one label map per test case on the test label's grid
    raw = tmp_path / "nnUNet_raw" / "Dataset521_Vessels"
    assert list((tmp_path / "nnUNet_results").rglob("checkpoint_final.pth"))
    preds = sorted((tmp_path / "pred").glob("*.nii.gz"))
    assert [p.name for p in preds] == ["vesselts_000.nii.gz", "vesselts_001.nii.gz"]
    # the printed Dice is the mean of the test cases' Dice, recomputed here from the files (nnU-Net's convention:
    # a case with no foreground in prediction and reference has no Dice)
    values = []
    for p in preds:
        pred = np.asarray(nib.load(str(p)).dataobj) > 0
        ref = np.asarray(nib.load(str(raw / "labelsTs" / p.name)).dataobj) > 0
        assert pred.shape == ref.shape
        if pred.any() or ref.any():
            values.append(2 * (pred & ref).sum() / (pred.sum() + ref.sum()))
    assert values and dice == pytest.approx(np.mean(values), abs=1e-4)


def test_monai_bundle(tmp_path):
    pytest.importorskip("ignite")
    out = run_tutorial("03_monai_bundle.py", "--out", str(tmp_path))
    assert "metadata.json verified" in out
    assert "bundle predictions written: 2" in out
    assert (tmp_path / "vessel_mip" / "models" / "model.pt").is_file()


def test_evaluate_a_folder(tmp_path):
    out = run_tutorial("04_evaluate_a_folder.py", "--out", str(tmp_path))
    dice = float(re.search(r"^foreground mean Dice: (\S+)$", out, re.MULTILINE).group(1))
    assert 0.3 < dice < 0.95  # degraded predictions: clearly imperfect, clearly not empty
    assert "ES-Dice" in out and (tmp_path / "summary.json").is_file()
