"""The on-disk dataset layout: nnU-Net's raw layout plus medloss's folders for raters, targets and groups.

Every medloss entry point that reads a dataset folder (the MONAI bundles, the nnU-Net trainers, the demo) reads
this one layout (``{split}`` is ``Tr`` for training or ``Ts`` for test cases)::

    imagesTr/<case>_0000.nii.gz [<case>_0001.nii.gz ...]   one file per input channel (nnU-Net naming)
    labelsTr/<case>.nii.gz                                 label map (0 = background)
    ratersTr/<case>_rater0.nii.gz ... <case>_rater<R-1>.nii.gz
                                                           multi-rater data: one binary mask per rater
    targetsTr/<case>.nii.gz                                image-to-image synthesis: the image to synthesise
    groups.json or groups.csv                              fairness: {case: group id}, see medloss.data.groups
    imagesTs/ (labelsTs/, ratersTs/, targetsTs/)           the same for the test split (labels optional there)

Multi-rater layout: rater masks live in ``raters{split}/`` next to ``labels{split}/``, named
``<case>_rater<k><file ending>`` with ``k = 0 .. R-1`` (no gaps, no leading zeros needed: ``rater10`` follows
``rater9``), on the grid of the case's image. Every case has the same number ``R`` of raters, so that rater sets can
be batched. ``labels{split}/<case>`` stays the reference segmentation (for example the majority vote, or any one
rater) used by everything that needs one label. :func:`list_rater_files` lists and checks them;
:func:`rater_path` names one file (for writers).

Case identifiers are nnU-Net's: the image file name without ``_0000`` and the file ending. The file ending is
``.nii.gz`` unless given (nnU-Net datasets declare theirs in ``dataset.json``).

Example:
    >>> import tempfile
    >>> from medloss.data import write_synthetic_dataset
    >>> root = write_synthetic_dataset(tempfile.mkdtemp(), n_cases=2, size=8, n_raters=3)
    >>> raters = list_rater_files(root)
    >>> sorted(raters), [p.rsplit("/", 1)[-1] for p in raters["vessel_tr000"]]
    (['vessel_tr000', 'vessel_tr001'], ['vessel_tr000_rater0.nii.gz', 'vessel_tr000_rater1.nii.gz', \
'vessel_tr000_rater2.nii.gz'])
    >>> [sorted(c) for c in list_nnunet_cases(root, n_raters=3, with_groups=True)][0]
    ['case', 'group', 'image', 'label', 'raters']
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from medloss.data.groups import find_group_file, read_group_file

__all__ = ["SPLITS", "NIFTI_ENDING", "check_split", "rater_path", "list_rater_files", "list_nnunet_cases"]

#: The two splits of the nnU-Net raw layout: training (``imagesTr``...) and test (``imagesTs``...).
SPLITS = ("Tr", "Ts")
#: The default file ending.
NIFTI_ENDING = ".nii.gz"

PathLike = Union[str, Path]


def check_split(split: str) -> None:
    """Raise a ``ValueError`` unless ``split`` is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")


# ------------------------------------------------------------------------------------------------ raters
def rater_path(dataset_dir: PathLike, case: str, k: int, split: str = "Tr", file_ending: str = NIFTI_ENDING) -> Path:
    """The path of rater ``k``'s mask of ``case``: ``<dataset_dir>/raters{split}/<case>_rater<k><file_ending>``.

    Args:
        dataset_dir: the dataset folder.
        case: the case identifier.
        k: the rater index, ``0 <= k < R``.
        split: ``"Tr"`` or ``"Ts"``.
        file_ending: the file ending of the dataset.

    Raises:
        ValueError: an unknown ``split`` or a negative ``k``.
    """
    check_split(split)
    if int(k) < 0:
        raise ValueError(f"rater index k must be >= 0, got {k}.")
    return Path(dataset_dir) / f"raters{split}" / f"{case}_rater{int(k)}{file_ending}"


def list_rater_files(
    dataset_dir: PathLike,
    split: str = "Tr",
    cases: Optional[Sequence[str]] = None,
    file_ending: str = NIFTI_ENDING,
) -> Dict[str, List[str]]:
    """The rater masks of a multi-rater dataset (see the module docstring): ``{case: [rater 0, ..., rater R-1]}``.

    Args:
        dataset_dir: the dataset folder holding ``raters{split}/``.
        split: ``"Tr"`` or ``"Ts"``.
        cases: the cases that must have raters (for example those of ``images{split}/``); rater files of other cases
            are ignored. ``None``: every case found in ``raters{split}/``.
        file_ending: the file ending of the dataset.

    Returns:
        ``{case: paths}`` sorted by case, each list ordered by ``k`` and of the same length ``R >= 1``.

    Raises:
        ValueError: no ``raters{split}/`` folder, a file ending in ``file_ending`` not named
            ``<case>_rater<k><file_ending>``, no rater files (for a listed case, or at all), raters of a case not
            numbered ``0 .. R-1``, or cases with different numbers of raters.
    """
    check_split(split)
    folder = Path(dataset_dir) / f"raters{split}"
    if not folder.is_dir():
        raise ValueError(
            f"no rater folder {str(folder)!r}: multi-rater data needs raters{split}/<case>_rater<k>{file_ending} "
            f"files, k = 0..R-1.")
    pattern = re.compile(r"^(?P<case>.+)_rater(?P<k>\d+)" + re.escape(file_ending) + "$")
    found: Dict[str, Dict[int, str]] = {}
    for path in folder.iterdir():
        if not path.name.endswith(file_ending):
            continue
        match = pattern.match(path.name)
        if match is None:
            raise ValueError(f"rater file {str(path)!r} is not named '<case>_rater<k>{file_ending}'.")
        found.setdefault(match["case"], {})[int(match["k"])] = str(path)
    if cases is None:
        if not found:
            raise ValueError(f"{str(folder)!r} holds no '<case>_rater<k>{file_ending}' file.")
        cases = sorted(found)
    out: Dict[str, List[str]] = {}
    for case in sorted(cases):
        numbers = sorted(found.get(case, {}))
        if not numbers:
            raise ValueError(f"case {case!r} has no rater masks; expected {str(folder)}/{case}_rater0{file_ending} ...")
        if numbers != list(range(len(numbers))):
            raise ValueError(f"the raters of case {case!r} must be numbered 0..R-1 without gaps, found {numbers}.")
        out[case] = [found[case][k] for k in numbers]
    counts = sorted({len(paths) for paths in out.values()})
    if len(counts) > 1:
        per_count = {n: [c for c, p in out.items() if len(p) == n][:3] for n in counts}
        raise ValueError(
            f"cases differ in the number of rater masks ({counts}, e.g. {per_count}); they must all have the same.")
    return out


# ------------------------------------------------------------------------------------------------ cases
def list_nnunet_cases(
    dataset_dir: PathLike,
    split: str = "Tr",
    require_labels: bool = True,
    n_raters: int = 0,
    with_groups: bool = False,
    with_target: bool = False,
    file_ending: str = NIFTI_ENDING,
) -> List[Dict]:
    """List the cases of a dataset in the layout of the module docstring as MONAI data dicts.

    A dict is ``{"case": str, "image": path (or a list of paths, one per channel), "label": path, "raters":
    [paths], "group": int, "target": path}`` with only the keys that apply. MONAI's ``LoadImaged`` stacks a list
    of paths along a new first (channel) axis, so multi-channel images and rater sets load as ``(C, *spatial)``.

    Args:
        dataset_dir: dataset folder holding ``images{split}/`` (and the other folders that apply).
        split: ``"Tr"`` or ``"Ts"``.
        require_labels: every case must have ``labels{split}/<case>`` (the ``"label"`` key). If False, labels
            are added where present, but then either every case or no case must have one.
        n_raters: if > 0, add the ``"raters"`` key from :func:`list_rater_files` (every case needs raters, all the
            same number; the number found need not equal ``n_raters``).
        with_groups: add the ``"group"`` key from the dataset's ``groups.json`` / ``groups.csv``
            (:func:`medloss.data.groups.read_group_file`); every case needs an entry (``-1`` = unknown).
        with_target: every case must have ``targets{split}/<case>`` (the ``"target"`` key).
        file_ending: the file ending of the dataset.

    Returns:
        One dict per case, sorted by case id.

    Raises:
        ValueError: a missing folder, no ``<case>_0000`` image, a case without its label / raters / target /
            group, unequal rater or channel counts, or a malformed group file.
    """
    check_split(split)
    root = Path(dataset_dir)
    if not root.is_dir():
        raise ValueError(f"dataset_dir {str(root)!r} is not a folder.")
    image_dir = root / f"images{split}"
    if not image_dir.is_dir():
        raise ValueError(f"dataset_dir {str(root)!r} has no images{split}/ folder (nnU-Net raw layout expected).")
    channel = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})" + re.escape(file_ending) + "$")
    images: Dict[str, List[str]] = {}
    for path in sorted(image_dir.iterdir()):
        match = channel.match(path.name)
        if match is not None:
            images.setdefault(match["case"], []).append(str(path))
    cases_found = sorted(c for c, paths in images.items() if Path(paths[0]).name == f"{c}_0000{file_ending}")
    if not cases_found:
        raise ValueError(f"{str(image_dir)!r} holds no '<case>_0000{file_ending}' image (nnU-Net naming expected).")
    groups: Dict[str, int] = {}
    if with_groups:
        try:
            group_file = find_group_file([root])
        except FileNotFoundError as err:
            raise ValueError(f"with_groups needs a group file in {str(root)!r}: {err}") from None
        groups = read_group_file(group_file)
    raters = list_rater_files(root, split, cases_found, file_ending) if n_raters else {}
    cases: List[Dict] = []
    for case in cases_found:
        item: Dict = {"case": case, "image": images[case][0] if len(images[case]) == 1 else images[case]}
        label = root / f"labels{split}" / f"{case}{file_ending}"
        if label.is_file():
            item["label"] = str(label)
        elif require_labels:
            raise ValueError(f"case {case!r} has no label file {str(label)!r}.")
        if n_raters:
            item["raters"] = raters[case]
        if with_target:
            target = root / f"targets{split}" / f"{case}{file_ending}"
            if not target.is_file():
                raise ValueError(f"case {case!r} has no target image {str(target)!r}.")
            item["target"] = str(target)
        if with_groups:
            if case not in groups:
                raise ValueError(f"case {case!r} has no entry in {group_file!r} (use -1 for unknown).")
            item["group"] = groups[case]
        cases.append(item)
    channels = sorted({len(images[case]) for case in cases_found})
    if len(channels) > 1:
        raise ValueError(f"cases differ in the number of input channels ({channels}); they must all have the same.")
    with_label = sum("label" in c for c in cases)
    if 0 < with_label < len(cases):
        raise ValueError(f"{with_label} of {len(cases)} cases in images{split}/ have a label; give all or none.")
    return cases
