"""Score a folder of predicted label volumes against a folder of references.

The summary has nnU-Net's layout (``metric_per_case``, ``mean``, ``foreground_mean``; label keys ``"1"`` and region
keys ``"(1, 2)"``), so nnU-Net tooling reads it, plus medloss's metrics next to Dice/IoU and, given groups, the
per-group means and equity-scaled Dice/IoU.
"""

from __future__ import annotations

import csv
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from medloss.evaluation.metrics import ALL_METRICS, case_metrics
from medloss.evaluation.io import check_same_geometry, pair_cases, read_label_volume

__all__ = ["evaluate_folder", "labels_from_dataset_json", "read_groups"]

Key = Union[int, Tuple[int, ...]]


def labels_from_dataset_json(path: str) -> Tuple[List[Key], Optional[int]]:
    """Foreground labels (or regions) and the ignore label of an nnU-Net ``dataset.json``."""
    with open(path) as f:
        labels = json.load(f)["labels"]
    ignore = labels.get("ignore")
    keys: List[Key] = []
    for name, value in labels.items():
        if name in ("background", "ignore"):
            continue
        keys.append(tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else int(value))
    return keys, (int(ignore) if ignore is not None else None)


def read_groups(path: str) -> Dict[str, int]:
    """Case → group id from a JSON object ``{"case": group}`` or a CSV with columns ``case,group``."""
    with open(path) as f:
        if path.endswith(".json"):
            raw = json.load(f)
        else:
            rows = list(csv.reader(f))
            if rows and not rows[0][1].lstrip("-").isdigit():
                rows = rows[1:]  # header
            raw = {r[0]: r[1] for r in rows if r}
    try:
        return {str(k): int(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{path}: group ids must be integers.") from None


def _score_case(args) -> dict:
    case, pred_path, ref_path, keys, ignore_label, allowed, metrics, nsd_tolerance = args
    pred, ref = read_label_volume(pred_path), read_label_volume(ref_path)
    check_same_geometry(pred, ref)
    for vol, extra in ((pred, set()), (ref, {ignore_label} if ignore_label is not None else set())):
        values = set(np.unique(vol.array).tolist())
        bad = sorted(values - allowed - extra)
        if bad:
            raise ValueError(f"{vol.path}: label value(s) {bad[:10]} outside the declared labels {sorted(allowed)}.")
    return {
        "metrics": case_metrics(pred.array, ref.array, ref.spacing, keys, ignore_label, metrics, nsd_tolerance),
        "prediction_file": os.path.abspath(pred_path), "reference_file": os.path.abspath(ref_path), "case": case,
    }


def _mean(values) -> float:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    return float(np.nanmean(arr)) if arr.size and not np.all(np.isnan(arr)) else math.nan


def evaluate_folder(
    pred_dir: str,
    ref_dir: str,
    labels: Optional[Sequence[Key]] = None,
    ignore_label: Optional[int] = None,
    dataset_json: Optional[str] = None,
    output_file: Optional[str] = None,
    csv_file: Optional[str] = None,
    metrics: Sequence[str] = ALL_METRICS,
    nsd_tolerance: float = 1.0,
    groups: Optional[Union[str, Dict[str, int]]] = None,
    es_alpha: float = 1.0,
    workers: int = 1,
    chill: bool = False,
    progress: bool = True,
) -> dict:
    """Evaluate every case of ``ref_dir`` against the same-named file in ``pred_dir``.

    Args:
        labels: foreground labels (ints) or regions (tuples of ints). Default: from ``dataset_json`` if given, else
            every non-zero value found in the references.
        ignore_label: reference voxels with this value are excluded (taken from ``dataset_json`` when given).
        output_file: summary JSON (default ``pred_dir/summary.json``); ``csv_file``: per case and label rows
            (default next to the summary, ``metrics_per_case.csv``).
        metrics: any of ``Dice, IoU, HD95, NSD, clDice, Betti, BettiMatching`` (Dice/IoU and counts are always there).
        nsd_tolerance: NSD tolerance in mm.
        groups: path of a JSON/CSV case → group file (or a dict). Adds per-group means and ES-Dice/ES-IoU with
            ``es_alpha``; every evaluated case must have a group (``-1`` = unknown group).
        workers: processes; ``chill``: skip references without prediction instead of failing.

    Raises:
        ValueError: missing/extra cases, geometry mismatch, non-integer or undeclared labels, unreadable files. Nothing
            is written then.
    """
    unknown = sorted(set(metrics) - set(ALL_METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(ALL_METRICS)}.")
    pairs, missing = pair_cases(pred_dir, ref_dir, chill)
    if dataset_json is not None:
        djson_labels, djson_ignore = labels_from_dataset_json(dataset_json)
        labels = labels if labels is not None else djson_labels
        ignore_label = ignore_label if ignore_label is not None else djson_ignore
    if labels is None:
        found = set()
        for _, _, ref_path in pairs:
            found |= set(np.unique(read_label_volume(ref_path).array).tolist())
        labels = sorted(v for v in found if v != 0 and v != ignore_label)
    keys = [tuple(k) if isinstance(k, (list, tuple)) else int(k) for k in labels]
    allowed = {0} | {v for k in keys for v in (k if isinstance(k, tuple) else (k,))}
    group_of: Optional[Dict[str, int]] = None
    if groups is not None:
        group_of = read_groups(groups) if isinstance(groups, str) else {str(k): int(v) for k, v in groups.items()}
        without = [c for c, _, _ in pairs if c not in group_of]
        if without:
            raise ValueError(f"{len(without)} case(s) have no group in the groups file: {without[:10]}")

    jobs = [(c, p, r, keys, ignore_label, allowed, tuple(metrics), nsd_tolerance) for c, p, r in pairs]
    from tqdm import tqdm

    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_score_case, jobs), total=len(jobs), disable=not progress, desc="evaluate"))
    else:
        results = [_score_case(j) for j in tqdm(jobs, disable=not progress, desc="evaluate")]

    key_names = [str(k) for k in keys]
    metric_names = list(results[0]["metrics"][key_names[0]]) if results and key_names else []
    mean = {k: {m: _mean(r["metrics"][k][m] for r in results) for m in metric_names} for k in key_names}
    summary = {
        "foreground_mean": {m: _mean(mean[k][m] for k in key_names) for m in metric_names},
        "mean": mean,
        "metric_per_case": [{k: v for k, v in r.items() if k != "case"} for r in results],
        "medloss": {"cases": [r["case"] for r in results], "missing_predictions": missing,
                    "nsd_tolerance_mm": nsd_tolerance, "ignore_label": ignore_label},
    }
    if group_of is not None:
        summary["medloss"]["groups"] = _group_summary(results, key_names, group_of, es_alpha)

    output_file = output_file or os.path.join(pred_dir, "summary.json")
    csv_file = csv_file or os.path.join(os.path.dirname(os.path.abspath(output_file)), "metrics_per_case.csv")
    with open(output_file, "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    with open(csv_file, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "label"] + metric_names + (["group"] if group_of is not None else []))
        for r in results:
            for k in key_names:
                row = [r["case"], k] + [r["metrics"][k][m] for m in metric_names]
                writer.writerow(row + ([group_of[r["case"]]] if group_of is not None else []))
    return summary


def _group_summary(results, key_names, group_of, alpha) -> dict:
    from medloss.metrics import equity_scaled_metric

    groups = np.asarray([group_of[r["case"]] for r in results])
    out = {}
    for k in key_names:
        out[k] = {}
        for metric in ("Dice", "IoU"):
            values = np.asarray([r["metrics"][k][metric] for r in results], dtype=float)
            per_group = {str(g): _mean(values[groups == g]) for g in sorted(set(groups.tolist())) if g >= 0}
            out[k][metric] = {
                "per_group_mean": per_group,
                # cases where both masks are empty (NaN, nnU-Net's convention) are left out, as in the means
                "equity_scaled": float(equity_scaled_metric(values, groups, alpha=alpha)),
            }
    return out
