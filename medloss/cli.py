"""The ``medloss`` command.

Subcommands are registered in :data:`SUBCOMMANDS`; each module exposes ``add_arguments(parser)`` and
``main(args) -> int`` so that heavy imports (torch, nnU-Net) happen only when that subcommand runs.

One error path: a subcommand reports a user's mistake (a missing or unreadable file, a malformed JSON/CSV, an option
out of range, contradictory options, an unavailable device) by raising :class:`ValueError` or :class:`OSError` with a
message naming the file or option and what was expected. :func:`main` prints it as one line
``medloss <command>: error: <message>`` on stderr and exits with status 2 (argparse's status for bad options); a
traceback is shown only with ``--debug`` (``medloss --debug <command> ...`` or ``<command> ... --debug``). Any other
exception is a bug and keeps its traceback.
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


#: Exit status of a command that stopped on a user's mistake.
ERROR_STATUS = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medloss",
        description="Segmentation losses, soft labels and topology/fairness metrics for MONAI and nnU-Net v2.",
    )
    parser.add_argument("--version", action="version", version=f"medloss {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(sp)
        if name != "nnunet":  # nnunet passes its remaining arguments on to nnU-Net: use medloss --debug nnunet ...
            # SUPPRESS: the subcommand's default must not overwrite a --debug given before the subcommand
            sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                            help="show the full traceback of an error")
        sp.set_defaults(_module=module)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except (ValueError, OSError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"medloss {args.command}: error: {error_message(err)}", file=sys.stderr)
        return ERROR_STATUS
    except KeyboardInterrupt:
        print(f"medloss {args.command}: interrupted", file=sys.stderr)
        return 130


def error_message(err: BaseException) -> str:
    """One line for a user's mistake: the message, and for file errors the file (``[Errno 2] ...`` made readable)."""
    if isinstance(err, OSError) and err.strerror:
        where = f" {err.filename!r}" if err.filename else ""
        return f"{err.strerror}{where}" + (f" -> {err.filename2!r}" if getattr(err, "filename2", None) else "")
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
