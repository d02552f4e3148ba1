"""Centre-line Dice (clDice) metric for tubular structures."""

from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch
from monai.utils import MetricReduction
from scipy import ndimage
from skimage.morphology import skeletonize

from medloss.metrics.utils import ReducedMetric, foreground_box
from medloss.validation import ArrayLike, binarize_pair

__all__ = ["cldice", "ClDiceMetric"]


def _skeleton(mask: np.ndarray) -> np.ndarray:
    """Skeleton of a binary 2D/3D mask; objects that thinning erases completely keep all their voxels.

    scikit-image's 3D thinning (Lee et al.) removes some tiny objects entirely (a 2×2×2 cube); such an object
    is its own centre line, otherwise a prediction made only of tiny blobs would get no credit at all.
    """
    skel = skeletonize(mask)
    if not mask.any():
        return skel
    labels, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    covered = np.zeros(n + 1, dtype=bool)
    covered[labels[skel]] = True
    lost = ~covered
    lost[0] = False
    return skel | lost[labels] if lost.any() else skel


def _cldice_single(pred: np.ndarray, gt: np.ndarray, ignore_empty: bool) -> float:
    if not gt.any():
        if ignore_empty:
            return float("nan")
        return 1.0 if not pred.any() else 0.0
    if not pred.any():
        return 0.0
    # thinning is local and the crop keeps a background margin: the skeletons are those of the whole image
    box = foreground_box(pred, gt)
    pred, gt = pred[box], gt[box]
    skel_pred, skel_gt = _skeleton(pred), _skeleton(gt)
    tprec = np.count_nonzero(skel_pred & gt) / np.count_nonzero(skel_pred)
    tsens = np.count_nonzero(skel_gt & pred) / np.count_nonzero(skel_gt)
    if tprec + tsens == 0:
        return 0.0
    return 2.0 * tprec * tsens / (tprec + tsens)


def cldice(
    prediction: ArrayLike,
    target: ArrayLike,
    threshold: float = 0.5,
    include_background: bool = True,
    ignore_empty: bool = False,
) -> Union[float, np.ndarray]:
    """Centre-line Dice of binary segmentations (Shit et al., CVPR 2021, https://arxiv.org/abs/2003.07311).

    With skeletons ``S_P = skel(P)`` and ``S_G = skel(G)`` (``skimage.morphology.skeletonize``; 3D uses Lee's
    thinning): ``Tprec = |S_P ∩ G| / |S_P|``, ``Tsens = |S_G ∩ P| / |S_G|`` and
    ``clDice = 2 Tprec Tsens / (Tprec + Tsens)`` (0 when both are 0). A non-empty mask against an empty one
    scores 0. Objects that thinning erases entirely (e.g. a 2×2×2 cube) count as their own skeleton.

    Args:
        prediction: probabilities or a binary mask, ``(*spatial)`` (2D/3D) or ``(B, C, *spatial)``; binarised as
            ``prediction > threshold``.
        target: binary mask of the same shape.
        threshold: binarisation threshold of ``prediction``.
        include_background: for batched input, keep channel 0 (ignored for single-channel input).
        ignore_empty: if ``True`` an empty target gives NaN (skipped by MONAI's reductions); if ``False`` (default)
            an empty target scores 1 when the prediction is empty too and 0 otherwise.

    Returns:
        A float for one image, a ``(B, C)`` float64 array for a batch.

    Raises:
        ValueError: shapes differ, not 2D/3D, empty, NaN/Inf, or a target that is not binary.

    Example:
        >>> import numpy as np
        >>> gt = np.zeros((8, 16)); gt[4, 2:13] = 1
        >>> pred = np.zeros((8, 16)); pred[4, 5:16] = 1
        >>> round(cldice(pred, gt), 4)  # 8 of 11 centre-line pixels inside the other mask, both ways
        0.7273
    """
    pred, gt, lead = binarize_pair(prediction, target, threshold, include_background)
    scores = np.array([_cldice_single(p, g, ignore_empty) for p, g in zip(pred, gt)], dtype=np.float64)
    return scores.reshape(lead) if lead else float(scores[0])


class ClDiceMetric(ReducedMetric):
    """Centre-line Dice as a MONAI cumulative metric (see :func:`cldice`).

    Shit et al., "clDice - a Novel Topology-Preserving Loss Function for Tubular Structure Segmentation",
    CVPR 2021, https://arxiv.org/abs/2003.07311.

    Args:
        include_background: keep channel 0 of ``y_pred``/``y``.
        threshold: binarisation threshold for ``y_pred`` (binary predictions pass through unchanged).
        ignore_empty: an empty ground-truth channel gives NaN, which the reductions skip (MONAI's ``DiceMetric``
            convention); with ``False`` it scores 1 if the prediction is empty too, else 0.
        reduction: MONAI metric reduction (``"mean"``, ``"sum"``, ``"mean_batch"``, ``"sum_batch"``,
            ``"mean_channel"``, ``"sum_channel"``, ``"none"``).
        get_not_nans: ``aggregate()`` also returns the count of not-NaN entries.

    Inputs to ``__call__``: ``y_pred`` and ``y`` of shape ``(B, C, H, W[, D])`` (or lists of channel-first tensors),
    ``y`` binary one-hot.
    """

    def __init__(
        self,
        include_background: bool = True,
        threshold: float = 0.5,
        ignore_empty: bool = True,
        reduction: Union[MetricReduction, str] = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(include_background, threshold, reduction, get_not_nans)
        self.ignore_empty = ignore_empty

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        self.check_batched(y_pred)
        scores = cldice(y_pred, y, self.threshold, self.include_background, self.ignore_empty)
        return torch.as_tensor(scores, dtype=torch.float32, device=y_pred.device)
