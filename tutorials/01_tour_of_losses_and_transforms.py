"""A tour of every medloss loss and transform on generated data.

Everything here runs on CPU in a few seconds on synthetic vessel phantoms from ``medloss.data.synthetic``; no download.

Conventions that hold for every loss (they follow MONAI):

* ``input`` is ``(B, C, H, W)`` or ``(B, C, H, W, D)``: raw network outputs (logits) unless you pass
  ``sigmoid=True`` / ``softmax=True`` / ``other_act``, in which case the activation is applied *inside* the loss.
* ``target`` is either a hard label map ``(B, 1, ...)`` with ``to_onehot_y=True``, or one channel per class,
  which may be *soft* (probabilities, e.g. averaged raters). The Jaccard metric / Dice semimetric losses are zero
  exactly when the prediction equals a soft label, which the plain soft Dice is not.
* ``include_background=False`` drops channel 0 after one-hot; ``reduction`` is ``"mean"``, ``"sum"`` or ``"none"``.
* SAUNA labels are *signed*: in [-1, 1], positive inside vessels, negative outside, magnitude from distance to the
  boundary scaled by the local vessel thickness. The network head is ``tanh``; ``sauna_to_label`` (sign > 0)
  recovers the mask.
* MIP axes index the *spatial* dimensions (0 = H, 1 = W, 2 = D), not the tensor's dims.
* Betti matching returns, per homology dimension, matched and unmatched birth/death voxels in prediction and
  target, plus counts: unmatched features are topological errors.
* PULASki compares *sets*: ``N`` sampled predictions ``(B, N, C, ...)`` against ``R`` raters ``(B, R, C, ...)``.
* FEBS (fair error-bound scaling) takes one group id per sample, reweighting groups that do worse.
* IMPACT uses a frozen feature extractor returning a list of feature maps (a TorchScript file of a pretrained
  network in practice; a tiny random network here).

Run::

    python tutorials/01_tour_of_losses_and_transforms.py            # 32^3 volumes
    python tutorials/01_tour_of_losses_and_transforms.py --small    # 16^3, for tests
"""

import argparse
import time

import numpy as np
import torch

from medloss.losses import (
    BettiMatchingLoss,
    DiceSemimetricLoss,
    EnergyDistanceLoss,
    FairErrorBoundScalingLoss,
    FocalL1Loss,
    FocalTverskyLoss,
    IMPACTLoss,
    IMPACTSynthLoss,
    JaccardMetricLoss,
    MIPLoss,
    PULASkiLoss,
    SAUNALoss,
    SignedJaccardLoss,
    SinkhornDistanceLoss,
    TverskyMetricLoss,
)
from medloss.metrics import (
    betti_matching_error,
    betti_number_error,
    cldice,
    equity_scaled_metric,
    generalized_energy_distance,
)
from medloss.networks import ProbabilisticUNet
from medloss.data.synthetic import rater_masks, vessel_image, vessel_phantom
from medloss.topology import betti_matching, betti_numbers
from medloss.transforms import (
    LabelMIPd,
    SAUNATransform,
    SAUNATransformd,
    sauna_to_label,
)


def show(name, value):
    value = value.item() if torch.is_tensor(value) and value.numel() == 1 else value
    print(f"  {name:<44} {value:.4f}" if isinstance(value, float) else f"  {name:<44} {value}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="16^3 volumes (fast, for tests)")
    parser.add_argument("--size", type=int, default=32, help="edge of the cubic volumes (default 32)")
    args = parser.parse_args()
    n = 16 if args.small else args.size
    torch.manual_seed(0)
    start = time.process_time()

    # A phantom and its image: the "ground truth" every section below starts from.
    label = vessel_phantom((n, n, n), seed=0)                       # (H, W, D) uint8 {0, 1}
    image = vessel_image(label, seed=0)
    print(f"phantom {label.shape}, foreground fraction {label.mean():.3f}")

    print("\n1. Jaccard metric / Dice semimetric / Tversky metric losses (hard and soft labels)")
    logits = torch.randn(2, 2, n, n, n, requires_grad=True)
    hard = torch.as_tensor(np.stack([label, label]))[:, None].long()   # (B, 1, H, W, D) class indices
    show("JaccardMetricLoss(to_onehot_y, softmax)", JaccardMetricLoss(to_onehot_y=True, softmax=True)(logits, hard))
    soft = torch.softmax(torch.randn(2, 2, n, n, n), 1)                # (B, C, ...) soft labels
    show("DiceSemimetricLoss(softmax) vs soft labels", DiceSemimetricLoss(softmax=True)(logits, soft))
    show("TverskyMetricLoss(softmax)", TverskyMetricLoss(softmax=True)(logits, soft))
    # The semimetric property: the loss vanishes when the prediction *is* the soft label.
    show("DiceSemimetricLoss(soft, soft)  (== 0)", DiceSemimetricLoss()(soft, soft))

    print("\n2. SAUNA: signed soft labels and their losses (tanh head)")
    signed = SAUNATransform(spacing=(1.0, 1.0, 1.0))(label[None])      # (1, H, W, D) float32 in [-1, 1]
    assert np.array_equal(sauna_to_label(signed)[0], label)           # the sign recovers the mask exactly
    show("signed label range", f"[{signed.min():.2f}, {signed.max():.2f}]")
    SAUNATransformd(keys="label", output_key="soft")({"label": label[None]})  # dictionary form for MONAI pipelines
    out = torch.randn(1, 1, n, n, n, requires_grad=True)
    target = torch.as_tensor(signed)[None]
    show("FocalL1Loss", FocalL1Loss()(out, target))
    show("SignedJaccardLoss", SignedJaccardLoss()(out, target))
    show("SAUNALoss (Focal-L1 + hypercube Jaccard)", SAUNALoss()(out, target))

    print("\n3. MIP loss (SPOCKMIP): Focal Tversky on voxels and on maximum intensity projections")
    fg = torch.as_tensor(label)[None, None].float()
    logit1 = torch.randn(1, 1, n, n, n, requires_grad=True)
    show("FocalTverskyLoss(sigmoid)", FocalTverskyLoss(sigmoid=True)(logit1, fg))
    show("MIPLoss(sigmoid, axes=(0,))  slice axis", MIPLoss(sigmoid=True, axes=(0,))(logit1, fg))
    show("MIPLoss(sigmoid, axes=(0,1,2))", MIPLoss(sigmoid=True, axes=(0, 1, 2))(logit1, fg))
    # Whole-case MIPs computed before cropping, so a random patch still sees the full projection.
    case = LabelMIPd(keys="label")({"label": label[None]})
    show("LabelMIPd added keys", sorted(k for k in case if k != "label"))

    print("\n4. Betti matching (topology), in 2D for speed")
    gt = torch.zeros(1, 1, 32, 32)
    gt[..., 14:17, 4:28] = 1                                         # one vessel
    pred = 0.1 + 0.8 * gt
    pred[..., 14:17, 15:17] = 0.2                                    # broken in the middle
    show("BettiMatchingLoss (gap costs (0.8-0.1)^2)", BettiMatchingLoss()(pred.clone().requires_grad_(), gt))
    result = betti_matching(pred[0, 0], gt[0, 0])
    show("result.num_matched per dim", result.num_matched.tolist())
    show("result.num_unmatched_pred per dim", result.num_unmatched_pred.tolist())
    show("result.num_unmatched_target per dim", result.num_unmatched_target.tolist())
    show("betti_numbers(gt)  (components, loops)", [int(b) for b in betti_numbers(gt[0, 0].numpy())])
    # Both metrics return a TopologyError: errors per homology dimension and their total.
    show("betti_matching_error per dim", betti_matching_error(pred[0, 0], gt[0, 0]).per_dim.tolist())
    show("betti_number_error per dim", betti_number_error(pred[0, 0], gt[0, 0]).per_dim.tolist())
    show("cldice(pred > 0.5, gt)", float(cldice(pred[0, 0] > 0.5, gt[0, 0])))

    print("\n5. PULASki: sample sets vs rater sets, probabilistic U-Net")
    raters = torch.as_tensor(rater_masks(label, n_raters=3, seed=0)).float()   # (R, H, W, D)
    raters = raters[None, :, None]                                           # (B=1, R, C=1, H, W, D)
    samples = torch.rand(1, 4, 1, n, n, n, requires_grad=True)               # (B, N, C, ...) probabilities
    show("SinkhornDistanceLoss", SinkhornDistanceLoss()(samples, raters))
    show("EnergyDistanceLoss", EnergyDistanceLoss()(samples, raters))
    net = ProbabilisticUNet(spatial_dims=3, in_channels=1, out_channels=1, channels=(4, 8, 16), strides=(2, 2))
    img = torch.as_tensor(image)[None, None]
    show("PULASkiLoss(energy, kl_weight=1)", PULASkiLoss(distance="energy", kl_weight=1.0)(net, img, raters))
    show("generalized_energy_distance", float(generalized_energy_distance(samples[0, :, 0].detach() > 0.5,
                                                                            raters[0, :, 0])))

    print("\n6. Fair error-bound scaling (FEBS): one group id per sample")
    logits2d = torch.randn(4, 2, 32, 32, requires_grad=True)
    labels2d = torch.randint(0, 2, (4, 1, 32, 32))
    groups = torch.tensor([0, 1, 1, 2])
    febs = FairErrorBoundScalingLoss(softmax=True, to_onehot_y=True, num_groups=3, gamma=1.0,
                                     lambda_dice=0.5, lambda_ce=0.5)
    show("FairErrorBoundScalingLoss", febs(logits2d, labels2d, groups))
    show("last_group_weights", [round(w, 3) for w in febs.last_group_weights.tolist()])
    show("equity_scaled_metric (ES-Dice)", float(equity_scaled_metric(torch.tensor([0.9, 0.8, 0.7, 0.75]), groups)))

    print("\n7. IMPACT: semantic features from a frozen extractor")

    class TwoLayers(torch.nn.Module):  # stands in for a pretrained TorchScript extractor
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.Conv3d(4, 8, 3, padding=1)

        def forward(self, x):
            f = torch.relu(self.a(x))
            return [f, torch.relu(self.b(f))]

    fake = torch.randn(1, 1, n, n, n, requires_grad=True)
    real = torch.as_tensor(image)[None, None]
    show("IMPACTLoss(L1, weights=(1, 0.5))", IMPACTLoss(TwoLayers(), weights=(1.0, 0.5), distance="L1",
                                                        spatial_dims=3)(fake, real))
    # IMPACT-Synth: content features against one target (e.g. CT) plus Gram "style" against another (e.g. MR).
    # Targets here are raw intensities, so no de-normalisation statistics are needed ("none").
    synth = IMPACTSynthLoss(TwoLayers(), content_weights=(1.0, 0.5), style_weights=(1.0, 1.0),
                            content_normalization="none", style_normalization="none")
    show("IMPACTSynthLoss (content + style) / 2", synth(fake, real, torch.rand_like(real)))

    print(f"\ntour finished in {time.process_time() - start:.1f} s CPU")


if __name__ == "__main__":
    main()
