"""Public names of this package, imported lazily at run time (medloss._lazy.attach_stub); read by type checkers."""

from .layout import SPLITS as SPLITS
from .layout import NIFTI_ENDING as NIFTI_ENDING
from .layout import check_split as check_split
from .layout import list_nnunet_cases as list_nnunet_cases
from .layout import list_rater_files as list_rater_files
from .layout import rater_path as rater_path
from .groups import GROUP_FILE_NAMES as GROUP_FILE_NAMES
from .groups import UNKNOWN_GROUP as UNKNOWN_GROUP
from .groups import find_group_file as find_group_file
from .groups import read_group_file as read_group_file
from .synthetic import vessel_phantom as vessel_phantom
from .synthetic import vessel_image as vessel_image
from .synthetic import rater_masks as rater_masks
from .synthetic import synthesis_target as synthesis_target
from .synthetic import write_synthetic_dataset as write_synthetic_dataset
from .nifti import save_nifti as save_nifti
from .datasets import vessel_dataset as vessel_dataset
from .datasets import synthesis_dataset as synthesis_dataset
from .outputs import check_output_file as check_output_file
from .outputs import check_output_folder as check_output_folder
from .outputs import write_files_together as write_files_together
from .outputs import staged_folder as staged_folder
