"""PULASki training objective: a set distance between sampled segmentations and rater masks, plus a KL term.

Chatterjee et al., "PULASki: Learning inter-rater variability using statistical distances to improve probabilistic
segmentation", Medical Image Analysis 2025, https://arxiv.org/abs/2312.15686. A probabilistic U-Net
(:class:`medloss.networks.ProbabilisticUNet`) is trained so that the *set* of N segmentations it samples for one
image matches the *set* of R masks that different raters drew for it; the set distances live in
:mod:`medloss.losses.set_distances`.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn as nn
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from medloss.losses.set_distances import (
    EnergyDistanceLoss,
    SinkhornDistanceLoss,
    activate_samples,
    check_sinkhorn_options,
)
from medloss.validation import (
    check_activation_args,
    check_binary,
    check_bools,
    check_finite,
    check_number,
    check_reduction,
    one_hot,
    reduce,
)

__all__ = ["PULASkiLoss"]


class PULASkiLoss(_Loss):
    """PULASki training objective for a probabilistic U-Net: set distance + ``kl_weight`` * KL(posterior || prior).

    Chatterjee et al., "PULASki: Learning inter-rater variability using statistical distances to improve
    probabilistic segmentation", Medical Image Analysis 2025 (arXiv:2312.15686), https://arxiv.org/abs/2312.15686.
    Kohl et al., "A Probabilistic U-Net for Segmentation of Ambiguous Images", NeurIPS 2018.

    One call ``loss(model, image, raters)`` does, per batch item b:

    1. draw a rater index ``r_b`` uniformly from the R raters (from ``generator``; see below) and condition the
       posterior on that rater's mask;
    2. draw ``num_samples`` (default N = R) reparameterised posterior samples from ``model`` (a
       :class:`medloss.networks.ProbabilisticUNet` or anything with the same ``forward`` signature and output);
    3. ``loss_b = D(samples_b, raters_b) + kl_weight * KL(q(z | x_b, y_{r_b}) || p(z | x_b))``

    and reduces ``loss_b`` over the batch. D is the Sinkhorn or energy distance (or a custom set distance), or,
    with ``distance="base"``, the ProbUNet baseline: ``segmentation_loss(one posterior sample, rater r_b)``.

    Correspondence with the original code (https://github.com/soumickmj/PULASki): it draws one rater for the whole batch
    (``same_rater_for_batch=True``), uses ``kl_weight=1``, averages D over the batch but *sums* the KL over the batch;
    its total equals this loss with ``reduction="mean"`` and ``kl_weight=B``. Its D is a sum over voxels (1e2-1e4),
    which makes its KL term negligible; ``per_voxel=True`` puts D on a per-voxel scale where ``kl_weight`` matters.

    Random numbers: rater indices come from ``generator`` (a CPU ``torch.Generator``; if None and ``seed`` is
    given, a private generator seeded with ``seed``; if both are None, torch's global RNG). The latent noise is
    drawn by the model; ``model_generator`` is passed to it as ``generator=`` (None = global RNG).

    Args:
        include_background: if False, channel 0 is dropped before the distance (multi-channel only).
        to_onehot_y: raters are ``(B, R, 1, *spatial)`` label maps; they are one-hot encoded (the posterior then
            sees the one-hot mask).
        sigmoid: apply a sigmoid to the model's samples. None (default) = True unless ``softmax`` or
            ``other_act`` is given, since the ProbabilisticUNet outputs logits; pass False for probabilities.
        softmax: apply a softmax over channels instead (multi-class).
        other_act: any other activation.
        distance: ``"energy"`` (PULASki's default "Hausdorff"), ``"sinkhorn"``, ``"base"`` (needs
            ``segmentation_loss``) or a callable ``(probabilities (B, N, C, ...), raters (B, R, C, ...)) -> (B,)``.
        kl_weight: weight of the KL term (PULASki 1.0).
        num_samples: number N of posterior samples; None = R (PULASki). Ignored for ``"base"`` (one sample).
        blur: Sinkhorn blur (``eps = blur^2``).
        scaling: Sinkhorn annealing ratio.
        per_voxel: normalise squared distances by V (see the distance classes).
        segmentation_loss: for ``distance="base"`` only: a loss ``(input, target) -> scalar, (B,) or (B, C, 1,
            ...)`` (MONAI's ``reduction="none"`` shape, averaged per sample) applied to the probabilities of one
            posterior sample and the conditioning rater's mask, e.g. medloss's ``FocalTverskyLoss`` (the PULASki
            baseline). Configure it without its own activation.
        same_rater_for_batch: draw one rater index for the whole batch (PULASki) instead of one per item.
        generator: CPU ``torch.Generator`` for the rater draw.
        seed: seed for a private rater generator (used when ``generator`` is None).
        model_generator: generator passed to the model for the latent noise (must live on the model's device).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``) over the per-item losses.

    Raises:
        ValueError: unknown ``distance``, ``"base"`` without ``segmentation_loss`` (or the reverse), ``kl_weight``
            not finite and ``>= 0``, ``num_samples`` not an integer ``>= 1``, bad ``blur``/``scaling`` (see
            :class:`SinkhornDistanceLoss`, checked for every distance), a switch that is not a bool, a ``seed``
            that is not an integer ``>= 0``, generators that are not ``torch.Generator``.

    Example:
        >>> import torch
        >>> from medloss.networks import ProbabilisticUNet
        >>> net = ProbabilisticUNet(2, 1, 1, channels=(4, 8), strides=(2,), latent_dim=2)
        >>> image, raters = torch.rand(2, 1, 16, 16), (torch.rand(2, 3, 1, 16, 16) > 0.5).float()
        >>> loss = PULASkiLoss(distance="energy", seed=0)
        >>> loss(net, image, raters).backward()
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: Optional[bool] = None,
        softmax: bool = False,
        other_act: Optional[Callable] = None,
        distance: Union[str, Callable] = "energy",
        kl_weight: float = 1.0,
        num_samples: Optional[int] = None,
        blur: float = 0.05,
        scaling: float = 0.5,
        per_voxel: bool = False,
        segmentation_loss: Optional[Callable] = None,
        same_rater_for_batch: bool = False,
        generator: Optional[torch.Generator] = None,
        seed: Optional[int] = None,
        model_generator: Optional[torch.Generator] = None,
        reduction: Union[LossReduction, str] = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=check_reduction(reduction))
        if sigmoid is None:  # the ProbabilisticUNet outputs logits: sigmoid unless another activation is chosen
            sigmoid = not softmax and other_act is None
        check_activation_args(sigmoid, softmax, other_act)
        check_bools(
            include_background=include_background,
            to_onehot_y=to_onehot_y,
            per_voxel=per_voxel,
            same_rater_for_batch=same_rater_for_batch,
        )
        kl_weight = check_number("kl_weight", kl_weight, low=0)
        num_samples = check_number("num_samples", num_samples, low=1, integer=True, allow_none=True)
        # checked whatever the distance, so that a configuration does not hide a bad value until it is switched
        blur, scaling = check_sinkhorn_options(blur, scaling)
        seed = check_number("seed", seed, low=0, integer=True, allow_none=True)
        for name, gen in (("generator", generator), ("model_generator", model_generator)):
            if gen is not None and not isinstance(gen, torch.Generator):
                raise ValueError(f"{name} must be None or a torch.Generator, got {type(gen).__name__}.")
        if segmentation_loss is not None and not callable(segmentation_loss):
            raise ValueError(f"segmentation_loss must be None or callable, got {type(segmentation_loss).__name__}.")
        self.include_background = include_background
        self.to_onehot_y = to_onehot_y
        self.sigmoid, self.softmax, self.other_act = sigmoid, softmax, other_act
        self.kl_weight = float(kl_weight)
        self.num_samples = None if num_samples is None else int(num_samples)
        self.same_rater_for_batch = same_rater_for_batch
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        self.generator = generator
        self.model_generator = model_generator

        self.segmentation_loss = segmentation_loss
        self.distance_name = distance if isinstance(distance, str) else "custom"
        set_args = dict(include_background=include_background, per_voxel=per_voxel, reduction="none")
        if distance == "base":
            if segmentation_loss is None:
                raise ValueError('distance="base" needs a segmentation_loss (e.g. FocalTverskyLoss()).')
            self.distance = None
        else:
            if segmentation_loss is not None:
                raise ValueError(f'segmentation_loss is only used with distance="base", got distance={distance!r}.')
            if distance == "energy":
                self.distance = EnergyDistanceLoss(**set_args)
            elif distance == "sinkhorn":
                self.distance = SinkhornDistanceLoss(blur=blur, scaling=scaling, **set_args)
            elif callable(distance) and not isinstance(distance, str):
                self.distance = distance
            else:
                raise ValueError(
                    f'distance must be "energy", "sinkhorn", "base" or a callable, got {distance!r}.'
                )

    def _draw_raters(self, batch: int, num_raters: int, device: torch.device) -> torch.Tensor:
        size = (1,) if self.same_rater_for_batch else (batch,)
        idx = torch.randint(num_raters, size, generator=self.generator)
        return idx.expand(batch).to(device)

    @staticmethod
    def _check_image(model: nn.Module, image: torch.Tensor, raters: torch.Tensor) -> torch.Tensor:
        """Checks of the image; a floating dtype other than the model's is cast to the model's."""
        if not isinstance(image, torch.Tensor):
            raise ValueError(f"image must be a torch.Tensor, got {type(image).__name__}.")
        if image.ndim >= 1 and image.shape[0] != raters.shape[0]:
            raise ValueError(f"raters {tuple(raters.shape)} and image {tuple(image.shape)} differ in batch size.")
        if image.ndim != raters.ndim - 1 or image.shape[2:] != raters.shape[3:]:
            raise ValueError(
                f"image must have shape (B, C_in, *spatial) matching raters (B, R, C, *spatial) = "
                f"{tuple(raters.shape)}, got {tuple(image.shape)}."
            )
        if not image.is_floating_point():
            raise ValueError(
                f"image must be a floating point tensor of intensities, got dtype {image.dtype}; convert it with "
                "image.float()."
            )
        check_finite(image, "image")
        # a network's convolutions need the input in their weights' dtype (MONAI networks do not cast): float16 or
        # bfloat16 images are cast to it; mixed precision is torch.autocast's job, which casts inside the layers
        params = model.parameters() if isinstance(model, nn.Module) else ()  # any callable with the interface works
        dtype = next((p.dtype for p in params if p.is_floating_point()), None)
        return image if dtype is None or image.dtype == dtype else image.to(dtype)

    def forward(self, model: nn.Module, image: torch.Tensor, raters: torch.Tensor) -> torch.Tensor:
        """
        Args:
            model: probabilistic segmentation model; ``model(image, rater=(B, C, *spatial), num_samples=N,
                generator=...)`` must return an object with ``samples`` ``(B, N, C, *spatial)`` and ``kl``
                ``(B,)`` (see :class:`medloss.networks.ProbabilisticUNet`).
            image: ``(B, C_in, H, W[, D])`` floating point intensities; a dtype other than that of the model's
                parameters (e.g. float16) is cast to it (use ``torch.autocast`` for mixed precision).
            raters: ``(B, R, C, H, W[, D])`` binary masks (``(B, R, 1, ...)`` label maps with ``to_onehot_y``).

        Returns:
            scalar, or ``(B,)`` with ``reduction="none"``.

        Raises:
            ValueError: raters not ``(B, R, C, *spatial)`` or without a rater, an image that is not a floating
                point ``(B, C_in, *spatial)`` tensor matching the raters, NaN/Inf in image or raters, rater masks
                that are not binary.
        """
        if not isinstance(raters, torch.Tensor) or raters.ndim not in (5, 6):
            shape = tuple(raters.shape) if isinstance(raters, torch.Tensor) else type(raters).__name__
            raise ValueError(f"raters must have shape (B, R, C, H, W[, D]), got {shape}.")
        if raters.shape[1] == 0:
            raise ValueError(f"need at least one rater mask (R >= 1), got raters of shape {tuple(raters.shape)}.")
        image = self._check_image(model, image, raters)
        check_finite(raters, "raters")
        bsz, n_raters = raters.shape[:2]
        if self.to_onehot_y:
            n_ch = getattr(model, "out_channels", None)
            if n_ch is None:
                raise ValueError("to_onehot_y needs model.out_channels to know the number of classes.")
            if raters.shape[2] != 1:
                raise ValueError(f"to_onehot_y expects raters of shape (B, R, 1, ...), got {tuple(raters.shape)}.")
            if n_ch > 1:
                flat = raters.reshape((bsz * n_raters,) + tuple(raters.shape[2:]))
                raters = one_hot(flat, n_ch).reshape((bsz, n_raters, n_ch) + tuple(raters.shape[3:]))
        check_binary(raters, "raters (rater masks)")
        raters = raters.to(device=image.device, dtype=image.dtype)

        idx = self._draw_raters(bsz, n_raters, raters.device)
        condition = raters[torch.arange(bsz, device=raters.device), idx]
        base = self.distance is None
        n = 1 if base else (self.num_samples or n_raters)
        out = model(image, rater=condition, num_samples=n, generator=self.model_generator)
        samples, kl = out.samples, out.kl
        if samples.is_floating_point() and samples.dtype not in (torch.float32, torch.float64):
            samples = samples.float()  # activations and distances in fp32 under AMP
        if kl is None:
            raise ValueError("the model returned no KL term; it must be called with a rater (posterior) sample.")
        if base:
            probs = activate_samples(samples, self.sigmoid, self.softmax, self.other_act)[:, 0]
            target = condition
            if not self.include_background and probs.shape[1] > 1:
                probs, target = probs[:, 1:], target[:, 1:]
            seg = self.segmentation_loss(probs, target)
            if seg.ndim > 1 and seg.shape[0] == bsz:  # MONAI's per-sample shape (B, C, 1, ...): mean per sample
                seg = seg.reshape(bsz, -1).mean(1)
        else:
            # the activation is applied here, so the distance (built without one) always sees probabilities
            seg = self.distance(activate_samples(samples, self.sigmoid, self.softmax, self.other_act), raters)
            if seg.shape != (bsz,):
                raise ValueError(f"the distance must return per-item values of shape ({bsz},), got {tuple(seg.shape)}.")
        loss = seg + self.kl_weight * kl.to(seg.dtype)
        return reduce(loss, self.reduction)
