"""``medloss evaluate PRED_DIR GT_DIR``: nnU-Net-compatible summary.json plus distance and topology metrics."""

from __future__ import annotations

import argparse
import json
import os


def _key(text: str):
    """``1`` for a label, ``1,2`` for a region: integers >= 0 (argparse reports anything else as a usage error)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a label (an integer >= 0, e.g. 1) or a region (integers joined by commas, e.g. 1,2)")
    values = [int(p) for p in parts]
    return tuple(values) if len(values) > 1 or "," in text else values[0]


def _input_file(path, option: str) -> None:
    if path is not None and not os.path.isfile(path):
        what = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
        raise FileNotFoundError(f"{option}: {path} {what}.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from medloss.metrics import ALL_METRICS

    parser.add_argument("pred_dir", help="folder of predicted label volumes (<case>.nii.gz, nnU-Net naming)")
    parser.add_argument("gt_dir", help="folder of reference label volumes")
    parser.add_argument("-l", "--labels", nargs="+", type=_key, default=None,
                        help="labels to score (integers >= 0), or regions as comma lists (1,2); may be a subset of "
                             "the values present: other values are not scored (as nnU-Net's evaluator). Default: from "
                             "--dataset-json, else every value > 0 of the references")
    parser.add_argument("-djfile", "--dataset-json", default=None,
                        help="nnU-Net dataset.json (labels, regions, ignore)")
    parser.add_argument("-il", "--ignore-label", type=int, default=None,
                        help="reference value to exclude (nnU-Net's ignore label; may be negative, e.g. -1). Other "
                             "negative values are refused in both volumes, never scored as a class")
    parser.add_argument("-o", "--output", default=None, help="summary JSON (default PRED_DIR/summary.json)")
    parser.add_argument("--csv", default=None, help="per-case CSV (default next to the summary)")
    parser.add_argument("--metrics", nargs="+", default=list(ALL_METRICS), choices=list(ALL_METRICS),
                        help="metrics to compute (default: all)")
    parser.add_argument("--nsd-tolerance", type=float, default=1.0, help="NSD tolerance in mm, finite and > 0 (default 1)")
    parser.add_argument("--groups", default=None, help="group file, JSON {case: group} or CSV case,group (separated by "
                        "',', ';' or a tab; -1 = unknown): per-group means and equity-scaled Dice/IoU")
    parser.add_argument("--es-alpha", type=float, default=1.0,
                        help="alpha of the equity-scaled metrics, finite and >= 0 (default 1)")
    parser.add_argument("-np", "--workers", type=int, default=1, help="parallel processes, >= 1 (default 1)")
    parser.add_argument("--connectivity", type=int, default=1,
                        help="foreground connectivity of the Betti number and matching errors: 1 = face neighbours, "
                             "4/6-connected foreground (default); 2 in 2D / 3 in 3D = full neighbourhood, 8/26-connected "
                             "foreground (TopoMortar's and gudhi's T-construction convention)")
    parser.add_argument("--chill", action="store_true", help="skip references without prediction instead of failing")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from medloss.evaluation.folder import evaluate_folder

    # a ValueError/OSError (the user's mistake) becomes one line in medloss.cli.main
    _input_file(args.dataset_json, "-djfile/--dataset-json")
    _input_file(args.groups, "--groups")
    summary = evaluate_folder(
        args.pred_dir, args.gt_dir, labels=args.labels, ignore_label=args.ignore_label,
        dataset_json=args.dataset_json, output_file=args.output, csv_file=args.csv, metrics=args.metrics,
        nsd_tolerance=args.nsd_tolerance, groups=args.groups, es_alpha=args.es_alpha, workers=args.workers,
        chill=args.chill, progress=not args.quiet, connectivity=args.connectivity)
    print(json.dumps(summary["foreground_mean"], indent=2, sort_keys=True))
    return 0
