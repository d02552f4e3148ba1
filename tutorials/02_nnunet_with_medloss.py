"""The nnU-Net v2 workflow with a medloss trainer, from raw data to evaluated predictions.

This is what you do with your own dataset; here a synthetic vessel dataset stands in for it
(``medloss.data.write_synthetic_dataset`` writes nnU-Net's raw layout into ``$nnUNet_raw/Dataset<ID>_Vessels``:
``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``, ``imagesTs``, ``labelsTs`` and ``dataset.json``).

1. nnU-Net finds its data through three environment variables: ``nnUNet_raw``, ``nnUNet_preprocessed`` and
   ``nnUNet_results``. They are read when nnU-Net is imported, so they are set before any command runs.
2. ``nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres`` fingerprints the dataset, plans the network and
   preprocesses the cases (unchanged nnU-Net; medloss changes nothing before training).
3. ``--small`` adds a configuration ``3d_tiny`` to the plans (``add_plans_configuration``): a narrow network and a
   ``medloss`` entry that shortens the schedule to one epoch of two iterations. The same ``medloss`` entry carries
   method hyperparameters (``{"weight": 0.5, "axes": [0, 1, 2]}``) for real runs; without ``--small`` the tutorial
   trains the planned ``3d_fullres`` configuration with nnU-Net's default schedule (1000 epochs: hours on CPU).
4. ``medloss nnunet train ID CONFIG FOLD -tr nnUNetTrainerMedlossMIP``: nnU-Net's own training with Dice+CE plus the
   MIP loss. ``medloss nnunet`` only sets ``nnUNet_extTrainer`` so nnU-Net can find medloss's trainers; the plain
   ``nnUNetv2_train`` works the same after ``export nnUNet_extTrainer=$(medloss nnunet path)``.
5. ``medloss nnunet predict``: the arguments of ``nnUNetv2_predict``.
6. ``medloss evaluate pred labelsTs -djfile dataset.json``: Dice/IoU as nnU-Net computes them, plus HD95, clDice
   and Betti errors, written to ``pred/summary.json``.

Run::

    python tutorials/02_nnunet_with_medloss.py --small                  # ~1-2 min on CPU, temporary folder
    python tutorials/02_nnunet_with_medloss.py --small --out nnunet_demo  # keep everything
    python tutorials/02_nnunet_with_medloss.py --device cuda --out runs    # full 3d_fullres training on a GPU
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent   # console scripts installed next to this interpreter


def run(cmd, env):
    print("$", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, env=env)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny network, 1 epoch of 2 iterations (for tests)")
    parser.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--dataset-id", type=int, default=521, help="nnU-Net dataset id (default 521)")
    parser.add_argument("--trainer", default="nnUNetTrainerMedlossMIP", help="see `medloss nnunet trainers`")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps (default cpu)")
    args = parser.parse_args()

    from medloss.data import write_synthetic_dataset
    from medloss.nnunet.datasets import add_plans_configuration

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp).resolve()
        env = dict(os.environ)
        for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            env[var] = str(root / var)
            (root / var).mkdir(parents=True, exist_ok=True)
        env["nnUNet_compile"] = "false"    # torch.compile only pays off on long GPU runs

        # 1. The dataset (replace with your own folder under nnUNet_raw).
        raw = Path(env["nnUNet_raw"]) / f"Dataset{args.dataset_id:03d}_Vessels"
        phantom = {"n_trees": 2, "max_depth": 2, "root_radius": (1.5, 3.0)}   # a few thick vessels
        write_synthetic_dataset(raw, n_cases=5, size=32, phantom=phantom, case_prefix="vessel_")
        write_synthetic_dataset(raw, n_cases=2, size=32, split="Ts", phantom=phantom, case_prefix="vesselts_")
        print(f"raw dataset: {raw}")

        # 2. Plan and preprocess. The planner sets torch's thread count from nnUNet_n_proc_DA, so it must be >= 1.
        run([BIN / "nnUNetv2_plan_and_preprocess", "-d", args.dataset_id, "-c", "3d_fullres", "-np", "1", "-npfp",
             "1", "--verify_dataset_integrity"], dict(env, nnUNet_n_proc_DA="1"))

        # 3. A small configuration for a quick run; real runs use 3d_fullres (or your own medloss entry).
        config = "3d_fullres"
        if args.small:
            config = "3d_tiny"
            add_plans_configuration(str(Path(env["nnUNet_preprocessed"]) / raw.name / "nnUNetPlans.json"), config,
                                    width=4, medloss={"num_epochs": 1, "num_iterations_per_epoch": 2,
                                                      "num_val_iterations_per_epoch": 1})

        # 4. Train fold 0. No augmentation worker processes: they only help with spare cores.
        train_env = dict(env, nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1")
        run([BIN / "medloss", "nnunet", "train", args.dataset_id, config, "0", "-tr", args.trainer,
             "-device", args.device], train_env)

        # 5. Predict the held-out cases (no test-time mirroring, to keep it fast).
        pred = root / "pred"
        run([BIN / "medloss", "nnunet", "predict", "-i", raw / "imagesTs", "-o", pred, "-d", args.dataset_id,
             "-c", config, "-tr", args.trainer, "-f", "0", "-device", args.device, "-npp", "1", "-nps", "1",
             "--disable_tta"], train_env)

        # 6. Evaluate against the test labels; labels come from the dataset.json.
        run([BIN / "medloss", "evaluate", pred, raw / "labelsTs", "-djfile", raw / "dataset.json", "--quiet"], env)
        summary = json.loads((pred / "summary.json").read_text())
        fg = summary["foreground_mean"]
        print(f"clDice {fg['clDice']:.4f}, HD95 {fg['HD95']:.2f} mm")
        print(f"foreground mean Dice: {fg['Dice']:.4f}")


if __name__ == "__main__":
    main()
