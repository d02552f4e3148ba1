"""Per-layer feature distances of the IMPACT losses, on ``(n, C, *spatial)`` feature maps, one value per item.

Boussot, V. et al. (2025) "IMPACT: A Generic Semantic Loss for Multimodal Medical Image Registration",
https://arxiv.org/abs/2503.24121. Two sign conventions: KonfAI's (https://github.com/vboussot/KonfAI, 0 at a
perfect match) and itk-impact's (https://github.com/vboussot/ImpactLoss, elastix ``ImpactLoss.h``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["feature_distance", "canonical_distance", "DISTANCES"]

#: Canonical names of the per-layer distances (matching is case-insensitive).
DISTANCES = ("L1", "L2", "Cosine", "L1Cosine", "Dice", "NCC", "LNCC", "Gram", "DotProduct")
_KONFAI_EPS = 1e-6  # added to the norm product (Cosine, L1Cosine) and to the NCC denominator, as konfai >= 1.8
_L1COSINE_LAMBDA = 0.1
_LNCC_VARIANCE_FLOOR = 1e-5


def _safe_div(num: torch.Tensor, den: torch.Tensor, eps: float) -> torch.Tensor:
    # eps == 0 (itk convention) divides exactly; the clamp only keeps 0/0 finite
    return num / (den + eps) if eps > 0 else num / den.clamp_min(torch.finfo(den.dtype).tiny)


def _cosine_map(f: torch.Tensor, m: torch.Tensor, eps: float) -> torch.Tensor:
    """Cosine of the channel vectors at every point, ``(n, 1, *spatial)``."""
    norms = f.norm(2, 1, keepdim=True) * m.norm(2, 1, keepdim=True)
    return _safe_div((f * m).sum(1, keepdim=True), norms, eps)


def _similarity(name: str, f: torch.Tensor, m: torch.Tensor, eps: float, kernel: int) -> torch.Tensor:
    if name == "Cosine":
        return _cosine_map(f, m, eps).flatten(1).mean(1)
    if name == "L1Cosine":
        return (_cosine_map(f, m, eps) * torch.exp(-_L1COSINE_LAMBDA * (f - m).abs())).flatten(1).mean(1)
    if name == "Dice":
        # soft Dice of the raw activations per point; a point with a zero sum counts as a match
        inter, union = (f * m).sum(1), (f + m).sum(1)
        empty = union == 0
        dice = torch.where(empty, torch.ones_like(union), 2 * inter / torch.where(empty, torch.ones_like(union), union))
        return dice.flatten(1).mean(1)
    if name == "DotProduct":
        return (f * m).sum(1).flatten(1).mean(1)
    if name == "NCC":
        # Pearson correlation of each channel over all points of the item (global, not local), mean over channels
        fc = f.flatten(2) - f.flatten(2).mean(2, keepdim=True)
        mc = m.flatten(2) - m.flatten(2).mean(2, keepdim=True)
        den = ((fc * fc).sum(2) * (mc * mc).sum(2)).sqrt()
        return _safe_div((fc * mc).sum(2), den, eps).mean(1)
    if name == "LNCC":
        # squared local correlation in a box window, per channel; the window is clipped at the border (mean over
        # the voxels inside), which also serves maps smaller than the window (deep layers)
        pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[f.dim() - 2]
        pad = [kernel // 2] * (2 * (f.dim() - 2))
        count = pool(F.pad(torch.ones_like(f[:1, :1]), pad), kernel, stride=1)

        def mean(t: torch.Tensor) -> torch.Tensor:
            return pool(F.pad(t, pad), kernel, stride=1) / count

        mf, mm = mean(f), mean(m)
        cov = mean(f * m) - mf * mm
        vf = (mean(f * f) - mf * mf).clamp_min(_LNCC_VARIANCE_FLOOR)
        vm = (mean(m * m) - mm * mm).clamp_min(_LNCC_VARIANCE_FLOOR)
        return (cov * cov / (vf * vm)).flatten(1).mean(1)
    raise AssertionError(name)  # pragma: no cover - names are validated in __init__


def _gram(f: torch.Tensor) -> torch.Tensor:
    x = f.flatten(2)
    return x @ x.transpose(1, 2) / (x.shape[1] * x.shape[2])


def feature_distance(
    name: str, f: torch.Tensor, m: torch.Tensor, convention: str = "konfai", kernel: int = 5
) -> torch.Tensor:
    """One IMPACT distance between feature maps ``f`` and ``m`` of shape ``(n, C, *spatial)``, one value per item.

    ``convention="konfai"`` (konfai >= 1.8): 0 at a perfect match; similarities are reported as ``1 - s`` with
    ``eps = 1e-6`` in the Cosine / L1Cosine / NCC denominators. ``convention="itk"`` (itk-impact / elastix
    ``ImpactLoss.h``): similarities are reported as ``-s`` with no eps (-1 at a perfect match for Cosine / NCC).
    L1, L2 (means over channels and points) and Gram (``sum |G(f) - G(m)|``, ``G = F F^T / (C N)``) are distances
    in both conventions. ``DotProduct`` (``-mean_points sum_c f m``) exists only in the itk convention; LNCC only in
    konfai (its itk value here is ``-mean cc^2``, a medloss extension).
    """
    if name == "L1":
        return (f - m).abs().flatten(1).mean(1)
    if name == "L2":
        return (f - m).pow(2).flatten(1).mean(1)
    if name == "Gram":
        return (_gram(f) - _gram(m)).abs().flatten(1).sum(1)
    eps = _KONFAI_EPS if convention == "konfai" else 0.0
    s = _similarity(name, f, m, eps, kernel)
    return 1.0 - s if convention == "konfai" else -s


def canonical_distance(name: str) -> str:
    """The canonical spelling of an IMPACT distance name (case, ``-`` and ``_`` ignored); ``ValueError`` if unknown."""
    if not isinstance(name, str):
        raise ValueError(f"distance must be a string, got {type(name).__name__}.")
    table = {d.lower(): d for d in DISTANCES}
    key = name.replace("-", "").replace("_", "").lower()
    if key not in table:
        raise ValueError(f"unknown IMPACT distance {name!r}; expected one of {', '.join(DISTANCES)}.")
    return table[key]

