"""The MONAI bundles shipped in medloss/bundles/: metadata verification, network shapes and end-to-end runs.

Each run copies the bundle out with ``medloss bundle init`` and calls ``python -m monai.bundle run`` exactly as a
user would, on the synthetic data the bundle writes itself (1 epoch, 2 cases of 16^3). One bundle runs by default;
the others are marked slow (about 12 s each, mostly the two interpreter start-ups).
"""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "medloss" / "bundles"
SCHEMA = CONFIGS / "meta_schema.json"

# bundle -> (network id checked by verify_net_in_out, medloss class the train config must reference, extra overrides)
BUNDLES = {
    "vessel_mip": ("network_def", "medloss.losses.MIPLoss", []),
    "sauna_soft_labels": ("network_def", "medloss.losses.SAUNALoss", []),
    "betti_matching_finetune": ("network_def", "medloss.losses.BettiMatchingLoss", ["--pretrain_epochs", "1"]),
    "fair_scaling": ("network_def", "medloss.losses.FairErrorBoundScalingLoss", []),
    "pulaski": ("network", "medloss.losses.PULASkiLoss", []),
    "impact_synthesis": ("network_def", "medloss.losses.IMPACTLoss", []),
}
FAST = "fair_scaling"
TINY = ["--max_epochs", "1", "--n_cases", "2", "--image_size", "16", "--patch_size", "[16,16,16]"]
LOSS_LINE = re.compile(r"^medloss-bundle train_loss (\S+)", re.M)


def _targets(node):
    if isinstance(node, dict):
        if "_target_" in node:
            yield node["_target_"]
        for value in node.values():
            yield from _targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value)


def test_every_bundle_is_complete():
    found = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir() and not p.name.startswith("_"))
    assert found == sorted(BUNDLES)
    for name in BUNDLES:
        root = CONFIGS / name
        for rel in ("LICENSE", "configs/metadata.json", "configs/train.json", "configs/inference.json",
                    "configs/logging.conf", "docs/README.md"):
            assert (root / rel).is_file(), f"{name} lacks {rel}"
        train = json.loads((root / "configs" / "train.json").read_text())
        assert BUNDLES[name][1] in set(_targets(train)), f"{name}/train.json does not use {BUNDLES[name][1]}"
        # a given dataset replaces the synthetic cases; none given (null) makes them
        for config in ("train.json", "inference.json"):
            assert json.loads((root / "configs" / config).read_text())["dataset_dir"] is None


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_verify_metadata(name):
    verify_metadata(meta_file=str(CONFIGS / name / "configs" / "metadata.json"), filepath=str(SCHEMA))


def test_schema_rejects_bad_metadata(tmp_path):
    meta = json.loads((CONFIGS / FAST / "configs" / "metadata.json").read_text())
    for broken in (
        {k: v for k, v in meta.items() if k != "copyright"},
        {**meta, "version": 1},
        {**meta, "network_data_format": {"inputs": meta["network_data_format"]["inputs"]}},
        {**meta, "network_data_format": {**meta["network_data_format"],
                                         "inputs": {"image": {"type": "image", "format": "magnitude"}}}},
    ):
        path = tmp_path / "metadata.json"
        path.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match="Failed validating"):
            verify_metadata(meta_file=str(path), filepath=str(SCHEMA))


def test_verify_metadata_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file",
         str(CONFIGS / FAST / "configs" / "metadata.json"), "--filepath", str(SCHEMA)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "metadata is verified with no error" in proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_verify_net_in_out(name, tmp_path):
    bundle = shutil.copytree(CONFIGS / name, tmp_path / name)
    verify_net_in_out(
        net_id=BUNDLES[name][0], meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / "configs" / "inference.json"), device="cpu", bundle_root=str(bundle),
    )


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_dataset_dir_replaces_synthetic_data(name, tmp_path):
    """With --dataset_dir the configs list that nnU-Net-layout folder (here written by the synthetic writer)."""
    from medloss.data import write_synthetic_dataset

    dataset = tmp_path / "Dataset042_Given"
    write_synthetic_dataset(dataset, n_cases=3, size=8, n_raters=2, num_groups=2, with_target=True)
    write_synthetic_dataset(dataset, n_cases=1, size=8, split="Ts")
    for config, key, n in (("train.json", "train_files", 3), ("inference.json", "test_files", 1)):
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / name / "configs" / config))
        parser["bundle_root"] = str(tmp_path / "bundle")
        parser["dataset_dir"] = str(dataset)
        files = parser.get_parsed_content(key)
        assert len(files) == n and all(Path(f["image"]).parent.parent == dataset for f in files)
    assert not (tmp_path / "bundle").exists()  # nothing synthetic was written


def _run(bundle: Path, config: str, *overrides: str) -> str:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / config),
           "--meta_file", str(bundle / "configs" / "metadata.json"), "--bundle_root", str(bundle), *overrides]
    proc = subprocess.run(cmd, cwd=bundle, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout


def _train_and_infer(name: str, tmp_path: Path) -> None:
    from medloss.bundles.cli import init_bundle

    bundle = init_bundle(name, str(tmp_path / name))
    out = _run(bundle, "train.json", *TINY, *BUNDLES[name][2])
    losses = [float(v) for v in LOSS_LINE.findall(out)]
    assert len(losses) == 1 and math.isfinite(losses[0]), out[-2000:]
    assert (bundle / "models" / "model.pt").is_file()
    assert len(list((bundle / "cache").glob("*/imagesTr/*_0000.nii.gz"))) == 2

    _run(bundle, "inference.json", "--n_cases", "2", "--image_size", "16", "--patch_size", "[16,16,16]")
    preds = sorted((bundle / "eval").glob("*.nii.gz"))
    assert [p.name.split("_0000_")[0] for p in preds] == ["vessel_ts000", "vessel_ts001"]
    for p in preds:
        data = np.asarray(nib.load(str(p)).dataobj)
        assert data.shape[-3:] == (16, 16, 16) and np.isfinite(data).all()
        if name != "impact_synthesis":  # a segmentation: labels 0/1
            assert set(np.unique(data)) <= {0, 1}


def test_fast_bundle_end_to_end(tmp_path):
    _train_and_infer(FAST, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(BUNDLES) - {FAST}))
def test_bundle_end_to_end(name, tmp_path):
    _train_and_infer(name, tmp_path)


@pytest.mark.slow
def test_betti_bundle_finetunes_a_given_checkpoint(tmp_path):
    import torch

    bundle = shutil.copytree(CONFIGS / "betti_matching_finetune", tmp_path / "betti")
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    net = parser.get_parsed_content("network_def")
    torch.save(net.state_dict(), tmp_path / "pretrained.pt")
    out = _run(bundle, "train.json", *TINY, "--pretrained_ckpt", str(tmp_path / "pretrained.pt"))
    assert "pretrain_loss" not in out and "finetune_loss" in out  # the Dice+CE phase was skipped
    assert math.isfinite(float(LOSS_LINE.findall(out)[0]))
