"""cvtasks: a plugin-based computer-vision task toolkit.

Backbones, heads, tasks and datasets live in registries (:mod:`cvtasks.registry`); Hydra configs
combine them and Lightning trains them.
"""

from cvtasks.registry import BACKBONES, DATASETS, HEADS, TASKS

__version__ = "0.1.0"

__all__ = ["BACKBONES", "DATASETS", "HEADS", "TASKS", "__version__"]
