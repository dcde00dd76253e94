"""Edges of the optimizer settings and schedules that the other optim tests leave open (found by mutation testing):
inclusive bounds, exact cosine factors past and within the budget, a resumed schedule per parameter group, the
defaults."""

import pytest
import torch

from fwdlearn.optim import OptimizerSettings, load_scheduler, lr_factor, make_optimizer, make_scheduler


def test_the_settings_bounds_are_inclusive_where_the_docs_say_so():
    """``lr > 0``, ``warmup >= 0``, ``0 <= min_ratio <= 1`` (docs/core-api.md): each bound's edge, either side."""
    for bad, message in (({"lr": 0.0}, r"^the learning rate must be a finite number > 0, got 0\.0$"),
                         ({"warmup": -1}, r"^warm-up steps must be an int >= 0, got -1$")):
        with pytest.raises(ValueError, match=message):
            OptimizerSettings(**bad)
    floor = OptimizerSettings(schedule="cosine", min_ratio=0.0)
    assert lr_factor(10, 10, floor) == 0.0 and lr_factor(5, 10, floor) == pytest.approx(0.5)
    flat = OptimizerSettings(schedule="cosine", min_ratio=1.0)
    assert [lr_factor(s, 10, flat) for s in range(12)] == [1.0] * 12


def test_the_cosine_schedule_stays_at_its_floor_past_the_budget_and_takes_a_budget_within_the_warm_up():
    s = OptimizerSettings(lr=1.0, schedule="cosine", warmup=4, min_ratio=0.1)
    assert [lr_factor(step, 10, s) for step in (10, 11, 15, 100)] == [0.1] * 4
    assert [lr_factor(step, 4, s) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 0.1]  # budget == warm-up
    assert [lr_factor(step, 5, s) for step in (4, 5, 6)] == [1.0, 0.1, 0.1]  # one step of decay
    assert [lr_factor(step, 2, s) for step in (3, 4, 5)] == [1.0, 1.0, 0.1]  # a budget shorter than the warm-up


def test_a_resumed_lambda_schedule_sets_each_groups_rate_from_its_own_peak_and_factor():
    def make(lr_b, steps):
        a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": lr_b}])
        settings = OptimizerSettings("sgd", lr=1.0, schedule="cosine", warmup=2)
        return opt, torch.optim.lr_scheduler.LambdaLR(
            opt, [lambda s: lr_factor(s, steps, settings), lambda s: 0.5 ** s])

    opt, sched = make(0.5, 4)
    for _ in range(3):
        opt.step(), sched.step()
    opt2, sched2 = make(3.0, 10)
    load_scheduler(sched2, sched.state_dict())
    settings = OptimizerSettings("sgd", lr=1.0, schedule="cosine", warmup=2)
    expected = [lr_factor(3, 10, settings), 3.0 * 0.5 ** 3]
    assert [group["lr"] for group in opt2.param_groups] == sched2.get_last_lr() == pytest.approx(expected)


def test_the_settings_defaults_are_the_documented_ones_and_each_name_builds_its_class():
    assert OptimizerSettings() == OptimizerSettings("adamw", 1e-3, (0.9, 0.999), 0.0, "constant", 0, 0.1)
    assert repr(OptimizerSettings()) == ("OptimizerSettings(optimizer='adamw', lr=0.001, betas=(0.9, 0.999), "
                                         "weight_decay=0.0, schedule='constant', warmup=0, min_ratio=0.1)")
    p = [torch.nn.Parameter(torch.zeros(1))]
    for name, cls in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)):
        assert type(make_optimizer(p, OptimizerSettings(name))) is cls
    opt = make_optimizer(p, OptimizerSettings(warmup=4))
    make_scheduler(opt, OptimizerSettings(warmup=4), steps=10)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.25e-3)  # (step 0 of the warm-up)
