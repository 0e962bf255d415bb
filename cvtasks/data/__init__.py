"""Data: DataModules, readers for on-disk formats, albumentations pipelines, built-in datasets.

Importing this package registers its datasets (``image_folder``, ``digits``) in ``DATASETS``;
the registry does so on its first read.
"""

from cvtasks.data import builtin, image_folder  # noqa: F401 -- imported to register datasets
from cvtasks.data.datamodule import VisionDataModule
from cvtasks.data.image_folder import ImageFolderDataModule, ImageFolderDataset
from cvtasks.data.images import BadImageError, BadImageWarning, read_image

__all__ = [
    "BadImageError",
    "BadImageWarning",
    "ImageFolderDataModule",
    "ImageFolderDataset",
    "VisionDataModule",
    "read_image",
]
