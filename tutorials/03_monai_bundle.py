"""Train and run a medloss MONAI bundle (``vessel_mip``) from the command line, as a MONAI user would.

A MONAI bundle is a folder of JSON configs (``configs/train.json``, ``configs/inference.json``) plus
``configs/metadata.json``; objects are built from ``_target_`` entries, so the medloss parts are plain references such
as ``"_target_": "medloss.losses.MIPLoss"``. Every top-level config entry can be overridden on the command line
(``--max_epochs 1``), which is how this tutorial shrinks the run.

Steps:

1. ``medloss bundle init vessel_mip DIR`` copies the bundle out of the installed package into a new folder
   (training writes ``models/``, ``cache/`` and ``eval/`` inside it; ``medloss bundle list`` names all bundles);
2. check ``configs/metadata.json`` against the ``meta_schema.json`` copied next to it
   (``monai.bundle.verify_metadata``);
3. ``python -m monai.bundle run --config_file configs/train.json ...``: with no ``--dataset_dir`` the bundle
   generates synthetic vessel cases (written to ``cache/``) and trains a U-Net with Focal Tversky + MIP loss,
   saving ``models/model.pt``;
4. ``python -m monai.bundle run --config_file configs/inference.json ...``: sliding-window inference on test cases,
   NIfTI predictions in ``eval/``.

For your own data pass ``--dataset_dir DIR`` (nnU-Net layout: ``imagesTr/<case>_0000.nii.gz``,
``labelsTr/<case>.nii.gz``) and drop the small overrides.

Run::

    python tutorials/03_monai_bundle.py              # 4 cases of 32^3, 2 epochs
    python tutorials/03_monai_bundle.py --small      # 2 cases of 16^3, 1 epoch, for tests
    python tutorials/03_monai_bundle.py --out b      # keep the trained bundle in ./b/vessel_mip (a new folder)
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

BIN = Path(sys.executable).parent   # console scripts installed next to this interpreter


def bundle_run(bundle: Path, config: str, overrides) -> None:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / config),
           "--meta_file", str(bundle / "configs" / "metadata.json"), "--bundle_root", str(bundle), *overrides]
    print("$", " ".join(cmd))
    # Run inside the bundle, as the README does: relative paths in the configs resolve against it.
    subprocess.run(cmd, cwd=bundle, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="2 cases of 16^3, 1 epoch (fast, for tests)")
    parser.add_argument("--out", default=None, help="folder to keep the bundle in (default: a temporary one)")
    args = parser.parse_args()
    if args.small:
        cases, size, epochs = 2, 16, 1
    else:
        cases, size, epochs = 4, 32, 2
    data = ["--n_cases", str(cases), "--image_size", str(size), "--patch_size", f"[{size},{size},{size}]"]

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(args.out or tmp).resolve() / "vessel_mip"
        cmd = [str(BIN / "medloss"), "bundle", "init", "vessel_mip", str(bundle)]
        print("$", " ".join(cmd))
        subprocess.run(cmd, check=True)

        from monai.bundle import verify_metadata
        verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(bundle / "meta_schema.json"))
        print("metadata.json verified against meta_schema.json")

        bundle_run(bundle, "train.json", ["--max_epochs", str(epochs), *data])
        model = bundle / "models" / "model.pt"
        print(f"trained model: {model} ({model.stat().st_size // 1024} KiB)")

        bundle_run(bundle, "inference.json", data)
        preds = sorted((bundle / "eval").glob("*.nii.gz"))
        for p in preds:
            seg = np.asarray(nib.load(str(p)).dataobj)
            print(f"  {p.name}: shape {seg.shape}, foreground voxels {int((seg > 0).sum())}")
        print(f"bundle predictions written: {len(preds)}")


if __name__ == "__main__":
    main()
