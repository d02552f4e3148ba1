"""Probabilistic U-Net (Kohl et al. 2018) with a MONAI U-Net backbone and end-of-network latent injection.

A U-Net computes features once; a low-dimensional diagonal Gaussian latent z (from a prior net that sees the
image, or at training time a posterior net that also sees one rater's mask) is broadcast over the image and
injected before a stack of 1x1 convolutions. Each sample only re-runs that cheap head, so drawing N samples
costs one backbone pass plus N head passes (the original PULASki code re-runs the whole U-Net per sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer
from monai.networks.nets import UNet
from torch.distributions import Independent, Normal, kl_divergence

__all__ = ["ProbabilisticUNet", "ProbabilisticUNetOutput"]


@dataclass
class ProbabilisticUNetOutput:
    """What :meth:`ProbabilisticUNet.forward` returns.

    Attributes:
        samples: ``(B, N, out_channels, *spatial)`` logits, one map per latent sample.
        prior: ``p(z | x)``, an ``Independent(Normal)`` with batch shape ``(B,)`` and event shape ``(latent_dim,)``.
        posterior: ``q(z | x, y)`` (None when no rater mask was given: the samples then come from the prior).
        kl: ``(B,)`` ``KL(posterior || prior)`` summed over the latent dims (None without a rater mask).
    """

    samples: torch.Tensor
    prior: Independent
    posterior: Optional[Independent] = None
    kl: Optional[torch.Tensor] = None


class GaussianEncoder(nn.Module):
    """Strided conv encoder -> global average pool -> mean and log-std of a diagonal Gaussian."""

    def __init__(self, spatial_dims, in_channels, channels, strides, latent_dim, act, norm, dropout) -> None:
        super().__init__()
        layers = []
        c_in = in_channels
        for c, s in zip(channels, (1,) + tuple(strides)):
            layers.append(
                Convolution(spatial_dims, c_in, c, strides=s, kernel_size=3, act=act, norm=norm, dropout=dropout)
            )
            c_in = c
        self.features = nn.Sequential(*layers)
        self.to_params = nn.Linear(c_in, 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> Independent:
        params = self.to_params(self.features(x).flatten(2).mean(-1))  # global average pool
        loc, log_scale = params[:, : self.latent_dim], params[:, self.latent_dim :]
        return Independent(Normal(loc, torch.exp(log_scale)), 1)


class ProbabilisticUNet(nn.Module):
    """Probabilistic U-Net for 2D/3D segmentation with several plausible outputs per image.

    Kohl et al., "A Probabilistic U-Net for Segmentation of Ambiguous Images", NeurIPS 2018,
    https://arxiv.org/abs/1806.05034. Used by PULASki (Chatterjee et al., Medical Image Analysis 2025,
    https://arxiv.org/abs/2312.15686) with a statistical-distance loss, see :class:`medloss.losses.PULASkiLoss`.

    Structure: a MONAI :class:`~monai.networks.nets.UNet` (``channels``, ``strides``, ``num_res_units``, ``act``,
    ``norm``, ``dropout``) maps the image to ``feature_channels`` linear feature maps, computed once per call.
    A prior encoder (image) and a posterior encoder (image concatenated with a rater mask) give
    ``N(mu, diag(sigma^2))`` over a ``latent_dim``-dimensional z (strided convs, global average pool, linear
    layer). The head is ``head_layers`` 1x1 convolutions on ``[features, tile(z)]``; its first layer is applied
    as ``W_f * features + W_z z`` (the same linear map as convolving the concatenation), so the feature half is
    computed once and only ``W_z z`` and the following layers run per sample.

    Use: training with :class:`medloss.losses.PULASkiLoss` (``loss(net, image, raters)``); inference with
    :meth:`sample` (N prior samples) or :meth:`mean_prediction` (z at the prior mean; a plain ``(B, C, ...)``
    tensor, so it also works with MONAI's ``sliding_window_inference``). All outputs are logits.

    Differences to PULASki's network ("ProbUNetV2", https://github.com/soumickmj/PULASki): the backbone is MONAI's U-Net
    (strided-conv down, transposed-conv up) instead of a depth-5 average-pool U-Net with 24 base features, and the
    encoders use ``norm`` at every level (PULASki only in the first two). The latent injection at the end, the diagonal
    Gaussian latent and the 1x1 head (3 layers) follow PULASki; the output is logits instead of a sigmoid.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        out_channels: output channels (logits); rater masks must have this many channels (binary: 1).
        channels: U-Net channels per level (also the encoders' channels unless ``encoder_channels``).
        strides: U-Net strides between levels (``len(channels) - 1`` of them); spatial sizes must be divisible
            by their product.
        latent_dim: dimension of z (Kohl: 6; PULASki: 3).
        feature_channels: channels of the backbone output fed to the head (default ``channels[0]``).
        head_layers: number of 1x1 convolutions in the head (>= 1; PULASki 3).
        encoder_channels: channels of the prior/posterior encoders (default ``channels``; strides as the U-Net).
        num_res_units: residual units per U-Net level.
        act: activation (MONAI name or ``(name, kwargs)``), used everywhere (PULASki: LeakyReLU).
        norm: normalisation of the U-Net and the encoders (PULASki: instance norm).
        dropout: dropout rate of the U-Net and encoders.

    Raises:
        ValueError: bad ``spatial_dims``, channel counts, ``latent_dim < 1``, ``head_layers < 1``, or strides that
            do not match the channels.

    Example:
        >>> import torch
        >>> net = ProbabilisticUNet(2, 1, 1, channels=(4, 8), strides=(2,), latent_dim=2)
        >>> image = torch.rand(2, 1, 16, 16)
        >>> net.sample(image, num_samples=3).shape  # (B, N, out_channels, *spatial) logits
        torch.Size([2, 3, 1, 16, 16])
        >>> net.mean_prediction(image).shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int] = (2, 2, 2),
        latent_dim: int = 6,
        feature_channels: Optional[int] = None,
        head_layers: int = 3,
        encoder_channels: Optional[Sequence[int]] = None,
        num_res_units: int = 0,
        act: Union[Tuple, str] = ("LEAKYRELU", {"negative_slope": 0.01}),
        norm: Union[Tuple, str] = "INSTANCE",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}.")
        if len(channels) < 2 or len(strides) != len(channels) - 1:
            raise ValueError(
                f"need len(strides) == len(channels) - 1 >= 1, got channels={tuple(channels)}, "
                f"strides={tuple(strides)}."
            )
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}.")
        if head_layers < 1:
            raise ValueError(f"head_layers must be >= 1, got {head_layers}.")
        encoder_channels = tuple(channels if encoder_channels is None else encoder_channels)
        if len(encoder_channels) != len(channels):
            raise ValueError(
                f"encoder_channels needs {len(channels)} entries (one per level), got {encoder_channels}."
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.latent_dim = latent_dim
        self.strides = tuple(strides)
        self.feature_channels = int(feature_channels or channels[0])

        self.backbone = UNet(
            spatial_dims,
            in_channels,
            self.feature_channels,
            channels,
            strides,
            num_res_units=num_res_units,
            act=act,
            norm=norm,
            dropout=dropout,
        )
        enc_args = (encoder_channels, strides, latent_dim, act, norm, dropout)
        self.prior_net = GaussianEncoder(spatial_dims, in_channels, *enc_args)
        self.posterior_net = GaussianEncoder(spatial_dims, in_channels + out_channels, *enc_args)

        conv = Conv[Conv.CONV, spatial_dims]
        hidden = self.feature_channels
        first_out = out_channels if head_layers == 1 else hidden
        self.head_features = conv(self.feature_channels, first_out, kernel_size=1)
        self.head_latent = nn.Linear(latent_dim, first_out, bias=False)
        rest = []
        for i in range(1, head_layers):
            rest.append(get_act_layer(act))
            rest.append(conv(hidden, out_channels if i == head_layers - 1 else hidden, kernel_size=1))
        self.head_rest = nn.Sequential(*rest)

    # ------------------------------------------------------------------------------------------------------ checks
    def _check_image(self, image: torch.Tensor) -> None:
        if not isinstance(image, torch.Tensor) or image.ndim != self.spatial_dims + 2:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(
                f"image must have shape (B, {self.in_channels}, *spatial) with {self.spatial_dims} spatial dims, "
                f"got {shape}."
            )
        if image.shape[1] != self.in_channels:
            raise ValueError(f"image must have {self.in_channels} channel(s), got shape {tuple(image.shape)}.")
        if image.numel() == 0:
            raise ValueError(f"image is empty (shape {tuple(image.shape)}).")
        factor = int(np.prod(self.strides))
        if any(s % factor for s in image.shape[2:]):
            raise ValueError(
                f"spatial size {tuple(image.shape[2:])} must be divisible by the product of strides ({factor})."
            )

    def _check_rater(self, image: torch.Tensor, rater: torch.Tensor) -> None:
        expected = (image.shape[0], self.out_channels) + tuple(image.shape[2:])
        if not isinstance(rater, torch.Tensor) or tuple(rater.shape) != expected:
            shape = tuple(rater.shape) if isinstance(rater, torch.Tensor) else type(rater).__name__
            raise ValueError(f"rater mask must have shape {expected} (B, out_channels, *spatial), got {shape}.")

    # -------------------------------------------------------------------------------------------------- building blocks
    def features(self, image: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(B, feature_channels, *spatial)`` (before the latent injection)."""
        return self.backbone(image)

    def head(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, N, out_channels, *spatial)`` for features ``(B, F, *spatial)`` and latents ``(B, N, L)``."""
        b, n = z.shape[:2]
        spatial = tuple(features.shape[2:])
        shift = self.head_latent(z).reshape((b, n, -1) + (1,) * len(spatial))
        h = (self.head_features(features).unsqueeze(1) + shift).reshape((b * n, -1) + spatial)
        out = self.head_rest(h)
        return out.reshape((b, n) + tuple(out.shape[1:]))

    @staticmethod
    def rsample(dist: Independent, num_samples: int, generator: Optional[torch.Generator]) -> torch.Tensor:
        """``(B, N, L)`` reparameterised samples; the noise comes from ``generator`` (None: global RNG)."""
        loc, scale = dist.base_dist.loc, dist.base_dist.scale
        shape = (loc.shape[0], num_samples, loc.shape[1])
        if generator is None:
            noise = torch.randn(shape, dtype=loc.dtype, device=loc.device)
        else:
            noise = torch.randn(shape, generator=generator, dtype=loc.dtype, device=generator.device).to(loc.device)
        return loc.unsqueeze(1) + scale.unsqueeze(1) * noise

    # ------------------------------------------------------------------------------------------------------- API
    def forward(
        self,
        image: torch.Tensor,
        rater: Optional[torch.Tensor] = None,
        num_samples: int = 1,
        generator: Optional[torch.Generator] = None,
    ) -> ProbabilisticUNetOutput:
        """Draw ``num_samples`` segmentations; from the posterior given ``rater`` (training), else from the prior.

        Args:
            image: ``(B, in_channels, H, W[, D])``.
            rater: optional ``(B, out_channels, H, W[, D])`` mask the posterior is conditioned on.
            num_samples: N >= 1.
            generator: ``torch.Generator`` for the latent noise (None: torch's global RNG).

        Returns:
            :class:`ProbabilisticUNetOutput` with ``samples`` ``(B, N, out_channels, *spatial)`` logits.
        """
        self._check_image(image)
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        prior = self.prior_net(image)
        posterior = kl = None
        if rater is not None:
            self._check_rater(image, rater)
            posterior = self.posterior_net(torch.cat([image, rater.to(image.dtype)], dim=1))
            kl = kl_divergence(posterior, prior)
        z = self.rsample(posterior if posterior is not None else prior, int(num_samples), generator)
        return ProbabilisticUNetOutput(self.head(self.features(image), z), prior, posterior, kl)

    def sample(
        self, image: torch.Tensor, num_samples: int = 1, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """``(B, N, out_channels, *spatial)`` logits from N prior samples (inference)."""
        return self.forward(image, None, num_samples, generator).samples

    def mean_prediction(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, out_channels, *spatial)`` logits at the prior mean ``z = mu(x)`` (a single "most likely" output)."""
        self._check_image(image)
        z = self.prior_net(image).base_dist.loc.unsqueeze(1)
        return self.head(self.features(image), z)[:, 0]
