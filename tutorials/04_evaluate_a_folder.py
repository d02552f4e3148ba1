"""Evaluate a folder of predicted segmentations against references, in Python and from the command line.

The evaluator expects nnU-Net's naming: ``<case>.nii.gz`` in both folders, the same geometry (shape, spacing,
origin, orientation) case by case, and integer labels. Here we write a few vessel phantoms as references and a
degraded copy of each as the "prediction": eroded (thinner vessels, lower Dice, broken thin branches, so clDice and
Betti errors react) plus a few false-positive specks (components the reference does not have).

Two ways to run the same evaluation:

* ``medloss.evaluation.evaluate_folder(pred_dir, ref_dir, labels=..., groups=...)`` returns the summary dict;
* ``medloss evaluate PRED_DIR GT_DIR -djfile dataset.json --groups groups.csv`` writes the same ``summary.json``.

The summary has nnU-Net's layout (``metric_per_case``, ``mean``, ``foreground_mean``) plus HD95/NSD in mm, clDice,
Betti number and Betti matching errors. A case -> group file (e.g. scanner or sex) adds per-group means and the
equity-scaled Dice (ES-Dice: the mean Dice divided by 1 + alpha * the summed deviation of the group means
from it), under
``summary["medloss"]["groups"]``.

Run::

    python tutorials/04_evaluate_a_folder.py                 # 4 cases of 48^3 in a temporary folder
    python tutorials/04_evaluate_a_folder.py --small         # 4 cases of 24^3, for tests
    python tutorials/04_evaluate_a_folder.py --out my_eval   # keep the files
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_erosion

from medloss.data import save_nifti, vessel_phantom
from medloss.evaluation import evaluate_folder


def write_cases(root: Path, n_cases: int, size: int) -> None:
    rng = np.random.default_rng(0)
    spacing = (0.8, 0.8, 1.5)                       # anisotropic spacing: HD95/NSD are reported in mm
    for folder in ("ref", "pred"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n_cases):
        ref = vessel_phantom((size,) * 3, seed=i).astype(np.uint8)
        if i % 2:
            # Group 1: systematically too thin (eroded), which also breaks the thinnest branches.
            pred = binary_erosion(ref).astype(np.uint8)
        else:
            # Group 0: a noisy boundary, 20% of the foreground voxels missed at random.
            pred = ref * (rng.random(ref.shape) > 0.2).astype(np.uint8)
        specks = rng.integers(2, size - 2, (3, 3))
        pred[specks[:, 0], specks[:, 1], specks[:, 2]] = 1    # isolated false positives: extra components
        name = f"vessel_{i:03d}.nii.gz"
        save_nifti(ref, root / "ref" / name, spacing)
        save_nifti(pred.astype(np.uint8), root / "pred" / name, spacing)
    # nnU-Net's dataset.json declares the labels (the CLI reads them with -djfile).
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "vessel": 1},
                                                   "channel_names": {"0": "MRA"}, "file_ending": ".nii.gz"}))
    # Case -> group (CSV case,group), e.g. two scanners.
    (root / "groups.csv").write_text("".join(f"vessel_{i:03d},{i % 2}\n" for i in range(n_cases)))


def print_summary(summary: dict) -> None:
    fg = summary["foreground_mean"]
    for metric in sorted(fg):
        print(f"  {metric:<28} {fg[metric]:.4f}")
    for label, per_metric in summary["medloss"].get("groups", {}).items():
        dice = per_metric["Dice"]
        groups = ", ".join(f"group {g}: {v:.4f}" for g, v in dice["per_group_mean"].items())
        print(f"  label {label} Dice per group      {groups}")
        print(f"  label {label} ES-Dice             {dice['equity_scaled']:.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="24^3 volumes (fast, for tests)")
    parser.add_argument("--size", type=int, default=48, help="edge of the cubic volumes (default 48)")
    parser.add_argument("--cases", type=int, default=4, help="number of cases (default 4)")
    parser.add_argument("--out", default=None, help="folder to keep the files in (default: a temporary one)")
    args = parser.parse_args()
    size = 24 if args.small else args.size

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        write_cases(root, args.cases, size)

        print("evaluate_folder (Python API)")
        summary = evaluate_folder(str(root / "pred"), str(root / "ref"), labels=[1], groups=str(root / "groups.csv"),
                                  output_file=str(root / "summary_api.json"), progress=False)
        print_summary(summary)

        print("\nmedloss evaluate (command line)")
        # The console script sits next to the interpreter; `python -m medloss` would work as well.
        exe = Path(sys.executable).parent / "medloss"
        cmd = [str(exe), "evaluate", str(root / "pred"), str(root / "ref"), "-djfile", str(root / "dataset.json"),
               "--groups", str(root / "groups.csv"), "-o", str(root / "summary.json"), "--quiet"]
        subprocess.run(cmd, check=True, env=dict(os.environ))
        cli = json.loads((root / "summary.json").read_text())
        print_summary(cli)
        # Same inputs, same numbers: the CLI is a thin wrapper around evaluate_folder.
        assert abs(cli["foreground_mean"]["Dice"] - summary["foreground_mean"]["Dice"]) < 1e-12
        print(f"\nper-case rows: {root / 'metrics_per_case.csv'}")
        print(f"foreground mean Dice: {cli['foreground_mean']['Dice']:.4f}")


if __name__ == "__main__":
    main()
