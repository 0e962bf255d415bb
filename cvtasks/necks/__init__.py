"""Necks: modules between a backbone and a head that mix the backbone's feature maps.

A neck is built as ``NECKS.build(name, feature_info=backbone.feature_info, **kw)``, maps the
backbone's ``list[Tensor]`` to its own ``list[Tensor]`` and declares those outputs in its own
``feature_info`` (``num_chs``, ``reduction``, ``module``), so a head reads a neck exactly as it
reads a backbone.
"""

from cvtasks.necks.fpn import FPN  # registers "fpn"

__all__ = ["FPN"]
