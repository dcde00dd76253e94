"""Training loops: no gradient crosses blocks; early stopping; checkpoints and resume; records."""

import copy
import json
import os
import re

import pytest
import torch
from torch import nn

from fwdlearn.fit import NonFiniteLossError, Stateful, Trainer
from fwdlearn.schedules import LocalOptimizers, layerwise_forward
from fwdlearn.records import RunRecord


def _blocks():
    torch.manual_seed(0)
    return nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.Tanh()) for _ in range(3)])


def test_block_loss_produces_no_gradient_in_lower_blocks():
    blocks = _blocks()
    outs = layerwise_forward(blocks, torch.randn(8, 4))
    outs[2].pow(2).sum().backward()
    assert all(p.grad is None for p in blocks[0].parameters())
    assert all(p.grad is None for p in blocks[1].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in blocks[2].parameters())


def test_local_optimizers_step_equals_separate_backward_per_block():
    blocks = _blocks()
    x = torch.randn(8, 4)
    opts = LocalOptimizers(blocks, lr=0.1, weight_decay=0.0, optimizer=torch.optim.SGD)
    before = [[p.detach().clone() for p in b.parameters()] for b in blocks]
    outs = layerwise_forward(blocks, x)
    losses = [o.pow(2).mean() for o in outs]
    grads = [torch.autograd.grad(l, list(b.parameters()), retain_graph=True) for l, b in zip(losses, blocks)]
    values = opts.step(losses)
    assert values == pytest.approx([l.item() for l in losses])
    for b, g, p0 in zip(blocks, grads, before):
        for p, gi, pi in zip(b.parameters(), g, p0):
            torch.testing.assert_close(p.detach(), pi - 0.1 * gi)


def test_nan_loss_raises_clear_error():
    blocks = _blocks()
    opts = LocalOptimizers(blocks)
    outs = layerwise_forward(blocks, torch.randn(2, 4))
    losses = [o.sum() for o in outs]
    losses[1] = losses[1] * float("nan")
    with pytest.raises(NonFiniteLossError, match="loss of block 1 is nan: training diverged"):
        opts.step(losses)


def test_trainer_early_stops_and_restores_best_state():
    model = nn.Linear(1, 1, bias=False)
    scores = iter([0.5, 0.7, 0.6, 0.6, 0.6, 0.9])

    def step(i):
        with torch.no_grad():
            model.weight.fill_(float(i))
        return {"loss": 1.0 / i}

    result = Trainer(steps=6, patience=3, quiet=True).run(step, lambda: {"val_accuracy": next(scores)}, model)
    assert result.stopped_early and result.steps_run == 5
    assert result.best_step == 2 and result.best["val_accuracy"] == 0.7
    assert model.weight.item() == 2.0  # the best step's weights are back


def test_a_tie_is_no_improvement_and_the_last_step_is_always_evaluated():
    model = nn.Linear(1, 1, bias=False)
    scores = iter([0.5, 0.7, 0.7, 0.6, 0.6, 0.6])
    result = Trainer(steps=6, patience=2, quiet=True).run(lambda i: {"loss": 1.0},
                                                         lambda: {"val_accuracy": next(scores)}, model)
    assert result.best_step == 2 and result.stopped_early and result.steps_run == 4  # the tie at 3 counted as bad
    calls = []
    result = Trainer(steps=5, eval_every=2, quiet=True).run(lambda i: {"loss": 1.0},
                                                           lambda: calls.append(1) or {"val_accuracy": 0.5}, model)
    assert [row["step"] for row in result.history if "val_accuracy" in row] == [2, 4, 5] and len(calls) == 3


def test_a_resumed_run_keeps_the_patience_it_had_used(tmp_path):
    """Two bad checks before the cut and one after it stop a run of patience 3, as without the cut."""
    model = nn.Linear(1, 1, bias=False)
    scores = iter([0.7, 0.5, 0.5, 0.5, 0.5, 0.5])
    evaluate = lambda: {"val_accuracy": next(scores)}  # noqa: E731
    ckpt = tmp_path / "run.pt"
    Trainer(steps=3, patience=3, quiet=True, checkpoint=ckpt).run(lambda i: {"loss": 1.0}, evaluate,
                                                                  Stateful({"model": model}))
    result = Trainer(steps=6, patience=3, quiet=True, checkpoint=ckpt, resume=True).run(
        lambda i: {"loss": 1.0}, evaluate, Stateful({"model": model}))
    assert result.stopped_early and result.steps_run == 4 and result.best_step == 1


def test_loss_checks_read_numpy_scalars_and_a_falling_negative_loss_is_no_divergence():
    import numpy as np

    from fwdlearn.errors import DivergenceError, UsageError
    from fwdlearn.schedules import end_to_end_step

    losses = iter([np.float32(1.0), np.float32("nan")])  # a NumPy NaN went through unchecked
    with pytest.raises(NonFiniteLossError, match="step 2: loss is nan"):
        Trainer(steps=2, quiet=True).run(lambda i: {"loss": next(losses)}, None, nn.Linear(1, 1))
    falling = iter([-0.5, -20.0, -150.0])  # improving (a log-likelihood): "more than 100 x its first value" before
    assert Trainer(steps=3, quiet=True).run(lambda i: {"loss": next(falling)}, None, nn.Linear(1, 1)).steps_run == 3
    growing = iter([0.5, 20.0, 150.0])
    with pytest.raises(DivergenceError, match="loss = 150 is more than 100 x its first value 0.5"):
        Trainer(steps=3, quiet=True).run(lambda i: {"loss": next(growing)}, None, nn.Linear(1, 1))
    with pytest.raises(UsageError, match="eval_every and patience must be ints"):
        Trainer(steps=10, eval_every=3.5, quiet=True)
    w = nn.Parameter(torch.tensor(3.0))
    with pytest.raises(UsageError, match="clip must be > 0, got 0"):  # it zeroed every gradient (and -1 ascended)
        end_to_end_step(w ** 2, torch.optim.SGD([w], lr=0.1), clip=0)


def test_checkpoint_resume_continues_steps(tmp_path):
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 2), torch.randn(16, 1)
    seen = []

    def step(i):
        seen.append(i)
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    evaluate = lambda: {"val_loss": ((model(x) - y) ** 2).mean().item()}
    ckpt = tmp_path / "run.pt"
    state = Stateful({"model": model, "opt": opt})
    Trainer(steps=3, monitor="val_loss", mode="min", quiet=True, checkpoint=ckpt).run(step, evaluate, state)
    with pytest.raises(FileExistsError, match="pass resume=True"):
        Trainer(steps=5, quiet=True, checkpoint=ckpt).run(step, evaluate, state)
    result = Trainer(steps=5, monitor="val_loss", mode="min", quiet=True, checkpoint=ckpt, resume=True).run(step, evaluate, state)
    assert seen == [1, 2, 3, 4, 5]
    assert [row["step"] for row in result.history] == [1, 2, 3, 4, 5]
    assert result.steps_run == 5


def test_numpy_and_tensor_metrics_are_kept_as_numbers_so_the_checkpoint_resumes(tmp_path):
    """A step returning NumPy scalars (which the divergence check reads) wrote a checkpoint its resume refused as
    unreadable ("it holds a Python object of type numpy._core.multiarray.scalar"); a step returning its loss tensor
    kept every step's autograd graph in the history, and neither showed on the progress bar."""
    import numpy as np

    model = nn.Linear(2, 1)
    x = torch.randn(8, 2)

    def step(i):
        out = model(x).pow(2).mean()
        return {"loss": np.float32(1.0 / i), "out": out, "count": np.int64(i)}

    evaluate = lambda: {"val_accuracy": np.float64(0.5), "val_loss": torch.tensor(0.25)}
    ckpt = tmp_path / "run.pt"
    first = Trainer(steps=2, quiet=True, checkpoint=ckpt).run(step, evaluate, model)
    result = Trainer(steps=4, quiet=True, checkpoint=ckpt, resume=True).run(step, evaluate, model)
    assert [row["step"] for row in result.history] == [1, 2, 3, 4] and result.history[-1]["loss"] == 0.25
    assert {k: type(v) for k, v in first.history[-1].items()} == {
        "step": int, "loss": float, "out": float, "count": int, "val_accuracy": float, "val_loss": float}
    assert first.best["val_loss"] == 0.25


def test_the_time_spent_evaluating_is_counted_apart_and_kept_on_resume(tmp_path, monkeypatch):
    """seconds held the evaluations with the steps, and nothing told them apart: seq train's tokens_per_second
    divided the tokens trained by both (a third of the time at --eval-every 10 was validation). On a fake clock (no
    wall-clock bound in a unit test): a step takes 1 s (2 s resumed), an evaluation 10 s."""
    import time
    import types

    import fwdlearn.fit as fit

    clock = [0.0]

    def tick(seconds):
        clock[0] += seconds

    monkeypatch.setattr(fit, "time", types.SimpleNamespace(time=time.time, perf_counter=lambda: clock[0]))
    ckpt = tmp_path / "run.pt"
    evaluate = lambda: tick(10.0) or {"val_accuracy": 0.5}
    first = Trainer(steps=4, eval_every=2, quiet=True, checkpoint=ckpt).run(lambda i: tick(1.0) or {"loss": 1.0},
                                                                            evaluate, nn.Linear(1, 1))
    assert (first.seconds, first.eval_seconds) == (24.0, 20.0)  # four steps, two evaluations
    result = Trainer(steps=6, eval_every=2, quiet=True, checkpoint=ckpt, resume=True).run(
        lambda i: tick(2.0) or {"loss": 1.0}, evaluate, nn.Linear(1, 1))
    assert (result.seconds, result.eval_seconds) == (38.0, 30.0)  # the first run's, and two steps and one evaluation


def test_resuming_a_finished_run_trains_nothing_and_says_so(tmp_path, capsys):
    model = nn.Linear(2, 1)
    seen = []

    def step(i):
        seen.append(i)
        return {"loss": 1.0}

    ckpt = tmp_path / "run.pt"
    Trainer(steps=3, quiet=True, checkpoint=ckpt).run(step, None, Stateful({"model": model}))
    capsys.readouterr()
    result = Trainer(steps=3, quiet=True, checkpoint=ckpt, resume=True).run(step, None, Stateful({"model": model}))
    assert seen == [1, 2, 3] and result.steps_run == 3
    assert capsys.readouterr().err == (f"{ckpt} already holds all 3 steps of the run: nothing is left to train "
                                       "(the budget is the total: raise the steps or epochs to train on)\n")


def test_a_step_budget_and_a_seed_are_ints_torch_takes():
    """Trainer(True) trained one step (operator.index takes a bool); seed_everything(2**70) raised torch's
    'Overflow when unpacking long', seed_everything(1.5) NumPy's cast error."""
    from fwdlearn.errors import UsageError
    from fwdlearn.fit import seed_everything

    with pytest.raises(UsageError, match="steps must be an integer, got True"):
        Trainer(True)
    for seed in (2**70, 1.5, "1", -2**63 - 1, torch.tensor([1])):
        with pytest.raises(ValueError, match=r"seed must be an int in \[-2\*\*63, 2\*\*64\)"):
            seed_everything(seed)
    seed_everything(2**64 - 1)  # the bounds are torch's
    seed_everything(-2**63)
    seed_everything(torch.tensor(1))  # (a 0-d tensor: its comparison with 2**64 overflowed)


def test_missing_monitor_key_is_named():
    with pytest.raises(KeyError, match="monitored key is 'val_accuracy'"):
        Trainer(steps=1, quiet=True).run(lambda e: {}, lambda: {"acc": 1.0})


def test_run_record_json_and_no_overwrite(tmp_path):
    rec = RunRecord("demo", {"layers": 2}, seed=7)
    rec.log(epoch=1, loss=torch.tensor(0.5))
    rec.summary["acc"] = 0.9
    path = rec.save(tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert data["config"] == {"layers": 2} and data["seed"] == 7
    assert data["metrics"] == [{"epoch": 1, "loss": 0.5}] and "torch" in data["versions"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        rec.save(path)
    rec.save(path, overwrite=True)


# ---------------------------------------------------------------------------- divergence and checkpoints

from fwdlearn.errors import DivergenceError, TrainingInterrupted  # noqa: E402
from fwdlearn.fit import read_checkpoint  # noqa: E402


def _linear_run(losses, weights=None):
    """A step function reporting ``losses[i - 1]`` and setting the weight to ``weights[i - 1]``."""
    model = nn.Linear(1, 1, bias=False)

    def step(i):
        if weights is not None:
            with torch.no_grad():
                model.weight.fill_(weights[i - 1])
        return {"loss": losses[i - 1]}

    return model, step


def test_a_loss_growing_past_the_limit_stops_the_run_naming_step_rule_and_value():
    model, step = _linear_run([2.0, 1.5, 50.0, 250.0, 1.0])
    with pytest.raises(DivergenceError, match=r"demo: step 4: loss = 250 is more than 100 x its first value 2 "
                                              r"\(the divergence limit\): training diverged. Lower the learning rate, "
                                              r"or raise the limit \(Trainer\(diverge_factor=...\)\)"):
        Trainer(steps=5, quiet=True, desc="demo").run(step)
    model, step = _linear_run([2.0, 1.5, 50.0, 250.0, 1.0])
    assert Trainer(steps=5, quiet=True, diverge_factor=1e3).run(step).steps_run == 5  # a raised limit lets it pass
    model, step = _linear_run([0.01, 50.0])  # the limit counts from at least 1: a loss near 0 may move
    assert Trainer(steps=2, quiet=True).run(step).steps_run == 2


def test_a_non_finite_loss_names_the_step():
    model, step = _linear_run([1.0, 1.0, float("inf")])
    with pytest.raises(NonFiniteLossError, match="fit: step 3: loss is inf"):
        Trainer(steps=3, quiet=True).run(step)


def test_a_non_finite_state_is_never_saved_nor_marked_best(tmp_path):
    ckpt = tmp_path / "run.pt"
    model, step = _linear_run([1.0, 0.9, 0.8, 0.7], weights=[1.0, 2.0, float("nan"), 4.0])
    values = iter([0.5, 0.6, 0.9, 0.9])  # the NaN state at step 3 would be the best
    with pytest.raises(NonFiniteLossError, match=r"step 3: weight is not finite, so the state is not kept as the best"):
        Trainer(steps=4, quiet=True, checkpoint=ckpt).run(step, lambda: {"val_accuracy": next(values)}, model)
    saved = read_checkpoint(ckpt)
    assert saved["step"] == 2 and saved["best_step"] == 2 and torch.isfinite(saved["state"]["weight"]).all()
    model, step = _linear_run([1.0, 0.9], weights=[1.0, float("inf")])
    with pytest.raises(NonFiniteLossError, match="step 2: weight is not finite, so the state is not saved"):
        Trainer(steps=2, quiet=True, checkpoint=tmp_path / "b.pt").run(step, state=model)
    assert read_checkpoint(tmp_path / "b.pt")["step"] == 1


def test_a_nan_validation_score_is_never_the_best():
    model, step = _linear_run([1.0, 1.0])
    with pytest.raises(NonFiniteLossError, match="step 1: the validation val_loss is nan, so no best state"):
        Trainer(steps=2, monitor="val_loss", mode="min", quiet=True).run(step, lambda: {"val_loss": float("nan")}, model)


def test_checkpoints_keep_the_best_weights_once_and_no_optimizer_in_them(tmp_path):
    model = nn.Linear(64, 64)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    x = torch.randn(8, 64)
    scores = iter([0.9, 0.5, 0.4])

    def step(i):
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    state = Stateful({"model": model, "optimizer": opt}, best=("model",))
    ckpt = tmp_path / "run.pt"
    trainer = Trainer(steps=3, quiet=True, checkpoint=ckpt, checkpoint_every=1)
    trainer.run(step, lambda: {"val_accuracy": next(scores)}, state)
    saved = read_checkpoint(ckpt)
    assert saved["best_step"] == 1 and set(saved["best_state"]) == {"model"}  # best weights, no optimizer moments
    assert not saved["best_is_state"]
    assert torch.equal(model.weight, saved["best_state"]["model"]["weight"])  # the best state is restored
    Trainer(steps=1, quiet=True, checkpoint=tmp_path / "last.pt").run(step, lambda: {"val_accuracy": 1.0}, state)
    last = read_checkpoint(tmp_path / "last.pt")
    assert last["best_is_state"] and last["best_state"] is None  # the best is the last: its weights are stored once


def test_resume_applies_new_settings_and_reports_them(tmp_path):
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = lambda i: {"loss": 1.0}  # noqa: E731
    state = Stateful({"model": model, "optimizer": opt})
    Trainer(steps=2, quiet=True, checkpoint=tmp_path / "r.pt", settings={"lr": 0.1}).run(step, state=state)
    opt.param_groups[0]["lr"] = 0.05  # the resumed run's optimizer is set up with the new value
    result = Trainer(steps=4, quiet=True, checkpoint=tmp_path / "r.pt", resume=True, settings={"lr": 0.05}).run(
        step, state=state)
    assert result.resumed == {"from_step": 2, "changed": {"lr": [0.1, 0.05]}}
    assert opt.param_groups[0]["lr"] == 0.05  # loading the optimizer's moments kept the new learning rate


def test_a_resume_that_changes_the_validation_data_scores_the_best_state_again(tmp_path):
    """A new eval_tokens on resume validated on other tokens, and the new values were compared with the best's value
    on the old ones: a harder subset never beat it, so the state of the old best was kept, however much better the
    later states were (seq train --resume --eval-tokens 16: step 3's state, val loss 3.99 on the whole split, kept
    over step 9's, 3.59)."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)

    def step(i):
        with torch.no_grad():
            model.weight += 1.0  # every step is better: val_loss = offset - weight
        return {"loss": 1.0}

    offset = {"value": 10.0}  # the validation data: the resumed run reads a harder subset (offset 100)
    evaluate = lambda: {"val_loss": offset["value"] - float(model.weight.detach())}  # noqa: E731
    state, ckpt = Stateful({"model": model}), tmp_path / "v.pt"
    run = lambda steps, **kw: Trainer(steps=steps, monitor="val_loss", mode="min", quiet=True,  # noqa: E731
                                      checkpoint=ckpt, rescore=("eval_tokens",), **kw).run(step, evaluate, state)
    assert run(2, settings={"eval_tokens": None}).best_step == 2
    offset["value"] = 100.0
    result = run(4, resume=True, settings={"eval_tokens": 16})
    assert result.resumed["changed"] == {"eval_tokens": [None, 16]}
    assert result.best_step == 4 and model.weight.item() == 4.0  # (the old best's 8 beat 97 and 96)
    assert result.best["val_loss"] == 96.0
    # a change of another setting (the validation data the same) keeps the best's value: no evaluation is added
    offset["value"], ckpt = 10.0, tmp_path / "w.pt"
    with torch.no_grad():
        model.weight.fill_(0.0)
    run(2, settings={"lr": 0.1})
    calls = []
    evaluate = lambda: calls.append(1) or {"val_loss": offset["value"] - float(model.weight.detach())}  # noqa: E731
    result = run(4, resume=True, settings={"lr": 0.2})
    assert result.best_step == 4 and result.best["val_loss"] == 6.0 and len(calls) == 2  # (steps 3 and 4 only)


def test_ctrl_c_names_the_last_checkpoint(tmp_path):
    def step(i):
        if i == 4:
            raise KeyboardInterrupt
        return {"loss": 1.0}

    with pytest.raises(TrainingInterrupted) as caught:
        Trainer(steps=6, quiet=True, checkpoint=tmp_path / "c.pt", checkpoint_every=2).run(step)
    assert str(caught.value) == (f"interrupted at step 4; the last checkpoint is {tmp_path / 'c.pt'} (step 2): run the "
                                 f"same command with --resume to continue (and --checkpoint {tmp_path / 'c.pt'} if it "
                                 "had no --name; in Python resume=True)")  # a fresh default name finds no checkpoint
    assert not (tmp_path / "c.pt.tmp").exists()


def test_ctrl_c_just_after_a_checkpoint_replaced_the_file_names_its_step(tmp_path, monkeypatch):
    """An interrupt between os.replace and the Trainer noting the save named the save before (step 2 for a file
    holding step 4)."""
    import fwdlearn.files

    real, renames = os.replace, []

    def replace_then_interrupt(src, dst):
        real(src, dst)
        renames.append(dst)
        if len(renames) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(fwdlearn.files.os, "replace", replace_then_interrupt)
    with pytest.raises(TrainingInterrupted) as caught:
        Trainer(steps=6, quiet=True, checkpoint=tmp_path / "c.pt", checkpoint_every=2).run(lambda i: {"loss": 1.0})
    monkeypatch.undo()
    assert read_checkpoint(tmp_path / "c.pt")["step"] == 4
    assert caught.value.saved_step == 4 and "(step 4)" in str(caught.value)


def test_ctrl_c_inside_the_first_save_of_an_overwriting_run_names_no_earlier_runs_file(tmp_path, monkeypatch):
    """The file on disk then holds another run's step: it is not this run's checkpoint to resume from."""
    import fwdlearn.fit

    path = tmp_path / "c.pt"
    Trainer(steps=6, quiet=True, checkpoint=path, checkpoint_every=2).run(lambda i: {"loss": 1.0})

    def interrupted(target, write):
        raise KeyboardInterrupt

    monkeypatch.setattr(fwdlearn.fit, "atomic_write", interrupted)
    with pytest.raises(TrainingInterrupted) as caught:
        Trainer(steps=6, quiet=True, checkpoint=path, checkpoint_every=2, overwrite=True).run(lambda i: {"loss": 1.0})
    assert caught.value.saved_step is None and "before the first checkpoint" in str(caught.value)


def test_an_early_stopped_run_stays_stopped_when_resumed(tmp_path):
    model, step = _linear_run([1.0] * 8)
    scores = [0.5, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    first = Trainer(steps=8, patience=2, quiet=True, checkpoint=tmp_path / "e.pt").run(
        step, iter([{"val_accuracy": s} for s in scores]).__next__, model)
    assert first.stopped_early and first.steps_run == 3
    again = Trainer(steps=8, patience=2, quiet=True, checkpoint=tmp_path / "e.pt", resume=True).run(
        step, lambda: pytest.fail("a stopped run must not train on"), model)
    assert again.stopped_early and again.steps_run == 3 and again.best_step == 1


def test_resuming_an_early_stopped_run_says_that_a_new_patience_or_budget_does_not_apply(tmp_path, capsys):
    """A resume with a larger patience and budget trained nothing (a stopped run stays stopped), silently, while graph
    train printed and recorded the new patience as applied."""
    model, step = _linear_run([1.0] * 8)
    scores = [0.5, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    Trainer(steps=8, patience=2, quiet=True, checkpoint=tmp_path / "e.pt").run(
        step, iter([{"val_accuracy": s} for s in scores]).__next__, model)
    assert capsys.readouterr().err == ""
    again = Trainer(steps=16, patience=5, quiet=True, checkpoint=tmp_path / "e.pt", resume=True).run(
        step, lambda: pytest.fail("a stopped run must not train on"), model)
    assert again.stopped_early and again.steps_run == 3 and again.resumed["changed"] == {"patience": [2, 5]}
    err = capsys.readouterr().err
    assert f"{tmp_path / 'e.pt'} stopped early at step 3 (val_accuracy had not improved for 2 evaluations)" in err
    assert "a new patience or budget does not apply; to train with them, start over (--overwrite" in err


@pytest.mark.parametrize("given", [{}, {"resume": True}, {"overwrite": True}])
def test_a_checkpoint_path_that_is_a_folder_is_named_as_one(given, tmp_path):
    """A folder given as the checkpoint was "checkpoint ... already exists; pass resume=True (--resume) to continue
    that run": followed, that said "no checkpoint at ..." (for a layer-by-layer fit too); only overwrite=True named the
    folder."""
    from fwdlearn.errors import UsageError
    from fwdlearn.graphs import ForwardGNN, load_graph

    model, step = _linear_run([1.0] * 2)
    with pytest.raises(UsageError, match=r"cannot write .* \(checkpoint\): it is a folder; give a file name"):
        Trainer(steps=2, quiet=True, checkpoint=tmp_path, **given).run(step, state=model)
    data = load_graph("karate", split="random", seed=0)
    gnn = ForwardGNN(data.num_features, data.num_classes, hidden=4, layers=2, method="sf")
    with pytest.raises(UsageError, match=r"cannot write .* \(checkpoint\): it is a folder; give a file name"):
        gnn.fit(data, epochs=1, quiet=True, checkpoint=tmp_path, **given)


def test_run_record_is_valid_json_with_non_finite_numbers_noted(tmp_path):
    rec = RunRecord("demo", {"lr": 1e-3}, seed=0)
    rec.log(step=1, loss=float("nan"), curve=torch.tensor([1.0, float("inf")]))
    rec.summary["best"] = float("-inf")
    text = rec.save(tmp_path / "r.json").read_text()
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert data["metrics"] == [{"step": 1, "loss": None, "curve": [1.0, None]}] and data["summary"]["best"] is None
    assert data["non_finite"] == ["summary.best: -inf", "metrics[0].loss: nan", "metrics[0].curve[1]: inf"]


def test_run_record_names_only_files_that_exist(tmp_path):
    rec = RunRecord("demo")
    with pytest.raises(FileNotFoundError, match="the record would name checkpoint .*missing.pt, which was not written"):
        rec.add_file("checkpoint", tmp_path / "missing.pt")
    (tmp_path / "c.pt").write_bytes(b"x")
    rec.add_file("checkpoint", tmp_path / "c.pt")
    assert json.loads(rec.save(tmp_path / "r.json").read_text())["files"] == {"checkpoint": str(tmp_path / "c.pt")}


def test_restoring_the_best_state_keeps_the_optimizers_settings(tmp_path):
    """The best state's optimizer part was loaded whole: a resumed run with a new learning rate ended with the old."""
    torch.manual_seed(0)
    checkpoint = tmp_path / "best.pt"

    def make(lr):
        model = torch.nn.Linear(2, 1)
        return model, torch.optim.SGD(model.parameters(), lr=lr)

    values = iter([3.0, 1.0, 0.0, 0.0])  # the best evaluation is the first

    def run(model, opt, steps, **options):
        def step(_):
            opt.zero_grad()
            model(torch.ones(1, 2)).sum().backward()
            opt.step()
            return {"loss": 1.0}
        return Trainer(steps, monitor="v", quiet=True, checkpoint=checkpoint, **options).run(
            step, lambda: {"v": next(values)}, Stateful({"model": model, "opt": opt}))

    run(*make(0.1), 2)
    model, opt = make(0.5)  # resumed with a new learning rate
    assert run(model, opt, 4, resume=True, settings={"lr": 0.5}).best_step == 1
    assert opt.param_groups[0]["lr"] == 0.5


def test_a_checkpoint_that_cannot_be_written_is_named_before_work_or_when_saving(tmp_path, monkeypatch):
    """A Python-API run learnt only at its first save that the path could not be written (a bare FileExistsError or
    torch's 'open file failed'); a full disk gave torch's 'unexpected pos ...' RuntimeError without the path."""
    from fwdlearn.errors import UsageError

    model = nn.Linear(2, 1)
    seen = []
    step = lambda i: seen.append(i) or {"loss": 0.0}
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match=r"cannot write .*file/run.pt \(checkpoint\): .*file is a file, not a folder"):
        Trainer(steps=2, quiet=True, checkpoint=tmp_path / "file" / "run.pt").run(step, None, Stateful({"m": model}))
    assert seen == []  # refused before any step

    def full_disk(obj, path):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 144768 vs 144720")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(UsageError, match=r"could not write the checkpoint .*run.pt \(RuntimeError: \[enforce fail.*"
                                         r"free disk space or choose another checkpoint path"):
        Trainer(steps=2, quiet=True, checkpoint=tmp_path / "run.pt").run(step, None, Stateful({"m": model}))
    assert not (tmp_path / "run.pt.tmp").exists()


def test_options_of_another_method_are_not_blamed_on_an_older_version():
    """A bp checkpoint resumed as dfa listed dfa's own options as 'not recorded (checkpoint: an older fwdlearn)'."""
    from fwdlearn.fit import _differences

    saved = {"model": {"method": "bp", "layers": 2}, "seed": 0}
    assert _differences(saved, {"model": {"method": "dfa", "layers": 2, "feedback": "uniform"}, "seed": 0}) == [
        "model.method 'bp' (checkpoint) vs 'dfa' (now)"]
    assert _differences(saved, {"model": {"method": "bp", "layers": 2, "feedback": "uniform"}, "seed": 1}) == [
        "model.feedback not recorded (checkpoint: an older fwdlearn) vs 'uniform' (now)", "seed 0 (checkpoint) vs 1 (now)"]


def test_a_resume_reports_the_loops_own_changed_settings(tmp_path):
    """A new eval_every, patience or diverge_factor on resume applied without a word."""
    model = nn.Linear(2, 1)
    step = lambda i: {"loss": 1.0}
    evaluate = lambda: {"val_accuracy": 0.5}
    state = Stateful({"m": model})
    Trainer(steps=2, quiet=True, checkpoint=tmp_path / "c.pt", eval_every=1).run(step, evaluate, state)
    result = Trainer(steps=4, quiet=True, checkpoint=tmp_path / "c.pt", resume=True, eval_every=2, patience=7,
                     diverge_factor=50.0).run(step, evaluate, state)
    assert result.resumed == {"from_step": 2, "changed": {"eval_every": [1, 2], "patience": [None, 7],
                                                          "diverge_factor": [100.0, 50.0]}}


class _RunsCode:
    """An object whose unpickling runs code (here: makes a folder)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_file_with_arbitrary_objects_is_refused_without_running_them(tmp_path):
    """A checkpoint or model file is read with weights_only: a crafted pickle's code does not run."""
    from fwdlearn.errors import InputError
    from fwdlearn.sequences.nn.language_model import load_language_model

    marker = tmp_path / "ran"
    path = tmp_path / "crafted.pt"
    torch.save({"payload": _RunsCode(marker), "model": {}, "config": {}, "step": 1}, path)
    for load in (read_checkpoint, load_language_model):
        with pytest.raises(InputError, match=r"holds a Python object of type \S*mkdir, which fwdlearn does not "
                                             r"unpickle \(that could run code the file carries\)"):
            load(path)
    assert not marker.exists()


def test_a_torch_file_holding_a_numpy_array_is_not_called_not_a_torch_file(tmp_path):
    """A torch file holding a NumPy int64 array (a graph's attribute, a checkpoint's extra) was "not a torch file (Can
    only build Tensor, ... but got <class 'numpy.dtypes.Int64DType'>)": it is a torch file; it holds what fwdlearn does
    not unpickle, and the fix is to save a tensor."""
    import numpy as np

    from fwdlearn.errors import InputError

    path = tmp_path / "extra.pt"
    for value in (np.arange(3), np.arange(3.0), np.int64(3)):
        torch.save({"extra": value}, path)
        with pytest.raises(InputError, match=r"holds a NumPy array or number \(numpy\.\S+\), which fwdlearn does not "
                                             r"unpickle .*: save it as a tensor instead \(torch.as_tensor\(value\)\)") \
                as refused:
            read_checkpoint(path)
        assert "not a torch file" not in str(refused.value)
    path.write_bytes(bytes(range(256)) * 4)  # (random bytes are still no torch file)
    with pytest.raises(InputError, match=r"not a torch file"):
        read_checkpoint(path)


class _ObjectDtype:
    """``dtype('O')`` as torch's safe reader builds it: ``numpy.dtype`` called, no state given (no BUILD to refuse)."""

    def __reduce__(self):
        import numpy as np

        return np.dtype, ("O8", False, True)


class _ForgedUint32:
    """``dtype('u4')`` (whose class fwdlearn's reader allows, for NumPy's RNG state) given a state NumPy never writes:
    a subarray or a field of objects over its 4 bytes, or flags that say it holds objects."""

    STATES = {"object subarray": (3, "|", (_ObjectDtype(), (1,)), None, None, 4, 4, 0),
              "object field": (3, "|", None, ("a",), {"a": (_ObjectDtype(), 0)}, 4, 4, 0),
              "object flags": (3, "<", None, None, None, -1, -1, 1)}

    def __init__(self, forged: str) -> None:
        self.forged = forged

    def __reduce__(self):
        import numpy as np

        return np.dtype, ("u4", False, True), self.STATES[self.forged]


class _ForgedArray:
    """An array of ``dtype`` whose bytes 0x41414141... are taken for an object's address where it is shown."""

    def __init__(self, dtype) -> None:
        self.dtype = dtype

    def __reduce__(self):
        import numpy as np

        reconstruct = np.zeros(1).__reduce__()[0]  # (numpy's _reconstruct, under either of its module names)
        data = [1] if isinstance(self.dtype, _ObjectDtype) else b"\x41" * 4
        return reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), self.dtype, False, data)


def _forged_checkpoint(path, value) -> None:
    """A real Trainer checkpoint at ``path`` whose fingerprint's ``data`` is ``value``."""
    Trainer(1, monitor="val", mode="min", quiet=True, checkpoint=path, overwrite=True,
            fingerprint={"data": "abc"}).run(lambda i: {"loss": 1.0}, lambda: {"val": 1.0}, state=nn.Linear(2, 1))
    ckpt = torch.load(path, weights_only=False)
    ckpt["fingerprint"]["data"] = value
    torch.save(ckpt, path)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # (NumPy's own word as it frees
@pytest.mark.parametrize("forged", ["object subarray", "object field", "object flags", "object array"])  # one)
def test_a_torch_file_holding_a_numpy_dtype_of_a_forged_state_is_refused(tmp_path, forged):
    """torch's safe reader gives a numpy.dtype any state once its class is allowed (fwdlearn allows uint32's, for
    NumPy's RNG state): a uint32 dtype with a subarray or field of objects over its bytes, or an object array, was
    read as a checkpoint. Refused, naming what it holds."""
    from fwdlearn.errors import InputError
    from fwdlearn.fit import read_checkpoint

    path = tmp_path / "forged.pt"
    dtype = _ObjectDtype() if forged == "object array" else _ForgedUint32(forged)
    _forged_checkpoint(path, {"rng": [_ForgedArray(dtype)]})
    with pytest.raises(InputError, match=r"forged\.pt as a fwdlearn checkpoint \(UnpicklingError: it holds a NumPy "
                                         r"array whose dtype has a state NumPy does not write \(.*\), which "
                                         r"fwdlearn does not read"):
        read_checkpoint(path)
    _forged_checkpoint(path, "abc")  # (a checkpoint's own NumPy RNG state, uint32 arrays, is read as before)
    assert read_checkpoint(path)["rng"]["numpy"][1].dtype.str == "<u4"


def test_resuming_a_checkpoint_whose_fingerprint_holds_a_forged_numpy_array_does_not_crash(tmp_path):
    """A crafted checkpoint given to a resume: its fingerprint's entry, an array of a uint32 dtype whose state makes it
    a subarray of objects, differed from the run's, and the message that named the difference showed it: the process
    crashed (SIGSEGV, reading an object at 0x41414141). It is refused as it is read."""
    import subprocess
    import sys

    path = tmp_path / "forged.pt"
    _forged_checkpoint(path, _ForgedArray(_ForgedUint32("object subarray")))
    resume = ("import torch\nfrom torch import nn\nfrom fwdlearn.fit import Trainer\ntry:\n"
              f"    Trainer(2, monitor='val', mode='min', quiet=True, checkpoint={str(path)!r}, resume=True, "
              "fingerprint={'data': 'abc'}).run(lambda i: {'loss': 1.0}, lambda: {'val': 1.0}, state=nn.Linear(2, 1))\n"
              "except Exception as error:\n    print(type(error).__name__, error)\n")
    done = subprocess.run([sys.executable, "-c", resume], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"^InputError cannot read .*forged\.pt as a fwdlearn checkpoint .*it holds a NumPy array whose "
                     r"dtype has a state NumPy does not write", done.stdout)


def test_a_language_model_file_that_does_not_fit_its_config_names_the_keys(tmp_path):
    from fwdlearn.errors import InputError
    from fwdlearn.sequences import RecurrentLM
    from fwdlearn.sequences.nn.language_model import load_language_model

    RecurrentLM(10, hidden=8, layers=1).save(tmp_path / "m.pt")
    bundle = torch.load(tmp_path / "m.pt", weights_only=True)
    del bundle["model"]["head.bias"]
    torch.save(bundle, tmp_path / "edited.pt")
    with pytest.raises(InputError, match=r"the weights in .*edited.pt do not fit the recurrent model its config "
                                         r"describes \(.*Missing key\(s\) in state_dict: \"head.bias\""):
        load_language_model(tmp_path / "edited.pt")
    with pytest.raises(IsADirectoryError, match="is a folder; give the model file's path"):
        load_language_model(tmp_path)


def test_a_language_model_file_names_itself_in_every_refusal_and_comes_back_on_its_device(tmp_path):
    """A kind or config this process cannot build, and a vocabulary wider than the model, were errors naming no file
    (the vocabulary one only at the first forward); map_location placed the file's tensors, not the model."""
    from fwdlearn.errors import InputError
    from fwdlearn.sequences import RecurrentLM
    from fwdlearn.sequences.data.text import Vocabulary
    from fwdlearn.sequences.nn.language_model import load_language_model

    model, wide = RecurrentLM(4, hidden=8, layers=1), Vocabulary(list("abcdef"))
    with pytest.raises(ValueError, match=r"the vocabulary holds 6 tokens but the model reads 4 \(vocab_size\)"):
        model.save(tmp_path / "m.pt", vocab=wide)
    assert not (tmp_path / "m.pt").exists()
    model.save(tmp_path / "m.pt", vocab=Vocabulary(list("abcd")))
    bundle = torch.load(tmp_path / "m.pt", weights_only=True)
    for edit, expected in ((dict(kind="mine"), r"unknown language model kind 'mine'"),
                           (dict(config={**bundle["config"], "hidden": "x"}), r"hidden must be an int >= 1, got 'x'"),
                           (dict(vocab=wide.state_dict()), r"its vocabulary holds 6 tokens but its model reads 4")):
        torch.save({**bundle, **edit}, tmp_path / "edited.pt")
        with pytest.raises(InputError, match=f"edited.pt: {expected}"):
            load_language_model(tmp_path / "edited.pt")
    loaded, vocab = load_language_model(tmp_path / "m.pt", map_location="meta")
    assert {p.device.type for p in loaded.parameters()} == {"meta"} and len(vocab) == 4
    with pytest.raises(ValueError, match=r"map_location='nowhere' is not a device"):
        load_language_model(tmp_path / "m.pt", map_location="nowhere")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"map_location='cuda': this machine has 0 CUDA device\(s\); load it "
                                             r"with map_location='cpu'"):
            load_language_model(tmp_path / "m.pt", map_location="cuda")


def test_the_progress_bar_keeps_the_last_evaluation(monkeypatch):
    """The bar showed the val_* metrics only on the steps that evaluated (4 of 55 redraws in a seq train run)."""
    from fwdlearn import fit

    shown = []
    real = fit.progress

    def spying(*args, **kwargs):
        bar = real(*args, **kwargs)
        set_postfix = bar.set_postfix
        bar.set_postfix = lambda values, **kw: (shown.append(dict(values)), set_postfix(values, **kw))[1]
        return bar

    monkeypatch.setattr(fit, "progress", spying)
    step = lambda i: {"loss": 1.0 / i}  # noqa: E731
    fit.Trainer(steps=4, eval_every=2, quiet=True, monitor="val_loss", mode="min").run(step, lambda: {"val_loss": 0.5})
    assert [sorted(row) for row in shown] == [["loss"], ["loss", "val_loss"], ["loss", "val_loss"],
                                              ["loss", "val_loss"]]
    assert shown[2]["loss"] == "0.3333" and shown[2]["val_loss"] == "0.5"


def test_a_progress_bar_written_to_a_file_redraws_rarely(capsys):
    """Ten redraws a second on a job's log (stderr a file, not a terminal) added megabytes an hour."""
    from fwdlearn.fit import progress

    bar = progress(range(3), quiet=False)  # (pytest's captured stderr is no terminal)
    assert bar.mininterval == 30.0
    bar.close()


def test_a_progress_bar_in_a_notebook_redraws_as_in_a_terminal_and_stays(capsys, monkeypatch):
    """A Jupyter kernel's stderr is no terminal either: tqdm.auto's widget was given the log file's 30 s between
    redraws, so a notebook's bar stood still (a fit of under 30 s jumped from 0 to its end)."""
    import tqdm.auto
    from tqdm.notebook import tqdm as notebook_tqdm

    from fwdlearn.fit import progress

    class Widget(notebook_tqdm):  # (the class tqdm.auto picks in a notebook; no widget drawn here)
        def __init__(self, iterable=None, **kwargs):
            self.kwargs, self.disable = kwargs, True  # (disabled: closing it draws nothing)

    monkeypatch.setattr(tqdm.auto, "tqdm", Widget)
    bar = progress(range(3), desc="fit")
    assert "mininterval" not in bar.kwargs and bar.kwargs["leave"] is True and bar.kwargs["desc"] == "fit"


def test_a_progress_bar_in_a_notebook_without_ipywidgets_redraws_as_in_a_terminal(capsys, monkeypatch):
    """Without ipywidgets (JupyterLab installed alone) tqdm.auto draws its text bar to the kernel's stderr, no terminal
    either: it was given the log file's 30 s between redraws, so a 3 s fit of 200 steps showed 0 % until its end (2
    redraws); the notebook redraws a '\\r' in place, as a terminal does."""
    import io
    import sys

    import tqdm.auto
    from tqdm.std import tqdm as text_tqdm

    from fwdlearn.fit import progress

    class OutStream(io.StringIO):  # (ipykernel.iostream.OutStream: a Jupyter kernel's sys.stderr)
        pass

    OutStream.__module__ = "ipykernel.iostream"
    monkeypatch.setattr(tqdm.auto, "tqdm", text_tqdm)  # (what tqdm.auto picks in a kernel without ipywidgets)
    monkeypatch.setattr(sys, "stderr", OutStream())
    bar = progress(range(3), desc="fit")
    assert bar.mininterval < 1.0 and bar.leave is True
    bar.close()
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # (a job's log: as before)
    bar = progress(range(3), desc="fit")
    assert bar.mininterval == 30.0 and bar.leave is True
    bar.close()


def test_a_progress_bar_in_a_log_file_ends_with_its_last_state_on_a_line_of_its_own(capsys):
    """A bar in a job's log was cleared as it closed: the log kept its first redraw (0/4) and the blanks that cleared
    it, joined to the next line, so a finished run read as one that never started. It now ends with its last state
    (4/4, counted in the Trainer's unit) and a newline."""
    Trainer(steps=4, quiet=False, desc="fit").run(lambda i: {"loss": 1.0 / i})
    err = capsys.readouterr().err  # (pytest's captured stderr is no terminal)
    assert err.endswith("\n") and err.count("\n") == 1
    last = err.rstrip("\n").split("\r")[-1]
    assert last.startswith("fit: 100%") and "4/4" in last and "step/s" in last


def test_a_text_file_given_as_a_checkpoint_is_not_a_torch_file(tmp_path):
    from fwdlearn.errors import InputError

    for i, text in enumerate(("hello world\n" * 10, "abc\n")):
        path = tmp_path / f"text{i}.pt"
        path.write_text(text)
        with pytest.raises(InputError, match=r"cannot read .* as a fwdlearn checkpoint \(UnpicklingError: not a torch "
                                             r"file"):
            read_checkpoint(path)


def test_a_checkpoint_of_another_kind_of_run_is_named_as_such():
    """A seq train checkpoint given to graph train listed the graph settings as 'not recorded (checkpoint: an older
    fwdlearn)'; one given with other layers blamed the layers, then (after the fix) the vocabulary."""
    from fwdlearn.errors import UsageError
    from fwdlearn.fit import AnotherKindOfRun, CheckpointMismatch, check_fingerprint

    lm = {"fingerprint": {"model": {"kind": "recurrent", "vocab_size": 7, "layers": 2}, "seed": 0}}
    gnn = {"model": {"method": "local:prototype", "conv": "gcn", "layers": 1}, "seed": 0}
    with pytest.raises(UsageError, match=r"^the checkpoint c.pt was made by another kind of run: its model has kind, "
                                         r"vocab_size, this one conv, method. Resume it with the command that made it"):
        check_fingerprint("c.pt", lm, gnn)
    older = {"fingerprint": {"model": {"kind": "recurrent", "layers": 2}, "seed": 0}}  # a setting not yet recorded
    with pytest.raises(UsageError, match=r"model.vocab_size not recorded \(checkpoint: an older fwdlearn\)"):
        check_fingerprint("c.pt", older, lm["fingerprint"])
    # one method of two kinds of model (bp: a node classifier's checkpoint given to a link predictor): each has entries
    # the other lacks, which no older fwdlearn explains (it records fewer entries, never others)
    node = {"fingerprint": {"model": {"method": "bp", "layers": 2, "num_classes": 3}, "seed": 0}}
    link = {"model": {"method": "bp", "layers": 2, "theta": 2.0}, "seed": 0}
    with pytest.raises(AnotherKindOfRun, match=r"^the checkpoint c.pt was made by another kind of run: its model has "
                                               r"num_classes, this one theta\. Resume it with the command"):
        check_fingerprint("c.pt", node, link)
    with pytest.raises(UsageError, match=r"model.method 'bp' \(checkpoint\) vs 'dfa' \(now\)"):  # (another method:
        check_fingerprint("c.pt", node, {**link, "model": {**link["model"], "method": "dfa"}})  # said as such)
    # two kinds of language model (a GRU's checkpoint given to a transformer): each has entries the other lacks, but
    # their kinds differ, so the differences are listed (seq train says them as its flags, --model gru to resume)
    transformer = {"model": {"kind": "transformer", "vocab_size": 7, "layers": 2, "heads": 4}, "seed": 0}
    with pytest.raises(CheckpointMismatch, match=r"model.kind 'recurrent' \(checkpoint\) vs 'transformer' \(now\)"):
        check_fingerprint("c.pt", {"fingerprint": {**lm["fingerprint"], "model": {**lm["fingerprint"]["model"],
                                                                                  "cell": "gru"}}}, transformer)


def test_a_checkpoint_of_an_older_format_names_the_version_and_a_fix_that_works():
    """A seq train checkpoint from before the fingerprint held the dtype was refused as "made by a different run:
    dtype not recorded (checkpoint: an older fwdlearn) vs 'float32' (now). Resume with the settings and data it was
    made with": no settings make it record the dtype."""
    from fwdlearn import __version__
    from fwdlearn.errors import UsageError
    from fwdlearn.fit import check_fingerprint

    now = {"model": {"kind": "recurrent", "layers": 2}, "dtype": "float32", "seed": 0}
    older = {"fingerprint": {"model": {"kind": "recurrent", "layers": 2}, "seed": 0}}
    with pytest.raises(UsageError, match=rf"^the checkpoint c.pt was written by an older fwdlearn than this one "
                                         rf"\({re.escape(__version__)}\), whose checkpoints record less: dtype not "
                                         r"recorded \(checkpoint: an older fwdlearn\) vs 'float32' \(now\)\. This "
                                         r"version cannot tell .* resume it with the fwdlearn version that wrote it, or "
                                         r"start a new run \(another --name or --checkpoint, or --overwrite\)$"):
        check_fingerprint("c.pt", older, now)
    with pytest.raises(UsageError, match=r"made by a different run: seed 1 \(checkpoint\) vs 0 \(now\)\. Resume with "
                                         r"the settings"):  # a setting that differs: the settings are the fix
        check_fingerprint("c.pt", {"fingerprint": {**older["fingerprint"], "seed": 1}}, now)


def test_a_checkpoint_mismatch_names_the_entries_that_differ():
    """A caller that knows where an entry of the fingerprint comes from (graph train: the file a graph was read from)
    reads which entries differ from the refusal (a CheckpointMismatch, a UsageError), not from its words."""
    from pathlib import Path

    from fwdlearn.errors import UsageError
    from fwdlearn.fit import CheckpointMismatch, check_fingerprint

    now = {"model": {"method": "bp", "seed": 1}, "graph": "b" * 16}
    with pytest.raises(CheckpointMismatch) as refused:
        check_fingerprint("c.pt", {"fingerprint": {"model": {"method": "bp", "seed": 0}, "graph": "a" * 16}}, now)
    assert isinstance(refused.value, UsageError) and refused.value.keys == ("model", "graph")
    assert refused.value.differences == ["model.seed 0 (checkpoint) vs 1 (now)",
                                         f"graph '{'a' * 16}' (checkpoint) vs '{'b' * 16}' (now)"]
    assert str(refused.value).startswith("the checkpoint c.pt was made by a different run: model.seed 0 (checkpoint) "
                                         "vs 1 (now); graph ") and refused.value.path == Path("c.pt")


def test_a_checkpoint_mismatch_in_a_command_s_flags_names_them_and_the_fix():
    """CheckpointMismatch.in_flags says a refusal in a command's flags ("--hidden 8 (checkpoint) vs 16 (now)", the
    fix "Resume with --hidden 8"), entries of one flag once, an entry no flag sets in its words (and the fix names
    it); the Python API's words stay, and a mark set on the refusal (every process's, under torchrun) is kept."""
    from fwdlearn.errors import alike_on_every_process, found_by_every_process
    from fwdlearn.fit import CheckpointMismatch, check_fingerprint

    saved = {"model": {"hidden": 8, "norm": True, "context": 8}, "corpus": "a", "batch_size": 2, "context": 8}
    now = {"model": {"hidden": 16, "norm": False, "context": 6}, "corpus": "b", "batch_size": 3, "context": 6}
    with pytest.raises(CheckpointMismatch) as refused, alike_on_every_process():
        check_fingerprint("c.pt", {"fingerprint": saved}, now)
    assert str(refused.value) == (
        "the checkpoint c.pt was made by a different run: model.hidden 8 (checkpoint) vs 16 (now); model.norm True "
        "(checkpoint) vs False (now); model.context 8 (checkpoint) vs 6 (now); corpus 'a' (checkpoint) vs 'b' (now); "
        "batch_size 2 (checkpoint) vs 3 (now); context 8 (checkpoint) vs 6 (now). Resume with the settings and data "
        "it was made with, or start a new run (another --name or --checkpoint)")
    assert refused.value.names == ("model.hidden", "model.norm", "model.context", "corpus", "batch_size", "context")

    def spell(name, value, fingerprint):
        flag = "--" + name.split(".")[-1].replace("_", "-")
        if name == "corpus":
            return None
        return (flag if value else "--no-" + flag[2:]) if isinstance(value, bool) else f"{flag} {value}"

    said = refused.value.in_flags(spell)
    assert isinstance(said, CheckpointMismatch) and found_by_every_process(said) and said.keys == refused.value.keys
    assert str(said) == (
        "the checkpoint c.pt was made by a different run: --hidden 8 (checkpoint) vs 16 (now); --norm (checkpoint) vs "
        "--no-norm (now); --context 8 (checkpoint) vs 6 (now); corpus 'a' (checkpoint) vs 'b' (now); --batch-size 2 "
        "(checkpoint) vs 3 (now). Resume with --hidden 8 --norm --context 8 --batch-size 2 and the corpus it was made "
        "with, or start a new run (another --name or --checkpoint)")
    said = refused.value.in_flags(spell, extra=["--layers 2", "--hidden 4"], drop=["--norm"], without=["--heads"],
                                  words={"corpus": "text"})
    assert str(said).endswith("Resume with --hidden 8 --context 8 --batch-size 2 --layers 2 and without --heads and "
                              "the text it was made with, or start a new run (another --name or --checkpoint)")


def _sgd_steps(lin, x):
    """A training step of ``lin`` on ``x`` (SGD, lr 0.5, its outputs' mean square), as ``Trainer.run`` calls it."""
    opt = torch.optim.SGD(lin.parameters(), lr=0.5)

    def step(i):
        loss = lin(x).float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    return step


def test_the_best_state_restored_inside_autocast_is_what_later_forwards_read():
    """Autocast's bfloat16 copies of the weights outlived the restore of the best state: a forward after run() in the
    same autocast block read the last step's weights (0.5 off a fresh forward), and so did SF's next layer."""
    from fwdlearn.fit import Stateful, Trainer

    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(8, 4)
    step = _sgd_steps(lin, x)
    scores = iter([5.0, 1.0, 1.0, 1.0, 1.0])  # the best is the first step

    def evaluate():  # (a forward, as any evaluation does: autocast casts the weights of the last step)
        lin(x)
        return {"v": next(scores)}

    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = Trainer(5, monitor="v", mode="max", quiet=True).run(step, evaluate, Stateful({"m": lin}, best=("m",)))
        inside = lin(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fresh = lin(x)
    assert result.best_step == 1 and torch.equal(inside, fresh)


def test_an_evaluation_inside_autocast_reads_the_weights_the_step_left():
    """Autocast keeps its bfloat16 copies of the weights until its block ends: an evaluation after a step read the
    copies made before the step updated the weights, unless the loop says the weights changed."""
    from fwdlearn.fit import Trainer

    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(8, 4)
    step = _sgd_steps(lin, x)
    stale = []

    def evaluate():
        fresh = torch.nn.functional.linear(x.bfloat16(), lin.weight.detach().bfloat16(), lin.bias.detach().bfloat16())
        stale.append(not torch.equal(lin(x), fresh))
        return {"val_accuracy": 0.5}

    with torch.autocast("cpu", dtype=torch.bfloat16):
        Trainer(steps=3, quiet=True).run(step, evaluate, lin)
    assert stale == [False, False, False]


def test_two_graph_methods_checkpoints_name_the_method_not_another_kind_of_run():
    from fwdlearn.errors import UsageError
    from fwdlearn.fit import check_fingerprint

    sf = {"fingerprint": {"model": {"method": "local:prototype", "conv": "gcn", "tau": 1.0}}}
    ff = {"model": {"method": "local:ff:la", "conv": "gcn", "theta": 1.0}}
    with pytest.raises(UsageError, match=r"made by a different run: model.method 'local:prototype' \(checkpoint\) vs "
                                         r"'local:ff:la' \(now\)"):
        check_fingerprint("c.pt", sf, ff)


def test_a_fit_trains_under_no_grad_is_refused_under_inference_mode_and_keeps_the_models_mode():
    """Under torch.no_grad() a layer-by-layer graph fit took no step and reported the untrained model (the others
    raised autograd's raw error); a fit left a graph model in eval() and a language model in train()."""
    from fwdlearn.errors import UsageError
    from fwdlearn.graphs import ForwardGNN, load_graph
    from fwdlearn.sequences import DelayedRecall, RecurrentLM, lag_influence

    data = load_graph("karate", split="random", seed=0)
    model = ForwardGNN(data.num_features, data.num_classes, hidden=8, layers=2, method="sf")
    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        model.fit(data, epochs=2, quiet=True)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert model.training  # (as it was: a fresh module trains)
    with torch.inference_mode(), pytest.raises(UsageError, match=r"fit cannot train inside torch.inference_mode\(\)"):
        model.fit(data, epochs=2, quiet=True)
    task = DelayedRecall(lag=2, symbols=4, length=6)
    lm = RecurrentLM(task.vocab_size, cell="gru", hidden=8, layers=1, out_size=task.out_size).eval()
    with torch.no_grad():
        lm.fit(task, steps=2, batch_size=4, eval_every=2, quiet=True)
    assert not lm.training
    with torch.inference_mode(), pytest.raises(ValueError, match="influence takes input gradients, which "
                                                                 r"torch.inference_mode\(\) does not allow"):
        lag_influence(lm, task.sample(2)[0], max_lag=2, positions=2)  # (the kernel's raw error first)


def test_a_mapped_checkpoint_read_equals_the_full_read_also_for_a_legacy_format_file(tmp_path):
    model, step = _linear_run([1.0, 0.9, 0.8], weights=[1.0, 2.0, 3.0])
    Trainer(steps=3, quiet=True, checkpoint=tmp_path / "c.pt").run(step, state=model)
    full = read_checkpoint(tmp_path / "c.pt")
    torch.save(full, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)  # (torch cannot map this format)
    for path in (tmp_path / "c.pt", tmp_path / "legacy.pt"):
        mapped = read_checkpoint(path, mmap=True)
        assert mapped["step"] == 3 and mapped.keys() == full.keys()
        assert torch.equal(mapped["state"]["weight"], full["state"]["weight"])


def test_end_to_end_step_refuses_a_non_finite_gradient_of_a_finite_loss():
    """An overflowing backward gave a finite loss and an inf gradient: the step was taken, the weights became inf /
    NaN, and the run stopped a step later on a NaN loss, blaming the learning rate, with the model left NaN."""
    from fwdlearn.schedules import end_to_end_step

    for clip, grad_norm in ((None, False), (1.0, True)):
        w = nn.Parameter(torch.zeros(2))
        with pytest.raises(NonFiniteLossError, match=r"the gradient norm is inf while the loss is finite \(0\): the "
                                                     "backward pass overflowed, and no step was taken"):
            end_to_end_step(w.sqrt().sum(), torch.optim.SGD([w], lr=0.1), clip=clip, grad_norm=grad_norm)
        assert torch.equal(w.detach(), torch.zeros(2)) and w.grad is None  # untouched
    w = nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([w], lr=0.1)
    with pytest.raises(NonFiniteLossError, match="step 1: the gradient norm is inf"):  # the step that overflowed
        Trainer(steps=3, quiet=True).run(lambda i: end_to_end_step(w.sqrt().sum(), optimizer), None, None)
    assert torch.isfinite(w).all()


def test_local_step_refuses_a_non_finite_gradient_of_a_finite_loss_and_steps_no_block():
    """As end_to_end_step: a block whose backward overflowed stepped its weights to NaN (the layer-local methods had no
    check), and the other blocks stepped on."""
    from fwdlearn.schedules import LocalOptimizers, local_step

    blocks = [nn.Linear(2, 2), nn.Linear(2, 2)]
    with torch.no_grad():
        blocks[1].weight.zero_()
    before = [copy.deepcopy(b.state_dict()) for b in blocks]
    optimizers = LocalOptimizers(blocks, lr=0.1)
    losses = [blocks[0](torch.ones(1, 2)).sum(), blocks[1].weight.sqrt().sum()]  # (d sqrt(w) / dw at 0: inf)
    with pytest.raises(NonFiniteLossError, match=r"the gradient norm of block 1 is inf while its loss is finite \(0\): "
                                                 "the backward pass overflowed, and no block was stepped"):
        local_step(losses, optimizers)
    for block, state in zip(blocks, before):
        for key, value in block.state_dict().items():
            assert torch.equal(value, state[key])


def test_end_to_end_step_steps_sparse_gradients_and_checks_them():
    """The overflow check measured every step with clip_grad_norm_, which has no kernel for sparse gradients: an
    nn.Embedding(sparse=True) stepped by SGD without clip, which trained before, failed with NotImplementedError."""
    from fwdlearn.schedules import end_to_end_step

    torch.manual_seed(0)
    embedding = nn.Embedding(10, 4, sparse=True)
    before = embedding.weight.detach().clone()
    ids = torch.tensor([1, 2, 2])
    out = end_to_end_step(embedding(ids).pow(2).sum(), torch.optim.SGD(embedding.parameters(), lr=0.1),
                          grad_norm=True)
    expected = float(torch.linalg.vector_norm(torch.zeros(10, 4).index_add_(0, ids, 2 * before[ids])))
    assert out["grad_norm"] == pytest.approx(expected, rel=1e-6)
    moved = (embedding.weight.detach() != before).any(dim=1)
    assert moved.tolist() == [i in (1, 2) for i in range(10)]  # the rows read, and only those, stepped
    with torch.no_grad():
        embedding.weight[3] = 0.0  # a finite loss whose sparse gradient is infinite is still refused
    with pytest.raises(NonFiniteLossError, match="the gradient norm is inf while the loss is finite"):
        end_to_end_step(embedding(torch.tensor([3])).sqrt().sum(), torch.optim.SGD(embedding.parameters(), lr=0.1))


def test_end_to_end_step_steps_on_this_loss_gradient_alone():
    """Each step zeroes the gradients before its backward: two SGD steps on w**2 from 1 (lr 0.25) halve w twice, to
    0.25; gradients kept from the step before would take the second step with 2 * 0.5 + 2 * 1 (w = -0.25)."""
    from fwdlearn.schedules import end_to_end_step

    w = nn.Parameter(torch.tensor(1.0))
    optimizer = torch.optim.SGD([w], lr=0.25)
    for expected in (0.5, 0.25):
        end_to_end_step(w ** 2, optimizer)
        assert w.item() == pytest.approx(expected)


def test_the_gradient_norm_of_clip_groups_is_reported_as_the_total_norm():
    """Clipped group by group (local:readout), the norm reported is still the total, sqrt(3^2 + 4^2) = 5, not the
    groups' sum, 7."""
    from fwdlearn.schedules import end_to_end_step

    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    for clip in (None, 100.0):
        out = end_to_end_step((3 * a + 4 * b).sum(), torch.optim.SGD([a, b], lr=0.0), clip=clip, grad_norm=True,
                              clip_groups=[[a], [b]])
        assert out["grad_norm"] == pytest.approx(5.0)


def test_local_step_steps_only_the_blocks_named():
    """local_step(..., only=[1]) steps block 1, leaves block 0 as it was and reports NaN for it."""
    from fwdlearn.schedules import local_step

    blocks = [nn.Linear(2, 1), nn.Linear(2, 1)]
    before = [b.weight.detach().clone() for b in blocks]
    values = local_step([b(torch.ones(1, 2)).sum() for b in blocks], LocalOptimizers(blocks, lr=0.1), only=[1])
    assert values[0] != values[0] and values[1] == values[1]  # NaN, a loss
    assert torch.equal(blocks[0].weight, before[0]) and not torch.equal(blocks[1].weight, before[1])


def test_local_optimizers_default_to_forwardgnns_adam_settings():
    """As documented: Adam, learning rate 1e-3, weight decay 5e-4; no optimizer for a block without parameters."""
    optimizers = LocalOptimizers([nn.Linear(2, 2), nn.ReLU()])
    first = optimizers.optimizers[0]
    assert type(first) is torch.optim.Adam and first.defaults["lr"] == 1e-3 and first.defaults["weight_decay"] == 5e-4
    assert optimizers.optimizers[1] is None


def test_a_layer_by_layer_resume_restores_every_frozen_block(tmp_path):
    """Resumed in block 3 of 3, the frozen blocks 1 and 2 come back from the checkpoint into fresh blocks, and the run
    ends with the weights of an uninterrupted one."""
    from test_core_schedules_edges import _fresh, _greedy  # (three linear blocks fitted to 1, layer by layer)

    whole = _fresh(0)
    _greedy(whole, tmp_path / "c.pt")
    with pytest.raises(TrainingInterrupted):
        _greedy(_fresh(0), tmp_path / "c.pt", interrupt_at=9)  # block 3's third step: blocks 1 and 2 frozen, block 3
    resumed = _fresh(1)  # saved at its step 2; other initial weights: only the checkpoint brings the frozen blocks back
    _greedy(resumed, tmp_path / "c.pt", resume=True)
    for a, b in zip(whole, resumed):
        assert torch.allclose(a.weight, b.weight) and torch.allclose(a.bias, b.bias)
