"""A plain ``(B, C, ...)`` view of a probabilistic network, for MONAI evaluators and sliding-window inference."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MeanPredictionNet"]


class MeanPredictionNet(nn.Module):
    """Wrap a probabilistic network so that ``forward(image)`` returns ``net.mean_prediction(image)``.

    MONAI's ``SupervisedEvaluator`` and ``sliding_window_inference`` need a module mapping ``(B, C_in, ...)`` to
    ``(B, C_out, ...)``; :class:`medloss.networks.ProbabilisticUNet` returns samples and distributions instead. The
    wrapped network's parameters are shared (``state_dict`` keys get a ``net.`` prefix, so load checkpoints into
    the wrapped network).

    Args:
        net: a module with a ``mean_prediction(image)`` method.

    Raises:
        ValueError: ``net`` has no ``mean_prediction`` method.

    Example:
        >>> import torch
        >>> from medloss.networks import ProbabilisticUNet
        >>> net = MeanPredictionNet(ProbabilisticUNet(2, 1, 1, channels=(4, 8), strides=(2,), latent_dim=2))
        >>> net(torch.zeros(1, 1, 8, 8)).shape
        torch.Size([1, 1, 8, 8])
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(net, "mean_prediction", None)):
            raise ValueError(f"{type(net).__name__} has no mean_prediction(image) method.")
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Args: ``image`` ``(B, C_in, *spatial)``. Returns: ``(B, C_out, *spatial)``."""
        return self.net.mean_prediction(image)
