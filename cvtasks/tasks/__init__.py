"""Tasks: one LightningModule per task kind, registered in ``TASKS``."""

from cvtasks.tasks import classification, localization
from cvtasks.tasks.base import TaskModule
from cvtasks.tasks.classification import ClassificationTask
from cvtasks.tasks.detection import DetectionTask  # noqa: F401 -- registers "detection"
from cvtasks.tasks.landmarks import LandmarksTask  # noqa: F401 -- registers "landmarks"
from cvtasks.tasks.multilabel import MultilabelTask  # noqa: F401 -- registers "multilabel"
from cvtasks.tasks.segmentation import SegmentationTask  # noqa: F401 -- registers "segmentation"
from cvtasks.tasks.siamese import SiameseTask  # noqa: F401 -- registers "siamese"

__all__ = ["ClassificationTask", "TaskModule", "classification", "localization"]
