"""cvtasks-mobilenet: a first-party cvtasks plugin that registers the ``mobilenet_v2`` backbone.

cvtasks imports this package through its ``cvtasks.plugins`` entry point the first time a
registry is read; importing :mod:`cvtasks_mobilenet.mobilenetv2` registers the backbone. The Hydra
config ``conf/backbone/mobilenet_v2.yaml`` beside this file makes
``python train.py backbone=mobilenet_v2`` work once the package is installed.
"""

from cvtasks_mobilenet.mobilenetv2 import MobileNetV2, mobilenet_v2, torchvision_key_map

__all__ = ["MobileNetV2", "mobilenet_v2", "torchvision_key_map"]
