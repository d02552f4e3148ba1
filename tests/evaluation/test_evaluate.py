"""medloss evaluate: agreement with nnU-Net's evaluator, summaries, groups and bad input.

The metric values themselves are tested in tests/metrics; tests/evaluation/test_numbers_once.py checks that the
command line reports exactly what medloss.metrics computes.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from medloss.evaluation import evaluate_folder

SPACING_ZYX = (2.0, 0.8, 0.8)


def write(path, array, spacing_zyx=SPACING_ZYX, direction=None, dtype=np.uint8):
    img = sitk.GetImageFromArray(np.asarray(array).astype(dtype))
    img.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    if direction is not None:
        img.SetDirection(direction)
    sitk.WriteImage(img, str(path))


def blob_case(rng, shape=(12, 24, 24)):
    """Two labels: a random smooth blob (1) and a bar (2)."""
    from scipy.ndimage import gaussian_filter

    lab = np.zeros(shape, np.uint8)
    lab[gaussian_filter(rng.standard_normal(shape), 2.0) > 0.15] = 1
    z, y = rng.integers(2, shape[0] - 3), rng.integers(3, shape[1] - 4)
    lab[z:z + 2, y:y + 2, 3:-3] = 2
    return lab


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(0)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    for i in range(4):
        ref = blob_case(rng)
        noisy = ref.copy()
        flip = rng.random(ref.shape) < 0.03
        noisy[flip] = rng.integers(0, 3, flip.sum())
        if i == 3:
            noisy[noisy == 2] = 0  # a case where label 2 is missed entirely
        write(gt / f"case_{i:03d}.nii.gz", ref)
        write(pred / f"case_{i:03d}.nii.gz", noisy)
    return pred, gt


def test_dice_iou_agree_with_nnunet_evaluator(folders, tmp_path):
    nnunet_eval = pytest.importorskip("nnunetv2.evaluation.evaluate_predictions")
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    pred, gt = folders
    ours = evaluate_folder(str(pred), str(gt), labels=[1, 2], output_file=str(tmp_path / "ours.json"),
                           metrics=["Dice", "IoU"], progress=False)
    theirs = nnunet_eval.compute_metrics_on_folder(str(gt), str(pred), str(tmp_path / "nnunet.json"), SimpleITKIO(),
                                                   ".nii.gz", [1, 2], None, 1, chill=False)
    for key in ("1", "2"):
        for metric in ("Dice", "IoU", "TP", "FP", "FN", "TN", "n_pred", "n_ref"):
            assert ours["mean"][key][metric] == pytest.approx(theirs["mean"][int(key)][metric], rel=1e-12)
    assert ours["foreground_mean"]["Dice"] == pytest.approx(theirs["foreground_mean"]["Dice"], rel=1e-12)
    # same top-level layout and key stringification as nnU-Net's summary.json
    saved = json.loads((tmp_path / "ours.json").read_text())
    assert {"foreground_mean", "mean", "metric_per_case"} <= set(saved)
    assert set(saved["metric_per_case"][0]) == {"metrics", "prediction_file", "reference_file"}
    assert (tmp_path / "metrics_per_case.csv").read_text().count("\n") == 1 + 4 * 2


def test_topology_metrics_per_case(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    ref = np.zeros((8, 16, 16), np.uint8)
    ref[3:5, 7:9, 2:14] = 1  # a bar
    broken = ref.copy()
    broken[:, :, 8] = 0  # cut in two: one extra component
    write(gt / "a.nii.gz", ref)
    write(pred / "a.nii.gz", broken)
    summary = evaluate_folder(str(pred), str(gt), progress=False, metrics=["Dice", "clDice", "Betti", "BettiMatching"])
    m = summary["metric_per_case"][0]["metrics"]["1"]
    assert m["BNE0"] == 1 and m["BNE"] == 1 and m["BME0"] == 1
    assert 0 < m["clDice"] < 1


def test_groups_give_per_group_means_and_equity_scaling(folders, tmp_path):
    pred, gt = folders
    groups = tmp_path / "groups.csv"
    groups.write_text("case,group\ncase_000,0\ncase_001,0\ncase_002,1\ncase_003,1\n")
    s = evaluate_folder(str(pred), str(gt), labels=[1, 2], metrics=["Dice", "IoU"], groups=str(groups),
                        progress=False)
    g = s["medloss"]["groups"]["2"]["Dice"]
    per_case = [c["metrics"]["2"]["Dice"] for c in s["metric_per_case"]]
    overall = np.mean(per_case)
    m0, m1 = np.mean(per_case[:2]), np.mean(per_case[2:])
    assert g["per_group_mean"] == {"0": pytest.approx(m0), "1": pytest.approx(m1)}
    assert g["equity_scaled"] == pytest.approx(overall / (1 + abs(overall - m0) + abs(overall - m1)))
    # the group file reader of medloss.data: ';'-separated CSV, a dict gives the same
    groups.write_text("case;group\ncase_000;0\ncase_001;0\ncase_002;1\ncase_003;1\n")
    for given in (str(groups), {"case_000": 0, "case_001": 0, "case_002": 1, "case_003": 1}):
        again = evaluate_folder(str(pred), str(gt), labels=[1, 2], metrics=["Dice", "IoU"], groups=given,
                                progress=False)
        assert again["medloss"]["groups"] == s["medloss"]["groups"]
    groups.write_text("case,group\ncase_000,0\ncase_001,true\n")
    with pytest.raises(ValueError, match="line 3"):
        evaluate_folder(str(pred), str(gt), groups=str(groups), progress=False)
    with pytest.raises(ValueError, match="integer"):
        evaluate_folder(str(pred), str(gt), groups={"case_000": 0.5}, progress=False)
    groups.write_text("case,group\ncase_000,0\n")
    with pytest.raises(ValueError, match="no group"):
        evaluate_folder(str(pred), str(gt), groups=str(groups), progress=False)


def test_missing_and_extra_cases(folders, tmp_path):
    pred, gt = folders
    (pred / "case_003.nii.gz").unlink()
    with pytest.raises(ValueError, match="without a prediction"):
        evaluate_folder(str(pred), str(gt), progress=False)
    assert not (pred / "summary.json").exists()  # no partial summary
    s = evaluate_folder(str(pred), str(gt), chill=True, metrics=["Dice"], progress=False)
    assert s["medloss"]["missing_predictions"] == ["case_003"] and len(s["metric_per_case"]) == 3
    write(pred / "stray.nii.gz", np.zeros((12, 24, 24)))
    with pytest.raises(ValueError, match="without a reference"):
        evaluate_folder(str(pred), str(gt), chill=True, progress=False)


@pytest.mark.parametrize("problem", ["shape", "spacing", "direction"])
def test_geometry_mismatch_is_an_error(folders, problem):
    pred, gt = folders
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(gt / "case_001.nii.gz")))
    if problem == "shape":
        write(pred / "case_001.nii.gz", ref[:, :-1])
    elif problem == "spacing":
        write(pred / "case_001.nii.gz", ref, spacing_zyx=(2.0, 0.8, 0.9))
    else:
        write(pred / "case_001.nii.gz", ref, direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(ValueError, match=problem if problem != "direction" else "orientation"):
        evaluate_folder(str(pred), str(gt), metrics=["Dice"], progress=False)
    assert not (pred / "summary.json").exists()


def test_bad_label_values_and_unreadable_files(folders):
    pred, gt = folders
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(gt / "case_000.nii.gz")))
    write(pred / "case_000.nii.gz", ref.astype(np.float32) + 0.5, dtype=np.float32)
    with pytest.raises(ValueError, match="integer"):
        evaluate_folder(str(pred), str(gt), metrics=["Dice"], progress=False)
    bad = ref.copy()
    bad[0, 0, 0] = 7
    write(pred / "case_000.nii.gz", bad)
    # a value no label of dataset.json declares is refused (with -l only the given labels are scored: test_evaluate_errors)
    djson = pred.parent / "dataset.json"
    djson.write_text(json.dumps({"labels": {"background": 0, "a": 1, "b": 2}}))
    with pytest.raises(ValueError, match=r"case_000.nii.gz: label value\(s\) \[7\] outside the labels \[0, 1, 2\]"):
        evaluate_folder(str(pred), str(gt), dataset_json=str(djson), metrics=["Dice"], progress=False)
    (pred / "case_000.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        evaluate_folder(str(pred), str(gt), metrics=["Dice"], progress=False)


def test_ignore_label_excluded_like_nnunet(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    ref = np.zeros((4, 8, 8), np.uint8)
    ref[:, :4] = 1
    ref[:, 6:] = 3  # ignore
    p = np.zeros_like(ref)
    p[:, :4] = 1
    p[:, 6:] = 1  # predicted foreground on ignored voxels does not count
    write(gt / "x.nii.gz", ref)
    write(pred / "x.nii.gz", p)
    s = evaluate_folder(str(pred), str(gt), labels=[1], ignore_label=3, metrics=["Dice"], progress=False)
    assert s["mean"]["1"]["Dice"] == 1.0 and s["mean"]["1"]["FP"] == 0


def test_cli_parallel_workers(folders, tmp_path):
    pred, gt = folders
    out = subprocess.run([sys.executable, "-m", "medloss", "evaluate", str(pred), str(gt), "-l", "1", "2", "-np", "2",
                          "--metrics", "Dice", "HD95", "--quiet", "-o", str(tmp_path / "s.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # two worker processes report what one process computes, and stdout is the foreground mean
    serial = evaluate_folder(str(pred), str(gt), labels=[1, 2], metrics=["Dice", "HD95"], progress=False,
                             output_file=str(tmp_path / "serial.json"))
    parallel = json.loads((tmp_path / "s.json").read_text())
    assert parallel["metric_per_case"] == json.loads(json.dumps(serial["metric_per_case"]))
    assert json.loads(out.stdout) == pytest.approx(serial["foreground_mean"], rel=1e-12)
    bad = subprocess.run([sys.executable, "-m", "medloss", "evaluate", str(pred), str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "folder not found" in bad.stderr


def _evaluate_cli(*args):
    return subprocess.run([sys.executable, "-m", "medloss", "evaluate", *map(str, args), "--quiet", "--metrics", "Dice"],
                          capture_output=True, text=True, timeout=300)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("case", ["missing_folder", "same_path", "csv_in_missing_folder", "output_is_folder",
                                  "output_under_a_file", "negative_tolerance", "nan_tolerance"])
def test_cli_refuses_bad_outputs_and_options_before_writing(folders, tmp_path, case):
    pred, gt = folders
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("previous")
    args = {"missing_folder": ["-o", tmp_path / "nope" / "s.json"],
            "same_path": ["-o", out / "x.json", "--csv", out / "x.json"],
            "csv_in_missing_folder": ["-o", out / "summary.json", "--csv", tmp_path / "nope" / "m.csv"],
            "output_is_folder": ["-o", out],
            "output_under_a_file": ["-o", out / "summary.json" / "s.json"],
            "negative_tolerance": ["-o", out / "summary.json", "--nsd-tolerance", "-1"],
            "nan_tolerance": ["-o", out / "summary.json", "--nsd-tolerance", "nan"]}[case]
    before = _files(pred), _files(out)
    result = _evaluate_cli(pred, gt, *args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and result.stderr.startswith("medloss evaluate: "), result.stderr
    assert (_files(pred), _files(out)) == before and (out / "summary.json").read_text() == "previous"
    assert not (tmp_path / "nope").exists()


def test_zero_cases_is_an_error(folders, tmp_path):
    pred, gt = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _evaluate_cli(empty, gt, "--chill")
    assert result.returncode != 0 and "no case to evaluate" in result.stderr
    assert _files(empty) == []


def test_failed_write_leaves_the_previous_files(folders, tmp_path, monkeypatch):
    from medloss.evaluation import folder as folder_module

    pred, gt = folders
    summary, table = tmp_path / "summary.json", tmp_path / "table.csv"
    summary.write_text("old summary")
    table.write_text("old table")
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(folder_module.os, "replace", failing_replace)
    with pytest.raises(ValueError, match="No space left"):
        evaluate_folder(str(pred), str(gt), metrics=["Dice"], output_file=str(summary), csv_file=str(table),
                        progress=False)
    assert calls and summary.read_text() == "old summary" and table.read_text() == "old table"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".medloss-")) == []
    monkeypatch.undo()
    s = evaluate_folder(str(pred), str(gt), metrics=["Dice"], output_file=str(summary), csv_file=str(table),
                        progress=False)
    assert json.loads(summary.read_text())["foreground_mean"] == pytest.approx(s["foreground_mean"])
    assert table.read_text().splitlines()[0].startswith("case,label,Dice")
