"""The backbone and head of a module that holds a task network as ``net``.

A task, the test-time augmentation wrapper around its network and a runtime standing in for
that network all give ``backbone`` and ``head`` the same way: a task's losses, metrics and
decoding reach its parts (``task.head.decode``, ``task.backbone.feature_info``) through them,
whichever of the three holds the network.
"""

from __future__ import annotations

from torch import nn


class NetworkParts:
    """``backbone`` and ``head`` read through ``self.net`` (a backbone + head network)."""

    net: nn.Module

    @property
    def backbone(self) -> nn.Module:
        """The network's feature extractor."""
        return self.net.backbone

    @property
    def head(self) -> nn.Module:
        """The network's task head."""
        return self.net.head
