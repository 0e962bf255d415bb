"""Data: DataModules, readers for on-disk formats, albumentations pipelines, built-in datasets.

Importing this package registers every dataset in ``DATASETS`` (the registry does so on its first
read): the readers of data people have, each in the module of its registry name (``image_folder``,
``image_masks``, ``identity_folders``, ``multilabel_csv``, ``coco_boxes``, ``coco_detection``,
``coco_keypoints``, ``coco_multilabel``, ``voc_boxes``, ``voc_detection``, ``voc_segmentation``,
``yolo_detection``), and the built-in datasets of :mod:`cvtasks.data.builtin`, written into the
cache in those same formats.
"""

from cvtasks.data import (  # noqa: F401 -- imported to register their datasets
    builtin,
    coco_boxes,
    coco_detection,
    coco_keypoints,
    coco_multilabel,
    identity_folders,
    image_folder,
    image_masks,
    multilabel_csv,
    shards,
    voc_boxes,
    voc_detection,
    voc_segmentation,
    yolo_detection,
)
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
