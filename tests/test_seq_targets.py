"""Targets as language models' losses read them: integer ids of any dtype, refusals that name the fix, and a window
without a scored position (every target -100) as a loss of 0 with zero gradients under every rule."""

import pytest
import torch

from fwdlearn.sequences import Corpus, DelayedRecall, RecurrentLM, TransformerLM, Vocabulary
from fwdlearn.sequences.alignment import state_alignment
from fwdlearn.sequences.training import evaluate_task, fit_lm, lm_loss, window_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

V = 7
INTEGER_DTYPES = [torch.int32, torch.int16, torch.int8, torch.uint8]


def _window(batch=2, time=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (batch, time), generator=gen), torch.randint(0, V, (batch, time), generator=gen)


@pytest.mark.parametrize("dtype", INTEGER_DTYPES)
def test_integer_targets_of_any_dtype_are_read_as_int64(dtype):
    """int32 / int16 / int8 targets failed with torch's 'expected target dtype to be Long or Byte' in lm_loss, every
    model's training_loss, the alignment diagnostics and a fit on a corpus of such ids (tokens of those dtypes
    passed)."""
    torch.manual_seed(0)
    x, y = _window()
    logits = torch.randn(2, 6, V)
    assert torch.equal(lm_loss(logits, y.to(dtype)), lm_loss(logits, y))
    assert torch.equal(window_loss(logits, y.to(dtype)), lm_loss(logits, y))
    for model in (RecurrentLM(V, hidden=8, layers=1, training="dsf"),
                  TransformerLM(V, hidden=8, layers=2, heads=1, context=8, training="dfa:micro")):
        loss, _ = model.training_loss(x.to(dtype), y.to(dtype))
        assert torch.equal(loss, model.training_loss(x, y)[0])
    dfa = RecurrentLM(V, hidden=8, layers=2, training="dfa")
    assert dfa.feedback_alignment(x, y.to(dtype)) == dfa.feedback_alignment(x, y)
    gru = RecurrentLM(V, hidden=8, layers=1)
    assert state_alignment(gru, x, y.to(dtype)).overall == state_alignment(gru, x, y).overall


def test_a_corpus_of_int32_ids_trains():
    """A Corpus built from int32 ids (as a tokenizer may give them) failed at fit_lm's first step."""
    vocab = Vocabulary.build("abcdefg")
    gen = torch.Generator().manual_seed(0)
    corpus = Corpus("ids", {"train": torch.randint(0, V, (400,), generator=gen, dtype=torch.int32),
                            "validation": torch.randint(0, V, (100,), generator=gen, dtype=torch.int32)}, vocab)
    report = fit_lm(RecurrentLM(V, hidden=8, layers=2, training="dfa"), corpus, context=8, steps=2, batch_size=2,
                    eval_every=2, align_every=1, quiet=True)
    assert report.steps == 2 and report.metrics["val_loss"] > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_float_or_bool_targets_are_refused_naming_long(dtype):
    x, y = _window()
    with pytest.raises(TypeError, match=rf"targets must be integer class ids .* got dtype {dtype}: targets\.long\(\)"):
        lm_loss(torch.randn(2, 6, V), y.to(dtype))
    with pytest.raises(TypeError, match=r"targets\.long\(\)"):
        RecurrentLM(V, hidden=8, layers=1).training_loss(x, y.to(dtype))
    with pytest.raises(TypeError, match=r"got list: convert it with torch\.as_tensor"):
        lm_loss(torch.randn(2, 6, V), y.tolist())


def test_targets_of_another_shape_are_refused():
    """Targets transposed to [time, batch] were flattened beside the logits and scored against other positions, in
    silence; a window of other length failed with torch's 'Expected input batch_size (12) to match target batch_size
    (14)'. Both sides flattened alike stay legal."""
    _, y = _window()
    logits = torch.randn(2, 6, V)
    with pytest.raises(ValueError, match=r"shape \[2, 6\]; got \[6, 2\] \(as many ids in another layout"):
        lm_loss(logits, y.T)
    with pytest.raises(ValueError, match=r"shape \[2, 6\]; got \[2, 5\]$"):
        lm_loss(logits, y[:, :5])
    # a [batch, time, 1] tensor of ids was told of the [time, batch] layout: the fix is to drop the dimension
    with pytest.raises(ValueError, match=r"shape \[2, 6\]; got \[2, 6, 1\] \(one id per position, with an extra "
                                         r"dimension of size 1: targets.squeeze\(-1\)\)$"):
        lm_loss(logits, y.unsqueeze(-1))
    with pytest.raises(ValueError, match=r"got \[2, 1, 6\] \(.*: targets.squeeze\(1\)\)$"):
        lm_loss(logits, y.unsqueeze(1))
    assert torch.equal(lm_loss(logits.reshape(-1, V), y.reshape(-1)), lm_loss(logits, y))
    assert torch.equal(lm_loss(logits, y.reshape(-1)), lm_loss(logits, y))
    with pytest.raises(ValueError, match=r"one value per position of the outputs, shape \[2, 6\]; got \[6, 2\]"):
        window_loss(torch.randn(2, 6, 1), y.T.float())


def test_targets_outside_the_classes_are_refused_naming_the_fix():
    """torch's 'Target 7 is out of bounds' (on a GPU a device-side assert) named neither the classes nor a fix."""
    _, y = _window()
    logits = torch.randn(2, 6, V)
    for value, match in ((V, r"class ids in \[0, 6\] \(the logits' 7 classes\) or -100 \(not scored\); got ids in "
                             r"\[\d, 7\]: .*vocab_size \(out_size\) >= 8"),
                         (-1, r"got ids in \[-1, \d\]: mark the positions not scored -100")):
        bad = y.clone()
        bad[0, 0] = value
        with pytest.raises(ValueError, match=match):
            lm_loss(logits, bad)
    bad[0, 0] = -100  # -100 itself is skipped, not out of range
    assert torch.isfinite(lm_loss(logits, bad))


RULES = [(RecurrentLM, t) for t in ("bptt", "tbptt:2", "ft-bptt", "dsf", "dfa+dsf", "dfa:micro+bptt",
                                    "local:readout+bptt", "shallow+bptt")] + \
        [(TransformerLM, t) for t in ("bp", "dfa", "dfa:micro", "local:readout", "shallow")]


@pytest.mark.parametrize("kind, rule", RULES, ids=[f"{k.__name__}-{r}" for k, r in RULES])
def test_a_window_without_scored_positions_is_a_loss_of_zero(kind, rule):
    """Every target -100: the mean over no position was 0 / 0, a NaN loss (under every rule) that stopped a fit as
    'training diverged. Lower the learning rate'; it is a sum over no position now: 0, with zero gradients."""
    torch.manual_seed(0)
    extra = {"heads": 1, "context": 8} if kind is TransformerLM else {}
    model = kind(V, hidden=8, layers=2, training=rule, **extra)
    x, _ = _window()
    loss, _ = model.training_loss(x, torch.full((2, 6), -100))
    assert float(loss.detach()) == 0.0
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_window_loss_without_a_scored_regression_target_is_zero():
    output = torch.randn(2, 6, 1, requires_grad=True)
    loss = window_loss(output, torch.full((2, 6), float("nan")))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.equal(output.grad, torch.zeros_like(output))


class _SometimesUnscored(DelayedRecall):
    """A task whose batches score no position half of the time (a user's masking)."""

    def sample(self, batch_size, generator=None):
        x, y = super().sample(batch_size, generator)
        if torch.rand((), generator=generator) < 0.5:
            y[:] = -100
        return x, y


class _NeverScored(DelayedRecall):
    def sample(self, batch_size, generator=None):
        x, y = super().sample(batch_size, generator)
        return x, torch.full_like(y, -100)


def test_a_task_batch_without_scored_positions_neither_stops_a_fit_nor_makes_the_loss_nan():
    """fit_task stopped at such a batch as diverged; evaluate_task's loss (a mean of the batches' means) was NaN, and
    samples without any scored position failed with ZeroDivisionError."""
    task = _SometimesUnscored(2, symbols=4, length=6)
    model = RecurrentLM(task.vocab_size, hidden=8, layers=1, out_size=task.out_size)
    report = model.fit(task, steps=6, batch_size=4, eval_every=3, eval_batches=4, quiet=True)
    assert 0.0 in [row["loss"] for row in report.history if "loss" in row]
    scores = evaluate_task(model, task, batches=6, batch_size=4, seed=7)
    # the loss is the mean over every scored position of the samples, as the accuracy is
    gen = torch.Generator().manual_seed(7)
    x, y = (torch.cat(parts) for parts in zip(*(task.sample(4, gen) for _ in range(6))))
    assert (y == -100).all(dim=1).any() and (y != -100).any()  # batches of both kinds were drawn
    with torch.no_grad():
        assert scores["loss"] == pytest.approx(float(lm_loss(model.eval()(x)[0], y)), rel=1e-5)
    with pytest.raises(ValueError, match=r"4 x 4 samples \(seed \d+\) score no position \(every target is -100\): "
                                         "there is nothing to evaluate"):
        evaluate_task(model, _NeverScored(2, symbols=4, length=6), batches=4, batch_size=4)
