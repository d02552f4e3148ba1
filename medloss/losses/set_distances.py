"""Statistical distances between a set of sampled segmentations and a set of rater masks.

Each whole probability map (all channels and voxels of one patch) is one point in R^V; the N samples and the R
raters of one batch item are two empirical measures with uniform weights, and the loss is a statistical distance
between them, computed per batch item (``reduction="none"``: shape ``(B,)``):

- :class:`SinkhornDistanceLoss`: the de-biased Sinkhorn divergence with cost ``0.5 * ||x - y||^2``,
  computed as ``geomloss.SamplesLoss("sinkhorn", p=2, blur, scaling, debias=True)`` does.
- :class:`EnergyDistanceLoss`: the energy distance, what PULASki's "Hausdorff" option computes.

They are the distances of the PULASki objective (:class:`medloss.losses.PULASkiLoss`). Both are written in plain
torch (no geomloss dependency). The N x R cost matrices are tiny; the only expensive step is one pass over the
voxels to get pairwise distances, done in fp32 or fp64 with autocast off.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Optional, Tuple, Union

import numpy as np
import torch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from medloss.validation import (
    check_activation_args,
    check_binary,
    check_bools,
    check_finite,
    check_number,
    check_range,
    check_reduction,
    one_hot,
    reduce,
)

__all__ = [
    "SinkhornDistanceLoss",
    "EnergyDistanceLoss",
    "activate_samples",
    "check_sinkhorn_options",
    "epsilon_schedule",
    "sinkhorn_divergence",
]


# --------------------------------------------------------------------------------------------------- input handling
def activate_samples(
    samples: torch.Tensor, sigmoid: bool, softmax: bool, other_act: Optional[Callable]
) -> torch.Tensor:
    """Apply the activation over the channel dim (dim 2) of ``(B, N, C, *spatial)`` samples."""
    if sigmoid:
        samples = torch.sigmoid(samples)
    if softmax:
        if samples.shape[2] == 1:
            warnings.warn("single channel prediction, `softmax=True` ignored.")
        else:
            samples = torch.softmax(samples, 2)
    if other_act is not None:
        b, n = samples.shape[:2]
        samples = other_act(samples.reshape((b * n,) + tuple(samples.shape[2:]))).reshape(samples.shape)
    return samples


def _check_sets(samples: torch.Tensor, raters: torch.Tensor, to_onehot_y: bool) -> None:
    for name, t in (("samples", samples), ("raters", raters)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}.")
        if t.ndim not in (5, 6):
            raise ValueError(
                f"{name} must have shape (B, N or R, C, H, W[, D]) (2D or 3D), got shape {tuple(t.shape)}."
            )
    if samples.ndim != raters.ndim:
        raise ValueError(
            f"samples {tuple(samples.shape)} and raters {tuple(raters.shape)} must have the same number of dims "
            "(B, N, C, *spatial) / (B, R, C, *spatial)."
        )
    if samples.shape[0] == 0:
        raise ValueError(f"samples has an empty batch (shape {tuple(samples.shape)}).")
    if samples.shape[1] == 0:
        raise ValueError(f"need at least one sample (N >= 1), got samples of shape {tuple(samples.shape)}.")
    if raters.shape[1] == 0:
        raise ValueError(f"need at least one rater mask (R >= 1), got raters of shape {tuple(raters.shape)}.")
    if samples.numel() == 0 or raters.numel() == 0:
        raise ValueError(f"empty input: samples {tuple(samples.shape)}, raters {tuple(raters.shape)}.")
    if raters.shape[0] != samples.shape[0] or raters.shape[3:] != samples.shape[3:]:
        raise ValueError(
            f"raters {tuple(raters.shape)} must match samples {tuple(samples.shape)} in batch size and spatial shape."
        )
    c_expected = 1 if to_onehot_y else samples.shape[2]
    if raters.shape[2] != c_expected:
        what = "a (B, R, 1, *spatial) label map with to_onehot_y=True" if to_onehot_y else "the same channel count"
        raise ValueError(
            f"raters must have {c_expected} channel(s) ({what}); got raters {tuple(raters.shape)} for samples "
            f"{tuple(samples.shape)}."
        )


def _prepare_sets(
    samples: torch.Tensor,
    raters: torch.Tensor,
    include_background: bool,
    to_onehot_y: bool,
    sigmoid: bool,
    softmax: bool,
    other_act: Optional[Callable],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Check, activate, one-hot and flatten: returns points ``(B, N, V)`` and ``(B, R, V)`` in fp32 or fp64."""
    _check_sets(samples, raters, to_onehot_y)
    check_finite(samples, "samples")
    check_finite(raters, "raters")
    # fp16/bf16 overflow in squared distances over ~1e5 voxels, so compute in fp32 at least.
    dtype = torch.float64 if samples.dtype == torch.float64 else torch.float32
    samples = activate_samples(samples.to(dtype), sigmoid, softmax, other_act)
    check_range(samples.detach(), 0.0, 1.0, "samples (probabilities after the activation)")
    b, r = raters.shape[:2]
    n_ch = samples.shape[2]
    if to_onehot_y and n_ch > 1:
        flat = raters.reshape((b * r,) + tuple(raters.shape[2:]))
        raters = one_hot(flat, n_ch).reshape((b, r, n_ch) + tuple(raters.shape[3:]))
    check_binary(raters, "raters (rater masks)")
    raters = raters.to(device=samples.device, dtype=dtype)
    if not include_background and n_ch > 1:
        samples, raters = samples[:, :, 1:], raters[:, :, 1:]
    n = samples.shape[1]
    return samples.reshape(b, n, -1), raters.reshape(b, r, -1)


class _SquaredDistances(torch.autograd.Function):
    """Pairwise squared Euclidean distances ``(B, N, M)`` between ``(B, N, V)`` and ``(B, M, V)`` point sets.

    Differences are summed directly, one row of the matrix at a time: the ``|x|^2 + |y|^2 - 2<x, y>`` shortcut
    cancels catastrophically in fp32 at 1e5 voxels (equal points come out at +-0.03), and ``torch.cdist`` loses
    ~6e-6 relative in fp32 at 32^3, while torch's (cascade) sum stays at ~1e-7. The backward uses the closed form
    ``dL/dx_i = 2 sum_j G_ij (x_i - y_j)`` as two matmuls, so no ``(B, N, M, V)`` tensor is ever stored.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, y)
        ctx.same = y is x
        n = x.shape[1]
        if not ctx.same:
            return torch.stack([((x[:, i : i + 1] - y) ** 2).sum(-1) for i in range(n)], dim=1)
        # within one set: the matrix is symmetric with a zero diagonal, so only pairs i < j are computed
        out = x.new_zeros(x.shape[0], n, n)
        for i in range(n - 1):
            row = ((x[:, i : i + 1] - x[:, i + 1 :]) ** 2).sum(-1)
            out[:, i, i + 1 :] = row
            out[:, i + 1 :, i] = row
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, y = ctx.saved_tensors
        grad = grad.to(x.dtype)

        def one_side(g, p, q):  # 2 * (rowsum(g) * p - g @ q)
            return torch.baddbmm(g.sum(2).unsqueeze(-1) * p, g, q, alpha=-1.0).mul_(2.0)

        if ctx.same:  # both arguments are x: return the total gradient once
            return one_side(grad + grad.transpose(1, 2), x, x), None
        grad_x = one_side(grad, x, y) if ctx.needs_input_grad[0] else None
        grad_y = one_side(grad.transpose(1, 2), y, x) if ctx.needs_input_grad[1] else None
        return grad_x, grad_y


def _squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared distances ``(B, N, M)``, returned in fp64 where the device has it: the matrix is tiny, and the
    Sinkhorn log-sum-exps see ``C / eps`` ~ 1e6, where fp32 would round away the eps-scale detail."""
    d2 = _SquaredDistances.apply(x, y)
    return d2 if d2.device.type == "mps" else d2.double()


def _distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``(B, N, M)``; the gradient at coinciding points (distance 0) is taken as 0, not NaN."""
    d2 = _squared_distances(x, y)
    positive = d2 > 0
    return torch.where(positive, torch.where(positive, d2, torch.ones_like(d2)).sqrt(), torch.zeros_like(d2))


class _SampleSetLoss(_Loss):
    """Shared argument handling of the set-to-set losses."""

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Optional[Callable] = None,
        per_voxel: bool = False,
        reduction: Union[LossReduction, str] = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=check_reduction(reduction))
        check_activation_args(sigmoid, softmax, other_act)
        check_bools(include_background=include_background, to_onehot_y=to_onehot_y, per_voxel=per_voxel)
        self.include_background = include_background
        self.to_onehot_y = to_onehot_y
        self.sigmoid = sigmoid
        self.softmax = softmax
        self.other_act = other_act
        self.per_voxel = bool(per_voxel)

    def _points(self, samples: torch.Tensor, raters: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return _prepare_sets(
            samples, raters, self.include_background, self.to_onehot_y, self.sigmoid, self.softmax, self.other_act
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: N sampled predictions per item, ``(B, N, C, H, W[, D])``; probabilities, or logits with an
                activation option.
            target: R binary rater masks per item, ``(B, R, C, H, W[, D])`` (or ``(B, R, 1, ...)`` label maps
                with ``to_onehot_y``). N and R may differ.

        Returns:
            ``(B,)`` with ``reduction="none"``, else a scalar. Always fp32 (fp64 for fp64 input).

        Raises:
            ValueError: N or R is zero, batch/spatial/channel shapes disagree, NaN/Inf values, probabilities
                outside [0, 1], or rater masks that are not binary.
        """
        x, y = self._points(input, target)
        with torch.autocast(device_type=x.device.type, enabled=False):
            values = self._distance(x, y).to(x.dtype)
        return reduce(values, self.reduction)

    def _distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------- energy distance
class EnergyDistanceLoss(_SampleSetLoss):
    """Energy distance between N sampled segmentations and R rater masks, per batch item (PULASki "Hausdorff").

    Chatterjee et al., "PULASki: Learning inter-rater variability using statistical distances to improve
    probabilistic segmentation", Medical Image Analysis 2025 (arXiv:2312.15686), https://arxiv.org/abs/2312.15686.
    Sejdinovic et al., "Equivalence of distance-based and RKHS-based statistics in hypothesis testing", 2013.

    With each flattened map a point in R^V and uniform weights,

    ``E = 1/(N R) sum_ij |x_i - y_j| - 1/(2 N^2) sum_ii' |x_i - x_i'| - 1/(2 R^2) sum_jj' |y_j - y_j'|``,

    all pairs included (the i = i' terms are 0). This is the kernel MMD with k(x, y) = -|x - y| (half the Szekely-Rizzo
    energy statistic), i.e. geomloss ``SamplesLoss("energy")`` and PULASki's ``SamplesLoss("hausdorff",
    kernel=energy_kernel)`` (https://github.com/soumickmj/PULASki): geomloss's "hausdorff" is an unimplemented alias of
    the kernel losses, so PULASki's "Hausdorff divergence" is this energy distance. Differences to geomloss: the
    diagonal distances are exactly 0 here (geomloss clamps squared distances at 1e-8, adding ``1e-4 / N`` to the value),
    and distances are summed from squared differences rather than the fp32-lossy Gram expansion.
    The gradient of ``|x - y|`` at coinciding points is taken as 0.

    Args:
        include_background: if False, channel 0 is dropped from samples and raters (multi-channel only).
        to_onehot_y: one-hot encode ``(B, R, 1, *spatial)`` rater label maps into C channels.
        sigmoid: apply a sigmoid to the samples.
        softmax: apply a softmax over the channel dim of the samples.
        other_act: any other callable activation applied to ``(B*N, C, *spatial)`` samples.
        per_voxel: divide squared distances by V (the number of channels x voxels per map), i.e. use
            root-mean-square voxel differences, so the value no longer grows with the patch size. PULASki
            uses plain sums (False), which makes its loss grow as sqrt(V).
        reduction: ``"mean"`` (PULASki: mean over the batch), ``"sum"`` or ``"none"`` (``(B,)``).

    Raises:
        ValueError: incompatible activation options, a switch that is not a bool.

    Example:
        >>> import torch
        >>> samples = torch.rand(2, 4, 1, 8, 8)  # B = 2 items, N = 4 sampled probability maps each
        >>> raters = (torch.rand(2, 3, 1, 8, 8) > 0.5).float()  # R = 3 rater masks each
        >>> EnergyDistanceLoss(reduction="none")(samples, raters).shape
        torch.Size([2])
        >>> float(EnergyDistanceLoss()(raters, raters))
        0.0
    """

    def _distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d_xy = _distances(x, y).mean(dim=(1, 2))
        d_xx = _distances(x, x).mean(dim=(1, 2))
        d_yy = _distances(y, y).mean(dim=(1, 2))
        energy = d_xy - 0.5 * d_xx - 0.5 * d_yy
        if self.per_voxel:
            energy = energy / math.sqrt(x.shape[-1])
        return energy


# --------------------------------------------------------------------------------------------- Sinkhorn divergence
def check_sinkhorn_options(blur: float, scaling: float) -> Tuple[float, float]:
    """``(blur, scaling)`` of the Sinkhorn divergence as floats, or ``ValueError``: ``blur`` finite and ``> 0`` with
    a temperature ``blur ** 2`` that is a normal float (neither 0 nor overflowing), ``scaling`` in ``(0, 1)``."""
    blur = check_number("blur", blur, low=0, low_open=True)
    try:
        eps = blur**2
    except OverflowError:
        eps = math.inf
    if not np.finfo(np.float64).tiny < eps < np.finfo(np.float64).max:
        raise ValueError(f"blur must give a temperature blur ** 2 in the float64 range, got blur={blur!r}.")
    return blur, check_number("scaling", scaling, low=0, high=1, low_open=True, high_open=True)


def epsilon_schedule(diameter: float, blur: float, scaling: float, p: int = 2) -> list:
    """Temperatures of the epsilon-scaling annealing: ``diameter^p``, geometric steps of ratio ``scaling^p``
    down to (excluding) ``blur^p``, then ``blur^p`` (the schedule of geomloss's ``SamplesLoss``)."""
    steps = np.arange(p * np.log(diameter), p * np.log(blur), p * np.log(scaling))
    return [diameter**p] + [float(np.exp(e)) for e in steps] + [blur**p]


def _softmin(eps: float, cost: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Soft c-transform ``f_i = -eps log sum_j exp(h_j - C_ij / eps)`` for ``(B, N, M)`` costs, ``(B, M)`` h."""
    return -eps * torch.logsumexp(h.unsqueeze(1) - cost / eps, dim=2)


def sinkhorn_divergence(
    c_xy: torch.Tensor,
    c_xx: torch.Tensor,
    c_yy: torch.Tensor,
    eps_list: list,
) -> torch.Tensor:
    """De-biased Sinkhorn divergence ``OT_eps(a, b) - OT_eps(a, a)/2 - OT_eps(b, b)/2`` for uniform weights.

    Log-domain symmetric Sinkhorn iterations, one per temperature in ``eps_list`` (the last one is the target
    ``eps``), followed by one extrapolation step at the target temperature, as in Feydy et al. (AISTATS 2019)
    and geomloss. The loop is differentiated through (the matrices are only N x R, so this is cheap), which makes
    the gradient the exact gradient of the returned value.

    Args:
        c_xy: ``(B, N, M)`` costs between the two sets; ``c_xx`` ``(B, N, N)`` and ``c_yy`` ``(B, M, M)`` within.
        eps_list: temperatures, see :func:`epsilon_schedule`.

    Returns:
        ``(B,)`` divergences.
    """
    bsz, n, m = c_xy.shape
    c_yx = c_xy.transpose(1, 2)
    a_log = torch.full((bsz, n), -math.log(n), dtype=c_xy.dtype, device=c_xy.device)
    b_log = torch.full((bsz, m), -math.log(m), dtype=c_xy.dtype, device=c_xy.device)

    eps = eps_list[0]
    g_ab = _softmin(eps, c_yx, a_log)
    f_ba = _softmin(eps, c_xy, b_log)
    f_aa = _softmin(eps, c_xx, a_log)
    g_bb = _softmin(eps, c_yy, b_log)
    for eps in eps_list:
        ft_ba = _softmin(eps, c_xy, b_log + g_ab / eps)
        gt_ab = _softmin(eps, c_yx, a_log + f_ba / eps)
        ft_aa = _softmin(eps, c_xx, a_log + f_aa / eps)
        gt_bb = _softmin(eps, c_yy, b_log + g_bb / eps)
        # symmetric (averaged) updates, which damp the oscillations of the annealing
        f_ba, g_ab = 0.5 * (f_ba + ft_ba), 0.5 * (g_ab + gt_ab)
        f_aa, g_bb = 0.5 * (f_aa + ft_aa), 0.5 * (g_bb + gt_bb)
    # final full (non-averaged) update at the target temperature
    f_ba, g_ab = _softmin(eps, c_xy, b_log + g_ab / eps), _softmin(eps, c_yx, a_log + f_ba / eps)
    f_aa, g_bb = _softmin(eps, c_xx, a_log + f_aa / eps), _softmin(eps, c_yy, b_log + g_bb / eps)
    return (f_ba - f_aa).mean(dim=1) + (g_ab - g_bb).mean(dim=1)


class SinkhornDistanceLoss(_SampleSetLoss):
    """De-biased Sinkhorn divergence between N sampled segmentations and R rater masks, per batch item (PULASki).

    Chatterjee et al., "PULASki: Learning inter-rater variability using statistical distances to improve
    probabilistic segmentation", Medical Image Analysis 2025 (arXiv:2312.15686), https://arxiv.org/abs/2312.15686.
    Feydy et al., "Interpolating between Optimal Transport and MMD using Sinkhorn Divergences", AISTATS 2019,
    https://arxiv.org/abs/1810.08278.

    Each flattened map is a point in R^V, the N samples and R raters carry uniform weights 1/N and 1/R, the cost
    is ``C(x, y) = 0.5 * |x - y|^2`` and the value is ``S_eps = OT_eps(a, b) - OT_eps(a, a)/2 - OT_eps(b, b)/2``
    with ``eps = blur^2``. It is computed as geomloss ``SamplesLoss("sinkhorn", p=2, blur, scaling,
    debias=True)`` (PULASki's settings) computes it: epsilon-scaling from ``diameter^2`` down to ``blur^2`` in
    steps of ``scaling^2``, one symmetric log-domain iteration per step, then one extrapolation step. The
    diameter is, as in geomloss's batched mode, the diagonal of the bounding box of all points of the whole batch
    (unless given). With costs of 1e2-1e4 and the default ``blur``, the value is the exact optimal-transport cost
    (for N = R: the best one-to-one matching, mean of half squared distances) to ~1e-6 relative.

    Differences to geomloss: squared distances are summed from differences (exact in fp32, unlike the Gram
    expansion), the gradient is back-propagated through the (N x R-sized) iterations instead of geomloss's
    envelope-theorem shortcut, so it is the exact gradient of the returned value (the two agree at convergence),
    and a batch whose points all coincide returns 0 (geomloss fails on a zero diameter).

    Accuracy: with PULASki's ``scaling=0.5`` there is one iteration per temperature, which can stop short of
    convergence when two matchings have nearly equal costs (one item of the 2D reference case ends 0.016, 4e-5
    relative, below the exact OT value; this is reproduced, as it is geomloss's value). ``scaling=0.9``-``0.95``
    converges on such cases at a few times the (small) cost.

    Args:
        include_background: if False, channel 0 is dropped from samples and raters (multi-channel only).
        to_onehot_y: one-hot encode ``(B, R, 1, *spatial)`` rater label maps into C channels.
        sigmoid: apply a sigmoid to the samples.
        softmax: apply a softmax over the channel dim of the samples.
        other_act: any other callable activation applied to ``(B*N, C, *spatial)`` samples.
        blur: target entropic blur; ``eps = blur^2`` (PULASki/geomloss default 0.05).
        scaling: annealing ratio in (0, 1) (PULASki 0.5; closer to 1 = more iterations, more accurate).
        per_voxel: divide squared distances by V (the number of channels x voxels per map): the cost becomes
            half the mean squared voxel error, independent of the patch size. ``blur`` then refers to these
            normalised units. PULASki uses plain sums (False).
        diameter: fixed starting scale of the annealing (in the same units as the cost); None = from the data.
        reduction: ``"mean"`` (PULASki: mean over the batch), ``"sum"`` or ``"none"`` (``(B,)``).

    Raises:
        ValueError: incompatible activation options, a switch that is not a bool, ``blur`` not finite and ``> 0``
            (or ``blur ** 2`` outside the float64 range), ``scaling`` outside (0, 1), ``diameter`` not finite and
            ``> 0``.

    Example:
        >>> import torch
        >>> samples = torch.rand(2, 4, 1, 8, 8)
        >>> raters = (torch.rand(2, 3, 1, 8, 8) > 0.5).float()
        >>> SinkhornDistanceLoss(reduction="none")(samples, raters).shape
        torch.Size([2])
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Optional[Callable] = None,
        blur: float = 0.05,
        scaling: float = 0.5,
        per_voxel: bool = False,
        diameter: Optional[float] = None,
        reduction: Union[LossReduction, str] = LossReduction.MEAN,
    ) -> None:
        super().__init__(include_background, to_onehot_y, sigmoid, softmax, other_act, per_voxel, reduction)
        self.blur, self.scaling = check_sinkhorn_options(blur, scaling)
        self.diameter = check_number("diameter", diameter, low=0, low_open=True, allow_none=True)

    def _distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scale = 1.0 / x.shape[-1] if self.per_voxel else 1.0
        c_xy = 0.5 * scale * _squared_distances(x, y)
        c_xx = 0.5 * scale * _squared_distances(x, x)
        c_yy = 0.5 * scale * _squared_distances(y, y)
        diameter = self.diameter
        if diameter is None:
            with torch.no_grad():
                points = torch.cat([x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])])
                diameter = float((points.amax(0) - points.amin(0)).norm()) * math.sqrt(scale)
            if diameter == 0.0:
                # all points coincide: S_eps = 0 and the annealing schedule (log diameter) is undefined
                return c_xy.sum(dim=(1, 2)) * 0.0
        return sinkhorn_divergence(c_xy, c_xx, c_yy, epsilon_schedule(diameter, self.blur, self.scaling))
