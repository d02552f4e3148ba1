"""Group files: one identity group per case (for fairness losses and per-group evaluation).

A group file maps nnU-Net case identifiers (the image file name without ``_0000`` and the file ending) to integer
group ids. Two formats are read::

    groups.json   {"case_001": 0, "case_002": 1, "case_003": -1}
    groups.csv    case,group            (header optional)
                  case_001,0
                  case_002,1

A CSV is separated by ``,``, ``;`` or a tab: the first of them found in its first row (one separator per file).

Group ids are integers ``>= 0``; ``-1`` marks an explicitly unknown group. Anything else is refused with a
``ValueError`` that names the file and the line: JSON ``true``/``false``, floats (``0.5``, and also ``1.0``),
strings (in JSON; in a CSV, cells that are not integers), ids below ``-1``, a case listed twice, a file without
cases, a row that does not have exactly two columns.
Whether a file covers every case of a dataset is the caller's check (extra entries are allowed).

Where the file lives: :func:`find_group_file` returns an explicitly given path, or the first ``groups.json`` /
``groups.csv`` (:data:`GROUP_FILE_NAMES`) in a list of folders (for a dataset: its nnU-Net raw folder, then its
preprocessed folder).

Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "groups.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("case;group\\ncase_001;0\\ncase_002;-1\\n")
    >>> read_group_file(path)
    {'case_001': 0, 'case_002': -1}
    >>> find_group_file([folder]) == path
    True
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union

__all__ = ["GROUP_FILE_NAMES", "UNKNOWN_GROUP", "read_group_file", "find_group_file"]

#: File names searched by :func:`find_group_file`, in this order.
GROUP_FILE_NAMES = ("groups.json", "groups.csv")
#: The group id of a case whose group is not known.
UNKNOWN_GROUP = -1

_INTEGER = re.compile(r"^[+-]?\d+$")
_DELIMITERS = (",", ";", "\t")


def read_group_file(path: Union[str, Path]) -> Dict[str, int]:
    """Read a group file (JSON object or CSV, see the module docstring) into ``{case: group id}``.

    The format is chosen by the file ending: ``.json`` is read as JSON, anything else as CSV.

    Args:
        path: the group file.

    Returns:
        ``{case: group id}`` with integer ids ``>= -1`` (``-1`` = unknown), in file order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: malformed content (not UTF-8 text, not a JSON object, not two columns, a group id that is not an
            integer >= -1, a repeated case, no case); the message names the file and the line.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"group file {path} does not exist.")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise ValueError(f"group file {path}: not a UTF-8 text file (byte {err.start}).") from None
    is_json = path.lower().endswith(".json")
    items = _json_items(path, text) if is_json else _csv_items(path, text)
    if not items:
        raise ValueError(f"group file {path}, line 1: holds no case.")
    groups: Dict[str, int] = {}
    for line, case, value in items:
        if case in groups:
            raise ValueError(f"group file {path}, line {line}: case {case!r} is listed twice.")
        groups[case] = _group_id(path, line, case, value, strings=not is_json)
    return groups


def find_group_file(folders: Iterable[Union[str, Path]], explicit: Optional[Union[str, Path]] = None) -> str:
    """The group file to use: ``explicit`` if given, else the first of :data:`GROUP_FILE_NAMES` in ``folders``.

    Args:
        folders: folders searched in order; in each, ``groups.json`` before ``groups.csv``.
        explicit: a path given by the user; it must exist (no search then).

    Returns:
        The path of the group file.

    Raises:
        FileNotFoundError: ``explicit`` does not exist, or no group file is in any of ``folders`` (the message lists
            every path searched).
    """
    if explicit:
        if not os.path.isfile(explicit):
            raise FileNotFoundError(f"group file {str(explicit)!r} does not exist.")
        return str(explicit)
    searched = []
    for folder in folders:
        for name in GROUP_FILE_NAMES:
            path = os.path.join(str(folder), name)
            searched.append(path)
            if os.path.isfile(path):
                return path
    raise FileNotFoundError(
        "no group file found (one integer group id per case is needed). Searched:\n  " + "\n  ".join(searched)
        + '\nWrite groups.json ({"case_id": group, ...}) or groups.csv (case,group) into the dataset folder.'
    )


# ------------------------------------------------------------------------------------------------ parsing
class _Pairs(list):
    """The ``(key, value)`` pairs of one JSON object, in file order (duplicate keys kept)."""


def _json_items(path: str, text: str) -> List[Tuple[int, str, object]]:
    """``(line, case, raw value)`` of a JSON object, duplicates kept (the caller refuses them)."""
    try:
        raw = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as err:
        raise ValueError(f"group file {path}, line {err.lineno}: not valid JSON ({err.msg}).") from None
    if not isinstance(raw, _Pairs):
        raise ValueError(f"group file {path}, line 1: must hold a JSON object {{case: group id}}.")
    items, position = [], 0
    for case, value in raw:
        # the entry's line: where its quoted key is next followed by ":" (keys appear in file order)
        key = re.compile(re.escape(json.dumps(case, ensure_ascii=False)) + r"\s*:")
        match = key.search(text, position)
        if match is not None:
            position = match.end()
        items.append((text.count("\n", 0, position) + 1, case, value))
    return items


def _csv_items(path: str, text: str) -> List[Tuple[int, str, object]]:
    """``(line, case, raw value)`` of a two-column CSV with ``,``, ``;`` or tab separators; header optional."""
    lines = text.splitlines()
    first_row = next((line for line in lines if line.strip()), "")
    # the separator is the first of ",", ";", tab found in the first row; one-column files are refused below
    delimiter = next((d for d in _DELIMITERS if d in first_row), ",")
    items = []
    rows = csv.reader(lines, delimiter=delimiter)
    first = True
    for row in rows:
        line = rows.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        cells = [cell.strip() for cell in row]
        if len(cells) != 2:
            raise ValueError(
                f"group file {path}, line {line}: expected two columns 'case{delimiter}group', got {row!r}.")
        if first and not _INTEGER.match(cells[1]):
            first = False
            continue  # header
        first = False
        items.append((line, cells[0], cells[1]))
    return items


def _group_id(path: str, line: int, case: str, value: object, strings: bool) -> int:
    """The group id of one entry; CSV cells are integer strings, JSON values must be JSON integers."""
    where = f"group file {path}, line {line}: the group of case {case!r}"
    ok = _INTEGER.match(value) if strings and isinstance(value, str) else (
        isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise ValueError(f"{where} must be an integer >= -1 (-1 = unknown), got {value!r}.")
    group = int(value)
    if group < UNKNOWN_GROUP:
        raise ValueError(f"{where} must be >= -1 (-1 = unknown), got {group}.")
    return group
