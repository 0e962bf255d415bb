"""The built-in default run clears its accuracy bar: ``python train.py`` with nothing else.

LeNet-5 on the digits reaches test accuracy 0.9852-0.9926 on seeds 0-4 (see
conf/task/classification.yaml); the bar is 0.985, at most 4 errors in the 270 test images. About
45 s on a 2-core CPU.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

TEST_IMAGES = 270  # the digits' test split


def test_default_run_clears_its_accuracy_bar(run_train):
    metrics = run_train("seed=0", "callbacks.progress_bar=null", own_process=True).check().metrics
    assert metrics["epochs"] == 70
    assert metrics["monitor"] == "val/acc"
    errors = round((1 - metrics["test/acc"]) * TEST_IMAGES)
    assert metrics["test/acc"] >= 0.985, f"{errors} test errors in {TEST_IMAGES}"
