"""blockzoo.train.schedules: LR schedule values by hand, shapes, warmup validation."""
from __future__ import annotations

import math

import pytest

from blockzoo.train import (
    LRSchedule,
    lr_at,
    warmup_steps_for,
)


def test_schedule_values_by_hand():
    # T=10, W=2, peak 1: warm-up 0.5, 1.0; onecycle decays linearly (T - s) / (T - W)
    one = LRSchedule(1.0, 10, 2, "onecycle").curve()
    assert one == pytest.approx([0.5, 1.0, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])
    cos = LRSchedule(1.0, 10, 2, "cosine").curve()
    assert cos[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert cos[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))  # = 0.5, midway through the decay
    assert cos[9] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert LRSchedule(0.3, 10, 2, "constant").curve() == pytest.approx([0.15] + [0.3] * 9)
    # beyond the end: clamped to the last step
    assert lr_at(50, peak_lr=1.0, total_steps=10, warmup_steps=2) == pytest.approx(1 / 8)


def test_airbench_schedule_is_the_speed_runs():
    """``airbench``: from 0.2 x peak to the peak over the warm-up, then linear to 0: by hand, and step for step the
    schedule of blockzoo.train.speedrun (the fast recipe's trainer run follows the speed run's curve)."""
    from blockzoo.train.speedrun import airbench_schedule
    assert LRSchedule(1.0, 10, 2, "airbench").curve() == pytest.approx(
        [0.2, 0.6, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])
    t = 290
    ours = LRSchedule(1.0, t, int(0.2 * t), "airbench").curve()
    assert ours == pytest.approx(list(airbench_schedule(t, 0.2)[:t]), abs=1e-12)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_schedule_shapes(schedule):
    s = LRSchedule(0.4, 1000, 100, schedule)
    c = s.curve()
    assert all(b > a for a, b in zip(c[:100], c[1:100]))          # warm-up strictly rises
    assert c[99] == pytest.approx(0.4) and max(c) == pytest.approx(0.4)
    assert all(b <= a for a, b in zip(c[100:], c[101:]))          # then never rises
    assert c[-1] < 0.4 * 0.01                                     # ends near 0


def test_warmup_and_schedule_validation():
    assert warmup_steps_for(1.0, 50, 500) == 50
    assert warmup_steps_for(0.5, 50, 500) == 25
    assert warmup_steps_for(3.0, 50, 100) == 50                   # capped at half the run
    assert LRSchedule(1.0, 5, 0, "onecycle")(0) == pytest.approx(1.0)  # no warm-up: starts at the peak
    with pytest.raises(ValueError, match="schedule"):
        lr_at(0, peak_lr=1.0, total_steps=10, schedule="step")
    with pytest.raises(ValueError):
        LRSchedule(1.0, 10, 11)
