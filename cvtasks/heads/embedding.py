"""Siamese heads: pooled features → L2-normalized embedding, and the pair comparison network.

Seed 001 (§6.6, "Face Recognition, Siamese Networks, and Triplet Loss", Fig 6.17): two replicas of
one network ``f_theta`` with shared parameters map the anchor image and the other image to embedding
vectors, which a comparison module then judges "same" or "different". The replicas are one module
here, applied to both images: :class:`EmbeddingHead` ends ``f_theta``, :class:`ComparisonNetwork` is
``f_c``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvtasks.heads.classification import ClassifierHead
from cvtasks.registry import HEADS


@HEADS.register("embedding")
class EmbeddingHead(nn.Module):
    """Global average pooling of the last feature map, optional hidden layers, a projection.

    Args:
        feature_info: the backbone's stage descriptions; the last one gives the input width.
        embedding_dim: length of the embedding vector.
        hidden_dims: widths of hidden layers before the projection (empty: projection only).
        dropout: dropout probability before each linear layer.
        act_layer: activation after each hidden layer.
        normalize: scale each embedding to unit Euclidean length, so squared distances lie in
            [0, 4] and a triplet margin means the same thing for every backbone.
    """

    def __init__(
        self,
        feature_info: Sequence[dict],
        embedding_dim: int = 128,
        hidden_dims: Sequence[int] = (),
        dropout: float = 0.0,
        act_layer: str | type[nn.Module] = "relu",
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"task.head.embedding_dim must be >= 1, got {embedding_dim}")
        # the classifier's pooling and MLP, its "classes" being the embedding's coordinates
        mlp = ClassifierHead(feature_info, int(embedding_dim), hidden_dims, dropout, act_layer)
        self.layers = mlp.layers
        self.embedding_dim = int(embedding_dim)
        self.normalize = bool(normalize)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Embeddings ``[B, embedding_dim]`` from the deepest feature map ``features[-1]``."""
        embedding = self.layers(features[-1])
        return F.normalize(embedding, dim=1) if self.normalize else embedding


class ComparisonNetwork(nn.Module):
    """The seed's comparison network ``f_c``: logistic regression on the embedding difference.

    "The comparison network is not too complex, and is often a shallow logistic regression model"
    (seed 001 §6.6, Fig 6.17). Its input is ``|f(x_a) - f(x_o)|`` element-wise, so the verdict does
    not depend on which image is the anchor; its output is the logit of "same person".

    Args:
        embedding_dim: length of the embeddings it compares.
    """

    def __init__(self, embedding_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(int(embedding_dim), 1)
        # Start as "nearer is more alike": equal negative weights on every coordinate's gap.
        nn.init.constant_(self.linear.weight, -4.0 / embedding_dim**0.5)
        nn.init.constant_(self.linear.bias, 1.0)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logits ``[...]`` that ``a[..., :]`` and ``b[..., :]`` show the same person.

        ``a`` and ``b`` broadcast: ``[N, D]`` with ``[N, D]`` gives ``[N]``, ``[Q, 1, D]`` with
        ``[1, G, D]`` gives every query against every gallery embedding, ``[Q, G]``.
        """
        return self.linear((a.float() - b.float()).abs()).squeeze(-1)

    def probability(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``f_c(f(x_a), f(x_o))``: the probability of "same" (shapes as in :meth:`forward`)."""
        return torch.sigmoid(self(a, b))
