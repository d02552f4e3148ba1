"""Data lists and small training glue for the MONAI bundles under ``configs/``.

Every bundle trains on a dataset in the nnU-Net raw layout, or, when no ``dataset_dir`` is given, on synthetic
vessel phantoms (:mod:`medloss.data.synthetic`) that are written as NIfTI files into a cache folder first, in that same
layout. So the synthetic path and the real-data path run the same listing and loading code.

Layout read from ``dataset_dir`` (``{split}`` is ``Tr`` or ``Ts``)::

    imagesTr/<case>_0000.nii.gz [<case>_0001.nii.gz ...]   one file per input channel (nnU-Net naming)
    labelsTr/<case>.nii.gz                                 label map (0 = background)
    ratersTr/<case>_rater<k>.nii.gz                        only for n_raters > 0: one binary mask per rater
    targetsTr/<case>.nii.gz                                only for synthesis_dataset: the image to synthesise
    groups.json                                            only for with_groups: {"<case>": group id, ...}
    imagesTs/ (labelsTs/, ratersTs/, targetsTs/)           the same for split="Ts" (labels optional there)

A list entry is ``{"image": path (or list of paths, one per channel), "label": path, "raters": [paths],
"group": int, "target": path, "case": str}`` with only the keys that apply. MONAI's ``LoadImaged`` stacks a list
of paths along a new first (channel) axis, so multi-channel images and rater sets load as ``(C, *spatial)``.

The glue: :class:`LossIteration` (a ``SupervisedTrainer`` ``iteration_update`` for losses that need more than
``(prediction, label)``, e.g. the group ids of FEBS or the model itself for PULASki), :class:`WeightedSumLoss`
(``sum_i w_i * loss_i(input, target)``) and :class:`MeanPredictionNet` (wraps a probabilistic U-Net so that
sliding-window inference sees a plain ``(B, C, ...)`` output).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

__all__ = [
    "vessel_dataset",
    "synthesis_dataset",
    "write_synthetic_vessels",
    "list_nnunet_cases",
    "LossIteration",
    "WeightedSumLoss",
    "MeanPredictionNet",
]

_SPLITS = ("Tr", "Ts")
_NII = ".nii.gz"
# synthetic test cases use other seeds than the training ones, so inference never sees a training phantom
_TEST_SEED_OFFSET = 10_000


# ------------------------------------------------------------------------------------------------ synthetic data
def _save_nifti(array: np.ndarray, path: Path) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4)), str(path))


def _synthesis_target(label: np.ndarray, seed: int) -> np.ndarray:
    """A second contrast of the same anatomy (dark vessels on a brighter, smoother background)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    vessels = gaussian_filter(label.astype(np.float32), 0.8)
    noise = 0.02 * rng.standard_normal(label.shape).astype(np.float32)
    return (0.8 - 0.6 * vessels + noise).astype(np.float32)


def write_synthetic_vessels(
    root: Union[str, Path],
    n_cases: int = 4,
    size: int = 32,
    seed: int = 0,
    split: str = "Tr",
    n_raters: int = 0,
    num_groups: int = 2,
    with_target: bool = False,
    spatial_dims: int = 3,
) -> Path:
    """Write synthetic vessel cases in the nnU-Net raw layout under ``root`` and return ``root``.

    Case ``i`` uses ``medloss.data.synthetic.vessel_phantom(seed=seed + i)`` (test cases ``seed + 10000 + i``), the
    image ``vessel_image`` of it, and, as needed, ``rater_masks`` (``n_raters``) and a second-contrast target image
    (``with_target``). Every case gets the group ``i % num_groups`` in ``groups.json``; group ``g`` images have a
    lower contrast and more noise (``contrast = 1 / (1 + 0.5 g)``), so the groups differ in difficulty.
    Existing files are overwritten.

    Raises:
        ValueError: ``n_cases < 1``, ``size < 8``, ``n_raters < 0``, ``num_groups < 1``, an unknown ``split`` or
            ``spatial_dims`` not 2 or 3.
    """
    from medloss.data.synthetic import rater_masks, vessel_image, vessel_phantom

    _check_split(split)
    if int(n_cases) < 1:
        raise ValueError(f"n_cases must be >= 1, got {n_cases}.")
    if int(size) < 8:
        raise ValueError(f"size must be >= 8 voxels (vessel_phantom's minimum), got {size}.")
    if int(n_raters) < 0:
        raise ValueError(f"n_raters must be >= 0, got {n_raters}.")
    if int(num_groups) < 1:
        raise ValueError(f"num_groups must be >= 1, got {num_groups}.")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
    root = Path(root)
    folders = {"images": root / f"images{split}", "labels": root / f"labels{split}"}
    if n_raters:
        folders["raters"] = root / f"raters{split}"
    if with_target:
        folders["targets"] = root / f"targets{split}"
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    offset = seed + (_TEST_SEED_OFFSET if split == "Ts" else 0)
    groups = {}
    for i in range(int(n_cases)):
        case = f"vessel_{split.lower()}{i:03d}"
        group = i % int(num_groups)
        label = vessel_phantom((int(size),) * spatial_dims, seed=offset + i)
        image = vessel_image(label, seed=offset + i, contrast=1.0 / (1.0 + 0.5 * group), noise=0.2 + 0.05 * group)
        _save_nifti(image, folders["images"] / f"{case}_0000{_NII}")
        _save_nifti(label.astype(np.uint8), folders["labels"] / f"{case}{_NII}")
        if n_raters:
            for k, mask in enumerate(rater_masks(label, int(n_raters), seed=offset + i)):
                _save_nifti(mask.astype(np.uint8), folders["raters"] / f"{case}_rater{k}{_NII}")
        if with_target:
            _save_nifti(_synthesis_target(label, offset + i), folders["targets"] / f"{case}{_NII}")
        groups[case] = group
    groups_file = root / "groups.json"
    known = json.loads(groups_file.read_text()) if groups_file.is_file() else {}
    known.update(groups)
    groups_file.write_text(json.dumps(known, indent=1, sort_keys=True))
    return root


def _synthetic_root(cache_dir, n_cases, size, seed, split, n_raters, num_groups, with_target, spatial_dims) -> Path:
    """Cache folder for one parameter set; the cases are written once and reused (a marker file says they are)."""
    if cache_dir is None:
        raise ValueError("cache_dir is required when no dataset_dir is given (synthetic cases are written there).")
    params = dict(n_cases=int(n_cases), size=int(size), seed=int(seed), n_raters=int(n_raters),
                  num_groups=int(num_groups), with_target=bool(with_target), spatial_dims=int(spatial_dims))
    name = "synthetic_{spatial_dims}d_n{n_cases}_s{size}_seed{seed}_r{n_raters}_g{num_groups}".format(**params)
    root = Path(cache_dir) / (name + ("_synth" if with_target else ""))
    marker = root / f"complete{split}.json"
    if not (marker.is_file() and json.loads(marker.read_text()) == params):
        write_synthetic_vessels(root, split=split, **params)
        marker.write_text(json.dumps(params))
    return root


# ------------------------------------------------------------------------------------------------ listing
def _check_split(split: str) -> None:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}.")


def _case_id(path: Path, suffix: str) -> str:
    return path.name[: -len(suffix)]


def list_nnunet_cases(
    dataset_dir: Union[str, Path],
    split: str = "Tr",
    require_labels: bool = True,
    n_raters: int = 0,
    with_groups: bool = False,
    with_target: bool = False,
) -> List[Dict]:
    """List the cases of a dataset in the nnU-Net raw layout (see the module docstring) as MONAI data dicts.

    Args:
        dataset_dir: dataset folder holding ``images{split}/`` (and the other folders that apply).
        split: ``"Tr"`` or ``"Ts"``.
        require_labels: every case must have ``labels{split}/<case>.nii.gz`` (the ``"label"`` key). If False, labels
            are added where present, but then either every case or no case must have one.
        n_raters: if > 0, every case must have at least one ``raters{split}/<case>_rater<k>.nii.gz``, all cases the
            same number (so they can be batched); their paths, sorted by ``k``, are the ``"raters"`` key. The count
            found need not equal ``n_raters``.
        with_groups: read ``groups.json`` (``{"<case>": int}``); every case needs an integer entry (-1 = unknown).
        with_target: every case must have ``targets{split}/<case>.nii.gz`` (the ``"target"`` key).

    Returns:
        One dict per case, sorted by case id.

    Raises:
        ValueError: a missing folder, no ``*_0000.nii.gz`` image, a case without its label / raters / target /
            group, unequal rater or channel counts, or a malformed ``groups.json``.
    """
    _check_split(split)
    root = Path(dataset_dir)
    if not root.is_dir():
        raise ValueError(f"dataset_dir {str(root)!r} is not a folder.")
    image_dir = root / f"images{split}"
    if not image_dir.is_dir():
        raise ValueError(f"dataset_dir {str(root)!r} has no images{split}/ folder (nnU-Net raw layout expected).")
    first_channels = sorted(image_dir.glob(f"*_0000{_NII}"))
    if not first_channels:
        raise ValueError(f"{str(image_dir)!r} holds no '<case>_0000{_NII}' image (nnU-Net naming expected).")
    groups = _read_groups(root) if with_groups else {}
    cases: List[Dict] = []
    for first in first_channels:
        case = _case_id(first, f"_0000{_NII}")
        channels = sorted(image_dir.glob(f"{_glob_escape(case)}_[0-9][0-9][0-9][0-9]{_NII}"))
        item: Dict = {"case": case, "image": str(first) if len(channels) == 1 else [str(c) for c in channels]}
        label = root / f"labels{split}" / f"{case}{_NII}"
        if label.is_file():
            item["label"] = str(label)
        elif require_labels:
            raise ValueError(f"case {case!r} has no label file {str(label)!r}.")
        if n_raters:
            raters = sorted((root / f"raters{split}").glob(f"{_glob_escape(case)}_rater*{_NII}"), key=_rater_index)
            if not raters:
                raise ValueError(
                    f"case {case!r} has no rater masks; expected raters{split}/{case}_rater<k>{_NII} files."
                )
            item["raters"] = [str(r) for r in raters]
        if with_target:
            target = root / f"targets{split}" / f"{case}{_NII}"
            if not target.is_file():
                raise ValueError(f"case {case!r} has no target image {str(target)!r}.")
            item["target"] = str(target)
        if with_groups:
            if case not in groups:
                raise ValueError(f"case {case!r} has no entry in {str(root / 'groups.json')!r} (use -1 for unknown).")
            item["group"] = groups[case]
        cases.append(item)
    _check_consistent(cases, "image", "input channels")
    _check_consistent(cases, "raters", "rater masks")
    with_label = sum("label" in c for c in cases)
    if 0 < with_label < len(cases):
        raise ValueError(f"{with_label} of {len(cases)} cases in images{split}/ have a label; give all or none.")
    return cases


def _glob_escape(name: str) -> str:
    """Escape glob metacharacters in a case id."""
    return re.sub(r"([\[\]*?])", r"[\1]", name)


def _rater_index(path: Path) -> int:
    match = re.search(r"_rater(\d+)" + re.escape(_NII) + "$", path.name)
    if match is None:
        raise ValueError(f"rater mask {path.name!r} does not follow '<case>_rater<k>{_NII}'.")
    return int(match.group(1))


def _check_consistent(cases: List[Dict], key: str, what: str) -> None:
    counts = {len(c[key]) if isinstance(c.get(key), list) else 1 for c in cases if key in c}
    if len(counts) > 1:
        raise ValueError(f"cases differ in the number of {what} ({sorted(counts)}); they must all have the same.")


def _read_groups(root: Path) -> Dict[str, int]:
    path = root / "groups.json"
    if not path.is_file():
        raise ValueError(f"with_groups needs {str(path)!r} mapping every case id to an integer group id.")
    try:
        groups = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(path)!r} is not valid JSON: {err}.") from err
    if not isinstance(groups, dict):
        raise ValueError(f"{str(path)!r} must hold an object {{case: group id}}, got {type(groups).__name__}.")
    bad = {k: v for k, v in groups.items() if isinstance(v, bool) or not isinstance(v, int) or v < -1}
    if bad:
        raise ValueError(f"group ids in {str(path)!r} must be integers >= -1 (-1 = unknown), got {bad}.")
    return groups


# ------------------------------------------------------------------------------------------------ public entries
def vessel_dataset(
    dataset_dir: Optional[Union[str, Path]] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    n_cases: int = 4,
    size: int = 32,
    seed: int = 0,
    split: str = "Tr",
    n_raters: int = 0,
    with_groups: bool = False,
    num_groups: int = 2,
    spatial_dims: int = 3,
    require_labels: bool = True,
) -> List[Dict]:
    """Data dicts for vessel segmentation: ``dataset_dir`` listed, or synthetic phantoms written to ``cache_dir``.

    Args:
        dataset_dir: nnU-Net raw dataset folder; ``None`` (or ``""``) makes synthetic cases instead.
        cache_dir: where synthetic cases are written (one sub-folder per parameter set, reused when complete).
        n_cases, size, seed, spatial_dims: synthetic only: number of cases, edge length in voxels, base seed, 2D/3D.
        split: ``"Tr"`` (training) or ``"Ts"`` (inference; other seeds for synthetic cases).
        n_raters: > 0 adds the ``"raters"`` key (synthetic: that many simulated raters; see
            :func:`list_nnunet_cases` for a real dataset).
        with_groups: add the ``"group"`` key (synthetic: ``i % num_groups``; real: ``groups.json``).
        num_groups: synthetic only: number of groups.
        require_labels: see :func:`list_nnunet_cases` (synthetic cases always have labels).

    Returns:
        A list of dicts (see the module docstring) with file paths, sorted by case.

    Raises:
        ValueError: as :func:`list_nnunet_cases` and :func:`write_synthetic_vessels`.
    """
    if dataset_dir in (None, ""):
        dataset_dir = _synthetic_root(cache_dir, n_cases, size, seed, split, n_raters, num_groups, False,
                                      spatial_dims)
    return list_nnunet_cases(dataset_dir, split, require_labels, n_raters, with_groups)


def synthesis_dataset(
    dataset_dir: Optional[Union[str, Path]] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    n_cases: int = 4,
    size: int = 32,
    seed: int = 0,
    split: str = "Tr",
    spatial_dims: int = 3,
    require_targets: bool = True,
) -> List[Dict]:
    """Data dicts ``{"image": source, "target": image to synthesise}`` for image-to-image synthesis.

    Synthetic cases pair a bright-vessel image with a dark-vessel image of the same phantom. A real dataset uses
    ``images{split}/<case>_0000.nii.gz`` as the source and ``targets{split}/<case>.nii.gz`` as the target.

    Args:
        require_targets: False lists only the source images (inference on cases without targets).
        others: as :func:`vessel_dataset`.

    Raises:
        ValueError: as :func:`list_nnunet_cases` and :func:`write_synthetic_vessels`.
    """
    if dataset_dir in (None, ""):
        dataset_dir = _synthetic_root(cache_dir, n_cases, size, seed, split, 0, 1, True, spatial_dims)
    cases = list_nnunet_cases(dataset_dir, split, require_labels=False, with_target=require_targets)
    for case in cases:
        case.pop("label", None)  # a synthesis bundle has no segmentation label
    return cases


# ------------------------------------------------------------------------------------------------ training glue
class LossIteration:
    """``iteration_update`` for MONAI's ``SupervisedTrainer`` when the loss takes more than ``(pred, label)``.

    One training step: move the batch's tensors to the engine's device, run ``engine.inferer(image,
    engine.network)`` if ``"pred"`` is asked for, call ``engine.loss_function(*args)`` with the arguments named by
    ``loss_args``, back-propagate and step the optimizer, firing MONAI's ``IterationEvents`` as the built-in
    iteration does. No AMP, no gradient accumulation and no ``engine.prepare_batch`` (the batch must be a dict;
    use the built-in iteration for those).

    Args:
        loss_args: the loss function's positional arguments, in order: ``"pred"`` (the network output),
            ``"network"`` (the model itself, e.g. for :class:`medloss.losses.PULASkiLoss`) or the name of a batch
            key (``"image"``, ``"label"``, ``"group"``, ``"raters"``, ...). FEBS: ``("pred", "label", "group")``.
        image_key: batch key of the network input.
        label_key: batch key stored as the output's ``"label"`` (for handlers); may be absent from the batch.

    Returns (per call): ``engine.state.output``, a dict with ``"image"``, ``"label"``, ``"pred"`` (if computed)
    and ``"loss"`` (a detached scalar tensor).

    Raises:
        ValueError: ``loss_args`` names a key the batch does not have, or the batch is not a dict.
    """

    def __init__(self, loss_args: Sequence[str] = ("pred", "label"), image_key: str = "image",
                 label_key: str = "label") -> None:
        if isinstance(loss_args, str) or not loss_args:
            raise ValueError(f"loss_args must be a non-empty sequence of names, got {loss_args!r}.")
        self.loss_args = tuple(loss_args)
        self.image_key = image_key
        self.label_key = label_key

    def __call__(self, engine, batchdata: Dict) -> Dict:
        from monai.engines.utils import IterationEvents

        if not isinstance(batchdata, dict):
            raise ValueError(f"LossIteration expects dict batches, got {type(batchdata).__name__}.")
        missing = [k for k in (self.image_key,) + self.loss_args if k not in ("pred", "network") and k not in batchdata]
        if missing:
            raise ValueError(f"the batch has no key(s) {missing}; it has {sorted(batchdata)}.")
        device = engine.state.device
        batch = {k: v.to(device, non_blocking=engine.non_blocking) if isinstance(v, torch.Tensor) else v
                 for k, v in batchdata.items()}
        image = batch[self.image_key]
        engine.state.output = output = {"image": image, "label": batch.get(self.label_key)}
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        if "pred" in self.loss_args:
            output["pred"] = engine.inferer(image, engine.network)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        values = {"pred": output.get("pred"), "network": engine.network}
        loss = engine.loss_function(*[values[a] if a in values else batch[a] for a in self.loss_args]).mean()
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        loss.backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        engine.optimizer.step()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        output["loss"] = loss.detach()
        return output


class WeightedSumLoss(nn.Module):
    """``loss(input, target) = sum_i weights[i] * losses[i](input, target)`` (each term reduced to a scalar).

    Args:
        losses: loss modules or callables ``(input, target) -> tensor``; a non-scalar result is averaged.
        weights: one finite weight per loss (default all 1).

    Raises:
        ValueError: no loss, a number of weights different from the number of losses, a non-finite weight, or
            all weights 0.
    """

    def __init__(self, losses: Sequence[Callable], weights: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        if not losses:
            raise ValueError("losses must hold at least one loss.")
        weights = [1.0] * len(losses) if weights is None else [float(w) for w in weights]
        if len(weights) != len(losses) or not all(np.isfinite(weights)):
            raise ValueError(f"need one finite weight per loss ({len(losses)}), got {weights}.")
        if all(w == 0.0 for w in weights):
            raise ValueError(f"at least one weight must be non-zero, got {weights}.")
        self.losses = nn.ModuleList([m if isinstance(m, nn.Module) else _CallableLoss(m) for m in losses])
        self.weights = weights

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * m(input, target).mean() for w, m in zip(self.weights, self.losses) if w != 0.0)


class _CallableLoss(nn.Module):
    def __init__(self, fn: Callable) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(input, target)


class MeanPredictionNet(nn.Module):
    """Wrap a probabilistic network so that ``forward(image)`` returns ``net.mean_prediction(image)``.

    ``SupervisedEvaluator`` and ``sliding_window_inference`` need a module mapping ``(B, C_in, ...)`` to
    ``(B, C_out, ...)``; :class:`medloss.networks.ProbabilisticUNet` returns samples and distributions instead.
    The wrapped network's parameters are shared (``state_dict`` keys get a ``net.`` prefix).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(net, "mean_prediction", None)):
            raise ValueError(f"{type(net).__name__} has no mean_prediction(image) method.")
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.mean_prediction(image)
