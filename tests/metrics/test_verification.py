"""Pair verification metrics against hand counts."""

import math

import pytest
import torch

from cvtasks.metrics.verification import (
    PairVerification,
    accuracy_at,
    best_threshold,
    far_key,
    kfold_accuracy,
    roc_auc,
    tar_at_far,
)

DIST = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
SAME = torch.tensor([1, 1, 0, 1, 0, 0])


def test_accuracy_at_a_threshold_by_hand():
    # <= 0.35 called same: 0.1 ok, 0.2 ok, 0.3 wrong; different: 0.4 wrong, 0.5 ok, 0.6 ok
    assert accuracy_at(DIST, SAME, 0.35) == pytest.approx(4 / 6)
    assert accuracy_at(DIST, SAME, 0.4) == pytest.approx(5 / 6)  # "at most" the threshold


def test_best_threshold_is_the_first_midpoint_with_the_most_right():
    # cuts after 0.2 (t=0.25) and after 0.4 (t=0.45) both get 5 of 6 right; the smaller wins
    threshold, accuracy = best_threshold(DIST, SAME)
    assert threshold == pytest.approx(0.25) and accuracy == pytest.approx(5 / 6)


def test_best_threshold_extremes_and_ties():
    all_different = best_threshold(torch.tensor([0.1, 0.2]), torch.tensor([0, 0]))
    assert all_different[0] < 0.1 and all_different[1] == 1.0
    all_same = best_threshold(torch.tensor([0.1, 0.2]), torch.tensor([1, 1]))
    assert all_same == (pytest.approx(0.2), 1.0)
    # equal distances cannot be split: [0.3 same, 0.3 different] -> best is 1 of 2... plus 0.1
    threshold, accuracy = best_threshold(torch.tensor([0.1, 0.3, 0.3]), torch.tensor([1, 1, 0]))
    assert accuracy == pytest.approx(2 / 3) and threshold == pytest.approx(0.2)


def test_kfold_accuracy_on_separable_and_on_leave_one_out():
    d = torch.tensor([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    s = torch.tensor([1, 1, 1, 0, 0, 0])
    assert kfold_accuracy(d, s, folds=3) == 1.0
    # leave one out of [0.1 s, 0.2 d, 0.3 s, 0.4 d]: each held-out pair is judged with the
    # threshold of the other three; by hand: 0.1 -> t=0.15 (from 0.2 d, 0.3 s, 0.4 d: best cut
    # "all different" below 0.2 or after 0.3... first best is below 0.2) -> 0.1 > t? no, 0.1 <= t
    d = torch.tensor([0.1, 0.2, 0.3, 0.4])
    s = torch.tensor([1, 0, 1, 0])
    expected = 0.0
    for k in range(4):
        keep = torch.arange(4) != k
        threshold, _ = best_threshold(d[keep], s[keep])
        expected += accuracy_at(d[k : k + 1], s[k : k + 1], threshold) / 4
    assert kfold_accuracy(d, s, folds=4) == pytest.approx(expected)


def test_tar_at_far_by_hand():
    different = torch.arange(1, 101) * 0.02  # 0.02, 0.04, ..., 2.0
    same = torch.tensor([0.01, 0.03, 0.05, 0.5, 0.9])
    d = torch.cat([different, same])
    s = torch.cat([torch.zeros(100, dtype=torch.long), torch.ones(5, dtype=torch.long)])
    # FAR <= 1%: at most one of 100 different pairs accepted, so the threshold stays below 0.04:
    # same pairs 0.01 and 0.03 accepted -> TAR 2/5
    assert tar_at_far(d, s, 1e-2) == pytest.approx(0.4)
    assert tar_at_far(d, s, 1e-9) == pytest.approx(0.2)  # nothing different: only 0.01
    assert tar_at_far(d, s, 0.05) == pytest.approx(0.6)  # five different up to 0.10: + 0.05


def test_roc_auc_by_hand():
    d = torch.tensor([0.1, 0.4, 0.3, 0.5])
    s = torch.tensor([1, 1, 0, 0])
    # same-vs-different orderings: 0.1<0.3, 0.1<0.5, 0.4>0.3, 0.4<0.5 -> 3 of 4
    assert roc_auc(d, s) == pytest.approx(0.75)
    assert math.isnan(roc_auc(d, torch.ones(4, dtype=torch.long)))


def test_far_key():
    assert far_key(1e-2) == "tar@far1e-2"
    assert far_key(0.001) == "tar@far1e-3"
    assert far_key(0.05) == "tar@far5e-2"


def test_pair_verification_metric_accumulates_batches():
    metric = PairVerification(far=1e-2, folds=0)
    metric.update(DIST[:3], SAME[:3])
    metric.update(DIST[3:], SAME[3:])
    values = metric.compute()
    assert set(values) == {"verification_acc", "auc", "tar@far1e-2", "threshold"}
    assert float(values["verification_acc"]) == pytest.approx(5 / 6)
    assert float(values["threshold"]) == pytest.approx(0.25)
    # same below different in 7 of 9 orderings (0.3 beats 0.4; nothing beats 0.1, 0.2)
    assert float(values["auc"]) == pytest.approx(8 / 9)
    assert float(values["tar@far1e-2"]) == pytest.approx(2 / 3)  # 0.1 and 0.2, before 0.3


def test_pair_verification_at_a_fixed_threshold_and_with_folds():
    metric = PairVerification(threshold=0.35)
    metric.update(DIST, SAME)
    values = metric.compute()
    assert float(values["verification_acc"]) == pytest.approx(4 / 6)
    assert float(values["threshold"]) == pytest.approx(0.35)
    folded = PairVerification(folds=3)
    folded.update(DIST, SAME)
    assert 0.0 <= float(folded.compute()["verification_acc"]) <= 1.0


def test_pair_verification_rejects_bad_input():
    with pytest.raises(ValueError, match=r"task\.far"):
        PairVerification(far=0.0)
    with pytest.raises(ValueError, match="differ"):
        PairVerification().update(torch.zeros(3), torch.zeros(2))
