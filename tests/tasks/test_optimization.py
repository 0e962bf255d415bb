"""The learning-rate schedules against their formulas."""

import math

import pytest

from cvtasks.tasks.optimization import lr_schedule


def test_cosine_schedule_matches_formula_after_linear_warmup():
    f = lr_schedule(
        {"name": "cosine", "warmup_epochs": 1, "min_lr_ratio": 0.1},
        total_steps=100,
        steps_per_epoch=10,
    )
    assert [f(s) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert f(9) == pytest.approx(1.0)
    for step in (10, 40, 77, 99):
        progress = (step - 10) / 90
        assert f(step) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def test_step_and_constant_schedules():
    f = lr_schedule(
        {"name": "step", "step_epochs": 2, "gamma": 0.5}, total_steps=60, steps_per_epoch=10
    )
    assert [f(0), f(19), f(20), f(45)] == pytest.approx([1.0, 1.0, 0.5, 0.25])
    g = lr_schedule({"name": "constant"}, total_steps=60, steps_per_epoch=10)
    assert g(0) == g(59) == 1.0
