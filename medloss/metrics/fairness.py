"""Equity-scaled segmentation metrics (ES-Dice, ES-IoU) from FairSeg.

``ES-M = M_overall / (1 + alpha * D)`` where ``M_overall`` is the mean per-sample metric over the test set and ``D``
measures the spread of the group means ``M_g``:

* ``kind="sad"`` (FairSeg's released test code, ``equity_scaled_perf``): ``D = sum_g |M_overall - M_g|``;
* ``kind="std"`` (FairSeg's ``equity_scaled_std_perf``, the arXiv v1 abstract): ``D = std(M_1, ..., M_G)``, sample
  standard deviation (``n - 1``).

Computed per class (FairSeg reports rim and cup separately). ``ES <= M_overall``, with equality only when all group
means are equal. Samples of unknown group (id ``-1``) are left out of every group but, as in FairSeg, counted in
``M_overall`` unless ``overall="known"``.

Tian et al., "FairSeg: A Large-Scale Medical Image Segmentation Dataset for Fairness Learning Using Segment Anything
Model with Fair Error-Bound Scaling", ICLR 2024. https://arxiv.org/abs/2311.02189
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional, Union

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric, compute_dice, compute_iou

from medloss.validation import check_binary, check_group_ids, check_same_shape

__all__ = ["equity_scaled_metric", "EquityScaledMetric", "per_sample_dice", "per_sample_iou"]

_KINDS = ("sad", "std")
_OVERALL = ("all", "known")
_CONVENTIONS = ("fairseg", "monai")


# ----------------------------------------------------------------------------------------------------------------------
# per-sample Dice / IoU on binarised one-hot masks
def _check_masks(y_pred, y) -> tuple:
    y_pred, y = torch.as_tensor(y_pred), torch.as_tensor(y)
    if y_pred.ndim < 3:
        raise ValueError(f"y_pred must have shape (B, C, *spatial), got shape {tuple(y_pred.shape)}.")
    check_same_shape(y_pred, y)
    if y_pred.numel() == 0:
        raise ValueError(f"y_pred is empty (shape {tuple(y_pred.shape)}).")
    check_binary(y_pred, "y_pred")
    check_binary(y, "y")
    return y_pred, y


def _overlap(y_pred, y, include_background, convention, ignore_empty, kind):
    if convention not in _CONVENTIONS:
        raise ValueError(f"convention must be one of {_CONVENTIONS}, got {convention!r}.")
    y_pred, y = _check_masks(y_pred, y)
    if convention == "monai":
        fn = compute_dice if kind == "dice" else compute_iou
        return fn(y_pred.float(), y.float(), include_background=include_background, ignore_empty=ignore_empty)
    if not include_background:
        if y_pred.shape[1] == 1:
            warnings.warn("single channel prediction, `include_background=False` ignored.")
        else:
            y_pred, y = y_pred[:, 1:], y[:, 1:]
    dims = tuple(range(2, y_pred.ndim))
    p, g = y_pred.bool(), y.bool()
    inter = (p & g).sum(dims).double()
    n_pred, n_gt = p.sum(dims).double(), g.sum(dims).double()
    score = 2 * inter / (n_pred + n_gt).clamp_min(1) if kind == "dice" else inter / (p | g).sum(dims).clamp_min(1)
    # FairSeg (calculate_metric_percase): empty prediction -> 0 even if the GT is empty; empty GT only -> 1
    score = torch.where(n_gt == 0, torch.ones_like(score), score)
    return torch.where(n_pred == 0, torch.zeros_like(score), score)


def per_sample_dice(y_pred, y, include_background: bool = True, convention: str = "fairseg",
                    ignore_empty: bool = True) -> torch.Tensor:
    """Dice of every sample and class on binarised one-hot masks.

    Args:
        y_pred: ``(B, C, H, W[, D])`` binary prediction (e.g. after ``AsDiscrete(argmax=True, to_onehot=C)``).
        y: ``(B, C, H, W[, D])`` binary ground truth.
        include_background: keep channel 0.
        convention: empty-mask rules. ``"fairseg"`` (FairSeg's evaluation, medpy ``dc``): both non-empty -> Dice;
            prediction non-empty and GT empty -> 1; prediction empty -> 0, **even when the GT is empty too**.
            ``"monai"``: :func:`monai.metrics.compute_dice`, i.e. NaN for an empty GT with ``ignore_empty=True``,
            otherwise 1 when both are empty and 0 when only the GT is.
        ignore_empty: MONAI's ``ignore_empty`` (``convention="monai"`` only).

    Returns:
        ``(B, C')`` float tensor, ``C' = C`` or ``C - 1`` without background.

    Raises:
        ValueError: different shapes, non-binary masks, fewer than 3 dimensions, unknown convention.
    """
    return _overlap(y_pred, y, include_background, convention, ignore_empty, "dice")


def per_sample_iou(y_pred, y, include_background: bool = True, convention: str = "fairseg",
                   ignore_empty: bool = True) -> torch.Tensor:
    """IoU (Jaccard) of every sample and class on binarised one-hot masks.

    Same arguments, empty-mask conventions and shapes as :func:`per_sample_dice` (``"monai"`` uses
    :func:`monai.metrics.compute_iou`).
    """
    return _overlap(y_pred, y, include_background, convention, ignore_empty, "iou")


# ----------------------------------------------------------------------------------------------------------------------
def _as_values(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    arr = np.asarray(values)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"values must be numeric, got dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    if arr.ndim not in (1, 2) or arr.shape[0] == 0:
        raise ValueError(f"values must have shape (N,) or (N, C) with N > 0, got shape {arr.shape}.")
    if np.isinf(arr).any():
        raise ValueError(f"values contain {int(np.isinf(arr).sum())} Inf value(s); expected finite values or NaN.")
    return arr


def equity_scaled_metric(
    values,
    groups,
    num_groups: Optional[int] = None,
    alpha: float = 1.0,
    kind: str = "sad",
    overall: str = "all",
    ignore_nan: bool = True,
    return_details: bool = False,
):
    """Equity-scaled metric ``M_overall / (1 + alpha * D)`` of per-sample scores (ES-Dice, ES-IoU).

    Args:
        values: ``(N,)`` or ``(N, C)`` per-sample metric (higher is better), e.g. from :func:`per_sample_dice`; one
            column per class. Array or tensor.
        groups: ``(N,)`` integer group id per sample in ``[0, num_groups)``, or ``-1`` for an unknown attribute.
        num_groups: number of groups ``G``; default ``max(groups) + 1``.
        alpha: weight of the disparity term (FairSeg: 1).
        kind: ``"sad"``: ``D = sum_g |M_overall - M_g|`` (FairSeg's released test code); ``"std"``: sample std of
            the group means (``n - 1``; needs two groups with samples).
        overall: samples of ``M_overall``: ``"all"``, unknown group included (FairSeg), or ``"known"``, only those
            with a known group.
        ignore_nan: skip NaN values (MONAI's convention for empty ground truth) in every mean; if ``False``, NaN
            raises.
        return_details: also return the overall mean, group means and group counts.

    Returns:
        The equity-scaled metric, a float (or ``(C,)`` per class for 2-D ``values``); with ``return_details`` a
        dict with ``"es"``, ``"overall"``, ``"group_means"`` (``(G,)`` or ``(G, C)``; NaN for a group without
        samples, which is left out of ``D``) and ``"group_counts"``. A class whose values are all NaN, or the
        ``"std"`` kind with fewer than two groups holding values, gives NaN (with a warning).

    Raises:
        ValueError: shape mismatch, non-integer / out-of-range / NaN group ids, Inf values, NaN values with
            ``ignore_nan=False``, unknown ``kind`` / ``overall``, negative or non-finite ``alpha``.

    Example:
        >>> dice = [0.90, 0.85, 0.88, 0.80, 0.70, 0.75, 0.65, 0.92, 0.86, 0.60]
        >>> round(equity_scaled_metric(dice, [0, 0, 0, 0, 1, 1, 1, 2, 2, -1]), 6)
        0.629526
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}.")
    if overall not in _OVERALL:
        raise ValueError(f"overall must be one of {_OVERALL}, got {overall!r}.")
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}.")
    arr = _as_values(values)
    squeeze = arr.ndim == 1
    arr = arr.reshape(arr.shape[0], -1)
    if not ignore_nan and np.isnan(arr).any():
        raise ValueError(f"values contain {int(np.isnan(arr).sum())} NaN value(s) and ignore_nan=False.")
    if num_groups is None:
        g_arr = np.asarray(groups.detach().cpu() if isinstance(groups, torch.Tensor) else groups)
        if g_arr.size == 0 or not np.issubdtype(g_arr.dtype, np.number):
            raise ValueError(f"groups must hold integer group ids, got {g_arr.dtype} of shape {g_arr.shape}.")
        num_groups = int(np.nanmax(g_arr)) + 1 if np.isfinite(g_arr).all() else 1
        num_groups = max(num_groups, 1)
    grp = check_group_ids(groups, arr.shape[0], num_groups, torch.device("cpu")).numpy()

    valid = ~np.isnan(arr)
    filled = np.where(valid, arr, 0.0)
    member = grp[:, None] == np.arange(num_groups)[None, :]  # (N, G)
    counts = member.T.astype(np.float64) @ valid  # (G, C)
    sums = member.T.astype(np.float64) @ filled
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.where(counts > 0, counts, 1), np.nan)
        rows = np.ones(arr.shape[0], bool) if overall == "all" else grp >= 0
        n_all = valid[rows].sum(0)
        overall_mean = np.where(n_all > 0, filled[rows].sum(0) / np.where(n_all > 0, n_all, 1), np.nan)
    have = counts > 0
    if kind == "sad":
        spread = np.where(have, np.abs(means - overall_mean[None]), 0.0).sum(0)
    else:
        spread = np.full(arr.shape[1], np.nan)
        for c in range(arr.shape[1]):
            m = means[have[:, c], c]
            if m.size >= 2:
                spread[c] = np.std(m, ddof=1)
        if np.isnan(spread).any():
            warnings.warn('kind="std" needs at least two groups with values; returning NaN for those classes.',
                          RuntimeWarning)
    if np.isnan(overall_mean).any():
        warnings.warn("no valid value for some class; equity-scaled metric is NaN there.", RuntimeWarning)
    es = overall_mean / (1.0 + alpha * spread)
    if squeeze:
        es, overall_mean, means, counts = float(es[0]), float(overall_mean[0]), means[:, 0], counts[:, 0]
    if return_details:
        return {"es": es, "overall": overall_mean, "group_means": means, "group_counts": counts}
    return es


# ----------------------------------------------------------------------------------------------------------------------
class EquityScaledMetric(CumulativeIterationMetric):
    """Cumulative equity-scaled metric (ES-Dice / ES-IoU, FairSeg), used like :class:`monai.metrics.DiceMetric`.

    Tian et al., "FairSeg: ... with Fair Error-Bound Scaling", ICLR 2024. https://arxiv.org/abs/2311.02189

    Every call computes the per-sample metric of a batch and stores ``(value, group)`` pairs; ``aggregate()``
    returns the overall mean, group means and the equity-scaled value per class (see
    :func:`equity_scaled_metric`). Buffers are gathered across ranks by MONAI's :class:`Cumulative`.

    Args:
        num_groups: number of groups ``G``.
        metric: ``"dice"``, ``"iou"`` (:func:`per_sample_dice` / :func:`per_sample_iou`) or a callable
            ``f(y_pred, y) -> (B, C)`` or ``(B,)`` per-sample scores (higher = better).
        alpha: disparity weight (FairSeg: 1).
        kind: ``"sad"`` (sum of absolute deviations, FairSeg's released test) or ``"std"`` (sample std).
        include_background: keep channel 0 (``"dice"``/``"iou"`` only). FairSeg reports foreground classes only.
        convention: empty-mask rules, ``"fairseg"`` or ``"monai"`` (see :func:`per_sample_dice`).
        ignore_empty: MONAI's ``ignore_empty`` with ``convention="monai"``.
        overall: ``"all"`` (FairSeg: unknown-group samples count in the overall mean) or ``"known"``.

    Shapes:
        ``y_pred``, ``y``: ``(B, C, H, W[, D])`` binarised one-hot tensors or lists of ``(C, H, W[, D])``.
        ``groups``: ``(B,)`` ids in ``[0, G)`` or ``-1``.

    Raises:
        ValueError: invalid options; at call time bad shapes, non-binary masks and bad group ids.

    Example:
        >>> import torch
        >>> y = torch.zeros(2, 2, 4, 4); y[:, 1, :2] = 1; y[:, 0] = 1 - y[:, 1]  # one-hot, foreground: rows 0-1
        >>> pred = y.clone(); pred[1, 1, 1] = 0; pred[1, 0] = 1 - pred[1, 1]  # sample 1 misses row 1: Dice 2/3
        >>> es = EquityScaledMetric(num_groups=2, include_background=False)
        >>> _ = es(y_pred=pred, y=y, groups=torch.tensor([0, 1]))
        >>> result = es.aggregate()  # overall 5/6, group means 1 and 2/3: ES = (5/6) / (1 + 1/6 + 1/6)
        >>> round(float(result["metric"][0]), 4), round(float(result["es"][0]), 4)
        (0.8333, 0.625)
    """

    def __init__(
        self,
        num_groups: int,
        metric: Union[str, Callable] = "dice",
        alpha: float = 1.0,
        kind: str = "sad",
        include_background: bool = True,
        convention: str = "fairseg",
        ignore_empty: bool = True,
        overall: str = "all",
    ) -> None:
        super().__init__()
        if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)) or num_groups < 1:
            raise ValueError(f"num_groups must be a positive integer, got {num_groups!r}.")
        if not (callable(metric) or metric in ("dice", "iou")):
            raise ValueError(f'metric must be "dice", "iou" or a callable, got {metric!r}.')
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}.")
        if overall not in _OVERALL:
            raise ValueError(f"overall must be one of {_OVERALL}, got {overall!r}.")
        if convention not in _CONVENTIONS:
            raise ValueError(f"convention must be one of {_CONVENTIONS}, got {convention!r}.")
        if not np.isfinite(alpha) or alpha < 0:
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}.")
        self.num_groups = int(num_groups)
        self.metric = metric
        self.alpha = float(alpha)
        self.kind = kind
        self.include_background = include_background
        self.convention = convention
        self.ignore_empty = ignore_empty
        self.overall = overall

    def _compute_tensor(self, y_pred: torch.Tensor, y: Optional[torch.Tensor] = None, **kwargs) -> torch.Tensor:
        if y is None:
            raise ValueError("y (ground truth) is required.")
        if callable(self.metric):
            values = torch.as_tensor(self.metric(y_pred, y))
        else:
            fn = per_sample_dice if self.metric == "dice" else per_sample_iou
            values = fn(y_pred, y, self.include_background, self.convention, self.ignore_empty)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[0] != y_pred.shape[0]:
            raise ValueError(f"metric must return (B, C) or (B,) per-sample values, got shape {tuple(values.shape)}.")
        return values.double()

    def __call__(self, y_pred, y=None, groups=None):  # type: ignore[override]
        """Add a batch. ``y_pred``/``y``: batch-first tensors or lists of channel-first tensors; ``groups``: ``(B,)``.

        Returns:
            ``(B, C)`` per-sample values of this batch.
        """
        if isinstance(y_pred, (list, tuple)):
            y_pred = torch.stack([torch.as_tensor(p) for p in y_pred])
        if isinstance(y, (list, tuple)):
            y = torch.stack([torch.as_tensor(t) for t in y])
        if not isinstance(y_pred, torch.Tensor):
            raise ValueError("y_pred must be a batch-first tensor or a list of channel-first tensors.")
        values = self._compute_tensor(y_pred.detach(), None if y is None else torch.as_tensor(y).detach())
        self.update(values, groups)
        return values

    def update(self, values, groups) -> None:
        """Add precomputed per-sample values ``(B,)`` or ``(B, C)`` with their group ids ``(B,)``."""
        values = torch.as_tensor(values).detach().double()
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[0] == 0:
            raise ValueError(f"values must have shape (B,) or (B, C), got shape {tuple(values.shape)}.")
        if torch.isinf(values).any():
            raise ValueError("values contain Inf; expected finite values or NaN.")
        ids = check_group_ids(groups, values.shape[0], self.num_groups, values.device)
        self.extend(values, ids)

    def aggregate(self) -> dict:
        """Return ``{"metric": (C,), "group_means": (G, C), "group_counts": (G, C), "es": (C,)}`` tensors."""
        buffers = self.get_buffer()
        if buffers is None:
            raise ValueError("EquityScaledMetric has no values yet; call it on a batch first.")
        values, groups = buffers
        res = equity_scaled_metric(
            values.reshape(values.shape[0], -1), groups, self.num_groups, self.alpha, self.kind, self.overall,
            return_details=True,
        )
        return {
            "metric": torch.as_tensor(res["overall"]),
            "group_means": torch.as_tensor(res["group_means"]),
            "group_counts": torch.as_tensor(res["group_counts"]),
            "es": torch.as_tensor(res["es"]),
        }
