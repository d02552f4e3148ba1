"""``medloss nnunet sauna-preprocess`` / ``raters-preprocess`` on the real command line: transactions, re-runs and
one-line errors.

Every test works on its own copy of Dataset511 (raw + preprocessed, with three raters per case) under ``tmp_path``;
the commands see it through nnUNet_raw / nnUNet_preprocessed / nnUNet_results.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

N_RATERS = 3
CASES = [f"vessel_{i:03d}" for i in range(5)]
DERIVED = ("_sauna", "_raters")


def medloss(*args, env):
    return subprocess.run([sys.executable, "-m", "medloss", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=900)


def assert_ok(out):
    assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


def assert_one_line_error(out, *words):
    assert out.returncode == 2, f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medloss nnunet: error:"), out.stderr
    assert "Traceback" not in out.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def listing(folder):
    """Every file and folder under ``folder`` (hidden ones included) with its size and modification time."""
    return {str(p.relative_to(folder)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in Path(folder).rglob("*")}


@pytest.fixture
def workspace(nnunet_dataset, tmp_path):
    """A private copy of Dataset511 with ratersTr/ (rater k = the reference), without configurations that other
    tests derived in the session's copy."""
    import nibabel as nib

    from medloss.data import rater_path

    roots = {var: tmp_path / var for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    roots["nnUNet_results"].mkdir()
    raw = roots["nnUNet_raw"] / nnunet_dataset["raw"].name
    shutil.copytree(nnunet_dataset["raw"], raw, ignore=shutil.ignore_patterns("ratersTr"))
    pre = roots["nnUNet_preprocessed"] / nnunet_dataset["preprocessed"].name
    shutil.copytree(nnunet_dataset["preprocessed"], pre,
                    ignore=lambda folder, names: [n for n in names if n.endswith(DERIVED) or n.startswith(".")])
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["configurations"] = {k: v for k, v in plans["configurations"].items() if not k.endswith(DERIVED)}
    (pre / "nnUNetPlans.json").write_text(json.dumps(plans, indent=4))
    (raw / "ratersTr").mkdir()
    for case in CASES:
        img = nib.load(raw / "labelsTr" / f"{case}.nii.gz")
        for k in range(N_RATERS):
            nib.save(nib.Nifti1Image(np.asarray(img.dataobj).astype(np.uint8), img.affine), rater_path(raw, case, k))
    env = dict(os.environ, **{var: str(path) for var, path in roots.items()})
    return {"env": env, "raw": raw, "pre": pre, "id": nnunet_dataset["id"], "root": tmp_path}


def case_files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def configurations(ws):
    return json.loads((ws["pre"] / "nnUNetPlans.json").read_text())["configurations"]


EXPECTED_FILES = sorted(f"{case}{end}" for case in CASES for end in (".b2nd", "_seg.b2nd", ".pkl"))


@pytest.mark.slow
@pytest.mark.parametrize("action, configuration, folder, entry", [
    ("sauna-preprocess", "3d_tiny_sauna", "nnUNetPlans_3d_tiny_sauna", {"sauna_channels": 1}),
    ("raters-preprocess", "3d_tiny_raters", "nnUNetPlans_3d_tiny_raters", {"num_raters": N_RATERS}),
])
def test_second_run_overwrites_the_first(workspace, action, configuration, folder, entry):
    """The second run used to die in blosc2 ("Error while creating the NDArray"): blosc2 refuses to write a .b2nd
    file that exists. The cases are now written into a new staging folder that replaces the old one."""
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    ws = workspace
    assert_ok(medloss("nnunet", action, "-d", ws["id"], "-c", "3d_tiny", env=ws["env"]))
    out = ws["pre"] / folder
    assert case_files(out) == EXPECTED_FILES
    first = {n: (out / n).stat().st_mtime_ns for n in EXPECTED_FILES}
    seg_first = np.asarray(nnUNetDatasetBlosc2(str(out)).load_case("vessel_002")[1][:])
    run = medloss("nnunet", action, "-d", ws["id"], "-c", "3d_tiny", env=ws["env"])
    assert_ok(run)
    assert configuration in run.stdout
    assert case_files(out) == EXPECTED_FILES
    assert all((out / n).stat().st_mtime_ns != t for n, t in first.items())  # rewritten, not skipped
    seg = np.asarray(nnUNetDatasetBlosc2(str(out)).load_case("vessel_002")[1][:])
    np.testing.assert_array_equal(seg, seg_first)
    assert seg.shape[0] == 1 + next(iter(entry.values()))
    plans_entry = configurations(ws)[configuration]
    assert plans_entry["inherits_from"] == "3d_tiny" and plans_entry["data_identifier"] == folder
    assert entry.items() <= plans_entry["medloss"].items()
    assert not [p for p in ws["pre"].iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.slow
def test_run_after_a_failed_run_succeeds(workspace):
    ws = workspace
    # what an interrupted run of earlier versions left: a part of the cases (the re-run then crashed in blosc2)
    out = ws["pre"] / "nnUNetPlans_3d_tiny_raters"
    out.mkdir()
    for name in ("vessel_000.b2nd", "vessel_000_seg.b2nd", "vessel_000.pkl"):
        shutil.copy(ws["pre"] / "nnUNetPlans_3d_fullres" / name, out / name)
    # a failed run: the last case's image is corrupt (images are read while writing, into the staging folder)
    image = ws["raw"] / "imagesTr" / "vessel_004_0000.nii.gz"
    content = image.read_bytes()
    _corrupt(image)
    before = listing(ws["pre"])
    assert_one_line_error(medloss("nnunet", "raters-preprocess", "-d", ws["id"], "-c", "3d_tiny", env=ws["env"]),
                          str(image), "cannot be read")
    assert listing(ws["pre"]) == before
    image.write_bytes(content)
    assert_ok(medloss("nnunet", "raters-preprocess", "-d", ws["id"], "-c", "3d_tiny", env=ws["env"]))
    assert case_files(out) == EXPECTED_FILES
    assert configurations(ws)["3d_tiny_raters"]["medloss"]["num_raters"] == N_RATERS


def _corrupt(path):
    path.write_bytes(b"not a NIfTI file")


def _wrong_shape(path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((32, 32, 31), np.uint8), np.eye(4)), path)


def _unknown_label(path):
    import nibabel as nib

    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj).astype(np.uint8) * 7, img.affine), path)


def _missing_rater(path):
    path.unlink()


@pytest.mark.parametrize("spoil, words", [
    (_corrupt, ["cannot be read"]),
    pytest.param(_wrong_shape, ["differs from the reference"], marks=pytest.mark.slow),
    pytest.param(_unknown_label, ["labels [7] are not in dataset.json"], marks=pytest.mark.slow),
    pytest.param(_missing_rater, ["differ in the number of rater masks", "vessel_003"], marks=pytest.mark.slow),
])
def test_bad_rater_file_of_a_late_case_writes_nothing(workspace, spoil, words):
    """Rater files used to be checked while the cases were written: the cases before a bad one stayed on disk."""
    ws = workspace
    bad = ws["raw"] / "ratersTr" / f"vessel_003_rater{N_RATERS - 1}.nii.gz"
    spoil(bad)
    before_pre, before_raw = listing(ws["pre"]), listing(ws["raw"])
    out = medloss("nnunet", "raters-preprocess", "-d", ws["id"], "-c", "3d_tiny", env=ws["env"])
    assert_one_line_error(out, *words, *([] if spoil is _missing_rater else [str(bad)]))
    assert listing(ws["pre"]) == before_pre and listing(ws["raw"]) == before_raw
    assert "3d_tiny_raters" not in configurations(ws)


@pytest.mark.slow
def test_sauna_corrupt_preprocessed_case_writes_nothing(workspace):
    ws = workspace
    (ws["pre"] / "nnUNetPlans_3d_fullres" / "vessel_003.pkl").write_bytes(b"not a pickle")
    before = listing(ws["pre"])
    out = medloss("nnunet", "sauna-preprocess", "-d", ws["id"], "-c", "3d_tiny", env=ws["env"])
    assert_one_line_error(out, "vessel_003", "cannot be read")
    assert listing(ws["pre"]) == before


@pytest.mark.slow
def test_region_dataset_is_one_line(workspace):
    ws = workspace
    dataset_json = json.loads((ws["pre"] / "dataset.json").read_text())
    dataset_json.update(labels={"background": 0, "vessel": [1, 2], "thin": 2}, regions_class_order=[1, 2])
    (ws["pre"] / "dataset.json").write_text(json.dumps(dataset_json))
    before = listing(ws["pre"])
    assert_one_line_error(medloss("nnunet", "sauna-preprocess", "-d", ws["id"], "-c", "3d_tiny", env=ws["env"]),
                          "region")
    assert listing(ws["pre"]) == before


def test_missing_nnunet_is_one_line():
    hide = "import sys; sys.modules['nnunetv2'] = None; from medloss.cli import main; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run([sys.executable, "-c", hide, "nnunet", "sauna-preprocess", "-d", "1"], capture_output=True,
                         text=True, timeout=600)
    assert_one_line_error(out, "nnU-Net v2 is not installed", "medloss[nnunet]")


SLOW = pytest.mark.slow  # each case starts Python, torch and nnU-Net once
SETUP_MISTAKES = [  # (action, mistake, words of the message); shared checks are tried with one action
    ("sauna-preprocess", "unknown id", ["999"]),
    pytest.param("sauna-preprocess", "bad name", ["'vessels'", "Dataset501_Name"], marks=SLOW),
    ("raters-preprocess", "no nnUNet_preprocessed", ["nnUNet_preprocessed", "not set"]),
    ("raters-preprocess", "no nnUNet_raw", ["nnUNet_raw", "not set"]),
    pytest.param("sauna-preprocess", "no plans", ["nnUNetPlans.json", "nnUNetv2_plan_and_preprocess"], marks=SLOW),
    pytest.param("raters-preprocess", "unknown configuration", ["'3d_nope'", "nnUNetPlans.json"], marks=SLOW),
    pytest.param("sauna-preprocess", "not preprocessed", ["nnUNetPlans_3d_fullres", "holds no preprocessed cases"],
                 marks=SLOW),
    pytest.param("raters-preprocess", "no raw dataset", ["Dataset512_Planned", "dataset.json"], marks=SLOW),
]


@pytest.mark.parametrize("action, mistake, words", SETUP_MISTAKES)
def test_setup_mistakes_are_one_line(nnunet_dataset, tmp_path, action, mistake, words):
    """Empty nnU-Net folders but for Dataset512, planned (Dataset511's plans) and neither preprocessed nor raw."""
    env = dict(os.environ)
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[var] = str(tmp_path / var)
        (tmp_path / var).mkdir()
    pre = tmp_path / "nnUNet_preprocessed" / "Dataset512_Planned"
    pre.mkdir()
    if mistake != "no plans":
        for name in ("nnUNetPlans.json", "dataset.json"):
            shutil.copy(nnunet_dataset["preprocessed"] / name, pre / name)
    if mistake == "no nnUNet_raw":  # the raw dataset exists: only the variable is missing
        shutil.copytree(nnunet_dataset["raw"], tmp_path / "nnUNet_raw" / "Dataset512_Planned")
    env.pop({"no nnUNet_preprocessed": "nnUNet_preprocessed", "no nnUNet_raw": "nnUNet_raw"}.get(mistake, "none"), None)
    dataset = {"unknown id": 999, "bad name": "vessels"}.get(mistake, 512)
    extra = ["-c", "3d_nope"] if mistake == "unknown configuration" else []
    before = listing(tmp_path)
    assert_one_line_error(medloss("nnunet", action, "-d", dataset, *extra, env=env), *words)
    assert listing(tmp_path) == before
