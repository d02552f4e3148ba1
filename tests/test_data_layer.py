"""medloss.data: group files, the dataset and multi-rater layout, the synthetic writer, the NIfTI writer."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medloss.data import (
    find_group_file,
    list_nnunet_cases,
    list_rater_files,
    rater_path,
    read_group_file,
    save_nifti,
    synthesis_dataset,
    vessel_dataset,
    write_synthetic_dataset,
)
from medloss.data.synthetic import rater_masks, vessel_image, vessel_phantom


def _save(array, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_nifti(np.asarray(array), path)


# ------------------------------------------------------------------------------------------------ group files
@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("groups.json", '{"a": 0, "b": -1, "c": 3}', {"a": 0, "b": -1, "c": 3}),
        ("groups.csv", "case,group\na,0\nb,-1\n", {"a": 0, "b": -1}),
        ("groups.csv", "a;2\nb;1\n", {"a": 2, "b": 1}),  # ";" and no header
        ("groups.csv", "case\tgroup\n a \t 1 \n\nb\t0\n", {"a": 1, "b": 0}),  # tabs, spaces, a blank line
        ("groups.txt", '"x,y",1\nz,+2\n', {"x,y": 1, "z": 2}),  # quoted case ids; any ending but .json is CSV
    ],
)
def test_read_group_file(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    assert read_group_file(path) == expected
    assert list(read_group_file(str(path)).values()) == list(expected.values())  # file order kept


@pytest.mark.parametrize(
    "name, text, line, message",
    [
        ("groups.csv", "case;group\na;0\nb;true\n", 3, "integer >= -1"),
        ("groups.csv", "a,0\nb,0.5\n", 2, "integer >= -1"),
        ("groups.csv", "a,0\nb,1.0\n", 2, "integer >= -1"),
        ("groups.csv", "a,0\nb,-5\n", 2, ">= -1"),
        ("groups.csv", "a,0\n\nb,x\n", 3, "integer >= -1"),
        ("groups.csv", "a,0\na,1\n", 2, "listed twice"),
        ("groups.csv", "a,0\nb,1,2\n", 2, "two columns"),
        ("groups.csv", "a\nb\n", 1, "two columns"),
        ("groups.csv", "", 1, "no case"),
        ("groups.csv", "case,group\n", 1, "no case"),
        ("groups.json", '{"a": 0,\n "b": true}', 2, "integer >= -1"),
        ("groups.json", '{"a": 0,\n "b": 0.5}', 2, "integer >= -1"),
        ("groups.json", '{"a": 0,\n "b": 1.0}', 2, "integer >= -1"),
        ("groups.json", '{"a": 0,\n "b": "1"}', 2, "integer >= -1"),
        ("groups.json", '{"a": 0,\n "b": null}', 2, "integer >= -1"),
        ("groups.json", '{"a": 0,\n\n "b": -2}', 3, ">= -1"),
        ("groups.json", '{"a": 0,\n "a": 1}', 2, "listed twice"),
        ("groups.json", '{"a": 0,\n "b" 1}', 2, "not valid JSON"),
        ("groups.json", "[1, 2]", 1, "JSON object"),
        ("groups.json", "[]", 1, "JSON object"),
        ("groups.json", "{}", 1, "no case"),
    ],
)
def test_read_group_file_refuses(tmp_path, name, text, line, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=f"group file {path}, line {line}: .*{message}"):
        read_group_file(path)


def test_read_group_file_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_group_file(tmp_path / "groups.json")


def test_find_group_file(tmp_path):
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    raw.mkdir()
    pre.mkdir()
    (pre / "groups.json").write_text("{}")
    (raw / "groups.csv").write_text("a,1\n")
    assert find_group_file([raw, pre]) == str(raw / "groups.csv")  # folder order first
    (raw / "groups.json").write_text("{}")
    assert find_group_file([raw, pre]) == str(raw / "groups.json")  # then json before csv
    assert find_group_file([raw], explicit=str(pre / "groups.json")) == str(pre / "groups.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_group_file([raw], explicit=str(tmp_path / "nope.csv"))
    with pytest.raises(FileNotFoundError, match=r"(?s)Searched:.*empty/groups\.json.*empty/groups\.csv"):
        find_group_file([tmp_path / "empty"])


# ------------------------------------------------------------------------------------------------ raters
def test_rater_layout(tmp_path):
    for case, n in (("b", 11), ("a", 11)):
        for k in range(n):
            _save(np.zeros((2, 2, 2), np.uint8), rater_path(tmp_path, case, k))
    (tmp_path / "ratersTr" / "notes.txt").write_text("ignored: another file ending")
    raters = list_rater_files(tmp_path)
    assert list(raters) == ["a", "b"]
    # ordered by k as a number, not as text
    assert [Path(p).name for p in raters["a"]][9:] == ["a_rater9.nii.gz", "a_rater10.nii.gz"]
    assert list(list_rater_files(tmp_path, cases=["b"])) == ["b"]
    assert rater_path(tmp_path, "c", 2, split="Ts", file_ending=".mha") == tmp_path / "ratersTs" / "c_rater2.mha"


@pytest.mark.parametrize(
    "files, kwargs, message",
    [
        ([], {}, "no rater folder"),
        (["a_rater0.nii.gz", "a_rater1.nii.gz", "b_rater0.nii.gz"], {}, r"number of rater masks \(\[1, 2\]"),
        (["a_rater1.nii.gz", "a_rater2.nii.gz"], {}, r"numbered 0..R-1 without gaps, found \[1, 2\]"),
        (["a_rater0.nii.gz", "a_rater2.nii.gz"], {}, "without gaps"),
        (["a_rater0.nii.gz", "a_mask.nii.gz"], {}, "is not named"),
        (["a_rater0.nii.gz"], {"cases": ["a", "b"]}, "case 'b' has no rater masks"),
        (["a_rater0.nii.gz"], {"split": "Ts"}, "no rater folder"),
        (["a_rater0.nii.gz"], {"split": "Val"}, "split must be"),
    ],
)
def test_rater_layout_errors(tmp_path, files, kwargs, message):
    for name in files:
        _save(np.zeros((2, 2, 2), np.uint8), tmp_path / "ratersTr" / name)
    if not files:
        with pytest.raises(ValueError, match=message):
            list_rater_files(tmp_path)
        (tmp_path / "ratersTr").mkdir()
        message = "holds no"
    with pytest.raises(ValueError, match=message):
        list_rater_files(tmp_path, **kwargs)


# ------------------------------------------------------------------------------------------------ case lists
def test_dataset_dir_listing(tmp_path):
    root = tmp_path / "Dataset001_X"
    for case in ("b", "a"):
        for ch in (0, 1):
            _save(np.zeros((4, 4, 4), np.float32), root / "imagesTr" / f"{case}_{ch:04d}.nii.gz")
        _save(np.zeros((4, 4, 4), np.uint8), root / "labelsTr" / f"{case}.nii.gz")
        for k in (0, 1):
            _save(np.zeros((4, 4, 4), np.uint8), rater_path(root, case, k))
    (root / "groups.csv").write_text("case;group\na;1\nb;-1\n")
    cases = list_nnunet_cases(root, n_raters=1, with_groups=True)
    assert [c["case"] for c in cases] == ["a", "b"]
    assert [Path(p).name for p in cases[0]["image"]] == ["a_0000.nii.gz", "a_0001.nii.gz"]
    assert Path(cases[0]["label"]).name == "a.nii.gz"
    assert [Path(p).name for p in cases[0]["raters"]] == ["a_rater0.nii.gz", "a_rater1.nii.gz"]
    assert [c["group"] for c in cases] == [1, -1]
    # vessel_dataset with a dataset_dir lists it and ignores the synthetic parameters
    assert vessel_dataset(str(root), None, n_cases=99, with_groups=True)[1]["group"] == -1
    # test split without labels
    _save(np.zeros((4, 4, 4), np.float32), root / "imagesTs" / "c_0000.nii.gz")
    assert list_nnunet_cases(root, split="Ts", require_labels=False) == [
        {"case": "c", "image": str(root / "imagesTs" / "c_0000.nii.gz")}]


@pytest.mark.parametrize(
    "setup, kwargs, message",
    [
        (lambda r: None, {}, "is not a folder"),
        (lambda r: r.mkdir(), {}, "no imagesTr/ folder"),
        (lambda r: (r / "imagesTr").mkdir(parents=True), {}, "holds no"),
        (lambda r: _save(np.zeros((2, 2, 2)), r / "imagesTr" / "x.nii.gz"), {}, "holds no"),
        (lambda r: _save(np.zeros((2, 2, 2)), r / "imagesTr" / "a_0000.nii.gz"), {}, "has no label"),
        (lambda r: _save(np.zeros((2, 2, 2)), r / "imagesTr" / "a_0000.nii.gz"),
         {"require_labels": False, "n_raters": 2}, "no rater folder"),
        (lambda r: _save(np.zeros((2, 2, 2)), r / "imagesTr" / "a_0000.nii.gz"),
         {"require_labels": False, "with_groups": True}, "needs a group file"),
        (lambda r: _save(np.zeros((2, 2, 2)), r / "imagesTr" / "a_0000.nii.gz"),
         {"require_labels": False, "with_target": True}, "no target image"),
        (lambda r: _save(np.zeros((2, 2, 2)), r / "imagesTr" / "a_0000.nii.gz"),
         {"split": "Val"}, "split must be"),
    ],
)
def test_dataset_dir_errors(tmp_path, setup, kwargs, message):
    root = tmp_path / "ds"
    setup(root)
    with pytest.raises(ValueError, match=message):
        list_nnunet_cases(root, **kwargs)


def _two_cases(root: Path) -> None:
    for case in ("a", "b"):
        _save(np.zeros((2, 2, 2)), root / "imagesTr" / f"{case}_0000.nii.gz")


@pytest.mark.parametrize(
    "name, groups, message",
    [
        ("groups.json", "{not json", "not valid JSON"),
        ("groups.json", '{"a": 0, "b": true}', "line 1: the group of case 'b'"),
        ("groups.csv", "a;0\nb;-2\n", "line 2: the group of case 'b'"),
        ("groups.json", '{"a": 0}', "'b' has no entry"),
    ],
)
def test_malformed_groups(tmp_path, name, groups, message):
    _two_cases(tmp_path)
    (tmp_path / name).write_text(groups)
    with pytest.raises(ValueError, match=message):
        list_nnunet_cases(tmp_path, require_labels=False, with_groups=True)


def test_inconsistent_cases(tmp_path):
    _two_cases(tmp_path)
    _save(np.zeros((2, 2, 2)), tmp_path / "labelsTr" / "a.nii.gz")
    with pytest.raises(ValueError, match="1 of 2 cases"):
        list_nnunet_cases(tmp_path, require_labels=False)
    _save(np.zeros((2, 2, 2)), tmp_path / "imagesTr" / "b_0001.nii.gz")
    with pytest.raises(ValueError, match="number of input channels"):
        list_nnunet_cases(tmp_path, require_labels=False)
    for name in ("a_rater0", "b_rater0", "b_rater1"):
        _save(np.zeros((2, 2, 2)), tmp_path / "ratersTr" / f"{name}.nii.gz")
    (tmp_path / "imagesTr" / "b_0001.nii.gz").unlink()
    with pytest.raises(ValueError, match="number of rater masks"):
        list_nnunet_cases(tmp_path, require_labels=False, n_raters=1)


# ------------------------------------------------------------------------------------------------ synthetic data
def test_synthetic_dataset_contents(tmp_path):
    root = write_synthetic_dataset(tmp_path / "Dataset007_Synth", n_cases=3, size=12, seed=5, n_raters=2,
                                   num_groups=2, spacing=(0.5, 0.5, 2.0))
    cases = list_nnunet_cases(root, n_raters=2, with_groups=True)
    assert [c["case"] for c in cases] == ["vessel_tr000", "vessel_tr001", "vessel_tr002"]
    assert [c["group"] for c in cases] == [0, 1, 0]
    for i, c in enumerate(cases):
        image, label = nib.load(c["image"]), nib.load(c["label"])
        # the spacing is in the affine (and hence in the header's zooms)
        np.testing.assert_array_equal(image.affine, np.diag([0.5, 0.5, 2.0, 1.0]))
        assert [float(z) for z in label.header.get_zooms()] == [0.5, 0.5, 2.0]
        # case i is the phantom of seed 5 * 1000 + i, its image and its raters, exactly
        phantom = vessel_phantom((12, 12, 12), seed=5000 + i)
        np.testing.assert_array_equal(np.asarray(label.dataobj), phantom)
        group = i % 2
        expected = vessel_image(phantom, seed=5000 + i, contrast=1 / (1 + 0.5 * group), noise=0.25 + 0.05 * group)
        np.testing.assert_array_equal(np.asarray(image.dataobj), expected)
        for k, r in enumerate(c["raters"]):
            np.testing.assert_array_equal(np.asarray(nib.load(r).dataobj), rater_masks(phantom, 2, seed=5000 + i)[k])
    meta = json.loads((root / "dataset.json").read_text())
    assert meta == {"channel_names": {"0": "MRA"}, "labels": {"background": 0, "vessel": 1}, "numTraining": 3,
                    "file_ending": ".nii.gz", "name": "Dataset007_Synth"}
    # the test split: other seeds, other names, merged into the same group file
    write_synthetic_dataset(root, n_cases=1, size=12, seed=5, split="Ts", case_prefix="t")
    np.testing.assert_array_equal(np.asarray(nib.load(root / "labelsTs" / "t000.nii.gz").dataobj),
                                  vessel_phantom((12, 12, 12), seed=5500))
    assert read_group_file(root / "groups.json") == {"t000": 0, "vessel_tr000": 0, "vessel_tr001": 1,
                                                     "vessel_tr002": 0}


def test_synthetic_two_classes_2d_and_phantom_options(tmp_path):
    root = write_synthetic_dataset(tmp_path, n_cases=1, size=16, spatial_dims=2, two_classes=True,
                                   phantom={"n_trees": 1, "max_depth": 1})
    label = np.asarray(nib.load(root / "labelsTr" / "vessel_tr000.nii.gz").dataobj)
    phantom = vessel_phantom((16, 16), seed=0, n_trees=1, max_depth=1)
    assert label.shape == (16, 16) and set(np.unique(label)) == {0, 1, 2}
    np.testing.assert_array_equal(label > 0, phantom > 0)
    assert json.loads((root / "dataset.json").read_text())["labels"]["thin_vessel"] == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [({"n_cases": 0}, "n_cases"), ({"n_cases": 501}, "n_cases"), ({"size": 7}, "size"), ({"n_raters": -1}, "n_raters"),
     ({"num_groups": 0}, "num_groups"), ({"spatial_dims": 4}, "spatial_dims"), ({"split": "tr"}, "split"),
     ({"spacing": (1.0, 1.0)}, "spacing")],
)
def test_synthetic_argument_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_synthetic_dataset(tmp_path, **kwargs)


def test_save_nifti(tmp_path):
    save_nifti(np.ones((3, 4), np.float32), tmp_path / "a.nii.gz", spacing=(0.5, 2.0))
    image = nib.load(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(image.affine, np.diag([0.5, 2.0, 1.0, 1.0]))
    assert image.get_data_dtype() == np.float32 and image.header.get_xyzt_units()[0] == "mm"
    for bad in ((1.0,), (1.0, 0.0), (1.0, float("nan"))):
        with pytest.raises(ValueError, match="spacing"):
            save_nifti(np.ones((3, 4)), tmp_path / "b.nii.gz", spacing=bad)
    with pytest.raises(ValueError, match="2D or 3D"):
        save_nifti(np.ones(3), tmp_path / "c.nii.gz")


# ------------------------------------------------------------------------------------------------ bundle case lists
def test_vessel_dataset_writes_once_and_reuses(tmp_path):
    first = vessel_dataset(None, tmp_path, n_cases=2, size=10, n_raters=2, with_groups=True)
    assert [c["group"] for c in first] == [0, 1] and all(len(c["raters"]) == 2 for c in first)
    stamp = Path(first[0]["image"]).stat().st_mtime_ns
    again = vessel_dataset(None, tmp_path, n_cases=2, size=10, n_raters=2, with_groups=True)
    assert again == first and Path(again[0]["image"]).stat().st_mtime_ns == stamp
    test = vessel_dataset(None, tmp_path, n_cases=2, size=10, split="Ts")
    assert [c["case"] for c in test] == ["vessel_ts000", "vessel_ts001"]
    assert not np.array_equal(nib.load(test[0]["label"]).get_fdata(), nib.load(first[0]["label"]).get_fdata())
    # another parameter set goes to another folder
    other = vessel_dataset(None, tmp_path, n_cases=2, size=12)
    assert Path(other[0]["image"]).parent != Path(first[0]["image"]).parent
    with pytest.raises(ValueError, match="cache_dir is required"):
        vessel_dataset(None, None)


def test_synthesis_pairs(tmp_path):
    pairs = synthesis_dataset(None, tmp_path, n_cases=2, size=12)
    assert set(pairs[0]) == {"case", "image", "target"}
    src, tgt = nib.load(pairs[0]["image"]).get_fdata(), nib.load(pairs[0]["target"]).get_fdata()
    assert src.shape == tgt.shape == (12, 12, 12)
    # the target shows the same vessels with the opposite contrast
    assert np.corrcoef(src.ravel(), tgt.ravel())[0, 1] < -0.3
    assert set(synthesis_dataset(None, tmp_path, n_cases=1, size=12, split="Ts", require_targets=False)[0]) == {
        "case", "image"}
    assert nib.load(vessel_dataset(None, tmp_path, n_cases=1, size=16, spatial_dims=2)[0]["image"]).shape == (16, 16)
