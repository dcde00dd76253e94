"""The training loop's arithmetic (mutation round 11): what counts as better, patience counting, when a checkpoint is
written, the divergence limit's first value across a resume and a reuse, and a rescored resume's own bookkeeping.
Each test is a hand-computed expectation on a one-weight model."""

import pytest
import torch
from torch import nn

from fwdlearn.errors import DivergenceError
from fwdlearn.fit import NonFiniteLossError, Stateful, Trainer, read_checkpoint


def _scored(scores):
    it = iter(scores)
    return lambda: {"val_loss": next(it)}


def test_a_tie_in_min_mode_is_no_improvement():
    """mode="min": a validation loss equal to the best is a bad check (as a tie is in "max" mode)."""
    result = Trainer(steps=5, monitor="val_loss", mode="min", patience=2, quiet=True).run(
        lambda i: {"loss": 1.0}, _scored([0.5, 0.3, 0.3, 0.3, 0.1]), nn.Linear(1, 1))
    assert result.best_step == 2 and result.stopped_early and result.steps_run == 4


def test_patience_counts_the_bad_checks_since_the_last_improvement():
    """An improvement starts the count again: bad, better, bad with patience 2 is one bad check, not two."""
    result = Trainer(steps=5, monitor="val_loss", mode="min", patience=2, quiet=True).run(
        lambda i: {"loss": 1.0}, _scored([0.5, 0.6, 0.4, 0.45, 0.3]), nn.Linear(1, 1))
    assert not result.stopped_early and result.steps_run == 5 and result.best_step == 5


def test_without_an_evaluation_the_best_row_is_the_last_step():
    losses = iter([3.0, 2.0, 1.0])
    result = Trainer(steps=3, quiet=True).run(lambda i: {"loss": next(losses)})
    assert result.best_step == 3 and result.best == {"step": 3, "loss": 1.0}


def test_a_checkpoint_is_written_at_each_evaluation_the_last_step_and_an_early_stop(tmp_path, monkeypatch):
    saved = []
    original = Trainer._save
    monkeypatch.setattr(Trainer, "_save", lambda self, state, step, *a: saved.append(step) or original(
        self, state, step, *a))
    ckpt = tmp_path / "a.pt"
    Trainer(steps=5, eval_every=2, quiet=True, checkpoint=ckpt).run(
        lambda i: {"loss": 1.0}, lambda: {"val_accuracy": 0.5}, nn.Linear(1, 1))
    assert saved == [2, 4, 5] and read_checkpoint(ckpt)["step"] == 5  # (checkpoint_every defaults to eval_every)
    saved.clear()
    ckpt = tmp_path / "b.pt"
    scores = iter([0.9, 0.5, 0.5])
    result = Trainer(steps=9, patience=2, checkpoint_every=10, quiet=True, checkpoint=ckpt).run(
        lambda i: {"loss": 1.0}, lambda: {"val_accuracy": next(scores)}, nn.Linear(1, 1))
    assert result.stopped_early and saved == [3]  # the early stop is saved, though not a multiple of 10
    assert read_checkpoint(ckpt)["stopped_early"] is True


def test_the_divergence_limit_keeps_the_first_loss_across_a_resume(tmp_path):
    """The limit is 100 x the run's first loss (1.0): a resumed run whose first loss was already 50 still stops at
    150, rather than taking 50 for the first value (a limit of 5000)."""
    ckpt = tmp_path / "d.pt"
    Trainer(steps=1, quiet=True, checkpoint=ckpt).run(lambda i: {"loss": 1.0}, None, nn.Linear(1, 1))
    losses = iter([50.0, 150.0])
    with pytest.raises(DivergenceError, match="step 3: loss = 150 is more than 100 x its first value 1"):
        Trainer(steps=3, quiet=True, checkpoint=ckpt, resume=True).run(lambda i: {"loss": next(losses)}, None,
                                                                       nn.Linear(1, 1))


def test_a_trainer_run_twice_takes_each_runs_own_first_loss():
    trainer = Trainer(steps=1, quiet=True)
    trainer.run(lambda i: {"loss": 0.5})
    assert trainer.run(lambda i: {"loss": 200.0}).best["loss"] == 200.0  # (not 400 x the first run's 0.5)


def test_a_loss_of_exactly_the_limit_is_no_divergence():
    losses = iter([1.0, 100.0])
    assert Trainer(steps=2, quiet=True).run(lambda i: {"loss": next(losses)}).steps_run == 2  # "more than" 100 x 1


def test_an_evaluations_losses_are_checked_too():
    with pytest.raises(NonFiniteLossError, match="step 1: val_loss is nan"):
        Trainer(steps=2, quiet=True).run(lambda i: {"loss": 1.0},
                                         lambda: {"val_accuracy": 0.5, "val_loss": float("nan")})


def test_a_rescored_resume_trains_on_from_the_last_state_with_the_checkpoints_generators(tmp_path):
    """Scoring the kept best state again (a changed rescore setting) evaluates it, then puts back the resumed state
    and the generators the checkpoint set: step 3 starts from step 2's weight (2.0, not the best's 1.0) and draws
    what it draws without the rescoring; FitResult.best stays the best's row (its step, its loss)."""
    model = nn.Linear(1, 1, bias=False)
    seen = []

    def step(i):
        seen.append((model.weight.item(), torch.rand(()).item()))
        with torch.no_grad():
            model.weight.fill_(float(i))
        return {"loss": 1.0 / i}

    def evaluate():
        torch.rand(5)  # (an evaluation that draws: a random subset)
        return {"val_accuracy": 1.0 if model.weight.item() == 1.0 else 0.0}

    def resumed(rescore):
        with torch.no_grad():
            model.weight.fill_(0.0)
        torch.manual_seed(0)
        ckpt = tmp_path / f"{rescore}.pt"
        Trainer(steps=2, quiet=True, checkpoint=ckpt, rescore=("data",), settings={"data": 1}).run(
            step, evaluate, Stateful({"model": model}))
        seen.clear()  # (the checkpoint holds the generators as step 2 left them)
        return Trainer(steps=3, quiet=True, checkpoint=ckpt, resume=True, rescore=("data",),
                       settings={"data": 2 if rescore else 1}).run(step, evaluate, Stateful({"model": model}))

    result = resumed(rescore=False)
    plain = list(seen)
    result = resumed(rescore=True)
    assert result.resumed["changed"] == {"data": [1, 2]}
    assert seen == plain and seen[0][0] == 2.0
    assert result.best_step == 1 and result.best["step"] == 1 and result.best["loss"] == 1.0
    assert model.weight.item() == 1.0


def test_the_first_step_alone_is_measured(monkeypatch):
    import fwdlearn.diagnostics.cost as cost

    measured = []
    real = cost.measure_cost
    monkeypatch.setattr(cost, "measure_cost", lambda fn, device=None: measured.append(1) or real(fn, device))
    steps = []
    result = Trainer(steps=3, quiet=True, measure_first_step=True).run(lambda i: steps.append(i) or {"loss": 1.0})
    assert steps == [1, 2, 3] and len(measured) == 1 and result.first_step_cost is not None


def test_a_resume_with_a_smaller_patience_stops_only_at_an_evaluation(tmp_path):
    """Resumed with one bad check and a patience of 1 now (3 then), the run goes on to its next evaluation: the
    unevaluated step 5 does not stop it, step 6 is better, step 8 is not and stops it."""
    ckpt = tmp_path / "p.pt"
    run = lambda steps, patience, scores, **kw: Trainer(  # noqa: E731
        steps=steps, eval_every=2, monitor="val_loss", mode="min", patience=patience, quiet=True, checkpoint=ckpt,
        **kw).run(lambda i: {"loss": 1.0}, _scored(scores), nn.Linear(1, 1))
    run(4, 3, [0.5, 0.6])  # steps 2 (the best) and 4 (one bad check)
    result = run(8, 1, [0.1, 0.2], resume=True)
    assert [row["step"] for row in result.history] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert result.stopped_early and result.best_step == 6


def test_a_resumed_run_draws_what_the_uninterrupted_run_draws(tmp_path):
    """The checkpoint's generators are put back: what the process drew between the two runs changes nothing."""
    draws = []
    step = lambda i: draws.append(torch.rand(()).item()) or {"loss": 1.0}  # noqa: E731
    torch.manual_seed(0)
    Trainer(steps=4, quiet=True).run(step)
    whole, draws[:] = list(draws), []
    torch.manual_seed(0)
    Trainer(steps=2, quiet=True, checkpoint=tmp_path / "r.pt").run(step)
    torch.manual_seed(123)
    Trainer(steps=4, quiet=True, checkpoint=tmp_path / "r.pt", resume=True).run(step)
    assert draws == whole


def test_resuming_a_run_that_stopped_early_at_its_last_step_says_it_stopped_early(tmp_path, capsys):
    """Not "raise the steps to train on": a larger budget trains nothing either, as an early-stopped run stays
    stopped."""
    ckpt = tmp_path / "s.pt"

    def run(**kw):
        trainer = Trainer(steps=2, monitor="val_loss", mode="min", patience=1, quiet=True, checkpoint=ckpt, **kw)
        return trainer.run(lambda i: {"loss": 1.0}, _scored([0.5, 0.6]), nn.Linear(1, 1))

    assert run().stopped_early
    capsys.readouterr()
    assert run(resume=True).steps_run == 2
    assert "stopped early at step 2" in capsys.readouterr().err
