"""nnU-Net v2 trainer for PULASki: nnU-Net's network as a probabilistic U-Net trained against several raters.

Chatterjee et al., "PULASki: Learning inter-rater variability using statistical distances to improve probabilistic
segmentation", Medical Image Analysis 2025, https://arxiv.org/abs/2312.15686; Kohl et al., "A Probabilistic U-Net
for Segmentation of Ambiguous Images", NeurIPS 2018, https://arxiv.org/abs/1806.05034;
:class:`medloss.losses.PULASkiLoss`.

Multi-rater dataset layout: medloss's one multi-rater layout (:mod:`medloss.data.layout`): a normal nnU-Net raw
dataset plus one map per rater and case in ``ratersTr/``, on the grid of the case's image, raters numbered from 0::

    DatasetXXX_Name/
        dataset.json
        imagesTr/<case>_0000.nii.gz
        labelsTr/<case>.nii.gz              reference segmentation (majority vote, or any one rater)
        ratersTr/<case>_rater0.nii.gz       rater 0
        ratersTr/<case>_rater1.nii.gz       rater 1
        ...                                 (raters 0..R-1; every case needs a map from every rater)

The reference in ``labelsTr`` is what nnU-Net plans from, what its final validation scores against and what the
auxiliary low-resolution deep-supervision heads are trained on; the PULASki term sees only the raters.

Preprocessing (after the usual ``nnUNetv2_plan_and_preprocess``): :func:`preprocess_raters` (the command
``medloss nnunet raters-preprocess -d DATASET -c CONFIGURATION``) runs nnU-Net's own preprocessor on every training
case with the reference and the R rater maps stacked as the channels of one segmentation, so they are transposed,
cropped and resampled exactly like the image, and writes them to a separate data folder under a new plans
configuration ``<configuration>_raters`` (``data_identifier`` ``<plans>_<configuration>_raters``; the standard
preprocessed data is left untouched)::

    from medloss.nnunet import preprocess_raters
    preprocess_raters(501, "3d_fullres")            # adds configuration "3d_fullres_raters"
    # nnUNetv2_train 501 3d_fullres_raters 0 -tr nnUNetTrainerMedlossPULASki

nnU-Net's data loader and batchgeneratorsv2 augmentation treat all segmentation channels alike, so every patch
carries the reference and the raters with identical crops, spatial augmentation and mirroring; foreground
oversampling uses the foreground of any rater. The trainer splits the target: channel 0 (reference) goes to
nnU-Net's loss and online Dice, channels 1..R (full resolution) to the PULASki term. On a plain configuration
(a one-channel target) the trainer runs with R = 1, the reference being the only rater.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from medloss.data import list_rater_files
from medloss.nnunet.base import add_epoch_variants, nnUNetTrainerMedloss, resolve_hyperparameters
from medloss.nnunet.loss_wiring import AddedTerm
from medloss.nnunet.preprocessing import (add_derived_configuration, load_plans_for_extra_channels, nnunet_folder,
                                         staged_configuration)

#: Why region-based labels are not supported.
REGIONS_NOTE = ("Rater maps are label maps, and nnU-Net's conversion of a segmentation to regions keeps only its "
                "first channel, which would drop the raters.")


# ----------------------------------------------------------------------------------------------------------------
# multi-rater preprocessing
# ----------------------------------------------------------------------------------------------------------------
def preprocess_raters(
    dataset: Any,
    configuration: str = "3d_fullres",
    plans_identifier: str = "nnUNetPlans",
    output_configuration: Optional[str] = None,
) -> str:
    """Preprocess the rater maps of a multi-rater dataset into a new plans configuration; returns its name.

    Needs the plans (``nnUNetv2_plan_and_preprocess`` or ``nnUNetv2_plan_experiment``) and the raw dataset. The new
    configuration ``output_configuration`` (default ``<configuration>_raters``) inherits ``configuration`` and gets
    its own ``data_identifier``; every training case is preprocessed by the configuration's preprocessor with the
    segmentation ``[reference, rater 0, ..., rater R-1]`` (``(1 + R, *spatial)``) and saved there. The plans entry
    records ``"medloss": {"num_raters": R}``, which the trainer checks. Its targets have ``1 + R`` channels: only
    :class:`nnUNetTrainerMedlossPULASki` can train on it (other trainers expect one channel).

    A transaction (:func:`medloss.nnunet.preprocessing.staged_configuration`): the plans, the raw dataset and every
    case's reference and rater files (present, readable, of the reference's shape, with labels of ``dataset.json``,
    the same number of raters for every case) are checked before the first case is written; the cases are written
    into a staging folder that replaces the output configuration's data folder, and the plans are updated, only
    when all were written. Running it again overwrites the earlier output; a failed run leaves the earlier output
    and the plans as they were.

    Args:
        dataset: dataset id or name (``501`` / ``"Dataset501_Name"``).
        configuration: the configuration whose preprocessing is reproduced (and inherited).
        plans_identifier: plans file name without ``.json``.
        output_configuration: name of the new configuration.

    Raises:
        ValueError: ``nnUNet_raw`` or ``nnUNet_preprocessed`` not set, an unknown dataset or configuration, no plans
            file, missing or misnamed rater files (see :func:`medloss.data.list_rater_files`), a reference or rater
            file that cannot be read, rater maps whose shape differs from the reference or the image or with labels
            unknown to ``dataset.json``, an output that cannot be written.
        NotImplementedError: region-based labels or an ignore label (see :class:`nnUNetTrainerMedlossPULASki`).
    """
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    name, plans_file, plans, dataset_json = load_plans_for_extra_channels(
        dataset, configuration, plans_identifier, "PULASki", REGIONS_NOTE)
    cases, raters = _training_cases_with_raters(name, dataset_json)
    num_raters = len(next(iter(raters.values())))

    output_configuration = output_configuration or f"{configuration}_raters"
    add_derived_configuration(plans, configuration, output_configuration, plans_identifier, num_raters=num_raters)
    plans_manager = PlansManager(plans)
    cm = plans_manager.get_configuration(output_configuration)
    labels = set(plans_manager.get_label_manager(dataset_json).all_labels)
    rw = plans_manager.image_reader_writer_class()
    # every segmentation file is read once before anything is written: a bad rater file of the last case must not
    # be found after the other cases were preprocessed
    shapes = {case: _check_segmentations(rw, [files["label"]] + raters[case], labels) for case, files in cases.items()}
    out_folder = os.path.join(os.path.dirname(plans_file), cm.data_identifier)
    preprocessor = cm.preprocessor_class(verbose=False)
    with staged_configuration(plans, plans_file, out_folder) as staging:
        for case, files in cases.items():
            data, properties = _read_segmentation_or_image(rw.read_images, files["images"])
            # images are read here only (they are large); nnU-Net's planning already read them with the references
            if data.shape[1:] != shapes[case]:
                raise ValueError(f"{files['label']}: shape {shapes[case]} differs from the image {data.shape[1:]} "
                                 f"of case {case!r}.")
            seg = np.concatenate([_read_segmentation_or_image(rw.read_seg, p)[0]
                                  for p in [files["label"]] + raters[case]], axis=0)
            data, seg, properties = preprocessor.run_case_npy(data, seg, properties, plans_manager, cm, dataset_json)
            data, seg = data.astype(np.float32, copy=False), seg.astype(np.int16, copy=False)
            patch = tuple(cm.patch_size)
            blocks, chunks = comp_blosc2_params(data.shape, patch, data.itemsize)
            blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, patch, seg.itemsize)
            nnUNetDatasetBlosc2.save_case(data, seg, properties, os.path.join(staging, case), chunks=chunks,
                                          blocks=blocks, chunks_seg=chunks_seg, blocks_seg=blocks_seg)
    return output_configuration


def _training_cases_with_raters(name: str, dataset_json: dict) -> Tuple[Dict[str, dict], Dict[str, List[str]]]:
    """nnU-Net's training cases of raw dataset ``name`` (``{case: {"images", "label"}}``) and their rater files."""
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    raw_folder = os.path.join(nnunet_folder("nnUNet_raw"), name)
    if not os.path.isfile(os.path.join(raw_folder, "dataset.json")):
        raise ValueError(f"the raw dataset {raw_folder} (nnUNet_raw) is missing or has no dataset.json.")
    cases = {str(case): files for case, files in get_filenames_of_train_images_and_targets(
        raw_folder, dataset_json).items()}
    if not cases:
        raise ValueError(f"the raw dataset {raw_folder} has no training cases.")
    for case, files in cases.items():
        for path in [*files["images"], files["label"]]:
            if not os.path.isfile(path):
                raise ValueError(f"case {case!r}: file {path} is missing.")
    raters = list_rater_files(raw_folder, "Tr", cases=list(cases), file_ending=dataset_json["file_ending"])
    return cases, raters


def _read_segmentation_or_image(read: Callable, path):
    """``read(path)`` of nnU-Net's reader-writer; an unreadable file is a ``ValueError`` naming it."""
    try:
        return read(path)
    except Exception as err:  # each image library (nibabel, SimpleITK, tifffile) raises its own errors
        name = path if isinstance(path, str) else ", ".join(map(str, path))
        raise ValueError(f"{name} cannot be read ({type(err).__name__}: {err}).") from None


def _check_segmentations(rw, paths: Sequence[str], labels: set) -> Tuple[int, ...]:
    """Read a case's reference and rater maps; refuse unreadable ones, other shapes, unknown labels.

    Returns:
        The spatial shape they share (nnU-Net's axis order).
    """
    shape = None
    for path in paths:
        seg = _read_segmentation_or_image(rw.read_seg, path)[0]
        if shape is None:
            shape = seg.shape[1:]
        elif seg.shape[1:] != shape:
            raise ValueError(f"{path}: shape {seg.shape[1:]} differs from the reference {paths[0]} ({shape}).")
        unknown = set(np.unique(seg).tolist()) - labels
        if unknown:
            unknown = sorted(int(v) if float(v).is_integer() else v for v in unknown)  # read_seg gives floats
            raise ValueError(f"{path}: labels {unknown} are not in dataset.json ({sorted(map(int, labels))}).")
    return tuple(shape)


# ----------------------------------------------------------------------------------------------------------------
# the network: nnU-Net's U-Net with a latent injected before the segmentation head
# ----------------------------------------------------------------------------------------------------------------
class ProbabilisticNnUNet(nn.Module):
    """An nnU-Net network turned into a probabilistic U-Net (Kohl et al. 2018) with end-of-network injection.

    A prior encoder (image) and a posterior encoder (image + one-hot rater mask) give a diagonal Gaussian over a
    ``latent_dim``-dimensional z. The full-resolution decoder features ``f`` (the input of nnU-Net's last 1x1
    segmentation layer, caught by a forward pre-hook) give the logits of latent sample ``z`` as::

        logits(f, z) = seg_layer(f) + head(act(W_f f + W_z z))        (head: head_layers - 1 1x1 convs, act between)

    so the feature part runs once and only the cheap head runs per sample. The last head layer starts at zero: the
    untrained wrapper predicts exactly like the plain nnU-Net network, and every parameter receives gradients (DDP).

    ``forward(image)`` returns what nnU-Net expects of its network: with deep supervision, the list of logits with
    the full-resolution entry replaced by the prediction of the prior mean; without, that single tensor. At
    inference (``eval()`` and ``prediction="samples"``) the output is instead the log of the mean softmax of
    ``num_prediction_samples`` prior samples, so that nnU-Net's own decoding turns
    it into the sample-averaged probabilities. With ``keep_features`` the last ``(image, features, prior)`` is kept
    in :attr:`cache` for the PULASki loss (set by the trainer).

    Args:
        network: nnU-Net's network (``PlainConvUNet`` or any network whose ``decoder.seg_layers[-1]`` is the last 1x1
            segmentation convolution).
        spatial_dims: 2 or 3.
        in_channels: image channels.
        out_channels: segmentation heads (logit channels).
        latent_dim: dimension of z (Kohl et al.: 6).
        head_layers: 1x1 convolutions of the latent head (>= 1).
        encoder_channels: channels of the prior/posterior encoder levels.
        encoder_strides: strides between the encoder levels (one fewer than ``encoder_channels``).
        prediction: ``"mean"`` (prior-mean latent) or ``"samples"`` (average of prior samples) at inference.
        num_prediction_samples: prior samples averaged with ``prediction="samples"``.

    Raises:
        ValueError: unknown ``prediction``, or ``latent_dim``, ``head_layers``, ``num_prediction_samples`` < 1.
    """

    def __init__(self, network: nn.Module, spatial_dims: int, in_channels: int, out_channels: int,
                 latent_dim: int = 6, head_layers: int = 3, encoder_channels: Sequence[int] = (16, 32, 64, 128),
                 encoder_strides: Sequence = (2, 2, 2), prediction: str = "mean", num_prediction_samples: int = 8):
        super().__init__()
        from monai.networks.layers.factories import Conv
        from monai.networks.layers.utils import get_act_layer

        from medloss.networks.probabilistic_unet import GaussianEncoder

        if prediction not in ("mean", "samples"):
            raise ValueError(f"prediction must be 'mean' or 'samples', got {prediction!r}.")
        if int(num_prediction_samples) < 1 or int(latent_dim) < 1 or int(head_layers) < 1:
            raise ValueError(f"num_prediction_samples, latent_dim and head_layers must be >= 1, got "
                             f"{num_prediction_samples}, {latent_dim}, {head_layers}.")
        self.net = network
        self.out_channels, self.latent_dim = int(out_channels), int(latent_dim)
        self.prediction, self.num_prediction_samples = prediction, int(num_prediction_samples)
        act = ("LEAKYRELU", {"negative_slope": 0.01})
        enc = (tuple(encoder_channels), tuple(encoder_strides), self.latent_dim, act, "INSTANCE", 0.0)
        self.prior_net = GaussianEncoder(spatial_dims, in_channels, *enc)
        self.posterior_net = GaussianEncoder(spatial_dims, in_channels + self.out_channels, *enc)
        seg_layer = self.net.decoder.seg_layers[-1]
        f = seg_layer.in_channels
        conv = Conv[Conv.CONV, spatial_dims]
        self.head_features = conv(f, f if head_layers > 1 else self.out_channels, kernel_size=1)
        self.head_latent = nn.Linear(self.latent_dim, self.head_features.out_channels, bias=False)
        rest: List[nn.Module] = []
        for i in range(1, int(head_layers)):
            rest += [get_act_layer(act), conv(f, self.out_channels if i == head_layers - 1 else f, kernel_size=1)]
        self.head_rest = nn.Sequential(*rest)
        last = rest[-1] if rest else self.head_features
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        if not rest:
            nn.init.zeros_(self.head_latent.weight)
        self.keep_features = False
        self.cache: Optional[Tuple[torch.Tensor, torch.Tensor, Any]] = None
        self._features: Optional[torch.Tensor] = None
        seg_layer.register_forward_pre_hook(self._catch_features)

    def _catch_features(self, module, inputs):
        self._features = inputs[0]

    @property
    def decoder(self):
        """nnU-Net's decoder (``set_deep_supervision_enabled`` switches ``decoder.deep_supervision``)."""
        return self.net.decoder

    def logits(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``(B, N, out_channels, *spatial)`` logits for features ``(B, F, *spatial)`` and latents ``(B, N, L)``."""
        b, n = z.shape[:2]
        spatial = tuple(features.shape[2:])
        seg_layer = self.net.decoder.seg_layers[-1]
        # the layer's own forward would fire the feature hook again
        base = seg_layer._conv_forward(features, seg_layer.weight, seg_layer.bias).unsqueeze(1)
        h = self.head_features(features).unsqueeze(1) + self.head_latent(z.to(features.dtype)).reshape(
            (b, n, -1) + (1,) * len(spatial))
        h = self.head_rest(h.reshape((b * n, -1) + spatial))
        return base + h.reshape((b, n) + tuple(h.shape[1:]))

    def forward(self, image: torch.Tensor):
        out = self.net(image)
        features, self._features = self._features, None
        prior = self.prior_net(image)
        if self.keep_features:
            self.cache = (image, features, prior)
        loc = prior.base_dist.loc
        if not self.training and self.prediction == "samples":
            noise = torch.randn((loc.shape[0], self.num_prediction_samples, loc.shape[1]), dtype=loc.dtype,
                                device=loc.device)
            samples = self.logits(features, loc.unsqueeze(1) + prior.base_dist.scale.unsqueeze(1) * noise).float()
            full = torch.log(torch.softmax(samples, 2).mean(1).clamp_min(1e-12))
        else:
            full = self.logits(features, loc.unsqueeze(1))[:, 0]
        if isinstance(out, (list, tuple)):
            return [full] + list(out[1:])
        return full


def unwrap_network(network: nn.Module) -> ProbabilisticNnUNet:
    """The :class:`ProbabilisticNnUNet` inside a trainer's network (unwrapping DDP and ``torch.compile``)."""
    if isinstance(network, DistributedDataParallel):
        network = network.module
    return getattr(network, "_orig_mod", network)


class CachedFeatureSampler:
    """The model interface :class:`medloss.losses.PULASkiLoss` calls, served from the wrapper's cached features.

    ``sampler(image, rater, num_samples, generator)`` conditions the posterior on ``rater`` and decodes
    ``num_samples`` posterior latents with the features that :class:`ProbabilisticNnUNet` kept from its last forward
    pass (``image`` is ignored: the cached image is the one the features belong to), so the backbone is not run
    again.

    Args:
        net: a :class:`ProbabilisticNnUNet` with a filled :attr:`~ProbabilisticNnUNet.cache`.
    """

    def __init__(self, net: ProbabilisticNnUNet):
        self.net = net
        self.out_channels = net.out_channels

    def __call__(self, image, rater=None, num_samples=1, generator=None):
        from torch.distributions import kl_divergence

        from medloss.networks.probabilistic_unet import ProbabilisticUNet, ProbabilisticUNetOutput

        cached_image, features, prior = self.net.cache
        posterior = self.net.posterior_net(torch.cat([cached_image, rater.to(cached_image.dtype)], dim=1))
        z = ProbabilisticUNet.rsample(posterior, int(num_samples), generator)
        return ProbabilisticUNetOutput(self.net.logits(features, z), prior, posterior,
                                       kl_divergence(posterior, prior))


class PULASkiTerm(nn.Module):
    """The PULASki loss of a batch, called as a loss term: ``term(logits, target, raters)``.

    The logits and the target are not used: :class:`medloss.losses.PULASkiLoss` draws posterior samples from the
    features the network cached in its forward pass (:class:`CachedFeatureSampler`) and compares them with the
    raters. The cache is cleared after the call.

    Args:
        pulaski: a :class:`medloss.losses.PULASkiLoss` built with ``to_onehot_y=True`` (raters are label maps).
        network_getter: returns the trainer's (possibly wrapped) network.

    Shapes:
        ``raters``: ``(B, R, *spatial)`` label maps at full resolution. Returns a scalar.

    Raises:
        RuntimeError: the network has no cached features (it did not run since the last call).
    """

    def __init__(self, pulaski: nn.Module, network_getter: Callable[[], nn.Module]):
        super().__init__()
        self.pulaski = pulaski
        self.network_getter = network_getter

    def forward(self, logits: torch.Tensor, target: torch.Tensor, raters: torch.Tensor) -> torch.Tensor:
        net = unwrap_network(self.network_getter())
        if net.cache is None:
            raise RuntimeError("the PULASki term needs the features the network caches in its forward pass; "
                               "set keep_features (the trainer does this in initialize()).")
        image = net.cache[0]
        value = self.pulaski(CachedFeatureSampler(net), image, raters.to(image.device).unsqueeze(2))
        net.cache = None
        return value


class PULASkiObjective(AddedTerm):
    """The PULASki trainer's loss, called as nnU-Net calls a loss: ``(output, reference target)``.

    ``weight * PULASki(raters) + ds_weight * sum_{k >= 1} w_k DiceCE(output[k], reference[k])``: the PULASki term
    (:class:`PULASkiTerm`: distance between N posterior samples and the R raters + ``kl_weight`` x KL) on the
    full-resolution head, nnU-Net's Dice+CE with its deep-supervision weights ``w_k`` on the lower-resolution heads.
    While disabled (warm-up), nnU-Net's full Dice+CE on every head (the full-resolution one at the prior mean) is
    used instead.

    Args:
        base: nnU-Net's Dice+CE, deep-supervision wrapped (``DeepSupervisionWrapper``) or not.
        term: the PULASki term (as the trainer wires it: raters routed by :class:`medloss.losses.BatchInputsLoss`).
        weight: factor of the PULASki term.
        ds_weight: factor of the low-resolution Dice+CE.
        network_getter: returns the trainer's network (its idle posterior joins the warm-up loss with weight 0, so
            that DDP sees gradients for every parameter).
    """

    def __init__(self, base: nn.Module, term: nn.Module, weight: float, ds_weight: float,
                 network_getter: Callable[[], nn.Module]):
        super().__init__(base, term, weight, full_resolution_only=True,
                         ds_weights=getattr(base, "weight_factors", None))
        self.ds_weight = float(ds_weight)
        self.network_getter = network_getter

    def forward(self, output, target):
        if not self.enabled:
            posterior = unwrap_network(self.network_getter()).posterior_net
            return self.base(output, target) + 0.0 * sum(p.sum() for p in posterior.parameters())
        deep = isinstance(output, (list, tuple))
        self.calls += 1
        total = self.weight * self.timed(self.term, output[0] if deep else output, target[0] if deep else target)
        if deep and self.ds_weights is not None and self.ds_weight:
            w = self.ds_weights
            aux = sum(w[k] * self.base.loss(output[k], target[k]) for k in range(1, len(output)) if w[k] != 0)
            total = total + self.ds_weight * aux
        return total


# ----------------------------------------------------------------------------------------------------------------
# the trainer
# ----------------------------------------------------------------------------------------------------------------
_ARCHITECTURE_KEYS = ("latent_dim", "head_layers", "encoder_levels", "prediction", "num_prediction_samples")


def architecture_hyperparameters(configuration_manager) -> Dict[str, Any]:
    """The network-shaping hyperparameters, resolved as the trainer resolves them (defaults < plans < env).

    ``build_network_architecture`` is a staticmethod (nnUNetPredictor calls it without a trainer), so it resolves
    them itself; the result is the trained network's architecture as long as the values come from the plans.
    """
    defaults = {k: nnUNetTrainerMedlossPULASki.medloss_defaults[k] for k in _ARCHITECTURE_KEYS}
    return resolve_hyperparameters(defaults, configuration_manager.configuration.get("medloss") or {})[0]


class nnUNetTrainerMedlossPULASki(nnUNetTrainerMedloss):
    """PULASki (Chatterjee et al., MedIA 2025): nnU-Net's network as a probabilistic U-Net trained on R raters.

    The network is :class:`ProbabilisticNnUNet` (nnU-Net's architecture from the plans + prior/posterior encoders +
    a latent head before the segmentation layer). Every step draws one rater per item, conditions the posterior on
    it, samples ``num_samples`` segmentations (default N = R) and compares their softmax probabilities with the R
    raters by the ``distance`` (``"energy"``, PULASki's "Hausdorff" option, or ``"sinkhorn"``), plus ``kl_weight`` x
    KL; see :class:`PULASkiObjective` for the full loss and the module docstring for the multi-rater data layout and
    :func:`preprocess_raters`. On a configuration without raters the reference label is the single rater (R = 1).
    :meth:`medloss_batch_inputs` takes the raters from the target's extra channels, :meth:`medloss_step_batch`
    hands nnU-Net's step the reference channel alone.

    Prediction (``nnUNetv2_predict`` and the final validation): ``prediction="mean"`` (default) decodes the
    prior-mean latent, a single deterministic segmentation; ``"samples"`` averages the probabilities of
    ``num_prediction_samples`` prior samples (random, so repeated predictions differ slightly). Both are plain
    nnU-Net logits. Architecture keys (``latent_dim``, ``head_layers``, ``encoder_levels``) must be the same at
    prediction as in training: put them in the plans ``"medloss"`` entry (copied into the results folder) rather
    than in environment variables.

    Hyperparameters (``medloss_defaults``; plans ``"medloss"`` entry or ``MEDLOSS_<KEY>``):
        weight: weight of the PULASki term (1.0). ds_weight: weight of Dice+CE on the low-resolution heads (1.0).
        distance: ``"energy"`` (default, as the original implementation) or ``"sinkhorn"`` (``blur``, ``scaling``).
        num_samples: N (None: R). kl_weight: None = the original implementation's balance: it sums the distance
            over the V voxels x foreground channels with KL weight 1; distances here are per voxel
            (``per_voxel=True``, so that the term sits on the scale of Dice+CE), which is the same objective up to a
            factor with KL weight ``1/sqrt(V)`` (energy) or ``1/V`` (Sinkhorn, squared costs).
        latent_dim (6, Kohl et al.), head_layers (3, as the original implementation), encoder_levels (4: the
            prior/posterior encoders use nnU-Net's first 4 stages' features and strides), prediction,
            num_prediction_samples (8), num_raters (None: taken from the data; :func:`preprocess_raters` records
            it), warmup_fraction.

    Raises:
        ValueError: an unknown ``distance``; at a step, a target whose number of rater channels differs from
        ``num_raters``. NotImplementedError: region-based labels or an ignore label.
    """

    medloss_defaults = {"weight": 1.0, "warmup_fraction": 0.0, "ds_weight": 1.0, "distance": "energy",
                        "num_samples": None, "kl_weight": None, "blur": 0.05, "scaling": 0.5, "latent_dim": 6,
                        "head_layers": 3, "encoder_levels": 4, "prediction": "mean", "num_prediction_samples": 8,
                        "num_raters": None}
    medloss_supports_regions = False
    medloss_supports_ignore_label = False
    medloss_label_setup_note = REGIONS_NOTE
    medloss_batch_keywords = ("raters",)

    #: the KL weight in force (set when the loss is built)
    kl_weight: Optional[float] = None

    def check_hyperparameters(self) -> None:
        if self.medloss["distance"] not in ("energy", "sinkhorn"):
            raise ValueError(f"distance must be 'energy' or 'sinkhorn', got {self.medloss['distance']!r}.")

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True) -> nn.Module:
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        net = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                       num_output_channels, enable_deep_supervision)
        hp = architecture_hyperparameters(configuration_manager)
        arch = configuration_manager.network_arch_init_kwargs
        levels = max(2, min(int(hp["encoder_levels"]), len(arch["features_per_stage"])))
        strides = [tuple(s) if isinstance(s, (list, tuple)) else s for s in arch["strides"][1:levels]]
        return ProbabilisticNnUNet(net, len(configuration_manager.patch_size), num_input_channels,
                                   num_output_channels, latent_dim=int(hp["latent_dim"]),
                                   head_layers=int(hp["head_layers"]),
                                   encoder_channels=[min(int(c), 128) for c in arch["features_per_stage"][:levels]],
                                   encoder_strides=strides, prediction=hp["prediction"],
                                   num_prediction_samples=int(hp["num_prediction_samples"]))

    def _do_i_compile(self):
        return False  # the wrapper catches features with a hook and keeps them for the loss: no torch.compile

    def initialize(self):
        super().initialize()
        unwrap_network(self.network).keep_features = True

    # ---- hooks -------------------------------------------------------------------------------------------------
    def build_medloss_loss(self, **activation):
        from medloss.losses import PULASkiLoss

        n_fg = self.label_manager.num_segmentation_heads - 1
        voxels = n_fg * int(np.prod(self.configuration_manager.patch_size))
        kl_weight = self.medloss["kl_weight"]
        if kl_weight is None:
            kl_weight = 1.0 / (math.sqrt(voxels) if self.medloss["distance"] == "energy" else voxels)
        self.kl_weight = float(kl_weight)
        pulaski = PULASkiLoss(**activation, distance=self.medloss["distance"], kl_weight=self.kl_weight,
                              num_samples=self.medloss["num_samples"], blur=float(self.medloss["blur"]),
                              scaling=float(self.medloss["scaling"]), per_voxel=True)
        self.print_to_log_file(f"medloss PULASki: kl_weight={self.kl_weight:.3g}, distance per voxel "
                               f"(V={voxels}), prediction={unwrap_network(self.network).prediction!r}")
        return PULASkiTerm(pulaski, lambda: self.network)

    def combine_losses(self, base: nn.Module, term: nn.Module) -> nn.Module:
        return PULASkiObjective(base, term, self.medloss["weight"], self.medloss["ds_weight"], lambda: self.network)

    def medloss_batch_inputs(self, batch: dict) -> dict:
        """The raters ``(B, R, *spatial)``: target channels 1..R at full resolution (R = 1: the reference)."""
        target = batch["target"]
        full = target[0] if isinstance(target, list) else target
        raters = full if full.shape[1] == 1 else full[:, 1:]
        expected = self.medloss["num_raters"]
        if expected is not None and raters.shape[1] != int(expected):
            raise ValueError(f"the plans say num_raters={expected} but the batch target carries {raters.shape[1]} "
                             f"rater channel(s) (target shape {tuple(full.shape)}); preprocess with "
                             "preprocess_raters() and train on its '<configuration>_raters' configuration.")
        return {"raters": raters}

    def medloss_step_batch(self, batch: dict) -> dict:
        """The batch with the reference (channel 0) as target (every deep-supervision scale)."""
        target = batch["target"]
        reference = [t[:, :1] for t in target] if isinstance(target, list) else target[:, :1]
        return dict(batch, target=reference)


_TRAINERS = [nnUNetTrainerMedlossPULASki]
__all__ = ["ProbabilisticNnUNet", "PULASkiTerm", "PULASkiObjective", "CachedFeatureSampler", "preprocess_raters",
           "unwrap_network", "architecture_hyperparameters"] + [c.__name__ for c in _TRAINERS] + add_epoch_variants(
    _TRAINERS, globals())
