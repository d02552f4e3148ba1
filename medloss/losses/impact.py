"""IMPACT semantic feature loss and the IMPACT-Synth content + style loss.

IMPACT compares two images through the intermediate layers of a frozen, pretrained segmentation network exported to
TorchScript: ``IMPACT(x, y) = sum_l w_l * d(F_l(x), F_l(y))``. Paper: V. Boussot et al., "IMPACT: A Generic Semantic
Loss for Multimodal Medical Image Registration", 2025, https://arxiv.org/abs/2503.24121 ; code and extractors:
https://github.com/vboussot/ImpactLoss , https://huggingface.co/VBoussot/impact-torchscript-models .

The extractors (local TorchScript files or modules, their contract and how to export one) are handled by
:mod:`medloss.networks.impact_extractor`; the per-layer distances ``d`` are in :mod:`medloss.losses.feature_distances`.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from medloss.losses.feature_distances import canonical_distance, feature_distance
from medloss.networks.impact_extractor import IMPACTExtractor
from medloss.validation import (
    check_choice,
    check_finite,
    check_float_input,
    check_number,
    check_numbers,
    check_reduction,
    check_same_shape,
    check_spatial_input,
    reduce,
)

__all__ = ["IMPACTLoss", "IMPACTSynthLoss", "guard_stats"]


#: a std at most this fraction of the image's largest magnitude is rounding noise of a constant image
_STD_FLOOR = 1e-6


def _image_stats(x: torch.Tensor) -> torch.Tensor:
    """``(B, 4)`` per-sample ``[min, max, mean, std]`` (unbiased std) of the whole image, all channels, detached."""
    flat = x.detach().flatten(1)
    # one voxel has no unbiased std (torch gives NaN); it is a constant image, std 0
    std = flat.std(1) if flat.shape[1] > 1 else torch.zeros_like(flat[:, 0])
    return torch.stack([flat.min(1).values, flat.max(1).values, flat.mean(1), std], dim=1)


def guard_stats(stats: torch.Tensor) -> torch.Tensor:
    """The statistics handed to an IMPACT extractor: ``[min, max, mean, std]`` rows whose std is 0 become std 1.

    Extractors z-score their input with the given std, ``(x - mean) / std``; a constant image (a zero-initialised
    network head, a patch entirely in air, a single voxel) has std 0 and would give NaN features, loss and
    gradients. As MONAI's ``NormalizeIntensity`` does for a zero std, such an image is handed std 1: its z-score
    ``(x - mean) / 1`` is 0, the value of any finite divisor, and the gradient keeps the scale of the intensities.
    A std of at most ``1e-6`` times the image's largest magnitude ``max(|min|, |max|)`` counts as 0 (rounding noise
    of the mean of a constant float32 image).

    Args:
        stats: ``(4,)`` or ``(B, 4)`` ``[min, max, mean, std]``.

    Example:
        >>> guard_stats(torch.tensor([[-1000.0, -1000.0, -1000.0, 0.0], [0.0, 2.0, 1.0, 0.5]])).tolist()
        [[-1000.0, -1000.0, -1000.0, 1.0], [0.0, 2.0, 1.0, 0.5]]
    """
    std = stats[..., 3]
    scale = torch.maximum(stats[..., 0].abs(), stats[..., 1].abs())
    degenerate = std <= _STD_FLOOR * scale
    if not bool(degenerate.any()):
        return stats
    return torch.cat([stats[..., :3], torch.where(degenerate, torch.ones_like(std), std).unsqueeze(-1)], dim=-1)


def _check_stats(stats: Union[torch.Tensor, Sequence[float]], batch: int, name: str,
                 like: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(stats).detach().to(device=like.device, dtype=like.dtype)
    if s.dim() == 1:
        s = s.unsqueeze(0).expand(batch, -1)
    if s.dim() != 2 or s.shape != (batch, 4):
        raise ValueError(
            f"{name} must be [min, max, mean, std] of shape (4,) or (B, 4) = ({batch}, 4), got shape "
            f"{tuple(torch.as_tensor(stats).shape)}."
        )
    check_finite(s, name)
    return s


class IMPACTLoss(_Loss):
    """IMPACT semantic feature loss: weighted per-layer distances between the features of a frozen extractor.

    Boussot V. et al., "IMPACT: A Generic Semantic Loss for Multimodal Medical Image Registration", 2025,
    https://arxiv.org/abs/2503.24121 (code: https://github.com/vboussot/ImpactLoss).

    ``loss_b = sum_l w_l * d_l(F_l(input_b), F_l(target_b))`` for every sample ``b``, layers with ``w_l = 0`` skipped,
    then ``reduction`` over the batch. Each sample goes through the extractor on its own with its whole-image
    ``[min, max, mean, std]`` (models honour the statistics of one image only); the statistics are constants (no
    gradient through them). Gradients flow to ``input`` (and to ``target`` if it requires grad); the extractor is
    frozen (``requires_grad=False``, eval mode, kept in eval mode by ``.train()``) and moved to the input's device on
    first use. Input is cast to the extractor's dtype (half precision is computed in float32); call ``.double()`` on
    the loss to run a float64 copy of the extractor.

    A 2D extractor (``spatial_dims=2``) on a 3D volume ``(B, C, D, H, W)`` sweeps the slices along the first spatial
    axis with the **whole-volume** statistics (konfai / itk-impact behaviour; ImpactLoss ``IMPACT.py`` recomputes
    them per slice) and averages the per-slice distances.

    Constant images: a constant image (a zero-initialised head, a patch entirely in air, a single voxel) has std 0;
    the extractor, which z-scores with the std it receives, is handed std 1 instead (:func:`guard_stats`), so the
    loss and its gradients stay finite. With ``stats_from="none"`` the model computes its own statistics and must
    guard them itself (see the recipe in :mod:`medloss.networks.impact_extractor`).

    Args:
        model: local TorchScript file (``str``/``Path``), a bare name looked up in ``$MEDLOSS_IMPACT_MODEL_DIR`` and
            the local Hugging Face cache of ``VBoussot/impact-torchscript-models`` (never downloaded), or an
            ``nn.Module`` following the contract in the module docstring (frozen in place).
        weights: one weight per extractor output layer (``nb_layers = len(weights)``); 0 skips a layer. At least one
            weight must be non-zero.
        distance: ``"L1"`` (default, as ImpactLoss), ``"L2"``, ``"Cosine"``, ``"L1Cosine"``, ``"Dice"``, ``"NCC"``,
            ``"LNCC"``, ``"Gram"`` (style term) or ``"DotProduct"`` (itk convention only); or one name per layer.
        in_channels: channels the extractor expects; a 1-channel image is repeated to it (3 for SAM/DINO/VGG).
        spatial_dims: dimensionality of the extractor (2 or 3).
        shape: optional spatial size the image (each slice for a 2D sweep) is resized to (bilinear/trilinear,
            ``align_corners=False``) before the extractor; statistics are taken before resizing.
        stats_from: statistics given to the extractor: ``"own"`` (each image its own, ImpactLoss/konfai default),
            ``"target"`` (both images normalised with the target's; for synthesis outputs) or ``"none"`` (an empty
            tensor: the model normalises with the statistics of the tensor it receives).
        convention: ``"konfai"`` (0 at a perfect match: ``1 - similarity``, eps 1e-6) or ``"itk"`` (itk-impact /
            elastix sign: ``-similarity``, no eps). L1/L2/Gram are identical in both.
        lncc_kernel: odd window size of ``"LNCC"``.
        direction: 3x3 direction matrix handed to 3D extractors (rounded to int16); default identity. 2D extractors
            get a 2x2 identity.
        sweep_batch: slices per extractor call in a 2D sweep.
        probe_shape: spatial size of the construction-time probe (default ``shape`` or 32 per axis); ``()`` skips it.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(B,)`` per-sample losses).

    Raises:
        FileNotFoundError: the model file cannot be found (message lists the folders searched and how to get it).
        ValueError: bad arguments; the probe finds an output that is not a list, a number of outputs different
            from ``len(weights)``, or a weighted layer without gradient (e.g. an argmax segmentation head).

    Shapes:
        ``forward(input, target, stats=None)``: ``input``/``target`` ``(B, C, H, W[, D])`` raw intensities with
        ``C == 1`` or ``C == in_channels``; optional ``stats`` ``(4,)`` or ``(B, 4)`` whole-image
        ``[min, max, mean, std]`` used for both images (e.g. for patches of a larger image), overriding
        ``stats_from``. Returns a scalar, or ``(B,)`` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> class Features(torch.nn.Module):  # stands for a pretrained segmentation network's encoder
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = torch.nn.Conv3d(1, 4, 3, padding=1)
        ...     def forward(self, x):
        ...         return [self.conv(x)]
        >>> loss = IMPACTLoss(Features(), weights=[1.0], probe_shape=(8, 8, 8))
        >>> image = torch.rand(2, 1, 8, 8, 8)
        >>> float(loss(image, image))
        0.0
    """

    def __init__(
        self,
        model: Union[str, os.PathLike, torch.nn.Module],
        weights: Sequence[float] = (1.0,),
        distance: Union[str, Sequence[str]] = "L1",
        in_channels: int = 1,
        spatial_dims: int = 3,
        shape: Optional[Sequence[int]] = None,
        stats_from: str = "own",
        convention: str = "konfai",
        lncc_kernel: int = 5,
        direction: Optional[Sequence[Sequence[float]]] = None,
        sweep_batch: int = 32,
        probe_shape: Optional[Sequence[int]] = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=check_reduction(reduction))
        weights = list(check_numbers("weights", weights))
        if all(w == 0 for w in weights):
            raise ValueError(f"all layer weights are 0 ({weights}): the loss would be constant; weigh >= 1 layer.")
        self.weights = weights
        names = [distance] * len(weights) if isinstance(distance, str) else list(distance)
        if len(names) != len(weights):
            raise ValueError(f"got {len(names)} distances for {len(weights)} layer weights; give one or one per layer.")
        self.distances = [canonical_distance(n) for n in names]
        self.convention = check_choice("convention", convention, ("konfai", "itk"))
        if convention == "konfai" and "DotProduct" in self.distances:
            raise ValueError("distance 'DotProduct' has no 0-at-match form; use convention='itk'.")
        self.lncc_kernel = check_number("lncc_kernel", lncc_kernel, low=1, integer=True)
        if self.lncc_kernel % 2 == 0:
            raise ValueError(f"lncc_kernel must be a positive odd integer, got {lncc_kernel}.")
        self.spatial_dims = check_number("spatial_dims", spatial_dims, low=2, high=3, integer=True)
        self.in_channels = check_number("in_channels", in_channels, low=1, integer=True)
        if shape is not None:
            shape = check_numbers("shape", shape, low=1, integer=True, length=self.spatial_dims)
        self.shape = shape
        self.stats_from = check_choice("stats_from", stats_from, ("own", "target", "none"))
        self.sweep_batch = check_number("sweep_batch", sweep_batch, low=1, integer=True)
        if direction is None:
            direction_t = torch.eye(spatial_dims, dtype=torch.int16)
        else:
            try:
                direction_f = torch.as_tensor(direction, dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(
                    f"direction must be a {spatial_dims}x{spatial_dims} matrix, got {direction!r}."
                ) from None
            if direction_f.shape != (spatial_dims, spatial_dims) or not bool(torch.isfinite(direction_f).all()):
                raise ValueError(f"direction must be a finite {spatial_dims}x{spatial_dims} matrix, got {direction!r}.")
            direction_t = direction_f.round().to(torch.int16)
        self.register_buffer("direction", direction_t, persistent=False)
        self.extractor = model if isinstance(model, IMPACTExtractor) else IMPACTExtractor(model)
        if probe_shape is not None and len(probe_shape) > 0:
            probe_shape = check_numbers("probe_shape", probe_shape, low=1, integer=True, length=self.spatial_dims)
        probe = self.shape if probe_shape is None else tuple(probe_shape)
        if probe is None:
            probe = (32,) * self.spatial_dims
        if len(probe) > 0:
            self._probe(tuple(probe))

    # -- construction-time check -------------------------------------------------------------------------------
    def _probe(self, size: Tuple[int, ...]) -> None:
        if len(size) != self.spatial_dims:
            raise ValueError(f"probe_shape must give {self.spatial_dims} sizes, got {size}.")
        dtype = self.extractor.dtype or torch.float32
        n = 1
        for s in size:
            n *= s
        x = torch.linspace(0.0, 1.0, n * self.in_channels, dtype=dtype).reshape(1, self.in_channels, *size)
        x.requires_grad_(True)
        try:
            with torch.enable_grad():
                out = self.extractor(x, self._nb_layers(x.device), _image_stats(x)[0], self.direction)
        except ValueError:
            raise
        except Exception as err:  # noqa: BLE001 - report any failure of the user's network clearly
            raise ValueError(
                f"the IMPACT extractor failed on a probe input of shape {tuple(x.shape)} "
                f"({type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}). Check "
                "in_channels / spatial_dims, or pass probe_shape (or shape) with a size the model accepts."
            ) from err
        if len(out) != len(self.weights):
            raise ValueError(
                f"the IMPACT extractor returned {len(out)} feature map(s) for nb_layers={len(self.weights)}, but "
                f"{len(self.weights)} layer weight(s) were given ({self.weights}); give exactly one weight per "
                "returned layer (0 to skip a layer)."
            )
        dead = [i for i, (w, o) in enumerate(zip(self.weights, out)) if w != 0 and not o.requires_grad]
        if dead:
            raise ValueError(
                f"weighted extractor layer(s) {dead} carry no gradient (e.g. an argmax/one-hot segmentation head); "
                "set their weight to 0 and weigh feature layers instead."
            )

    def _nb_layers(self, device: torch.device) -> torch.Tensor:
        return torch.tensor([len(self.weights)], dtype=torch.int64, device=device)

    # -- forward ------------------------------------------------------------------------------------------------
    def _check_inputs(self, input: torch.Tensor, target: torch.Tensor) -> None:
        check_spatial_input(input, "input", (2, 3))
        check_spatial_input(target, "target", (2, 3))
        check_same_shape(input, target)
        check_float_input(input)
        check_finite(input, "input")
        check_finite(target, "target")
        if input.ndim - 2 < self.spatial_dims:
            raise ValueError(
                f"a {self.spatial_dims}D extractor needs (B, C, D, H, W) images, got shape {tuple(input.shape)}."
            )
        c = input.shape[1]
        if c not in (1, self.in_channels):
            raise ValueError(
                f"input has {c} channels; the extractor takes in_channels={self.in_channels} (a 1-channel image is "
                "repeated to it)."
            )

    def _model_input(self, x: torch.Tensor) -> torch.Tensor:
        """``(1, C, *spatial)`` sample -> ``(n, in_channels, *model_spatial)`` extractor batch."""
        if x.ndim - 2 > self.spatial_dims:  # 2D extractor on a 3D volume: slices of the first spatial axis
            x = x[0].movedim(1, 0)
        if x.shape[1] != self.in_channels:
            x = x.repeat(1, self.in_channels, *([1] * (x.ndim - 2)))
        if self.shape is not None and tuple(x.shape[2:]) != self.shape:
            x = F.interpolate(x, size=self.shape, mode="bilinear" if x.ndim == 4 else "trilinear", align_corners=False)
        return x

    def _features(self, x: torch.Tensor, stats: Optional[torch.Tensor]) -> List[torch.Tensor]:
        nb = self._nb_layers(x.device)
        s = x.new_zeros(0) if stats is None else guard_stats(stats)
        direction = self.direction.to(x.device)
        chunks = x.split(self.sweep_batch) if x.shape[0] > 1 else (x,)
        outs = [self.extractor(c, nb, s, direction) for c in chunks]
        for out in outs:
            if len(out) != len(self.weights):
                raise ValueError(
                    f"the IMPACT extractor returned {len(out)} feature map(s) but {len(self.weights)} layer "
                    "weight(s) were given; give exactly one weight per returned layer."
                )
        if len(outs) == 1:
            return outs[0]
        return [torch.cat([o[i] for o in outs]) for i in range(len(self.weights))]

    def _per_sample(self, input: torch.Tensor, target: torch.Tensor, stats_in: Optional[torch.Tensor],
                    stats_tg: Optional[torch.Tensor]) -> torch.Tensor:
        """``(B,)`` losses; ``stats_*`` are ``(B, 4)`` or ``None`` (no statistics passed)."""
        losses = []
        for b in range(input.shape[0]):
            fx = self._features(self._model_input(input[b: b + 1]), None if stats_in is None else stats_in[b])
            fy = self._features(self._model_input(target[b: b + 1]), None if stats_tg is None else stats_tg[b])
            total = input.new_zeros(())
            for i, (w, name) in enumerate(zip(self.weights, self.distances)):
                if w == 0:
                    continue
                if fx[i].shape != fy[i].shape:
                    raise ValueError(f"layer {i} feature shapes differ: {tuple(fx[i].shape)} vs {tuple(fy[i].shape)}.")
                d = feature_distance(name, fx[i], fy[i], self.convention, self.lncc_kernel)
                total = total + w * d.mean()  # mean over the slices of a 2D sweep (one item otherwise)
            losses.append(total)
        return torch.stack(losses)

    def _cast(self, *xs: torch.Tensor) -> List[torch.Tensor]:
        self.extractor.place(xs[0].device)
        dtype = self.extractor.dtype
        if dtype is None:
            dtype = torch.float32 if xs[0].dtype in (torch.float16, torch.bfloat16) else xs[0].dtype
        return [x.to(dtype) for x in xs]

    def forward(self, input: torch.Tensor, target: torch.Tensor,
                stats: Optional[Union[torch.Tensor, Sequence[float]]] = None) -> torch.Tensor:
        """IMPACT loss of ``input`` against ``target`` (both ``(B, C, H, W[, D])``, raw intensities)."""
        self._check_inputs(input, target)
        input, target = self._cast(input, target)
        if stats is not None:
            s_in = s_tg = _check_stats(stats, input.shape[0], "stats", input)
        elif self.stats_from == "own":
            s_in, s_tg = _image_stats(input), _image_stats(target)
        elif self.stats_from == "target":
            s_in = s_tg = _image_stats(target)
        else:
            s_in = s_tg = None
        return reduce(self._per_sample(input, target, s_in, s_tg), self.reduction)

    def extra_repr(self) -> str:
        src = self.extractor.path if self.extractor.path is not None else type(self.extractor.net).__name__
        return (f"model={str(src)!r}, weights={self.weights}, distance={self.distances}, in_channels="
                f"{self.in_channels}, spatial_dims={self.spatial_dims}, stats_from={self.stats_from!r}, "
                f"convention={self.convention!r}")


# ------------------------------------------------------------------------------------------------------------------
# IMPACT-Synth
# ------------------------------------------------------------------------------------------------------------------
_NORMALIZATIONS = ("minmax", "zscore", "none")


def _denormalize(t: torch.Tensor, stats: torch.Tensor, mode: str) -> torch.Tensor:
    """Back to raw intensities with per-sample ``[min, max, mean, std]`` ``(B, 4)``."""
    if mode == "none":
        return t
    view = (-1,) + (1,) * (t.ndim - 1)
    if mode == "minmax":  # konfai Normalize to [-1, 1]
        lo, hi = stats[:, 0].view(view), stats[:, 1].view(view)
        return (t + 1) / 2 * (hi - lo) + lo
    return t * stats[:, 3].view(view) + stats[:, 2].view(view)  # konfai Standardize


class IMPACTSynthLoss(_Loss):
    """IMPACT-Synth perceptual loss for image synthesis: a feature content term plus a Gram style term.

    Boussot V. et al., IMPACT (2025, https://arxiv.org/abs/2503.24121) and IMPACT-Synth (KonfAI,
    https://github.com/vboussot/KonfAI); defined as konfai 1.8.7 ``IMPACTSynth``:

    - content: ``sum_l wc_l * MSE(Fc_l(y_hat), Fc_l(content))`` (e.g. CT, content extractor);
    - style: ``sum_l ws_l * sum |G(Fs_l(y_hat)) - G(Fs_l(style))|``, ``G(F) = F F^T / (C N)`` per sample (e.g. MR);
    - per sample ``(content + style) / 2``, then ``reduction`` over the batch.

    Network outputs and targets live in a normalised space: every image is first mapped back to raw intensities with
    its branch's per-sample statistics (``content_stats`` / ``style_stats``, the dataset attributes konfai reads), and
    those statistics are also handed to the extractor for both images of the branch. As in konfai, the prediction is
    de-normalised with the **content** statistics in the content branch and with the **style** statistics in the style
    branch. Deviation: konfai divides the summed terms by the number of scored passes (slices + volumes); here each
    term is averaged over its own slices first, which is the same unless one extractor is 2D and the other 3D.

    Args:
        content_model: content extractor (path / name / module, see :class:`IMPACTLoss`).
        style_model: style extractor; ``None`` reuses the content extractor.
        content_weights: per-layer content weights (konfai default ``(0, 0, 1)``).
        style_weights: per-layer style weights (konfai default ``(1, 1, 1)``).
        content_in_channels, style_in_channels: extractor input channels (1-channel images are repeated).
        content_spatial_dims, style_spatial_dims: extractor dimensionality (style default: the content's).
        content_shape, style_shape: optional resize before each extractor.
        content_normalization: how the content target was normalised: ``"minmax"`` (to [-1, 1] from the raw
            min/max, konfai ``Normalize``), ``"zscore"`` (konfai ``Standardize``) or ``"none"`` (raw already).
        style_normalization: same for the style target (default ``"zscore"``).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.

    Raises:
        ValueError: bad arguments or statistics, a de-normalisation without statistics, probe failures.
        FileNotFoundError: a model file cannot be found.

    Shapes:
        ``forward(input, content_target, style_target, content_stats=None, style_stats=None)``: all images
        ``(B, C, H, W[, D])`` of the same shape; stats ``(4,)`` or ``(B, 4)`` raw ``[min, max, mean, std]``
        (required unless that branch's normalization is ``"none"``; then computed from the raw target).
        Returns a scalar or ``(B,)``.

    Example:
        >>> import torch
        >>> class Features(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = torch.nn.Conv3d(1, 4, 3, padding=1)
        ...     def forward(self, x):
        ...         return [self.conv(x)]
        >>> loss = IMPACTSynthLoss(Features(), content_weights=[1.0], style_weights=[1.0],
        ...                        content_normalization="none", style_normalization="none")
        >>> ct, mr = torch.rand(2, 1, 8, 8, 8), torch.rand(2, 1, 8, 8, 8)
        >>> float(loss(ct, ct, ct))
        0.0
        >>> loss(ct, ct, mr).shape
        torch.Size([])
    """

    def __init__(
        self,
        content_model: Union[str, os.PathLike, torch.nn.Module],
        style_model: Optional[Union[str, os.PathLike, torch.nn.Module]] = None,
        content_weights: Sequence[float] = (0.0, 0.0, 1.0),
        style_weights: Sequence[float] = (1.0, 1.0, 1.0),
        content_in_channels: int = 1,
        style_in_channels: int = 1,
        content_spatial_dims: int = 3,
        style_spatial_dims: Optional[int] = None,
        content_shape: Optional[Sequence[int]] = None,
        style_shape: Optional[Sequence[int]] = None,
        content_normalization: str = "minmax",
        style_normalization: str = "zscore",
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=check_reduction(reduction))
        for name, mode in (("content_normalization", content_normalization),
                           ("style_normalization", style_normalization)):
            if mode not in _NORMALIZATIONS:
                raise ValueError(f"{name} must be one of {_NORMALIZATIONS}, got {mode!r}.")
        # the branches' arguments checked under their own names (the IMPACTLoss of each branch checks them again)
        check_numbers("content_weights", content_weights)
        check_numbers("style_weights", style_weights)
        for name, value in (("content_in_channels", content_in_channels), ("style_in_channels", style_in_channels)):
            check_number(name, value, low=1, integer=True)
        check_number("content_spatial_dims", content_spatial_dims, low=2, high=3, integer=True)
        check_number("style_spatial_dims", style_spatial_dims, low=2, high=3, integer=True, allow_none=True)
        self.content_normalization, self.style_normalization = content_normalization, style_normalization
        content_ex = IMPACTExtractor(content_model) if not isinstance(content_model, IMPACTExtractor) else content_model
        style_ex = content_ex if style_model is None else style_model
        self.content = IMPACTLoss(content_ex, weights=content_weights, distance="L2", in_channels=content_in_channels,
                                  spatial_dims=content_spatial_dims, shape=content_shape, stats_from="target",
                                  reduction="none")
        self.style = IMPACTLoss(style_ex, weights=style_weights, distance="Gram", in_channels=style_in_channels,
                                spatial_dims=content_spatial_dims if style_spatial_dims is None else style_spatial_dims,
                                shape=style_shape, stats_from="target", reduction="none")

    def _branch(self, loss: IMPACTLoss, input: torch.Tensor, target: torch.Tensor,
                stats: Optional[Union[torch.Tensor, Sequence[float]]], mode: str, name: str) -> torch.Tensor:
        loss._check_inputs(input, target)
        input, target = loss._cast(input, target)
        if stats is None:
            if mode != "none":
                raise ValueError(
                    f"{name} is needed to map the {mode}-normalised images back to raw intensities; pass the raw "
                    f"[min, max, mean, std] of the {name.split('_')[0]} image, or set {name.split('_')[0]}"
                    "_normalization='none' for raw inputs."
                )
            s = _image_stats(target)
        else:
            s = _check_stats(stats, input.shape[0], name, input)
            if mode == "minmax" and bool((s[:, 1] <= s[:, 0]).any()):
                raise ValueError(f"{name}: max must exceed min for minmax de-normalisation, got {s.tolist()}.")
        return loss._per_sample(_denormalize(input, s, mode), _denormalize(target, s, mode), s, s)

    def components(self, input: torch.Tensor, content_target: torch.Tensor, style_target: torch.Tensor,
                   content_stats: Optional[Union[torch.Tensor, Sequence[float]]] = None,
                   style_stats: Optional[Union[torch.Tensor, Sequence[float]]] = None) -> Dict[str, torch.Tensor]:
        """Per-sample ``{"content": (B,), "style": (B,)}`` terms (unreduced, before the division by 2)."""
        self.content._check_inputs(input, content_target)
        self.style._check_inputs(input, style_target)
        content = self._branch(self.content, input, content_target, content_stats, self.content_normalization,
                               "content_stats")
        style = self._branch(self.style, input, style_target, style_stats, self.style_normalization, "style_stats")
        return {"content": content, "style": style}

    def forward(self, input: torch.Tensor, content_target: torch.Tensor, style_target: torch.Tensor,
                content_stats: Optional[Union[torch.Tensor, Sequence[float]]] = None,
                style_stats: Optional[Union[torch.Tensor, Sequence[float]]] = None) -> torch.Tensor:
        """IMPACT-Synth loss of ``input`` (normalised prediction) against the content and style targets."""
        terms = self.components(input, content_target, style_target, content_stats, style_stats)
        return reduce((terms["content"] + terms["style"]) / 2, self.reduction)
