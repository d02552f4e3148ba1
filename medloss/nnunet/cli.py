"""``medloss nnunet``: where the trainers live, and nnU-Net's train/predict commands with them registered."""

from __future__ import annotations

import argparse
import sys

ACTIONS = {
    "path": "print the folder to export as nnUNet_extTrainer",
    "train": "nnUNetv2_train with medloss trainers registered (takes exactly nnUNetv2_train's arguments)",
    "predict": "nnUNetv2_predict with medloss trainers registered (takes exactly nnUNetv2_predict's arguments)",
    "trainers": "list the medloss trainer names",
    "sauna-preprocess": "store SAUNA soft labels next to preprocessed data: -d DATASET [-c CONFIG] [-p PLANS] "
                        "(a re-run overwrites the earlier output)",
    "raters-preprocess": "preprocess a multi-rater dataset for PULASki: -d DATASET [-c CONFIG] [-p PLANS] "
                         "(a re-run overwrites the earlier output)",
}


PREPROCESS_EPILOG = ("The command is a transaction and can be run again: every input is checked before the first "
                     "case is written, the cases are written into a staging folder that replaces the output "
                     "configuration's data folder (the output of an earlier run included) only when all were "
                     "written, and the plans file is updated last. A failed run leaves the earlier output and the "
                     "plans as they were.")


def _preprocess(action: str, argv) -> int:
    parser = argparse.ArgumentParser(prog=f"medloss nnunet {action}", description=ACTIONS[action],
                                     epilog=PREPROCESS_EPILOG)
    parser.add_argument("-d", required=True, help="dataset id or name (501 or Dataset501_Name)")
    parser.add_argument("-c", default="3d_fullres", help="source configuration (default 3d_fullres)")
    parser.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    args = parser.parse_args(argv)
    if action == "sauna-preprocess":
        from medloss.nnunet.sauna import preprocess_sauna as run
    else:
        from medloss.nnunet.pulaski import preprocess_raters as run
    dataset = int(args.d) if args.d.isdigit() else args.d
    try:
        name = run(dataset, configuration=args.c, plans_identifier=args.p)
    except NotImplementedError as err:  # a dataset the method does not support is the user's mistake here
        raise ValueError(str(err)) from err
    print(f"wrote configuration {name!r}: train with `medloss nnunet train {args.d} {name} FOLD -tr ...`")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=list(ACTIONS), help="; ".join(f"{k}: {v}" for k, v in ACTIONS.items()))
    parser.add_argument("nnunet_args", nargs=argparse.REMAINDER, help="arguments passed on to nnU-Net unchanged")


def _require_nnunet() -> None:
    try:
        import nnunetv2  # noqa: F401
    except ImportError as err:
        raise ValueError(
            f"nnU-Net v2 is not installed ({err}); install it with: pip install \"medloss[nnunet]\"") from None


def main(args: argparse.Namespace) -> int:
    from medloss.nnunet import EXT_TRAINER_DIR, register_ext_trainers

    if args.action == "path":
        print(EXT_TRAINER_DIR)
        return 0
    _require_nnunet()
    if args.action == "trainers":
        from medloss.nnunet import TRAINERS

        print("\n".join(TRAINERS))
        return 0
    if args.action in ("sauna-preprocess", "raters-preprocess"):
        return _preprocess(args.action, args.nnunet_args)
    register_ext_trainers()
    if args.action == "train":
        from nnunetv2.run.run_training import run_training_entry as entry

        prog = "nnUNetv2_train"
    else:
        from nnunetv2.inference.predict_from_raw_data import predict_entry_point as entry

        prog = "nnUNetv2_predict"
    sys.argv = [prog, *args.nnunet_args]
    entry()
    return 0
