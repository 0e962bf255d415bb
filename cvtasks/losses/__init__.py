"""Task losses that torch and torchmetrics lack, as pure functions or small modules."""

from cvtasks.losses.detection import DetectionLoss, heatmap_focal_loss  # noqa: F401
from cvtasks.losses.landmarks import heatmap_loss, point_loss, wing_loss  # noqa: F401
from cvtasks.losses.localization import LocalizationLoss, localization_loss  # noqa: F401
from cvtasks.losses.metric_learning import TripletLoss, build_metric_loss, triplet_loss  # noqa: F401
from cvtasks.losses.multilabel import MultilabelLoss, asymmetric_loss  # noqa: F401
from cvtasks.losses.segmentation import SegmentationLoss, dice_loss  # noqa: F401
