"""``medloss evaluate PRED_DIR GT_DIR``: nnU-Net-compatible summary.json plus distance and topology metrics."""

from __future__ import annotations

import argparse
import json


def _key(text: str):
    """``1`` for a label, ``1,2`` for a region."""
    parts = [int(p) for p in text.split(",") if p.strip()]
    return tuple(parts) if len(parts) > 1 or "," in text else parts[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from medloss.metrics import ALL_METRICS

    parser.add_argument("pred_dir", help="folder of predicted label volumes (<case>.nii.gz, nnU-Net naming)")
    parser.add_argument("gt_dir", help="folder of reference label volumes")
    parser.add_argument("-l", "--labels", nargs="+", type=_key, default=None,
                        help="foreground labels, or regions as comma lists (1,2); default: from --dataset-json, "
                             "else every non-zero reference value")
    parser.add_argument("-djfile", "--dataset-json", default=None,
                        help="nnU-Net dataset.json (labels, regions, ignore)")
    parser.add_argument("-il", "--ignore-label", type=int, default=None, help="reference value to exclude")
    parser.add_argument("-o", "--output", default=None, help="summary JSON (default PRED_DIR/summary.json)")
    parser.add_argument("--csv", default=None, help="per-case CSV (default next to the summary)")
    parser.add_argument("--metrics", nargs="+", default=list(ALL_METRICS), choices=list(ALL_METRICS),
                        help="metrics to compute (default: all)")
    parser.add_argument("--nsd-tolerance", type=float, default=1.0, help="NSD tolerance in mm (default 1)")
    parser.add_argument("--groups", default=None, help="group file, JSON {case: group} or CSV case,group (separated by "
                        "',', ';' or a tab; -1 = unknown): per-group means and equity-scaled Dice/IoU")
    parser.add_argument("--es-alpha", type=float, default=1.0, help="alpha of the equity-scaled metrics (default 1)")
    parser.add_argument("-np", "--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--chill", action="store_true", help="skip references without prediction instead of failing")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from medloss.evaluation.folder import evaluate_folder

    # a ValueError/OSError (the user's mistake) becomes one line in medloss.cli.main
    summary = evaluate_folder(
        args.pred_dir, args.gt_dir, labels=args.labels, ignore_label=args.ignore_label,
        dataset_json=args.dataset_json, output_file=args.output, csv_file=args.csv, metrics=args.metrics,
        nsd_tolerance=args.nsd_tolerance, groups=args.groups, es_alpha=args.es_alpha, workers=args.workers,
        chill=args.chill, progress=not args.quiet)
    print(json.dumps(summary["foreground_mean"], indent=2, sort_keys=True))
    return 0
