"""Data layer: the dataset layout, group files, multi-rater files, synthetic datasets and NIfTI writing.

* :mod:`medloss.data.layout`: the on-disk layout (nnU-Net raw layout plus ``raters{Tr,Ts}/``, ``targets{Tr,Ts}/``
  and a group file), :func:`list_nnunet_cases` and :func:`list_rater_files`.
* :mod:`medloss.data.groups`: :func:`read_group_file` and :func:`find_group_file`.
* :mod:`medloss.data.synthetic`: vessel phantoms and :func:`write_synthetic_dataset`.
* :mod:`medloss.data.datasets`: :func:`vessel_dataset` and :func:`synthesis_dataset`, the case lists of the MONAI
  bundles (a given dataset, or synthetic cases written to a cache first).
* :mod:`medloss.data.nifti`: :func:`save_nifti` (the spacing goes into the affine).
* :mod:`medloss.data.outputs`: output locations checked before the work, files and folders written as transactions
  (:func:`check_output_file`, :func:`check_output_folder`, :func:`write_files_together`, :func:`staged_folder`).
"""

from medloss._lazy import attach_stub

# the public names and their modules are listed once, in __init__.pyi next to this file
__getattr__, __dir__, __all__ = attach_stub(__name__, __file__)
