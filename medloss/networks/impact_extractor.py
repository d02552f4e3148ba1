"""Loading and wrapping the frozen feature extractors of the IMPACT losses (local files only).

Boussot, V. et al. (2025) "IMPACT: A Generic Semantic Loss for Multimodal Medical Image Registration",
https://arxiv.org/abs/2503.24121; code and extractors: https://github.com/vboussot/ImpactLoss,
https://huggingface.co/VBoussot/impact-torchscript-models.

Offline by design: this module never downloads anything and holds no network code. A model is a local TorchScript
file, a bare name looked up in local folders only (:func:`resolve_model_path`), or an ``nn.Module``;
:class:`IMPACTExtractor` freezes it and moves it to the input's device. The losses are in
:mod:`medloss.losses.impact`.

Extractor contract (what a TorchScript file must satisfy): ``forward(image, nb_layers, stats, direction) ->
List[Tensor]``, later arguments optional (the loss reads the forward schema and passes 1, 2, 3 or 4 arguments):

- ``image``: ``(N, C_in, H, W)`` (2D model) or ``(N, C_in, D, H, W)`` (3D model) in **raw intensities** (HU, native
  MR values); the model normalises itself.
- ``nb_layers``: 1-element int64 tensor; the model returns its first ``nb_layers`` feature maps, shallow to deep. The
  loss passes ``len(weights)``.
- ``stats``: flat ``[min, max, mean, std]`` (unbiased std) of the **whole image**; a model uses it when it has 4
  elements and otherwise falls back to the statistics of the tensor it received (use ``numel()``, not shape ops).
  The losses never hand std 0: a constant image gets std 1 (:func:`medloss.losses.impact.guard_stats`); a model's
  own fallback must guard its std the same way (a constant tensor, or a single voxel, has std 0 or NaN).
- ``direction``: 3x3 int16 direction matrix for 3D models, 2x2 identity for 2D ones.
- returns a list (or tuple) of ``(N, C_l, *spatial_l)`` maps; every weighted layer must be differentiable.

Bring your own extractor (recipe)::

    from typing import List
    import torch

    class MyExtractor(torch.nn.Module):
        def __init__(self, backbone_stages):          # e.g. the encoder stages of a trained 3D U-Net
            super().__init__()
            self.stages = torch.nn.ModuleList(backbone_stages)

        def forward(self, x: torch.Tensor, nb_layers: torch.Tensor = torch.tensor([1]),
                    stats: torch.Tensor = torch.tensor([]),
                    direction: torch.Tensor = torch.tensor([])) -> List[torch.Tensor]:
            n = int(nb_layers.flatten()[0].item())
            if stats.numel() == 4:                      # whole-image statistics: tiles normalised alike
                x = (x - stats[2]) / stats[3]           # std > 0: the loss hands 1 for a constant image
            else:                                       # own statistics: guard a constant tensor (std 0 or NaN)
                std = x.std() if x.numel() > 1 else torch.zeros_like(x.mean())
                x = (x - x.mean()) / torch.where(std > 1e-6 * x.abs().max(), std, torch.ones_like(std))
            out: List[torch.Tensor] = []
            for i, stage in enumerate(self.stages):     # TorchScript unrolls this loop: no break
                if i < n:
                    x = stage(x)
                    out.append(x)
            return out

    torch.jit.script(MyExtractor(stages).eval()).save("my_extractor.pt")
    loss = medloss.losses.IMPACTLoss("my_extractor.pt", weights=[0.0, 1.0], spatial_dims=3)

A plain ``forward(x) -> List[Tensor]`` (e.g. a traced network, which ignores ``nb_layers``) works too; it must then
return exactly ``len(weights)`` maps.
"""

from __future__ import annotations

import contextlib
import glob
import inspect
import os
import warnings
from pathlib import Path
from typing import Iterator, List, Optional, Union

import torch

__all__ = ["IMPACTExtractor", "resolve_model_path", "MODEL_DIR_ENV", "HF_MODELS_REPO"]

#: Environment variable naming a folder of extractors; a bare model name such as ``"TS/M730.pt"`` is looked up there.
MODEL_DIR_ENV = "MEDLOSS_IMPACT_MODEL_DIR"
#: The Hugging Face repository of the published IMPACT extractors (only used in messages; nothing is downloaded).
HF_MODELS_REPO = "VBoussot/impact-torchscript-models"


def _candidate_paths(name: str) -> List[Path]:
    """Where a model name is looked up, in order: as given, ``$MEDLOSS_IMPACT_MODEL_DIR/name``, the local
    Hugging Face cache snapshots of ``VBoussot/impact-torchscript-models`` (read only, never fetched)."""
    out = [Path(name).expanduser()]
    env = os.environ.get(MODEL_DIR_ENV)
    out.append(Path(env).expanduser() / name if env else Path(f"${MODEL_DIR_ENV} (not set)"))
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface")), "hub"
    )
    repo_dir = Path(hub) / ("models--" + HF_MODELS_REPO.replace("/", "--")) / "snapshots"
    out.append(repo_dir / "*" / name)
    return out


def resolve_model_path(name: Union[str, os.PathLike]) -> Path:
    """Find a local extractor file: ``name`` as given, in ``$MEDLOSS_IMPACT_MODEL_DIR``, or in the local Hugging Face
    cache of ``VBoussot/impact-torchscript-models`` (read only, never fetched).

    Args:
        name: a path or a bare model name such as ``"TS/M730.pt"``.

    Returns:
        The path of the file.

    Raises:
        FileNotFoundError: naming every place searched and how to get the file.
    """
    name = os.fspath(name)
    searched = []
    for cand in _candidate_paths(name):
        searched.append(str(cand))
        if "*" in cand.name or "*" in str(cand.parent):
            hits = sorted(glob.glob(str(cand)))
            if hits:
                return Path(hits[-1])
        elif cand.is_file():
            return cand
    where = "\n  ".join(searched)
    raise FileNotFoundError(
        f"IMPACT extractor {name!r} not found (medloss never downloads models). Searched:\n  {where}\n"
        f"Fix: pass the path of a local TorchScript file, or set {MODEL_DIR_ENV} to a folder holding it, or download "
        f"it on a connected machine, e.g. `huggingface-cli download {HF_MODELS_REPO} {name}` (Hugging Face repo "
        f"{HF_MODELS_REPO}), and copy it here. Any TorchScript file following the IMPACT model contract works "
        "(see the medloss.networks.impact_extractor module docstring for an export recipe)."
    )


def _jit_load(path: Path, device: torch.device) -> torch.nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in recent torch
            return torch.jit.load(str(path), map_location=device)
    except Exception as err:  # noqa: BLE001 - torch raises several types for a non-TorchScript file
        raise ValueError(
            f"{str(path)!r} is not a loadable TorchScript archive ({type(err).__name__}: {str(err).splitlines()[0]}). "
            "Expected a file written by torch.jit.save(torch.jit.script(model)); for a state_dict or a pickled "
            "module, build the nn.Module yourself and pass it as `model`."
        ) from err


def _count_forward_args(module: torch.nn.Module) -> int:
    """How many of (image, nb_layers, stats, direction) the extractor takes, read from its forward schema."""
    schema = getattr(module.forward, "schema", None)
    if schema is not None:
        n = len([a for a in schema.arguments if a.name != "self"])
    else:
        params = inspect.signature(module.forward).parameters.values()
        if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
            return 4
        n = len([p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                   inspect.Parameter.POSITIONAL_OR_KEYWORD)])
    if n < 1:
        raise ValueError("the IMPACT extractor's forward takes no image argument; expected forward(image, ...).")
    return min(n, 4)


@contextlib.contextmanager
def _no_texpr_fuser() -> Iterator[None]:
    # the TensorExpr fuser can abort on shape ops of IMPACT models run repeatedly under autograd (konfai does the same)
    getter = getattr(torch._C, "_jit_texpr_fuser_enabled", None)
    setter = getattr(torch._C, "_jit_set_texpr_fuser_enabled", None)
    if getter is None or setter is None:
        yield
        return
    previous = getter()
    setter(False)
    try:
        yield
    finally:
        setter(previous)


class IMPACTExtractor(torch.nn.Module):
    """A frozen feature extractor for the IMPACT losses, following the contract in the module docstring.

    Its parameters get ``requires_grad=False`` and it stays in eval mode whatever the parent's mode; it is moved
    lazily to the input's device (a file is re-mapped there: traced constants do not follow ``.to()``). The losses
    build one from their ``model`` argument, or take one to share an extractor between them.

    Args:
        model: local TorchScript file (a path, or a bare name found by :func:`resolve_model_path`) or an
            ``nn.Module`` (frozen in place).

    Raises:
        FileNotFoundError: the file cannot be found.
        ValueError: not a path or module, not a loadable TorchScript archive, or a forward without an image argument.

    Example:
        >>> import torch
        >>> extractor = IMPACTExtractor(torch.nn.Conv2d(1, 2, 3))
        >>> extractor.n_args, any(p.requires_grad for p in extractor.parameters())
        (1, False)
    """

    def __init__(self, model: Union[str, os.PathLike, torch.nn.Module]) -> None:
        super().__init__()
        if isinstance(model, torch.nn.Module):
            self.path: Optional[Path] = None
            net = model
        elif isinstance(model, (str, os.PathLike)):
            self.path = resolve_model_path(model)
            net = _jit_load(self.path, torch.device("cpu"))
        else:
            raise ValueError(
                f"model must be a path to a TorchScript file or a torch.nn.Module, got {type(model).__name__}."
            )
        self._mapped = torch.device("cpu")
        self.net = self._freeze(net)
        self.n_args = _count_forward_args(self.net)

    @staticmethod
    def _freeze(net: torch.nn.Module) -> torch.nn.Module:
        for p in net.parameters():  # a ScriptModule refuses requires_grad_(), its parameters do not
            p.requires_grad_(False)
        return net.eval()

    def train(self, mode: bool = True) -> "IMPACTExtractor":
        super().train(mode)
        self.net.eval()
        return self

    @property
    def dtype(self) -> Optional[torch.dtype]:
        for t in list(self.net.parameters()) + list(self.net.buffers()):
            if t.is_floating_point():
                return t.dtype
        return None

    def place(self, device: torch.device) -> None:
        tensors = list(self.net.parameters()) + list(self.net.buffers())
        moved = any(t.device != device for t in tensors)
        if self.path is not None and (device != self._mapped or moved):
            dtype = self.dtype
            net = _jit_load(self.path, device)
            self.net = self._freeze(net.to(dtype) if dtype is not None else net)
            self._mapped = device
        elif moved:
            self.net.to(device)

    def forward(self, image: torch.Tensor, nb_layers: torch.Tensor, stats: torch.Tensor,
                direction: torch.Tensor) -> List[torch.Tensor]:
        args = (image, nb_layers, stats, direction)[: self.n_args]
        with _no_texpr_fuser():
            out = self.net(*args)
        if not isinstance(out, (list, tuple)) or not all(isinstance(o, torch.Tensor) for o in out):
            raise ValueError(
                f"the IMPACT extractor must return a list of feature tensors, got {type(out).__name__}; "
                "wrap a single map as [features]."
            )
        return list(out)
