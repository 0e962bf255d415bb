"""NME and PCK against hand-computed cases."""

import math

import pytest
import torch

from cvtasks.metrics.landmarks import NME, PCK, landmark_normalizer

# Eyes 10 px apart, a nose below them.
TARGET = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [5.0, 5.0]]])
ALL = torch.ones(1, 3, dtype=torch.bool)
EYES = (0, 1)


def test_normalizer_interocular_box_diagonal_and_fallback():
    box = torch.tensor([[6.0, 8.0]])
    assert landmark_normalizer(TARGET, ALL, box, EYES).tolist() == [10.0]
    assert landmark_normalizer(TARGET, ALL, box, None).tolist() == [10.0]  # sqrt(36 + 64)
    # without a box: the box of the visible points, 10 x 5
    assert landmark_normalizer(TARGET, ALL, None, None).item() == pytest.approx(math.sqrt(125))
    one_eye = torch.tensor([[True, False, True]])
    assert landmark_normalizer(TARGET, one_eye, box, EYES).tolist() == [10.0]  # the diagonal
    nothing = torch.zeros(1, 3, dtype=torch.bool)
    assert landmark_normalizer(TARGET, nothing, None, None).tolist() == [0.0]


def test_nme_perfect_and_wrong_by_hand():
    nme = NME()
    norm = landmark_normalizer(TARGET, ALL, None, EYES)
    nme.update(TARGET.clone(), TARGET, ALL, norm)
    assert nme.compute().item() == 0.0
    wrong = TARGET.clone()
    wrong[0, 2] += torch.tensor([3.0, 4.0])  # the nose 5 px off
    nme.reset()
    nme.update(wrong, TARGET, ALL, norm)
    assert nme.compute().item() == pytest.approx(5 / 3 / 10)
    # a second, perfect image halves the mean over images
    nme.update(TARGET.clone(), TARGET, ALL, norm)
    assert nme.compute().item() == pytest.approx(5 / 3 / 10 / 2)


def test_nme_ignores_invisible_points_and_empty_images():
    wrong = TARGET.clone()
    wrong[0, 2] += 100.0
    visible = torch.tensor([[True, True, False]])
    nme = NME()
    nme.update(wrong, TARGET, visible, torch.tensor([10.0]))
    nme.update(wrong, TARGET, torch.zeros(1, 3, dtype=torch.bool), torch.tensor([10.0]))
    nme.update(wrong, TARGET, ALL, torch.tensor([0.0]))  # nothing to normalize by
    assert nme.compute().item() == 0.0 and nme.images.item() == 1
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(NME().compute().item())


def test_pck_counts_points_within_alpha_times_the_normalizer():
    pred = TARGET.clone()
    pred[0, 0, 0] += 0.5  # 0.05 of the normalizer: correct at alpha 0.1
    pred[0, 1, 1] += 0.9  # 0.09: correct
    pred[0, 2] += torch.tensor([3.0, 4.0])  # 0.5: wrong
    pck = PCK(alpha=0.1)
    pck.update(pred, TARGET, ALL, torch.tensor([10.0]))
    assert pck.compute().item() == pytest.approx(2 / 3)
    strict = PCK(alpha=0.06)
    strict.update(pred, TARGET, ALL, torch.tensor([10.0]))
    assert strict.compute().item() == pytest.approx(1 / 3)
    perfect = PCK()
    perfect.update(TARGET.clone(), TARGET, ALL, torch.tensor([10.0]))
    assert perfect.compute().item() == 1.0


def test_pck_ignores_invisible_points():
    pred = TARGET.clone()
    pred[0, 2] += 50.0
    pck = PCK()
    pck.update(pred, TARGET, torch.tensor([[True, True, False]]), torch.tensor([10.0]))
    assert pck.compute().item() == 1.0 and pck.points.item() == 2
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(PCK().compute().item())


def test_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        PCK(alpha=0.0)
    with pytest.raises(ValueError, match=r"\[B, K, 2\]"):
        NME().update(TARGET[..., :1], TARGET[..., :1], ALL, torch.ones(1))
    with pytest.raises(ValueError, match="norm"):
        NME().update(TARGET, TARGET, ALL, torch.ones(2))
