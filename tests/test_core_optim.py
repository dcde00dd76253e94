"""fwdlearn.optim: optimizer settings, the warm-up + cosine schedule, resuming it."""

import math

import pytest
import torch

from fwdlearn.optim import OptimizerSettings, load_scheduler, lr_factor, make_optimizer, make_scheduler


def test_warm_up_then_cosine_to_the_floor():
    s = OptimizerSettings(lr=1.0, schedule="cosine", warmup=4, min_ratio=0.1)
    factors = [lr_factor(i, 14, s) for i in range(15)]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factors[4] == 1.0 and factors[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert factors[14] == pytest.approx(0.1) and all(a >= b for a, b in zip(factors[3:], factors[4:]))
    assert lr_factor(7, 14, OptimizerSettings()) == 1.0  # constant


def test_the_constant_schedule_warms_up_too():
    """--warmup under the constant schedule (recurrent models' and DFA's default) was silently ignored."""
    s = OptimizerSettings(lr=1.0, schedule="constant", warmup=3)
    assert [lr_factor(i, 10, s) for i in range(5)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 1.0])


def test_settings_are_checked_and_overridden_field_by_field():
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'; choose one of adam, adamw, sgd"):
        OptimizerSettings("adagrad")
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        OptimizerSettings(schedule="step")
    for bad, message in (({"min_ratio": -1.0}, r"min_ratio .* must lie in \[0, 1\], got -1.0"),  # a negative rate
                         ({"min_ratio": 2.0}, r"must lie in \[0, 1\], got 2.0"),  # a rate rising past the peak
                         ({"warmup": 2.5}, r"warm-up steps must be an int >= 0, got 2.5"),  # factors past 1
                         ({"lr": math.inf}, r"the learning rate must be a finite number > 0, got inf"),
                         # (betas and weight decay: torch refused them only when the optimizer was built)
                         ({"betas": (0.9, 1.0)}, r"^betas \(Adam's beta1, beta2\) must be two numbers in \[0, 1\), "
                                                 r"got \(0\.9, 1\.0\)$"),
                         ({"betas": (-0.1, 0.9)}, r"must be two numbers in \[0, 1\), got \(-0\.1, 0\.9\)$"),
                         ({"betas": 0.9}, r"must be two numbers in \[0, 1\), got 0\.9$"),
                         ({"betas": (0.9, 0.99, 0.999)}, r"must be two numbers"),
                         ({"betas": (0.9, True)}, r"must be two numbers"),
                         ({"weight_decay": -1e-4}, r"^weight decay must be a finite number >= 0, got -0\.0001$"),
                         ({"weight_decay": math.nan}, r"^weight decay must be a finite number >= 0, got nan$"),
                         ({"weight_decay": "0.1"}, r"^weight decay must be a finite number >= 0, got '0\.1'$")):
        with pytest.raises(ValueError, match=message):
            OptimizerSettings(**bad)
    edges = OptimizerSettings(betas=[0.0, 0.999999], weight_decay=0)  # (a list, as a config file gives it)
    assert make_optimizer(torch.nn.Linear(2, 2).parameters(), edges).defaults["betas"] == (0.0, 0.999999)
    base = OptimizerSettings("adam", lr=1e-3, schedule="cosine", warmup=10)
    assert base.override(lr=None, warmup=3) == OptimizerSettings("adam", lr=1e-3, schedule="cosine", warmup=3)
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter requires a gradient"):
        make_optimizer(frozen.parameters(), base)


def test_a_resumed_schedule_sets_the_rate_of_the_step_it_resumes_at():
    settings = OptimizerSettings("sgd", lr=1.0, schedule="cosine", warmup=2)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = make_optimizer([p], settings)
    sched = make_scheduler(opt, settings, steps=4)
    for _ in range(3):
        opt.step(), sched.step()
    state = sched.state_dict()
    opt2 = make_optimizer([p], settings)
    sched2 = make_scheduler(opt2, settings, steps=10)  # a longer budget on resume
    load_scheduler(sched2, state)
    assert opt2.param_groups[0]["lr"] == pytest.approx(lr_factor(3, 10, settings))


def test_a_resumed_schedule_reports_the_rate_it_set():
    """get_last_lr() after load_scheduler gave the checkpoint's last rate (0.55, of the old peak 1.0 and budget 4)
    while the optimizer stepped at the new schedule's 1.93 (peak 2.0, budget 10)."""
    settings = OptimizerSettings("sgd", lr=1.0, schedule="cosine", warmup=2)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = make_optimizer([p], settings)
    sched = make_scheduler(opt, settings, steps=4)
    for _ in range(3):
        opt.step(), sched.step()
    state = sched.state_dict()
    resumed = settings.override(lr=2.0)
    opt2 = make_optimizer([p], resumed)
    sched2 = make_scheduler(opt2, resumed, steps=10)
    load_scheduler(sched2, state)
    assert sched2.get_last_lr() == [opt2.param_groups[0]["lr"]] == [pytest.approx(2.0 * lr_factor(3, 10, resumed))]


@pytest.mark.parametrize("kind", ["step", "multiplicative"])
def test_a_resumed_torch_scheduler_continues_where_it_stopped(kind):
    """A scheduler other than make_scheduler's LambdaLR (TrainState takes any LRScheduler) failed on resume:
    "'StepLR' object has no attribute 'lr_lambdas'"; restored, it goes on at the rates of an uninterrupted run."""
    def make():
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.1)
        sched = (torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5) if kind == "step"
                 else torch.optim.lr_scheduler.MultiplicativeLR(opt, lambda s: 0.9))
        return opt, sched

    def rates(opt, sched, steps):
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step(), sched.step()
        return out

    opt, sched = make()
    whole = rates(opt, sched, 6)
    opt, sched = make()
    first = rates(opt, sched, 3)
    opt2, sched2 = make()  # a fresh process: the optimizer at its initial rate
    load_scheduler(sched2, sched.state_dict())
    assert first + rates(opt2, sched2, 3) == pytest.approx(whole)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_every_optimizer_gets_the_settings_weight_decay_and_betas(name):
    """make_optimizer passed weight_decay on to each optimizer class (an SGD built without it trained with no decay,
    though the settings and the report said 0.1)."""
    settings = OptimizerSettings(name, lr=0.5, betas=(0.8, 0.95), weight_decay=0.1)
    group = make_optimizer([torch.nn.Parameter(torch.zeros(1))], settings).param_groups[0]
    assert group["lr"] == 0.5 and group["weight_decay"] == 0.1
    if name != "sgd":
        assert group["betas"] == (0.8, 0.95)


def test_the_default_cosine_floor_is_a_tenth_of_the_peak():
    """The module doc's nanoGPT floor: min_ratio 0.1 by default, reached one step past the budget."""
    settings = OptimizerSettings(schedule="cosine")
    assert settings.min_ratio == 0.1 and lr_factor(10, 10, settings) == pytest.approx(0.1)
