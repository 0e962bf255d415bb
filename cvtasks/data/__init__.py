"""Data: DataModules, readers for on-disk formats, albumentations pipelines, built-in datasets.

Importing this package registers its datasets (``image_folder``, ``digits``) in ``DATASETS``;
the registry does so on its first read.
"""

from cvtasks.data import builtin, coco, image_folder, voc  # noqa: F401 -- imported to register datasets
from cvtasks.data.coco_keypoints import CocoKeypointsDataModule  # noqa: F401 -- registers it
from cvtasks.data.datamodule import VisionDataModule
from cvtasks.data.identity_folders import IdentityFoldersDataModule  # noqa: F401 -- registers it
from cvtasks.data.image_folder import ImageFolderDataModule, ImageFolderDataset
from cvtasks.data.images import BadImageError, BadImageWarning, read_image
from cvtasks.data.voc_segmentation import VOCSegmentationDataModule  # noqa: F401 -- and image_masks

__all__ = [
    "BadImageError",
    "BadImageWarning",
    "ImageFolderDataModule",
    "ImageFolderDataset",
    "VisionDataModule",
    "read_image",
]
