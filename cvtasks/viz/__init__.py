"""Pictures people look at: predictions drawn on images, overlays, grids, charts; the bases of a
task's view (:mod:`cvtasks.viz.views`) and evaluation report (:mod:`cvtasks.viz.report`)."""

from cvtasks.viz.boxes import draw_box, draw_prediction  # noqa: F401
from cvtasks.viz.keypoints import draw_keypoints, draw_landmarks_prediction  # noqa: F401
from cvtasks.viz.masks import colorize_mask, draw_segmentation, overlay_mask  # noqa: F401
from cvtasks.viz.pairs import draw_gallery, draw_pair  # noqa: F401
