"""Pure tensor math: output sizes, padding, reference convolution and pooling, box geometry."""

from cvtasks.ops.boxes import cxcywh_to_xyxy, giou_loss, paired_box_iou, xyxy_to_cxcywh
from cvtasks.ops.conv import conv1d_toeplitz, conv2d_reference, toeplitz_matrix
from cvtasks.ops.pool import POOL_MODES, pool2d, pool_output_size
from cvtasks.ops.sizes import conv_output_size, same_padding

__all__ = [
    "POOL_MODES",
    "conv1d_toeplitz",
    "conv2d_reference",
    "conv_output_size",
    "cxcywh_to_xyxy",
    "giou_loss",
    "paired_box_iou",
    "pool2d",
    "pool_output_size",
    "same_padding",
    "toeplitz_matrix",
    "xyxy_to_cxcywh",
]
