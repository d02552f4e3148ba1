"""The ``medloss`` command.

Subcommands are registered in :data:`SUBCOMMANDS`; each module exposes ``add_arguments(parser)`` and
``main(args) -> int`` so that heavy imports (torch, nnU-Net) happen only when that subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from medloss import __version__

# name -> (module, one-line help)
SUBCOMMANDS = {
    "demo": ("medloss.apps.demo", "train a small U-Net with and without medloss losses on vessel phantoms, write a report"),
    "example": ("medloss.apps.example", "run every loss and transform on generated data and print the results"),
    "evaluate": ("medloss.evaluation.cli", "score a folder of predicted label volumes against references"),
    "bundle": ("medloss.bundles.cli", "MONAI bundles: list them, copy one into a folder to run it"),
    "nnunet": ("medloss.nnunet.cli", "nnU-Net v2 trainers: path for nnUNet_extTrainer, train, predict"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medloss",
        description="Segmentation losses, soft labels and topology/fairness metrics for MONAI and nnU-Net v2.",
    )
    parser.add_argument("--version", action="version", version=f"medloss {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(sp)
        sp.set_defaults(_module=module)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(importlib.import_module(args._module).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
