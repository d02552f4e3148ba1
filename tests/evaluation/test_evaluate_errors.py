"""medloss evaluate on a careless user's input: one clear line naming the file or option, nothing written.

Every case runs through the command's one error path, ``medloss.cli.main``: in this process (fast), and, as the
slow variant, through the real command line ``python -m medloss evaluate`` in a subprocess. What is scored follows
nnU-Net's evaluator (``nnunetv2.evaluation.evaluate_predictions.compute_metrics_on_folder``), computed in the test.
"""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from medloss.cli import main as medloss_main

SHAPE = (4, 10, 10)


def write(path, array, dtype=np.int16):
    img = sitk.GetImageFromArray(np.asarray(array).astype(dtype), isVector=False)
    img.SetSpacing((1.0,) * np.asarray(array).ndim)
    sitk.WriteImage(img, str(path))


def labels_case(shift):
    """Label 1 (a slab) and label 2 (a bar), moved by ``shift`` voxels in the prediction."""
    lab = np.zeros(SHAPE, np.int16)
    lab[1:3, 2 + shift:6 + shift, 2:8] = 1
    lab[1:3, 8, 1 + shift:9] = 2
    return lab


@pytest.fixture
def folders(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    for i in range(2):
        write(gt / f"case_{i}.nii.gz", labels_case(0))
        write(pred / f"case_{i}.nii.gz", labels_case(i))
    return pred, gt


@pytest.fixture(params=["main", pytest.param("subprocess", marks=pytest.mark.slow)])
def evaluate(request, capsys):
    """Run ``medloss evaluate ARGS --quiet``; returns ``(exit status, stderr lines)``."""

    def run(*args):
        argv = ["evaluate", *map(str, args), "--quiet"]
        if request.param == "subprocess":
            out = subprocess.run([sys.executable, "-m", "medloss", *argv], capture_output=True, text=True, timeout=600)
            return out.returncode, out.stderr.splitlines()
        capsys.readouterr()
        try:
            code = medloss_main(argv)
        except SystemExit as stop:  # argparse's usage errors
            code = stop.code
        return code, capsys.readouterr().err.splitlines()

    return run


def listing(*folders):
    return {str(p) for f in folders for p in f.rglob("*")}


def assert_refused(evaluate, folders, args, *expected):
    """The command fails with one ``medloss evaluate: error:`` line holding every ``expected`` text; nothing written."""
    before = listing(*folders)
    code, err = evaluate(*args)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("medloss evaluate: error: "), err
    for text in expected:
        assert str(text) in err[0], err
    assert listing(*folders) == before


# ---------------------------------------------------------------------------------------------- what is scored
def nnunet_summary(gt, pred, labels, ignore_label, tmp_path):
    nnunet_eval = pytest.importorskip("nnunetv2.evaluation.evaluate_predictions")
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    return nnunet_eval.compute_metrics_on_folder(str(gt), str(pred), str(tmp_path / "nnunet.json"), SimpleITKIO(),
                                                 ".nii.gz", labels, ignore_label, 1, chill=False)


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # nnU-Net's mean of label 5, empty everywhere
def test_a_subset_of_labels_is_scored_like_nnunet(folders, tmp_path, evaluate):
    pred, gt = folders
    # label 1 only (2 is present and not scored); label 5 appears nowhere: scored as empty (Dice NaN)
    for labels in ([1], [1, 5]):
        code, err = evaluate(pred, gt, "-l", *labels, "--metrics", "Dice", "-o", tmp_path / "s.json")
        assert code == 0, err
        ours = json.loads((tmp_path / "s.json").read_text())
        theirs = nnunet_summary(gt, pred, labels, None, tmp_path)
        assert set(ours["mean"]) == {str(k) for k in labels}
        for key in labels:
            for metric in ("Dice", "TP", "FP", "FN", "n_ref"):
                np.testing.assert_equal(ours["mean"][str(key)][metric], theirs["mean"][key][metric])
    assert np.isnan(ours["mean"]["5"]["Dice"]) and ours["mean"]["5"]["n_ref"] == 0


@pytest.mark.parametrize("label", ["a", "1.5", "-1", "1,x"])
def test_labels_that_are_not_integers_are_refused(folders, evaluate, label):
    pred, gt = folders
    before = listing(pred, gt)
    code, err = evaluate(pred, gt, "-l", label)
    assert code == 2 and err[-1].startswith("medloss evaluate: error: argument -l/--labels:") and label in err[-1]
    assert listing(pred, gt) == before


def test_negative_values_are_refused_unless_ignored(folders, tmp_path, evaluate):
    pred, gt = folders
    ref = labels_case(0)
    ref[0] = -1  # a slice marked "not annotated"
    write(gt / "case_1.nii.gz", ref)
    assert_refused(evaluate, [pred, gt], [pred, gt], gt / "case_1.nii.gz", "negative value(s) [-1]",
                   "--ignore-label")
    # inferred labels: -1 is refused before it could become a class
    assert_refused(evaluate, [pred, gt], [pred, gt, "-l", 1, 2], gt / "case_1.nii.gz", "[-1]")
    # as the ignore label, -1 is left out of every count, as nnU-Net does
    code, err = evaluate(pred, gt, "-il", -1, "--metrics", "Dice", "-o", tmp_path / "s.json")
    assert code == 0, err
    ours = json.loads((tmp_path / "s.json").read_text())
    theirs = nnunet_summary(gt, pred, [1, 2], -1, tmp_path)
    assert set(ours["mean"]) == {"1", "2"}
    for key in (1, 2):
        for metric in ("Dice", "TP", "FP", "FN", "TN"):
            assert ours["mean"][str(key)][metric] == pytest.approx(theirs["mean"][key][metric], rel=1e-12)
    # a negative predicted value is refused too
    write(gt / "case_1.nii.gz", labels_case(0))
    bad = labels_case(1)
    bad[0, 0, 0] = -3
    write(pred / "case_1.nii.gz", bad)
    assert_refused(evaluate, [pred, gt], [pred, gt, "-l", 1], pred / "case_1.nii.gz", "negative value(s) [-3]")


# ------------------------------------------------------------------------------------------------- volumes
@pytest.mark.parametrize("problem", ["2d_vs_3d", "4d", "random_bytes", "empty_file", "gzip_of_noise"])
def test_bad_volumes_are_named(folders, evaluate, problem):
    pred, gt = folders
    target = pred / "case_1.nii.gz"
    if problem == "2d_vs_3d":
        write(target, labels_case(0)[1])
        expected = [target, "(10, 10)", gt / "case_1.nii.gz", "(4, 10, 10)"]
    elif problem == "4d":
        write(target, np.stack([labels_case(0)] * 2))
        expected = [target, "4D", "(2, 4, 10, 10)"]
    else:
        target.write_bytes({"random_bytes": os.urandom(500), "empty_file": b"",
                            "gzip_of_noise": gzip.compress(os.urandom(500))}[problem])
        expected = ["cannot read", target]
    # HD95 and the Betti errors would fail inside edt / the persistence kernel: the header is checked before
    assert_refused(evaluate, [pred, gt], [pred, gt, "--metrics", "Dice", "HD95", "Betti"], *expected)


# ---------------------------------------------------------------------------------------- dataset.json, groups
@pytest.mark.parametrize("content, expected", [
    (None, ["-djfile/--dataset-json", "does not exist"]),
    ("{not json", ["line 1", "not valid JSON"]),
    (json.dumps({"name": "x"}), ['"labels"']),
    (json.dumps({"labels": ["background", "a"]}), ['"labels"', "list"]),
    (json.dumps({"labels": {"background": 0, "a": "1"}}), ["label 'a'", "integer >= 0", "'1'"]),
    (json.dumps({"labels": {"background": 0, "a": 1.5}}), ["label 'a'", "1.5"]),
    (json.dumps({"labels": {"background": 0}}), ["no label to evaluate", "no foreground label"]),
])
def test_bad_dataset_json(folders, tmp_path, evaluate, content, expected):
    pred, gt = folders
    djson = tmp_path / "dataset.json"
    if content is not None:
        djson.write_text(content)
    assert_refused(evaluate, [pred, gt], [pred, gt, "-djfile", djson], djson, *expected)


@pytest.mark.parametrize("name, content, expected", [
    ("groups.csv", None, ["--groups", "does not exist"]),
    ("groups.json", '["case_0", "case_1"]', ["line 1", "JSON object"]),
    ("groups.csv", "case\ncase_0\ncase_1\n", ["line 1", "two columns"]),
    ("groups.csv", "case,group\ncase_0,0\ncase_1,0.5\n", ["line 3", "integer", "0.5"]),
    ("groups.json", '{"case_0": 0,\n "case_1": 0.5}', ["line 2", "integer", "0.5"]),
    ("groups.csv", b"\xff\xfe\x00c", ["UTF-8"]),
    ("groups.csv", "case,group\ncase_0,0\n", ["case_1", "no group"]),
])
def test_bad_group_files(folders, tmp_path, evaluate, name, content, expected):
    pred, gt = folders
    groups = tmp_path / name
    if isinstance(content, bytes):
        groups.write_bytes(content)
    elif content is not None:
        groups.write_text(content)
    expected = [groups, *expected] if "no group" not in expected else expected
    assert_refused(evaluate, [pred, gt], [pred, gt, "--groups", groups], *expected)


# ------------------------------------------------------------------------------------- nothing to evaluate
def test_zero_cases_or_zero_labels_is_never_success(folders, tmp_path, evaluate):
    pred, gt = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_refused(evaluate, [pred, gt, empty], [empty, gt, "--chill"], "no case to evaluate")
    for i in range(2):
        write(gt / f"case_{i}.nii.gz", np.zeros(SHAPE))
    assert_refused(evaluate, [pred, gt], [pred, gt], "no label to evaluate", gt, "only background", "-l")


# ------------------------------------------------------------------------------------------- option ranges
@pytest.mark.parametrize("args, expected", [
    (["-np", "0"], ["-np/--workers", "integer >= 1", "0"]),
    (["-np", "-2"], ["-np/--workers", "-2"]),
    (["--es-alpha", "nan"], ["--es-alpha", "finite number >= 0", "nan"]),
    (["--es-alpha", "inf"], ["--es-alpha", "inf"]),
    (["--es-alpha", "-1"], ["--es-alpha", "-1"]),
    (["--nsd-tolerance", "0"], ["--nsd-tolerance", "> 0"]),
    (["--connectivity", "5"], ["--connectivity", "got 5"]),
    (["--connectivity", "2"], ["--connectivity", "case_0.nii.gz", "3D input", "got 2"]),
])
def test_options_are_range_checked_before_any_work(folders, evaluate, args, expected):
    pred, gt = folders
    assert_refused(evaluate, [pred, gt], [pred, gt, *args], *expected)


# -------------------------------------------------------------------------------------------- connectivity
def test_connectivity_reaches_the_topology_metrics(tmp_path, evaluate):
    from medloss.metrics import binary_metrics

    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    ref = np.zeros((4, 6, 6), np.int16)
    ref[1:3, 1:5, 1:5] = 1  # one block
    broken = np.zeros_like(ref)
    broken[1:3, 1:3, 1:3] = 1
    broken[1:3, 3:5, 3:5] = 1  # two blocks sharing an edge: 6-connected apart, 26-connected one
    write(gt / "a.nii.gz", ref)
    write(pred / "a.nii.gz", broken)
    found = {}
    for connectivity in (1, 3):
        out = tmp_path / f"s{connectivity}.json"
        code, err = evaluate(pred, gt, "--metrics", "Dice", "Betti", "BettiMatching", "--connectivity", connectivity,
                             "-o", out, "--csv", tmp_path / f"c{connectivity}.csv")
        assert code == 0, err
        summary = json.loads(out.read_text())
        assert summary["medloss"]["connectivity"] == connectivity
        found[connectivity] = summary["metric_per_case"][0]["metrics"]["1"]
        # the numbers are binary_metrics' (one source of truth)
        expected = binary_metrics(broken == 1, ref == 1, metrics=("Dice", "Betti", "BettiMatching"),
                                  connectivity=connectivity)
        assert {k: found[connectivity][k] for k in expected} == pytest.approx(expected)
    assert (found[1]["BNE0"], found[3]["BNE0"]) == (1, 0)  # the option changed what was counted


def test_python_api_refuses_labels_it_would_have_rounded(folders):
    from medloss.evaluation import evaluate_folder

    pred, gt = folders
    for labels, expected in (([1.5], "got 1.5"), ([True], "got True"), ([1, 1], "more than once"), ([], "empty")):
        with pytest.raises(ValueError, match=expected):
            evaluate_folder(str(pred), str(gt), labels=labels, metrics=["Dice"], progress=False)
    with pytest.raises(ValueError, match="ignore label"):
        evaluate_folder(str(pred), str(gt), ignore_label=1.5, progress=False)
    assert not (pred / "summary.json").exists()
