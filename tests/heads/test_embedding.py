"""The embedding head reads feature_info only and returns unit-length embeddings."""

import pytest
import torch

from cvtasks.heads.embedding import ComparisonNetwork, EmbeddingHead
from cvtasks.registry import BACKBONES, HEADS

INFO = [dict(num_chs=4, reduction=2, module="a"), dict(num_chs=12, reduction=4, module="b")]


def features(batch=3):
    return [torch.randn(batch, 4, 8, 8), torch.randn(batch, 12, 4, 4)]


def test_registered_head_projects_the_deepest_map_to_unit_vectors():
    head = HEADS.build("embedding", feature_info=INFO, embedding_dim=7)
    out = head(features())
    assert out.shape == (3, 7)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-6)
    assert head.layers[-1].in_features == 12  # width read from feature_info[-1]


def test_hidden_layers_and_unnormalized_output():
    head = EmbeddingHead(INFO, embedding_dim=5, hidden_dims=[16, 8], normalize=False)
    linears = [m for m in head.layers if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(12, 16), (16, 8), (8, 5)]
    assert not torch.allclose(head(features()).norm(dim=1), torch.ones(3))


def test_head_on_a_real_backbone_gets_gradients_everywhere():
    backbone = BACKBONES.build("lenet5")
    head = EmbeddingHead(backbone.feature_info, embedding_dim=16)
    out = head(backbone.forward_features(torch.randn(4, 3, 32, 32)))
    out[:, 0].sum().backward()
    assert all(p.grad is not None for p in head.parameters())


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="embedding_dim"):
        EmbeddingHead(INFO, embedding_dim=0)
    with pytest.raises(ValueError, match="dropout"):
        EmbeddingHead(INFO, dropout=1.0)


def test_comparison_network_starts_as_nearer_is_more_alike():
    net = ComparisonNetwork(4)
    a = torch.zeros(1, 4)
    near, far = torch.full((1, 4), 0.1), torch.ones(1, 4)
    with torch.no_grad():
        assert net.probability(a, near) > net.probability(a, far)
        assert torch.equal(net(a, far), net(far, a))
