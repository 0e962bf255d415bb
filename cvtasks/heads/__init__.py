"""Task heads: map a backbone's feature maps to a task's raw outputs.

Every head is built as ``HEADS.build(name, feature_info=backbone.feature_info, **task_kw)`` and
reads channel counts from ``feature_info``, never from a backbone's name.
"""

from cvtasks.heads import classification
from cvtasks.heads.classification import ClassifierHead

__all__ = ["ClassifierHead", "classification"]
