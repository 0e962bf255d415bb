"""torchmetrics ``Metric`` subclasses for what torchmetrics lacks."""

from cvtasks.metrics.confusion import ConfusionScore  # noqa: F401
from cvtasks.metrics.detection import CocoMeanAveragePrecision  # noqa: F401
from cvtasks.metrics.landmarks import NME, PCK, landmark_normalizer  # noqa: F401
from cvtasks.metrics.localization import LocalizationAccuracy, MeanBoxIoU  # noqa: F401
from cvtasks.metrics.multilabel import PresentClassesAP  # noqa: F401
from cvtasks.metrics.topk import TopKAccuracy  # noqa: F401
from cvtasks.metrics.verification import PairVerification  # noqa: F401
