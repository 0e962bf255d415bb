import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from cvtasks.metrics.multilabel import PresentClassesAP


def scores_and_targets(seed=0, n=40, classes=5):
    gen = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, classes, generator=gen) > 0.5).long()
    scores = torch.rand(n, classes, generator=gen) * 0.6 + 0.4 * targets
    return scores, targets


def test_mean_over_present_classes_matches_scikit_learn():
    scores, targets = scores_and_targets()
    targets[:, 2] = 0  # a class no image has
    metric = PresentClassesAP(5)
    metric.update(scores[:25], targets[:25])
    metric.update(scores[25:], targets[25:])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the absent class is handled, not warned about
        value = metric.compute()
    present = [0, 1, 3, 4]
    expected = average_precision_score(
        targets[:, present].numpy(), scores[:, present].numpy(), average="macro"
    )
    assert value.item() == pytest.approx(expected, abs=1e-5)


def test_per_class_values_with_nan_for_an_absent_class():
    scores, targets = scores_and_targets(seed=1)
    targets[:, 4] = 0
    metric = PresentClassesAP(5, per_class=True)
    metric.update(scores, targets)
    values = metric.compute().numpy()
    expected = average_precision_score(targets[:, :4].numpy(), scores[:, :4].numpy(), average=None)
    np.testing.assert_allclose(values[:4], expected, atol=1e-5)
    assert np.isnan(values[4])
