"""medloss: recent segmentation losses, soft labels and topology/fairness metrics for MONAI and nnU-Net v2."""

__version__ = "0.1.0"
