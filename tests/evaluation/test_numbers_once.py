"""The command line reports exactly what medloss.metrics computes: every number is computed once.

``medloss evaluate`` runs as a user runs it (a subprocess, two worker processes) on random and one-sided cases
(empty prediction, empty reference, both empty), 2D and 3D, with anisotropic spacing; every value of its summary
must equal the value of the metric functions on the same masks, and BME >= BNE with the same parity per dimension.
"""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from medloss.metrics import (
    betti_matching_error,
    betti_number_error,
    cldice,
    overlap_metrics,
    surface_metrics,
)

# float32-exact spacings: NIfTI stores them as float32, so the evaluator reads back exactly these
SPACING = {3: (2.0, 0.75, 0.5), 2: (0.5, 1.25)}
NSD_TOLERANCE = 1.5


def write(path, array, spacing):
    img = sitk.GetImageFromArray(np.asarray(array, np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))  # SimpleITK: (x, y, z); the array: (z, y, x)
    sitk.WriteImage(img, str(path))


def vessel(shape):
    """One straight vessel (label 1), two voxels thick, away from the border."""
    out = np.zeros(shape, np.uint8)
    mid = tuple(slice(n // 2 - 1, n // 2 + 1) for n in shape[:-1])
    out[mid + (slice(2, shape[-1] - 2),)] = 1
    return out


def random_labels(rng, shape):
    """Label 1: smooth random blobs; label 2: a thin bar."""
    lab = np.zeros(shape, np.uint8)
    lab[gaussian_filter(rng.standard_normal(shape), 1.5) > 0.2] = 1
    lab[(slice(1, 3),) * (len(shape) - 1) + (slice(2, -2),)] = 2
    return lab


def cases():
    rng = np.random.default_rng(11)
    out = {}
    for ndim, shape in ((3, (10, 18, 22)), (2, (28, 34))):
        for i in range(2):
            ref = random_labels(rng, shape)
            pred = ref.copy()
            flip = rng.random(shape) < 0.06
            pred[flip] = rng.integers(0, 3, int(flip.sum()))
            out[f"random{ndim}d_{i}"] = (pred, ref)
        one = vessel(shape)
        empty = np.zeros(shape, np.uint8)
        out[f"empty_prediction{ndim}d"] = (empty, one)
        out[f"empty_reference{ndim}d"] = (one, empty)
        out[f"both_empty{ndim}d"] = (empty, empty)
        broken = one.copy()
        broken[..., shape[-1] // 2] = 0
        out[f"broken{ndim}d"] = (broken, one)
    return out


def expected_metrics(pred, ref, spacing):
    """Every value of `medloss evaluate`, straight from the metric functions."""
    m = dict(overlap_metrics(pred, ref))
    m.update(surface_metrics(pred, ref, spacing, nsd_tolerance=NSD_TOLERANCE))
    # nnU-Net's convention for two empty masks: an undefined score (NaN), left out of the means
    m["clDice"] = math.nan if not (pred.any() or ref.any()) else cldice(pred, ref)
    for key, fn in (("BNE", betti_number_error), ("BME", betti_matching_error)):
        err = fn(pred, ref)
        m.update({f"{key}{d}": float(v) for d, v in enumerate(err.per_dim)})
        m[key] = float(err.total)
    return m


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("numbers_once")
    pred_dir, gt_dir = root / "pred", root / "gt"
    pred_dir.mkdir(), gt_dir.mkdir()
    data = cases()
    for name, (pred, ref) in data.items():
        write(pred_dir / f"{name}.nii.gz", pred, SPACING[pred.ndim])
        write(gt_dir / f"{name}.nii.gz", ref, SPACING[ref.ndim])
    out = subprocess.run(
        [sys.executable, "-m", "medloss", "evaluate", str(pred_dir), str(gt_dir), "-l", "1", "2", "-np", "2",
         "--nsd-tolerance", str(NSD_TOLERANCE), "--quiet", "-o", str(root / "summary.json")],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads((root / "summary.json").read_text())
    return data, summary


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) if isinstance(a, float) and math.isnan(a) else a == b


def test_command_line_reports_the_metric_functions_values(evaluated):
    data, summary = evaluated
    assert sorted(summary["medloss"]["cases"]) == sorted(data)
    for name, result in zip(summary["medloss"]["cases"], summary["metric_per_case"]):
        pred, ref = data[name]
        for label in (1, 2):
            got = result["metrics"][str(label)]
            want = expected_metrics(pred == label, ref == label, SPACING[pred.ndim])
            assert set(got) == set(want), name  # the summary is written with sorted keys
            wrong = {k: (got[k], want[k]) for k in want if not same(got[k], want[k])}
            assert not wrong, f"{name}, label {label}: (command line, metric functions) {wrong}"


def test_betti_matching_error_bounds_betti_number_error(evaluated):
    data, summary = evaluated
    for name, result in zip(summary["medloss"]["cases"], summary["metric_per_case"]):
        ndim = data[name][0].ndim
        for label in ("1", "2"):
            m = result["metrics"][label]
            for d in range(ndim):
                bme, bne = m[f"BME{d}"], m[f"BNE{d}"]
                assert bme >= bne and (bme - bne) % 2 == 0, (name, label, d, bme, bne)


@pytest.mark.parametrize("ndim", [2, 3])
def test_one_sided_cases(evaluated, ndim):
    """An empty mask against one vessel: one unmatched essential component, for the number and the matching error."""
    _, summary = evaluated
    per_case = dict(zip(summary["medloss"]["cases"], summary["metric_per_case"]))
    for name in (f"empty_prediction{ndim}d", f"empty_reference{ndim}d"):
        m = per_case[name]["metrics"]["1"]
        assert m["BNE0"] == m["BME0"] == 1 and m["BNE"] == m["BME"] == 1
        assert m["Dice"] == 0 and m["NSD"] == 0 and m["clDice"] == 0
        diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(cases()[name][0].shape, SPACING[ndim])))
        assert m["HD95"] == pytest.approx(diagonal)
    m = per_case[f"both_empty{ndim}d"]["metrics"]["1"]
    assert all(math.isnan(m[k]) for k in ("Dice", "IoU", "HD95", "NSD", "clDice"))
    assert m["BNE"] == m["BME"] == 0
    m = per_case[f"broken{ndim}d"]["metrics"]["1"]
    assert m["BNE0"] == m["BME0"] == 1 and 0 < m["Dice"] < 1
