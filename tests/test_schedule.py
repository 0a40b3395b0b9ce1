import math

import pytest

from Trainer.schedule import LRSchedule


def test_warmup_is_linear_and_positive_then_cosine_to_min():
    s = LRSchedule(base_lr=1e-3, epochs=10, steps_per_epoch=4, warmup_epochs=1, min_lr=0.0)
    lrs = [s.lr(0, k) for k in range(4)]
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert s.lr(1, 0) == pytest.approx(1e-3)
    # cosine: half-way between warm-up end (1) and the end (10) is e = 5.5 -> base/2
    assert s.lr(5, 2) == pytest.approx(0.5e-3)
    assert all(x > 0 for x in s.curve()[:-1])
    assert s.lr(9, 3) < s.lr(9, 0) < s.lr(5, 0)


def test_delay_early_decay_reaches_target_at_ratio_then_min_at_end():
    s = LRSchedule(base_lr=5e-3, epochs=100, steps_per_epoch=10, warmup_epochs=1,
                   adjust_lr_strategy=True, early_decay_ratio=0.2, early_decay_target_lr=1e-3, min_lr=1e-6)
    assert s.lr(20, 0) == pytest.approx(1e-3)
    assert s.lr(10, 5) == pytest.approx(1e-3 + (5e-3 - 1e-3) * 0.5 * (1 + math.cos(math.pi * 9.5 / 19)))
    assert s.lr(100, 0) == pytest.approx(1e-6)
    assert min(s.curve()) > 0  # never negative (the original had a negative lr in epoch 0)


def test_restart_only_when_enabled_and_state_round_trips():
    off = LRSchedule(base_lr=1e-3, epochs=50, steps_per_epoch=1, restart_patience=3, restart_after=0)
    on = LRSchedule(base_lr=1e-3, epochs=50, steps_per_epoch=1, restart_patience=3, restart_after=0,
                    lr_restart_enabled=True)
    for sched in (off, on):
        sched.observe(0, 0.5)
        for e in range(1, 5):
            sched.observe(e, 0.4)
    assert off.restarts == []
    assert on.restarts == [4]
    assert on.lr(4, 0) == pytest.approx(0.5e-3)
    clone = LRSchedule(base_lr=1e-3, epochs=50, steps_per_epoch=1, lr_restart_enabled=True)
    clone.load_state_dict(on.state_dict())
    assert [clone.lr(e) for e in range(50)] == [on.lr(e) for e in range(50)]
