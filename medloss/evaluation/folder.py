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
from typing import IO, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from medloss.data.groups import read_group_file
from medloss.data.outputs import check_output_file, write_files_together
from medloss.evaluation.io import check_same_geometry, pair_cases, read_label_volume
from medloss.metrics.case import ALL_METRICS, binary_metrics

__all__ = ["evaluate_folder", "case_metrics", "labels_from_dataset_json"]

Key = Union[int, Tuple[int, ...]]


def case_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    labels_or_regions: Sequence[Key],
    ignore_label: Optional[int] = None,
    metrics: Sequence[str] = ALL_METRICS,
    nsd_tolerance: float = 1.0,
) -> Dict[str, Dict[str, float]]:
    """Metrics of one case per label or region, keyed like nnU-Net (``"1"`` for a label, ``"(1, 2)"`` for a region).

    Selects the masks of every label (or the union of a region's labels) and hands them to
    :func:`medloss.metrics.binary_metrics`; reference voxels carrying ``ignore_label`` are left out of every count
    (nnU-Net's convention) and are background for the distance and topology metrics.

    Args:
        pred: predicted label map ``(*spatial)``.
        ref: reference label map of the same shape.
        spacing: voxel size in mm per array axis.
        labels_or_regions: foreground labels (ints) or regions (tuples of ints).
        ignore_label: reference value excluded from the evaluation.
        metrics: any of :data:`medloss.metrics.ALL_METRICS`.
        nsd_tolerance: NSD tolerance in mm.
    """
    keep = None if ignore_label is None else ref != ignore_label
    out = {}
    for key in labels_or_regions:
        values = key if isinstance(key, (tuple, list)) else (key,)
        name = str(tuple(key)) if isinstance(key, (tuple, list)) else str(key)
        out[name] = binary_metrics(np.isin(pred, values), np.isin(ref, values), spacing, metrics, nsd_tolerance, keep)
    return out


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

    Every value comes from :func:`medloss.metrics.binary_metrics`, per case and label; this function reads, pairs,
    parallelises, averages (NaN left out of the means, as nnU-Net) and writes the summary.

    Args:
        pred_dir: folder of predicted label volumes (``<case><ending>``, nnU-Net naming).
        ref_dir: folder of reference label volumes.
        labels: foreground labels (ints) or regions (tuples of ints). Default: from ``dataset_json`` if given, else
            every non-zero value found in the references.
        ignore_label: reference voxels with this value are excluded (taken from ``dataset_json`` when given).
        dataset_json: nnU-Net ``dataset.json`` with the labels, regions and ignore label.
        output_file: summary JSON (default ``pred_dir/summary.json``).
        csv_file: one row per case and label (default ``metrics_per_case.csv`` next to the summary).
        metrics: any of :data:`medloss.metrics.ALL_METRICS` (Dice/IoU and the counts are always there).
        nsd_tolerance: NSD tolerance in mm.
        groups: path of a group file (:func:`medloss.data.groups.read_group_file`) or a ``{case: group id}`` dict.
            Adds per-group means and ES-Dice/ES-IoU (:func:`medloss.metrics.equity_scaled_metric`); every evaluated
            case must have a group (``-1`` = unknown group).
        es_alpha: ``alpha`` of the equity-scaled metrics.
        workers: parallel processes.
        chill: skip references without prediction instead of failing (nnU-Net's ``--chill``).
        progress: show a progress bar.

    Returns:
        The summary written to ``output_file`` (nnU-Net's ``foreground_mean``, ``mean``, ``metric_per_case``, plus
        ``medloss``).

    Raises:
        ValueError: missing/extra cases, no case to evaluate, geometry mismatch, non-integer or undeclared labels,
            unreadable files, bad group ids, an NSD tolerance that is not finite and > 0, output locations that
            cannot be written or ``output_file == csv_file`` (checked before any metric is computed). Nothing is
            written then: both files go to temporary files first and are moved into place together.
    """
    unknown = sorted(set(metrics) - set(ALL_METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(ALL_METRICS)}.")
    if not (isinstance(nsd_tolerance, (int, float)) and math.isfinite(nsd_tolerance) and nsd_tolerance > 0):
        raise ValueError(f"the NSD tolerance must be a finite number of mm > 0, got {nsd_tolerance!r}.")
    # where the results go is checked before any metric is computed
    output_file = os.path.abspath(output_file or os.path.join(pred_dir, "summary.json"))
    csv_file = os.path.abspath(csv_file or os.path.join(os.path.dirname(output_file), "metrics_per_case.csv"))
    if os.path.abspath(output_file) == os.path.abspath(csv_file):
        raise ValueError(f"the summary and the per-case CSV would both be written to {output_file}; give two paths.")
    check_output_file(output_file, "summary file (-o)")
    check_output_file(csv_file, "per-case CSV (--csv)")
    pairs, missing = pair_cases(pred_dir, ref_dir, chill)
    if not pairs:
        raise ValueError(f"no case to evaluate: none of the {len(missing)} reference case(s) in {ref_dir} has a "
                         f"prediction in {pred_dir}.")
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
        if isinstance(groups, (str, os.PathLike)):
            group_of = read_group_file(groups)
        else:
            from medloss.validation import check_group_ids

            ids = np.asarray(list(groups.values()))
            if ids.dtype.kind not in "iu":
                raise ValueError(f"group ids must be integers (-1 = unknown), got {ids.dtype} values.")
            ids = check_group_ids(ids, ids.size, int(ids.max(initial=0)) + 1)
            group_of = dict(zip(map(str, groups), ids.tolist()))
        without = [c for c, _, _ in pairs if c not in group_of]
        if without:
            raise ValueError(f"{len(without)} case(s) have no group in the groups file: {without[:10]}")

    jobs = [(c, p, r, keys, ignore_label, allowed, tuple(metrics), nsd_tolerance) for c, p, r in pairs]
    from tqdm import tqdm

    if workers > 1:
        # import the metric modules (torch, MONAI, the compiled kernels) once, before the workers are forked
        import medloss.metrics.centerline, medloss.metrics.surface, medloss.metrics.topology  # noqa: F401, E401

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

    rows = [["case", "label"] + metric_names + (["group"] if group_of is not None else [])]
    for r in results:
        for k in key_names:
            row = [r["case"], k] + [r["metrics"][k][m] for m in metric_names]
            rows.append(row + ([group_of[r["case"]]] if group_of is not None else []))
    write_files_together({output_file: lambda f: json.dump(summary, f, indent=2, sort_keys=True),
                     csv_file: lambda f: csv.writer(f).writerows(rows)})
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
