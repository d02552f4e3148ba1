"""Writing results as transactions: check output locations first, write to temporary files, move into place last.

Every command that writes (``medloss evaluate``, ``demo``, ``example``, the nnU-Net preprocessing commands,
``medloss bundle init``, the benchmarks) uses these helpers, so a failure (a bad option, a corrupt input, a full
disk, Ctrl-C) leaves what was there before and never a half-written file or folder.

* :func:`check_output_file` / :func:`check_output_folder`: refuse a location that cannot be written, before any
  work is done, with a message naming the option and the path.
* :func:`write_files_together`: several files written to temporary files next to them and moved into place together.
* :func:`staged_folder`: a folder built under a temporary name next to its target and moved into place on success.

Example:
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> with staged_folder(os.path.join(root, "results")) as tmp:
    ...     with open(os.path.join(tmp, "a.txt"), "w") as f:
    ...         _ = f.write("done")
    >>> sorted(os.listdir(root))
    ['results']
    >>> write_files_together({os.path.join(root, "b.txt"): lambda f: f.write("x")})
    >>> sorted(os.listdir(root))
    ['b.txt', 'results']
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Callable, Dict, Iterator, Union

__all__ = ["check_output_file", "check_output_folder", "write_files_together", "staged_folder"]

PathLike = Union[str, "os.PathLike[str]"]


def check_output_file(path: PathLike, what: str = "output file") -> Path:
    """Refuse a file location that cannot be written; nothing is created.

    Args:
        path: the file to be written (it may exist: it will be replaced).
        what: how the message names it, e.g. ``"summary file (-o)"``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: its folder does not exist or is not writable, or ``path`` is a folder or a read-only file.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"the folder of the {what} does not exist: {folder}")
    if path.is_dir():
        raise ValueError(f"the {what} {path} is a folder; expected a file path.")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"the {what} {path} cannot be written (permission denied).")
    return path


def check_output_folder(path: PathLike, what: str = "output folder", must_be_empty: bool = False) -> Path:
    """Refuse a folder location that cannot be written; nothing is created.

    The folder may be missing (its parent must exist and be writable); it is created by :func:`staged_folder`.

    Args:
        path: the folder to be written.
        what: how the message names it, e.g. ``"output folder (--output)"``.
        must_be_empty: refuse an existing non-empty folder too.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``path`` is a file, its parent is missing or read-only, it is read-only, or (with
            ``must_be_empty``) it holds files.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"the {what} {path} is a file; expected a folder.")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise ValueError(f"the parent folder of the {what} does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.is_dir() and not os.access(path, os.W_OK | os.X_OK)):
        raise ValueError(f"the {what} {path} cannot be written (permission denied).")
    if must_be_empty and path.is_dir() and any(path.iterdir()):
        raise ValueError(f"the {what} {path} is not empty; give a new or empty folder.")
    return path


def write_files_together(writers: Dict[PathLike, Callable[[IO[str]], object]]) -> None:
    """Write text files to temporary files next to them, then move all into place.

    Args:
        writers: ``{path: write}``; ``write(f)`` writes the content to the open text file ``f``.

    Raises:
        ValueError: a write failed; the previous files (if any) are left as they were and no temporary file remains.
    """
    umask = os.umask(0)
    os.umask(umask)
    done: Dict[Path, str] = {}
    try:
        for path, write in writers.items():
            path = Path(path)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".medloss-tmp", dir=path.parent)
            done[path] = tmp
            with os.fdopen(fd, "w", newline="") as f:
                write(f)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes private files; results get the user's usual mode
        for path, tmp in done.items():
            os.replace(tmp, path)
    except OSError as err:
        raise ValueError(f"writing the results failed ({err}); the previous files were left as they were.") from None
    finally:
        for tmp in done.values():
            if os.path.exists(tmp):
                os.remove(tmp)


@contextlib.contextmanager
def staged_folder(target: PathLike, replace: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name next to ``target``; move it into place when the block succeeds.

    Args:
        target: the folder to produce.
        replace: ``True``: an existing ``target`` is replaced as a whole (re-running a preprocessing command
            overwrites its previous output). ``False``: the new files are moved into ``target``, replacing files of
            the same name and keeping others (a report folder the user also keeps other files in).

    Yields:
        The staging folder (empty) to write into.

    Raises:
        ValueError: moving into place failed (permission, disk); the staging folder is removed, ``target`` unchanged.
        Any exception of the block is re-raised after the staging folder was removed; ``target`` is unchanged.
    """
    target = Path(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".medloss-tmp", dir=target.resolve().parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes a private folder; results get the user's usual mode
    try:
        yield staging
        try:
            if replace or not target.exists():
                old = None
                if target.exists():
                    # the old folder is moved aside first so that a failed rename can put it back
                    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".medloss-old",
                                                dir=target.resolve().parent))
                    old.rmdir()
                    target.rename(old)
                try:
                    staging.rename(target)
                except OSError:
                    if old is not None:
                        old.rename(target)
                    raise
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            else:
                for item in staging.iterdir():
                    dest = target / item.name
                    if dest.is_dir() and not dest.is_symlink():
                        shutil.rmtree(dest)
                    os.replace(item, dest)
        except OSError as err:
            raise ValueError(f"cannot write {target}: {err.strerror or err}.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
