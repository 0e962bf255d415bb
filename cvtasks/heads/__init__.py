"""Task heads: map a backbone's feature maps to a task's raw outputs.

Every head is built as ``HEADS.build(name, feature_info=backbone.feature_info, **task_kw)`` and
reads channel counts from ``feature_info``, never from a backbone's name.
"""

from cvtasks.heads import classification, localization
from cvtasks.heads.classification import ClassifierHead
from cvtasks.heads.detection import CenterNetHead  # noqa: F401 -- registers "centernet"
from cvtasks.heads.embedding import EmbeddingHead  # noqa: F401 -- registers "embedding"
from cvtasks.heads.landmarks import KeypointHeatmapHead  # noqa: F401 -- registers keypoint_*
from cvtasks.heads.segmentation import FCNHead, UNetHead  # noqa: F401 -- registers fcn, unet

__all__ = ["ClassifierHead", "classification", "localization"]
