"""Tasks: one LightningModule per task kind, registered in ``TASKS``."""

from cvtasks.tasks import classification
from cvtasks.tasks.base import TaskModule
from cvtasks.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask", "TaskModule", "classification"]
