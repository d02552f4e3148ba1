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
from medloss.evaluation.io import (LabelVolume, check_same_geometry, pair_cases, read_label_geometry,
                                   read_label_volume)
from medloss.metrics.case import ALL_METRICS, binary_metrics
from medloss.validation import check_number

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
    connectivity: int = 1,
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
        connectivity: neighbourhood of the foreground for the Betti number and matching errors, passed to
            :func:`medloss.metrics.binary_metrics`: 1 = face neighbours, ``ndim`` = full neighbourhood.
    """
    keep = None if ignore_label is None else ref != ignore_label
    out = {}
    for key in labels_or_regions:
        values = key if isinstance(key, (tuple, list)) else (key,)
        name = str(tuple(key)) if isinstance(key, (tuple, list)) else str(key)
        out[name] = binary_metrics(np.isin(pred, values), np.isin(ref, values), spacing, metrics, nsd_tolerance, keep,
                                   connectivity=connectivity)
    return out


def labels_from_dataset_json(path: str) -> Tuple[List[Key], Optional[int]]:
    """Foreground labels (or regions) and the ignore label of an nnU-Net ``dataset.json``.

    ``"labels"`` maps names to integer values ``>= 0`` or, for regions, to lists of them; ``"background"`` and
    ``"ignore"`` are not scored.

    Raises:
        OSError: the file cannot be opened.
        ValueError: not a UTF-8 JSON object, no ``"labels"`` object, or a label value that is not an integer ``>= 0``
            (or a non-empty list of them); the message names the file.
    """
    where = f"dataset.json {path}"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}, line {err.lineno}: not valid JSON ({err.msg}).") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not a UTF-8 text file.") from None
    example = '{"background": 0, "tumour": 1}'
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object (nnU-Net's dataset.json), got a {type(data).__name__}.")
    if "labels" not in data:
        raise ValueError(f'{where}: has no "labels" (label names mapped to integer values, e.g. {example}).')
    labels = data["labels"]
    if not isinstance(labels, dict):
        raise ValueError(f'{where}: "labels" must map label names to integer values (e.g. {example}), got a '
                         f"{type(labels).__name__}.")

    def value_of(name, value):
        ok = _is_label(value) or (
            name not in ("background", "ignore") and isinstance(value, list) and value and all(map(_is_label, value)))
        if not ok:
            raise ValueError(f"{where}: label {name!r} must be an integer >= 0"
                             f"{'' if name in ('background', 'ignore') else ' or a list of them (a region)'}, "
                             f"got {value!r}.")
        return tuple(int(v) for v in value) if isinstance(value, list) else int(value)

    keys: List[Key] = [value_of(name, value) for name, value in labels.items() if name not in ("background", "ignore")]
    ignore = value_of("ignore", labels["ignore"]) if "ignore" in labels else None
    return keys, ignore


def _is_label(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= 0


def _check_keys(labels: Sequence, what: str = "labels (-l)") -> List[Key]:
    """Labels (ints) and regions (non-empty tuples of ints) as given by the user, checked: integers >= 0, no repeat."""
    if isinstance(labels, np.ndarray) and labels.ndim == 1:
        labels = labels.tolist()
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        raise ValueError(f"{what} must be a list of integer labels or regions, got {labels!r}.")
    keys: List[Key] = []
    for key in labels:
        values = list(key) if isinstance(key, (tuple, list)) else [key]
        if not values or not all(_is_label(v) for v in values):
            raise ValueError(f"{what}: a label must be an integer >= 0 and a region a non-empty list of them, got "
                             f"{key!r} (negative values are never a class).")
        keys.append(tuple(int(v) for v in values) if isinstance(key, (tuple, list)) else int(key))
    repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"{what}: {', '.join(repeated)} given more than once.")
    return keys


def _key_values(keys: Sequence[Key]) -> set:
    return {v for k in keys for v in (k if isinstance(k, tuple) else (k,))}


def _check_values(volume: LabelVolume, ignore_label: Optional[int], declared: Optional[set], declared_by: str) -> None:
    """Refuse negative values other than the ignore label, and values outside ``declared`` (``None``: any value)."""
    values = np.unique(volume.array).tolist()
    negative = [v for v in values if v < 0 and v != ignore_label]
    if negative:
        raise ValueError(f"{volume.path}: negative value(s) {negative[:10]}; label values are integers >= 0 (a "
                         "negative value is accepted only as the ignore label, --ignore-label).")
    if declared is not None:
        bad = sorted(set(values) - declared - {ignore_label})
        if bad:
            raise ValueError(f"{volume.path}: label value(s) {bad[:10]} outside the labels {sorted(declared)} "
                             f"{declared_by}.")


def _check_connectivity(connectivity, volume: Optional[LabelVolume] = None) -> int:
    """:func:`medloss.topology.api.check_connectivity` (the metrics' own check), its message naming the option and
    the file."""
    from medloss.topology.api import check_connectivity

    try:
        return check_connectivity(connectivity, None if volume is None else len(volume.shape))
    except ValueError as err:
        raise ValueError(f"--connectivity{'' if volume is None else ' for ' + volume.path}: {err}") from None


def _score_case(args) -> dict:
    case, pred_path, ref_path, keys, ignore_label, declared, declared_by, metrics, nsd_tolerance, connectivity = args
    pred, ref = read_label_volume(pred_path), read_label_volume(ref_path)
    check_same_geometry(pred, ref)
    for volume in (ref, pred):
        _check_values(volume, ignore_label, declared, declared_by)
    return {
        "metrics": case_metrics(pred.array, ref.array, ref.spacing, keys, ignore_label, metrics, nsd_tolerance,
                                connectivity),
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
    connectivity: int = 1,
) -> dict:
    """Evaluate every case of ``ref_dir`` against the same-named file in ``pred_dir``.

    Every value comes from :func:`medloss.metrics.binary_metrics`, per case and label; this function reads, pairs,
    parallelises, averages (NaN left out of the means, as nnU-Net) and writes the summary.

    Which values are scored, as nnU-Net's evaluator (``nnunetv2.evaluation.evaluate_predictions``): only the given
    labels or regions; a label that appears in no file is scored as empty (Dice NaN, counts 0). Values that no
    label lists are not scored as a class of their own (a predicted 3 where the reference says 1 is a false negative
    of label 1). Two checks go beyond nnU-Net because they catch real mistakes: negative values (e.g. ``-1``) are
    refused in both volumes unless they equal the ignore label, never scored as a class; and when the labels are
    declared by ``dataset_json`` (or inferred from the references), a value outside them (another dataset's labels,
    a wrong label map) is refused, naming the file. Give ``labels`` to score a subset of the values present.

    Args:
        pred_dir: folder of predicted label volumes (``<case><ending>``, nnU-Net naming), 2D or 3D.
        ref_dir: folder of reference label volumes.
        labels: foreground labels (ints ``>= 0``) or regions (tuples of ints) to score. Default: from
            ``dataset_json`` if given, else every value ``> 0`` found in the references.
        ignore_label: reference voxels with this value are excluded (taken from ``dataset_json`` when given); it may
            be negative (e.g. ``-1``). Prediction voxels with this value belong to no class.
        dataset_json: nnU-Net ``dataset.json`` with the labels, regions and ignore label.
        output_file: summary JSON (default ``pred_dir/summary.json``).
        csv_file: one row per case and label (default ``metrics_per_case.csv`` next to the summary).
        metrics: any of :data:`medloss.metrics.ALL_METRICS` (Dice/IoU and the counts are always there).
        nsd_tolerance: NSD tolerance in mm, finite and ``> 0``.
        groups: path of a group file (:func:`medloss.data.groups.read_group_file`) or a ``{case: group id}`` dict.
            Adds per-group means and ES-Dice/ES-IoU (:func:`medloss.metrics.equity_scaled_metric`); every evaluated
            case must have a group (``-1`` = unknown group).
        es_alpha: ``alpha`` of the equity-scaled metrics, finite and ``>= 0``.
        workers: parallel processes, ``>= 1``.
        chill: skip references without prediction instead of failing (nnU-Net's ``--chill``).
        progress: show a progress bar.
        connectivity: neighbourhood of the foreground for the Betti number and matching errors
            (:func:`medloss.metrics.binary_metrics`): 1 = face neighbours (4-connected in 2D, 6-connected in 3D),
            ``ndim`` = full neighbourhood (8/26-connected); recorded in the summary.

    Returns:
        The summary written to ``output_file`` (nnU-Net's ``foreground_mean``, ``mean``, ``metric_per_case``, plus
        ``medloss``).

    Raises:
        ValueError: options out of range, missing/extra cases, no case or no label to evaluate, malformed
            ``dataset_json``, unreadable, empty or corrupt files, volumes that are not 2D/3D, geometry mismatch,
            non-integer, negative or undeclared label values, bad group ids, output locations that cannot be
            written or ``output_file == csv_file``. Options, output locations, the pairing and every file's header
            (dimensions and geometry) are checked before any metric is computed. Nothing is written on error: both
            files go to temporary files first and are moved into place together.
        OSError: ``dataset_json`` or the group file cannot be opened.
    """
    unknown = sorted(set(metrics) - set(ALL_METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(ALL_METRICS)}.")
    nsd_tolerance = check_number("the NSD tolerance in mm (--nsd-tolerance)", nsd_tolerance, low=0, low_open=True)
    es_alpha = check_number("the equity-scaling alpha (--es-alpha)", es_alpha, low=0)
    workers = check_number("the number of worker processes (-np/--workers)", workers, low=1, integer=True)
    connectivity = _check_connectivity(connectivity)
    ignore_label = check_number("the ignore label (-il/--ignore-label)", ignore_label, integer=True, allow_none=True)
    if labels is not None:
        labels = _check_keys(labels)
        if not labels:
            raise ValueError("no label to evaluate: labels (-l) is empty.")
    declared: Optional[set] = None  # the values a label image may hold (None: any value >= 0)
    declared_by = ""
    if dataset_json is not None:
        djson_labels, djson_ignore = labels_from_dataset_json(dataset_json)
        ignore_label = ignore_label if ignore_label is not None else djson_ignore
        declared = {0} | _key_values(djson_labels)
        declared_by = f"declared in {dataset_json} (a file of another dataset or label map?)"
        if labels is None:
            labels = djson_labels
            if not labels:
                raise ValueError(f"no label to evaluate: {dataset_json} declares no foreground label.")
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
    # every header before any voxel: a 4D file, a shape mismatch or a corrupt file in the last case stops the run now
    for _, pred_path, ref_path in pairs:
        pred_geometry, ref_geometry = read_label_geometry(pred_path), read_label_geometry(ref_path)
        check_same_geometry(pred_geometry, ref_geometry)
        _check_connectivity(connectivity, ref_geometry)

    if labels is None:
        found = set()
        for _, _, ref_path in pairs:
            volume = read_label_volume(ref_path)
            _check_values(volume, ignore_label, None, "")
            found |= set(np.unique(volume.array).tolist())
        labels = sorted(v for v in found if v > 0 and v != ignore_label)
        declared = {0} | set(labels)
        declared_by = f"found in the references in {ref_dir}; give the labels to score with -l/--labels"
        if not labels:
            raise ValueError(f"no label to evaluate: the references in {ref_dir} hold only background (0)"
                             f"{'' if ignore_label is None else ' and the ignore label'}; give the labels with "
                             "-l/--labels.")
    keys = labels
    jobs = [(c, p, r, keys, ignore_label, declared, declared_by, tuple(metrics), nsd_tolerance, connectivity)
            for c, p, r in pairs]
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
                    "nsd_tolerance_mm": nsd_tolerance, "ignore_label": ignore_label, "connectivity": connectivity},
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
