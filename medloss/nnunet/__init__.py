"""nnU-Net v2 integration (trainers, external-trainer shim). Requires the ``nnunet`` extra; importing
``medloss`` never imports nnunetv2."""
