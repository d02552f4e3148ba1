"""benchmarks/training_step.py: nnU-Net's network for each patch, a tiny end-to-end run, the sub-patch coverage."""

import argparse
import re

import numpy as np
import pytest
import torch

from benchmarks import training_step as ts
from medloss.data.synthetic import vessel_phantom
from medloss.topology import betti_numbers


@pytest.mark.parametrize("shape, stages, widest", [((64,) * 3, 5, 320), ((96,) * 3, 5, 320), ((128,) * 3, 6, 320),
                                                    ((512, 512), 8, 512)])
def test_network_follows_nnunet_default_plans(shape, stages, widest):
    # stages halve the edge down to >= 4 voxels (64 -> 4, 96 -> 6, 128 -> 4, 512 -> 4); 32 features doubling to
    # nnU-Net's maximum (320 in 3D, 512 in 2D)
    net, desc = ts.build_network(shape)
    convs = [m for m in net.encoder.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    assert len(convs) == 2 * stages  # two convolutions per stage
    assert convs[0].out_channels == 32 and max(c.out_channels for c in convs) == widest
    assert f"{stages} stages, features 32..{widest}" in desc and "deep supervision off" in desc
    assert not net.decoder.deep_supervision
    assert net.decoder.seg_layers[-1].out_channels == 2


def test_parse_shape():
    assert ts.parse_shape("128^3") == ((128, 128, 128), 2, 64)
    assert ts.parse_shape("32x16") == ((32, 16), 4, 8)
    with pytest.raises(argparse.ArgumentTypeError, match="64x"):
        ts.parse_shape("64x")


def test_whole_patch_window_sees_everything():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 24, 24)
    target = torch.from_numpy(np.stack([vessel_phantom((24, 24), seed=i) for i in range(2)])[:, None]).float()
    cov = ts.subpatch_coverage(logits, target, size=24, draws=1)
    assert cov["voxels"] == cov["loss"] == cov["grad_mass"] == 1.0
    assert cov["cos_patch"] == pytest.approx(1.0) and cov["cos_window"] == pytest.approx(1.0)
    assert np.array_equal(cov["betti_window"], cov["betti_full"])


def test_tiny_run_prints_every_row(capsys):
    ts.main(["--shapes", "16x16x16", "32x32", "--repeats", "1", "--draws", "1", "--base-features", "4"])
    out = capsys.readouterr().out
    assert "torch threads" in out and "network: PlainConvUNet 3D (base features 4, NOT nnU-Net's 32)" in out
    cells = [line.strip("| ").split(" | ") for line in out.splitlines() if re.match(r"\| \d+x\d+", line)]
    timing = [c for c in cells if c[1] == "Dice+CE" or c[1].startswith("+ 0.5 Betti")]
    assert [c[:2] for c in timing] == [
        [shape, label] for shape, sub in (("16x16x16 (B=2)", 8), ("32x32 (B=4)", 16))
        for label in ("Dice+CE", "+ 0.5 Betti", "+ 0.5 Betti, num_workers=1", f"+ 0.5 Betti, subpatch {sub}")]
    assert timing[0][5:] == timing[4][5:] == ["1.00x", "1.00x"]  # the baseline's own ratios
    assert all(float(v) > 0 for c in timing for v in c[2:5])
    coverage = [c for c in cells if re.fullmatch(r"\d+x\d+(x\d+)?", c[1])]
    assert [c[:3] for c in coverage] == [["16x16x16 (B=2)", "8x8x8", "0.125"], ["32x32 (B=4)", "16x16", "0.250"]]
    # the target Betti numbers of the whole patch are the phantoms' (mean over the batch)
    full = np.mean([betti_numbers(vessel_phantom((32, 32), seed=i)) for i in range(4)], axis=0)
    assert coverage[1][-1].split(" vs ")[1] == "/".join(f"{v:.1f}" for v in full)


def test_bad_shape_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        ts.main(["--shapes", "64x"])
    assert exc.value.code == 2 and "--shapes: expected a shape like" in capsys.readouterr().err
