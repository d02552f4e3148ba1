"""benchmarks/topomortar.py: the paper-table aggregation, clear errors for a bad checkout, and the smoke protocol."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import topomortar as tm
from devtools.topomortar import RESULT_COLUMNS, make_fake_topomortar

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "topomortar.py"


def _write_results(folder: Path, runs):
    folder.mkdir(parents=True)
    for run, rows in runs.items():
        lines = ["ID," + ",".join(RESULT_COLUMNS)]
        lines += [f"{i}," + ",".join(str(v) for v in values) for i, values in rows]
        (folder / f"{run}.csv").write_text("\n".join(lines) + "\n")


def test_paper_rows_pool_runs_and_images(tmp_path):
    # columns: Betti0Local, Betti0, Betti1Local, Betti1, Dice, HD95, clDice; 121 is out of distribution
    _write_results(tmp_path / "CEDiceLoss", {
        1: [("071", (0.5, 1, 0.25, 2, 0.9, 2.0, 0.99)), ("072", (0.0, 3, 0.0, 0, 0.8, 9999999, "")),
            ("121", (9, 99, 9, 99, 0.1, 50.0, 0.5))],
        2: [("071", (0.25, 2, 0.0, 1, 0.7, 4.0, 0.97)), ("072", (1.0, 6, 0.5, 5, 0.6, 6.0, 0.95))],
    })
    rows = tm.paper_rows(tmp_path, [71, 72])
    row = rows["CEDiceLoss"]
    assert row["runs"] == 2 and row["values"] == 4
    assert row["Betti0"] == pytest.approx((3.0, math.sqrt(14 / 3)))  # [1, 3, 2, 6]: deviations -2, 0, -1, 3
    assert row["Dice"] == pytest.approx((0.75, math.sqrt(0.05 / 3)))
    hd = [2.0, 511 * math.sqrt(2), 4.0, 6.0]  # the empty prediction's sentinel becomes the 512^2 diagonal
    assert row["HD95"] == pytest.approx((np.mean(hd), np.std(hd, ddof=1)))
    assert row["clDice"] == pytest.approx((0.97, 0.02))  # the empty cell (NaN) is left out
    assert row["Betti1 local"] == pytest.approx((0.1875, np.std([0.25, 0, 0, 0.5], ddof=1)))


def test_paper_rows_malformed_csv_names_the_file(tmp_path):
    folder = tmp_path / "clDiceLoss"
    folder.mkdir()
    (folder / "1.csv").write_text("ID,Dice_mortar\n071,0.9\n")
    with pytest.raises(ValueError, match=r"clDiceLoss/1\.csv"):
        tm.paper_rows(tmp_path, [71])


def test_metrics_follow_the_papers_conventions():
    gt = np.zeros((64, 64), bool)
    gt[8:56, 8:56] = True
    gt[20:30, 20:30] = False  # one hole
    empty = tm.topomortar_metrics(np.zeros_like(gt), gt)
    assert empty["HD95"] == pytest.approx(63 * math.sqrt(2))  # the diagonal between pixel centres
    assert empty["Betti0"] == 0 and empty["Betti1"] == 1  # gudhi: an empty mask has one component (beta_0 = 1)
    pred = gt.copy()
    pred[59, 59] = pred[60, 60] = True  # a piece of two diagonal neighbours: one 8-connected component
    m = tm.topomortar_metrics(pred, gt)
    assert m["Betti0"] == 1 and m["Betti1"] == 0
    assert m["Dice"] == pytest.approx(2 * gt.sum() / (2 * gt.sum() + 2))


def _run(args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("breakage, named", [
    ("missing folder", "nothere"),
    ("missing splits", "splits.yaml"),
    ("corrupt png", "002.png"),
])
def test_bad_checkout_gives_one_line(tmp_path, breakage, named):
    data = make_fake_topomortar(tmp_path / "tm", size=32, train=(1, 2), test_id=(71,), runs={})
    if breakage == "missing folder":
        data = tmp_path / "nothere"
    elif breakage == "missing splits":
        (data / "dataset" / "splits.yaml").unlink()
    else:
        (data / "dataset" / "train" / "accurate" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    r = _run(["--data", str(data), "--protocol", "smoke", "--output", str(tmp_path / "out"), "--losses", "cedice"],
             tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("topomortar.py: error:") and named in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_smoke_protocol_on_a_fake_checkout(tmp_path):
    data = make_fake_topomortar(tmp_path / "tm")
    out = tmp_path / "out"
    assert tm.main(["--data", str(data), "--protocol", "smoke", "--output", str(out)]) == 0
    table = (out / "table.md").read_text()
    ours = [line for line in table.splitlines() if line.startswith("| medloss:")]
    paper = [line for line in table.splitlines() if line.startswith("| paper:")]
    assert len(ours) == len(tm.LOSSES) and len(paper) == 2
    assert "protocol `smoke`" in table
    cost = [line for line in (out / "cost.md").read_text().splitlines() if line.startswith("| ") and "---" not in line]
    assert len(cost) == 1 + len(tm.LOSSES)
    png = (out / "predictions.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    record = json.loads((out / "results.json").read_text())
    assert set(record["per_image"]) == set(tm.LOSSES)
    assert record["versions"]["torch"] and record["versions"]["monai"] and record["versions"]["medloss"]
    for key, seeds in record["per_image"].items():
        images = seeds["42"]
        assert sorted(images) == ["071", "072", "073"]
        for values in images.values():
            assert all(values[m] is not None and math.isfinite(values[m]) for m in tm.METRICS), (key, values)
    for key, c in record["costs"].items():
        assert c["s_per_it"] > 0 and c["loss_ms"] > 0, key

    # the paper rows equal a direct computation from the fake CSVs (ID images 071-073, HD95 sentinel replaced)
    for loss in ("CEDiceLoss", "clDiceLoss"):
        pooled = {m: [] for m in tm.PAPER_COLUMNS.values()}
        for path in sorted((data / "results" / "supervised" / "accurate" / "large" / loss).glob("*.csv")):
            for r in csv.DictReader(open(path)):
                if r["ID"] in ("071", "072", "073"):
                    for col, name in tm.PAPER_COLUMNS.items():
                        v = float(r[col])
                        pooled[name].append(511 * 2 ** 0.5 if v == 9999999 else v)
        for name, values in pooled.items():
            assert record["paper_rows"][loss][name] == pytest.approx([np.mean(values), np.std(values, ddof=1)])
