"""``medloss demo``: a tiny end-to-end run on phantoms and on a NIfTI folder, and clear errors for bad input."""

import argparse
import json
import math
import re

import numpy as np
import pytest

from medloss.apps import demo


def _args(tmp_path, *extra):
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    return parser.parse_args(["--output", str(tmp_path / "out"), "--no-progress", "--size", "24", "--patch", "16",
                              "--iterations", "6", "--batch-size", "1", *extra])


def _check_metrics(result, names):
    means, per_case = result["mean"], result["per_case"]
    assert list(means) == names == list(per_case)
    for name in names:
        cases = list(per_case[name].values())
        assert [c for c in per_case[name]] == result["test_cases"]
        for c in cases:
            assert 0.0 <= c["Dice"] <= 1.0 and 0.0 <= c["clDice"] <= 1.0
            assert math.isclose(c["BNE"], c["BNE0"] + c["BNE1"] + c["BNE2"])
            # every Betti number error is also a matching error: BME >= BNE per dimension
            for d in (0, 1, 2):
                assert c[f"BME{d}"] >= c[f"BNE{d}"] >= 0, (name, d, c)
        # the reported means are the means over the test cases
        for key, value in means[name].items():
            assert value == pytest.approx(float(np.mean([c[key] for c in cases])), nan_ok=True), (name, key)


def test_tiny_run_writes_report(tmp_path, capsys):
    args = _args(tmp_path, "--cases", "2", "--test-cases", "1")
    assert demo.main(args) == 0
    out = tmp_path / "out"
    for name in ("report.md", "metrics.json", "metrics_bar.png", "mip_phantom_002.png"):
        assert (out / name).stat().st_size > 0, name
    # the report was staged next to --output and moved into place: no staging folder is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    result = json.loads((out / "metrics.json").read_text())
    _check_metrics(result, list(demo.LOSSES))
    assert result["test_cases"] == ["phantom_002"] and result["train_cases"] == ["phantom_000", "phantom_001"]
    # the Betti model branches from the baseline run and ends at the same iteration count
    assert 0 < result["betti_branch_iteration"] < 6
    report = (out / "report.md").read_text()
    printed = capsys.readouterr().out
    for name in demo.LOSSES:
        assert f"| {demo.MODEL_NAMES[name]} |" in report
        assert f"| {demo.MODEL_NAMES[name]} |" in printed
    png = (out / "metrics_bar.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_seeded_runs_are_reproducible(tmp_path):
    first = demo.run(_args(tmp_path, "--cases", "1", "--test-cases", "1", "--losses", "baseline,betti"))
    second = demo.run(_args(tmp_path, "--cases", "1", "--test-cases", "1", "--losses", "baseline,betti"))
    assert first["mean"] == second["mean"]
    # without the baseline model, the Betti model still branches from the same (re-trained) baseline run
    alone = demo.run(_args(tmp_path, "--cases", "1", "--test-cases", "1", "--losses", "betti"))
    assert alone["mean"]["betti"] == first["mean"]["betti"]


def test_betti_branch_continues_the_baseline_run(tmp_path):
    # with weight 0 the fine-tuned model must be the baseline itself: same weights, optimiser state and patches
    a = _args(tmp_path, "--cases", "1", "--test-cases", "1", "--losses", "baseline,betti", "--betti-weight", "0")
    result = demo.run(a)
    assert result["mean"]["betti"] == result["mean"]["baseline"]


def _write_folder(root, n, shape=(20, 20, 14)):  # 14 < patch 16: padded for training and inference
    from medloss.data import save_nifti
    from medloss.data.synthetic import vessel_image, vessel_phantom

    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(n):
        label = vessel_phantom(shape, seed=10 + i)
        save_nifti(vessel_image(label, seed=i) * 300, root / "imagesTr" / f"v_{i}_0000.nii.gz", (0.5, 0.5, 0.8))
        save_nifti(label * 2, root / "labelsTr" / f"v_{i}.nii.gz", (0.5, 0.5, 0.8))  # label 2 -> vessel


def test_nifti_folder(tmp_path):
    _write_folder(tmp_path / "data", 3)
    args = _args(tmp_path, "--data", str(tmp_path / "data"), "--test-cases", "1", "--losses", "baseline,sauna")
    result = demo.run(args)
    assert result["train_cases"] == ["v_0", "v_1"] and result["test_cases"] == ["v_2"]
    _check_metrics(result, ["baseline", "sauna"])
    assert (tmp_path / "out" / "mip_v_2.png").exists()


def test_bad_data_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        demo.run(_args(tmp_path, "--data", str(tmp_path / "missing")))
    (tmp_path / "file").write_text("not a dataset")
    with pytest.raises(ValueError, match="not a folder"):
        demo.run(_args(tmp_path, "--data", str(tmp_path / "file")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="imagesTr/ and labelsTr/"):
        demo.run(_args(tmp_path, "--data", str(tmp_path / "empty")))
    _write_folder(tmp_path / "one", 1)
    with pytest.raises(ValueError, match="at least 2"):
        demo.run(_args(tmp_path, "--data", str(tmp_path / "one")))
    (tmp_path / "one" / "labelsTr" / "v_0.nii.gz").unlink()
    with pytest.raises(ValueError, match="has no label"):
        demo.run(_args(tmp_path, "--data", str(tmp_path / "one")))
    # a corrupt volume is named; the error reaches medloss.cli (which prints it as one line), main does not print
    _write_folder(tmp_path / "corrupt", 2)
    bad = tmp_path / "corrupt" / "labelsTr" / "v_1.nii.gz"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(ValueError, match=f"cannot read {re.escape(str(bad))}"):
        demo.main(_args(tmp_path, "--data", str(tmp_path / "corrupt")))
    assert not (tmp_path / "out").exists()


def test_failed_run_leaves_the_previous_report(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("previous report")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    # the failure comes after the pictures of the test cases were written (into the staging folder)
    monkeypatch.setattr(demo, "_plot_bars", full_disk)
    args = _args(tmp_path, "--cases", "1", "--test-cases", "1", "--iterations", "1", "--losses", "baseline")
    with pytest.raises(OSError, match="No space left"):
        demo.run(args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["report.md"] and (out / "report.md").read_text() == "previous report"
    # a failed first run leaves no folder at all
    args.output = str(tmp_path / "new")
    with pytest.raises(OSError, match="No space left"):
        demo.run(args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("option", [("--losses", "dice"), ("--losses", ""), ("--iterations", "0"),
                                    ("--patch", "18"), ("--betti-fraction", "1.5"), ("--seed", "-1"),
                                    ("--threads", "0"), ("--lr", "nan"), ("--mip-weight", "inf"),
                                    ("--betti-weight", "-1"), ("--cases", "500"), ("--device", "cuda:99")])
def test_bad_options(tmp_path, option):
    with pytest.raises(ValueError, match=option[0]):
        demo.run(_args(tmp_path, "--cases", "1", "--test-cases", "1", *option))
    assert not (tmp_path / "out").exists()
