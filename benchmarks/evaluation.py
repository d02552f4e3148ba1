"""Cases per second of ``medloss evaluate`` against nnU-Net's evaluator on the same folders, in one run.

    python benchmarks/evaluation.py [--cases 8] [--size 96] [--workers 1]

Prints cases/s for nnU-Net's ``compute_metrics_on_folder`` (Dice/IoU only), medloss with the same metrics, and
medloss with every metric (HD95, NSD, clDice, Betti errors), each with its ratio to nnU-Net. Both evaluators are
imported before their timings, so the rates are per-case throughput without the one-time import of torch and MONAI.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from medloss.data.nifti import save_nifti
from medloss.data.synthetic import vessel_phantom
from medloss.evaluation import evaluate_folder

SPACING = (1.0, 0.8, 0.8)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    from scipy.ndimage import binary_dilation

    with tempfile.TemporaryDirectory() as tmp:
        gt, pred = Path(tmp, "gt"), Path(tmp, "pred")
        gt.mkdir(), pred.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.cases):
            ref = vessel_phantom((args.size,) * 3, seed=i)
            p = binary_dilation(ref) if i % 2 else ref.copy()
            p[rng.random(ref.shape) < 0.001] = 1
            save_nifti(ref.astype(np.uint8), gt / f"c{i:03d}.nii.gz", SPACING)
            save_nifti(p.astype(np.uint8), pred / f"c{i:03d}.nii.gz", SPACING)
        rows = []
        try:
            from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
            from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

            t0 = time.perf_counter()
            compute_metrics_on_folder(str(gt), str(pred), str(Path(tmp, "nnunet.json")), SimpleITKIO(), ".nii.gz", [1],
                                      None, args.workers, chill=False)
            base = time.perf_counter() - t0
            rows.append(("nnU-Net compute_metrics_on_folder (Dice, IoU)", base))
        except ImportError:
            base = None
        import medloss.metrics.centerline, medloss.metrics.topology  # noqa: F401, E401  (imports outside the timings)

        for name, metrics in (("medloss evaluate (Dice, IoU)", ["Dice", "IoU"]),
                              ("medloss evaluate (all metrics)", None)):
            kwargs = {} if metrics is None else {"metrics": metrics}
            t0 = time.perf_counter()
            evaluate_folder(str(pred), str(gt), labels=[1], workers=args.workers, progress=False,
                            output_file=str(Path(tmp, "m.json")), **kwargs)
            rows.append((name, time.perf_counter() - t0))
    print(f"{args.cases} cases of {args.size}^3, workers={args.workers}")
    for name, sec in rows:
        ratio = f"{(args.cases / sec) / (args.cases / base):6.2f}x nnU-Net" if base else ""
        print(f"{name:48s} {args.cases / sec:8.2f} cases/s  {ratio}")


if __name__ == "__main__":
    main()
