"""``medloss bundle``: list the MONAI bundles shipped with medloss and copy one out to run it.

The bundles are package data of :mod:`medloss.bundles` (one folder per bundle, with ``configs/``, ``docs/`` and a
``LICENSE``), so they come with ``pip install medloss``. A user copies one into a folder of their own and runs it
with MONAI's bundle runner::

    medloss bundle list
    medloss bundle init vessel_mip ./vessel_mip
    cd vessel_mip
    python -m monai.bundle run --config_file configs/train.json --meta_file configs/metadata.json --bundle_root .

``init`` also copies ``meta_schema.json`` (the rules of MONAI's metadata schema, for ``verify_metadata`` without a
download) into the bundle folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Dict, List

from medloss.data.outputs import check_output_folder, staged_folder

__all__ = ["BUNDLE_ROOT", "SCHEMA_FILE", "bundle_names", "bundle_title", "init_bundle", "add_arguments",
           "main"]

#: The folder holding the bundles (inside the installed package).
BUNDLE_ROOT = Path(__file__).resolve().parent
#: The offline copy of MONAI's bundle metadata schema rules.
SCHEMA_FILE = BUNDLE_ROOT / "meta_schema.json"


def bundle_names() -> List[str]:
    """The names of the shipped bundles (folders with a ``configs/metadata.json``), sorted."""
    return sorted(p.name for p in BUNDLE_ROOT.iterdir() if (p / "configs" / "metadata.json").is_file())


def bundle_title(name: str) -> str:
    """The title of a bundle (``"name"`` of its ``configs/metadata.json``)."""
    meta = json.loads((BUNDLE_ROOT / name / "configs" / "metadata.json").read_text(encoding="utf-8"))
    return str(meta.get("name", ""))


def init_bundle(name: str, directory: str) -> Path:
    """Copy bundle ``name`` (and ``meta_schema.json``) into ``directory`` and return it.

    Args:
        name: one of :func:`bundle_names`.
        directory: the target folder; it is created, and must not exist or be empty.

    Returns:
        The bundle folder, ready for ``python -m monai.bundle run ... --bundle_root <directory>``.

    Raises:
        ValueError: an unknown bundle, ``directory`` is a file or a non-empty folder, or it cannot be written
            (nothing is left behind then).
    """
    names = bundle_names()
    if name not in names:
        raise ValueError(f"unknown bundle {name!r}; the bundles are: {', '.join(names)}.")
    target = check_output_folder(directory, "bundle folder", must_be_empty=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "cache", "eval")
    # built next to the target and moved into place at the end: a failed copy leaves nothing behind
    with staged_folder(target, replace=True) as staging:
        try:
            shutil.copytree(BUNDLE_ROOT / name, staging, ignore=ignore, dirs_exist_ok=True)
            shutil.copy2(SCHEMA_FILE, staging / SCHEMA_FILE.name)
        except OSError as err:
            raise ValueError(f"cannot write {str(target)!r}: {err.strerror or err}.") from None
    return target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``list`` and ``init`` actions."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="list the bundles", description="list the bundles shipped with medloss")
    init = sub.add_parser(
        "init", help="copy a bundle into a new folder",
        description="copy a bundle into a new (or empty) folder, ready for python -m monai.bundle run")
    init.add_argument("name", help="bundle name (see 'medloss bundle list')")
    init.add_argument("directory", help="target folder; must not exist or be empty")


def main(args: argparse.Namespace) -> int:
    """Run ``medloss bundle list`` / ``medloss bundle init NAME DIR``."""
    if args.action == "list":
        titles: Dict[str, str] = {name: bundle_title(name) for name in bundle_names()}
        width = max(len(name) for name in titles)
        for name, text in titles.items():
            print(f"{name:<{width}}  {text}")
        return 0
    target = init_bundle(args.name, args.directory)  # a ValueError becomes one line in medloss.cli.main
    print(f"copied bundle {args.name!r} to {target}; train it with:\n"
          f"  cd {target}\n"
          "  python -m monai.bundle run --config_file configs/train.json --meta_file configs/metadata.json "
          "--bundle_root .")
    return 0
