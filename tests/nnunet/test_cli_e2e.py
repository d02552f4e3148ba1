"""The real command lines: nnUNetv2_train with nnUNet_extTrainer, medloss nnunet train/predict, evaluation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(*cmd, env=None):
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def file_dice(prediction, reference, label=1):
    """Dice of ``label`` between two label files (NaN when both are empty, as nnU-Net reports it)."""
    import nibabel as nib
    import numpy as np

    p = np.asarray(nib.load(prediction).dataobj) == label
    r = np.asarray(nib.load(reference).dataobj) == label
    total = p.sum() + r.sum()
    return 2.0 * (p & r).sum() / total if total else float("nan")


def test_medloss_nnunet_path_prints_shim_folder():
    out = run(BIN / "medloss", "nnunet", "path")
    folder = Path(out.stdout.strip())
    assert (folder / "medloss_nnunet_trainers.py").exists()


def test_medloss_nnunet_trainers_lists_every_trainer():
    from medloss.nnunet import TRAINERS

    out = run(BIN / "medloss", "nnunet", "trainers")
    assert out.stdout.split() == list(TRAINERS)


@pytest.mark.slow
def test_train_predict_evaluate_with_real_commands(nnunet_dataset, tmp_path):
    env = dict(os.environ)
    env.pop("nnUNet_extTrainer", None)
    trainer = "nnUNetTrainerMedlossMIP"
    # 1) plain nnU-Net command, trainer found through the exported variable
    env_ext = dict(env, nnUNet_extTrainer=run(BIN / "medloss", "nnunet", "path").stdout.strip())
    run(BIN / "nnUNetv2_train", nnunet_dataset["id"], "3d_tiny", "0", "-tr", trainer, "-device", "cpu", env=env_ext)
    model = Path(env["nnUNet_results"]) / nnunet_dataset["preprocessed"].name / f"{trainer}__nnUNetPlans__3d_tiny"
    assert (model / "fold_0" / "checkpoint_final.pth").exists()
    log = next((model / "fold_0").glob("training_log_*.txt")).read_text()
    assert "medloss term:" in log and "ms per loss call" in log
    # 2) medloss's wrapper sets the variable itself
    pred = tmp_path / "pred"
    run(BIN / "medloss", "nnunet", "predict", "-i", nnunet_dataset["raw"] / "imagesTs", "-o", pred,
        "-d", nnunet_dataset["id"], "-c", "3d_tiny", "-tr", trainer, "-f", "0", "-device", "cpu",
        "-npp", "1", "-nps", "1", "--disable_tta", env=env)
    assert len(list(pred.glob("*.nii.gz"))) == 2
    # 3) nnU-Net's evaluation of the predictions
    run(BIN / "nnUNetv2_evaluate_folder", nnunet_dataset["raw"] / "labelsTs", pred, "-djfile",
        model / "dataset.json", "-pfile", model / "plans.json", "-np", "1", env=env)
    summary = json.loads((pred / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == 2
    for case in summary["metric_per_case"]:  # nnU-Net scored the predicted files that medloss's predict wrote
        assert case["metrics"]["1"]["Dice"] == pytest.approx(
            file_dice(case["prediction_file"], case["reference_file"]), nan_ok=True)
