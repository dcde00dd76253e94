"""Edges of the language models' fit/evaluate loop and of the state-alignment diagnostic that the other tests left
open: a stopped and resumed fit is the uninterrupted one, counts and windows at their bounds, best-state selection."""

import pytest
import torch

from fwdlearn.sequences import DelayedRecall, RecurrentLM

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_stopped_and_resumed_corpus_fit_is_the_uninterrupted_one(tiny_corpus, tmp_path):
    """The checkpoint carries the stream position, the carried state, the optimizer and the schedule's position: a fit
    of 6 steps stopped after 3 and resumed (by a model built under another seed) takes the uninterrupted fit's steps,
    loss for loss and rate for rate (a warm-up of 2 under a constant schedule: a schedule restarted at the resumed
    step would warm up again)."""
    settings = dict(context=8, batch_size=2, eval_every=3, eval_tokens=64, lr=1e-2, schedule="constant", warmup=2,
                    quiet=True)

    def build(seed):
        torch.manual_seed(seed)
        return RecurrentLM(tiny_corpus.vocab_size, cell="gru", hidden=8, layers=1, training="tbptt:4")

    whole = build(0).fit(tiny_corpus, steps=6, **settings)
    ckpt = tmp_path / "run.pt"
    build(0).fit(tiny_corpus, steps=3, checkpoint=ckpt, **settings)
    resumed = build(7).fit(tiny_corpus, steps=6, checkpoint=ckpt, resume=True, **settings)
    assert resumed.resumed["from_step"] == 3
    assert [r["lr"] for r in resumed.history] == pytest.approx([r["lr"] for r in whole.history], rel=1e-6)
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in whole.history], rel=1e-5)


def test_a_stopped_and_resumed_task_fit_draws_the_uninterrupted_ones_samples(tmp_path):
    """A task fit's samples go on from the checkpoint's generator: stopped after 2 steps and resumed to 4, it trains on
    the uninterrupted fit's samples."""
    task = DelayedRecall(lag=2, symbols=4, length=8)
    settings = dict(batch_size=4, eval_every=2, eval_batches=1, lr=1e-2, schedule="constant", quiet=True)

    def build():
        torch.manual_seed(0)
        return RecurrentLM(task.vocab_size, cell="gru", hidden=8, layers=1, out_size=task.out_size)

    whole = build().fit(task, steps=4, **settings)
    ckpt = tmp_path / "task.pt"
    build().fit(task, steps=2, checkpoint=ckpt, **settings)
    resumed = build().fit(task, steps=4, checkpoint=ckpt, resume=True, **settings)
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in whole.history], rel=1e-5)


def test_evaluation_cuts_its_windows_to_what_a_transformer_reads(tiny_corpus):
    """A context past the transformer's positions reads windows of its positions: the same figures as that context."""
    from fwdlearn.sequences import TransformerLM

    torch.manual_seed(0)
    model = TransformerLM(tiny_corpus.vocab_size, hidden=8, layers=1, heads=2, context=8)
    ids = tiny_corpus.validation[:80]
    assert model.evaluate(ids, context=64, batch_size=2) == model.evaluate(ids, context=8, batch_size=2)


class _SomeScored(DelayedRecall):
    """Delayed recall with a random half of the scored positions not scored: batches score different counts."""

    def sample(self, batch_size, generator=None):
        x, y = super().sample(batch_size, generator)
        dropped = torch.rand(y.shape, generator=generator) < 0.5
        return x, y.masked_fill(dropped, -100)


def test_a_tasks_loss_is_the_mean_over_every_scored_position_of_its_batches():
    """evaluate_task's loss and accuracy pool the scored positions of all batches: a batch scoring fewer positions
    weighs less (not the mean of the batches' means)."""
    import torch.nn.functional as F

    task = _SomeScored(lag=2, symbols=4, length=12)
    torch.manual_seed(0)
    model = RecurrentLM(task.vocab_size, cell="gru", hidden=8, layers=1, out_size=task.out_size)
    gen = torch.Generator().manual_seed(5)
    total, hits, scored, means = 0.0, 0, 0, []
    with torch.no_grad():
        for _ in range(3):
            x, y = task.sample(2, gen)
            out, _ = model(x)
            mask = y != -100
            total += float(F.cross_entropy(out[mask], y[mask], reduction="sum"))
            hits += int((out.argmax(-1)[mask] == y[mask]).sum())
            scored += int(mask.sum())
            means.append(float(F.cross_entropy(out[mask], y[mask])))
    got = model.evaluate(task, batches=3, batch_size=2, seed=5)
    assert got["loss"] == pytest.approx(total / scored, rel=1e-5)
    assert got["loss"] != pytest.approx(sum(means) / 3, rel=1e-5)  # (the batches do score different counts)
    assert got["accuracy"] == hits / scored


def test_a_task_as_long_as_the_transformer_reads_is_trained_and_one_step_longer_is_refused():
    """A task's sequence is one window: the transformer reads one of exactly its positions."""
    from fwdlearn.sequences import TransformerLM

    torch.manual_seed(0)
    model = TransformerLM(4, hidden=8, layers=1, heads=2, context=8)
    report = model.fit(DelayedRecall(lag=2, symbols=4, length=8), steps=1, batch_size=2, eval_batches=1, quiet=True)
    assert report.steps == 1
    with pytest.raises(ValueError, match=r"sequences are 9 steps but the model reads at most 8 positions"):
        model.evaluate(DelayedRecall(lag=2, symbols=4, length=9), batches=1, batch_size=2)


def test_a_checkpoint_saves_the_carried_state_not_the_sequence_it_was_cut_from(tiny_corpus, tmp_path):
    """The carried state is the last position of the window's states: saved as a view, the checkpoint held the whole
    window's states for it."""
    from fwdlearn.fit import read_checkpoint

    torch.manual_seed(0)
    model = RecurrentLM(tiny_corpus.vocab_size, cell="gru", hidden=8, layers=2, training="bptt")
    model.fit(tiny_corpus, context=16, steps=2, batch_size=2, eval_every=2, eval_tokens=64,
              checkpoint=tmp_path / "run.pt", quiet=True)
    carry = read_checkpoint(tmp_path / "run.pt")["state"]["carry"]
    assert [list(s.shape) for s in carry] == [[2, 8], [2, 8]]
    assert all(s.untyped_storage().nbytes() == s.numel() * s.element_size() for s in carry)


def test_a_warm_up_refused_for_a_one_step_budget_is_told_of_no_warm_up(tiny_corpus):
    """The example of a shorter warm-up is shorter than the budget: 0 for a budget of one step (not 1, refused too)."""
    from fwdlearn.errors import UsageError

    model = RecurrentLM(tiny_corpus.vocab_size, cell="gru", hidden=8, layers=1)
    with pytest.raises(UsageError, match=r"warmup=1 is not shorter than the budget of steps=1: the learning rate "
                                         r"would reach 0.01 only at the last step; give a shorter warm-up "
                                         r"\(e.g. warmup=0\)"):
        model.fit(tiny_corpus, context=8, steps=1, batch_size=2, lr=0.01, warmup=1, quiet=True)
    assert model.fit(tiny_corpus, context=8, steps=1, batch_size=2, lr=0.01, warmup=0, eval_tokens=64,
                     quiet=True).steps == 1


def test_alignment_windows_are_evenly_spaced_next_token_windows_of_the_split():
    """``batch_size`` windows of ``context`` tokens and their next tokens, the first at the split's start; a split of
    ``context + 1`` tokens is refused by name (it failed inside torch.stack)."""
    from fwdlearn.sequences.training import alignment_window

    ids = torch.arange(100, 120)
    x, y = alignment_window(ids, 3, 4)
    assert list(x.shape) == [3, 4] and torch.equal(y, x + 1) and int(x[0, 0]) == 100 and int(y[-1, -1]) <= 119
    assert abs(int(x[1, 0] - x[0, 0]) - int(x[2, 0] - x[1, 0])) <= 1  # (evenly spaced, up to the cut to whole ids)
    x, y = alignment_window(ids[:6], 2, 4)  # (the shortest split read: context + 2 tokens)
    assert torch.equal(x[0], torch.tensor([100, 101, 102, 103])) and torch.equal(y, x + 1) and int(y.max()) <= 105
    with pytest.raises(ValueError, match=r"the alignment windows need more than 5 tokens; the split has 5: use a "
                                         r"shorter context \(--context\), or a longer validation split"):
        alignment_window(ids[:5], 2, 4)


def test_a_clip_of_zero_is_refused_before_any_step(tiny_corpus, monkeypatch):
    """A clip of 0 scales every gradient to nothing: refused before the model reads a window (not at the first
    update, after its forward pass)."""
    from fwdlearn.errors import UsageError

    model = RecurrentLM(tiny_corpus.vocab_size, cell="gru", hidden=8, layers=1)
    read = []
    monkeypatch.setattr(model, "training_loss", lambda *args, **kwargs: read.append(args))
    for fit in (lambda: model.fit(tiny_corpus, context=8, steps=1, batch_size=2, clip=0, quiet=True),
                lambda: model.fit(DelayedRecall(lag=2, symbols=4, length=8), steps=1, clip=0.0, quiet=True)):
        with pytest.raises(UsageError, match=r"^clip must be > 0, got 0"):
            fit()
    assert read == []


class _CountingRecall(DelayedRecall):
    """Delayed recall that counts its draws in a private attribute (not a setting of the task)."""

    def sample(self, batch_size, generator=None):
        self._drawn = getattr(self, "_drawn", 0) + 1
        return super().sample(batch_size, generator)


def test_a_tasks_private_attributes_are_not_part_of_its_fingerprint(tmp_path):
    """A resume is checked against the task's settings, not against state it keeps for itself (the task that drew the
    checkpoint's samples resumes it)."""
    ckpt = tmp_path / "task.pt"
    build = lambda task: RecurrentLM(task.vocab_size, cell="gru", hidden=4, layers=1, out_size=task.out_size)  # noqa
    task = _CountingRecall(lag=2, symbols=4, length=8)
    build(task).fit(task, steps=2, batch_size=2, eval_batches=1, checkpoint=ckpt, quiet=True)
    assert task._drawn > 0
    assert build(task).fit(task, steps=3, batch_size=2, eval_batches=1, checkpoint=ckpt, resume=True,
                            quiet=True).resumed["from_step"] == 2


def test_a_resume_on_a_vocabulary_of_other_tokens_is_refused(tmp_path):
    """The same token ids under another vocabulary are another text: its fingerprint hashes the tokens, not only their
    number."""
    from fwdlearn.sequences.data.text import Corpus, Vocabulary

    ids = torch.arange(400) % 4
    ckpt = tmp_path / "run.pt"
    for tokens, resume in (("abcd", False), ("wxyz", True)):
        corpus = Corpus("mine", {"train": ids, "validation": ids[:64]}, Vocabulary(list(tokens)))
        model = RecurrentLM(4, cell="gru", hidden=4, layers=1)
        fit = lambda: model.fit(corpus, context=8, steps=2, batch_size=2, eval_every=2, checkpoint=ckpt,  # noqa
                                resume=resume, quiet=True)
        if not resume:
            fit()
            continue
        with pytest.raises(ValueError, match=r"different run: vocabulary '4 \w+ tokens #\w+' "
                                             r"\(checkpoint\) vs '4 \w+ tokens #\w+' \(now\)"):
            fit()


def test_a_float32_orthogonal_feedback_is_not_warned_about_as_growing(tiny_corpus):
    """A float32 orthogonal A reads a radius up to about 2e-7 above 1 (more than float32's epsilon): its rounding, not
    growth."""
    import warnings

    from fwdlearn.feedback import spectral_radius

    model = RecurrentLM(tiny_corpus.vocab_size, cell="gru", hidden=8, layers=2, training="dsf", feedback="orthogonal")
    assert max(spectral_radius(model.feedback(i)) for i in range(2)) > 1 + torch.finfo(torch.float32).eps
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="DSF's feedback")
        model.fit(tiny_corpus, context=16, steps=1, batch_size=2, eval_tokens=64, quiet=True)


def test_alignment_is_read_at_the_first_every_nth_and_the_last_step(tiny_corpus):
    """align_every=2 over 5 steps reads steps 1, 2, 4 and the last, 5 (not a multiple of the interval)."""
    from fwdlearn.sequences.training import alignment_curves

    torch.manual_seed(0)
    model = RecurrentLM(tiny_corpus.vocab_size, cell="gru", hidden=8, layers=1, training="dfa")
    report = model.fit(tiny_corpus, context=8, steps=5, batch_size=2, eval_every=5, eval_tokens=64, align_every=2,
                       quiet=True)
    assert [[step for step, _ in curve] for curve in alignment_curves(report.history).values()] == [[1, 2, 4, 5]]


def test_a_corpus_fit_resumed_with_another_context_or_seed_is_refused_and_a_new_clip_is_reported(tiny_corpus,
                                                                                                  tmp_path):
    """The windows' length and the seed (the batch order and dropout follow it) are the run's: a resume must match;
    a clip may change, and the report says so."""
    ckpt = tmp_path / "run.pt"
    build = lambda: RecurrentLM(tiny_corpus.vocab_size, cell="gru", hidden=4, layers=1)  # noqa: E731
    settings = dict(steps=2, batch_size=2, eval_every=2, eval_tokens=64, quiet=True)
    build().fit(tiny_corpus, context=8, checkpoint=ckpt, **settings)
    with pytest.raises(ValueError, match=r"different run: context 8 \(checkpoint\) vs 16 \(now\)"):
        build().fit(tiny_corpus, context=16, checkpoint=ckpt, resume=True, **settings)
    with pytest.raises(ValueError, match=r"different run: seed 0 \(checkpoint\) vs 1 \(now\)"):
        build().fit(tiny_corpus, context=8, checkpoint=ckpt, resume=True, seed=1, **settings)
    # a new clip applies from the resumed step on, and is reported
    resumed = build().fit(tiny_corpus, context=8, checkpoint=ckpt, resume=True, clip=0.5, **{**settings, "steps": 3})
    assert resumed.resumed["changed"] == {"clip": [1.0, 0.5], "steps": [2, 3]}


def test_a_task_fit_keeps_the_state_of_the_highest_validation_accuracy():
    """Accuracy is maximised: the state kept is the one of the highest val_accuracy, whatever step it was."""
    from fwdlearn.sequences.training import VALIDATION_SEED, evaluate_task

    task = DelayedRecall(lag=2, symbols=4, length=12)
    torch.manual_seed(0)
    model = RecurrentLM(task.vocab_size, cell="gru", hidden=16, layers=1, out_size=task.out_size)
    report = model.fit(task, steps=30, batch_size=16, lr=2e-2, eval_every=5, eval_batches=1, quiet=True)
    scores = {row["step"]: row["val_accuracy"] for row in report.history if "val_accuracy" in row}
    assert len(set(scores.values())) > 1
    assert report.best_step == max(scores, key=scores.get)  # (the first of the highest)
    assert report.metrics["val_accuracy"] == max(scores.values())
    assert evaluate_task(model, task, 1, seed=VALIDATION_SEED)["accuracy"] == max(scores.values())


def test_a_task_resume_with_new_eval_batches_scores_the_best_on_the_new_samples(tmp_path):
    """As eval_tokens for a corpus: the best kept before the resume is scored again on the new validation samples."""
    from fwdlearn.sequences.training import VALIDATION_SEED, evaluate_task

    task = DelayedRecall(lag=2, symbols=4, length=8)
    ckpt = tmp_path / "task.pt"
    build = lambda: RecurrentLM(task.vocab_size, cell="gru", hidden=8, layers=1, out_size=task.out_size)  # noqa
    torch.manual_seed(0)
    build().fit(task, steps=2, batch_size=4, eval_every=2, eval_batches=1, checkpoint=ckpt, quiet=True)
    model = build()
    report = model.fit(task, steps=2, batch_size=4, eval_every=2, eval_batches=3, checkpoint=ckpt, resume=True,
                       quiet=True)
    assert report.resumed["changed"] == {"eval_batches": [1, 3]}
    again = evaluate_task(model, task, 3, seed=VALIDATION_SEED, prefix="val_")
    assert {k: report.metrics[k] for k in again} == pytest.approx(again)


def test_state_alignment_by_distance_is_the_batch_mean_of_the_per_position_cosines_from_the_end():
    """``by_distance[l][d]``: the mean over the batch of the cosine at position T - 1 - d (not another statistic)."""
    from fwdlearn.sequences.alignment import state_alignment, state_gradients

    torch.manual_seed(1)
    model = RecurrentLM(6, cell="gru", hidden=8, layers=2, training="dsf")
    g = torch.Generator().manual_seed(3)
    x, y = torch.randint(0, 6, (4, 9), generator=g), torch.randint(0, 6, (4, 9), generator=g)
    result = state_alignment(model, x, y, "dsf")
    approx, true = state_gradients(model, x, y, "dsf")[0], state_gradients(model, x, y, "unrolled")[0]
    for curve, a, b in zip(result.by_distance, approx, true):
        cosines = torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)  # [B, T]
        assert torch.allclose(curve.double(), cosines.mean(dim=0).flip(0), atol=1e-5)
        assert not torch.allclose(cosines.mean(dim=0), cosines.median(dim=0).values, atol=1e-3)  # (they differ here)


def test_distance_buckets_need_strictly_increasing_edges_and_cover_the_curve_once():
    """A repeated edge is refused (it named an empty bucket); an edge at the curve's length opens no bucket past it."""
    from fwdlearn.sequences.alignment import bucket_by_distance

    curve = torch.arange(4, dtype=torch.float)
    with pytest.raises(ValueError, match=r"edges must start at 0 and increase, got \(0, 1, 1, 4\)"):
        bucket_by_distance(curve, (0, 1, 1, 4))
    assert bucket_by_distance(curve, (0, 1, 4)) == [("0", 0.0), ("1-3", 2.0)]
    assert bucket_by_distance(curve, (0, 1, 4, 16)) == [("0", 0.0), ("1-3", 2.0)]


def test_a_resume_on_another_validation_split_is_refused_and_overwrite_starts_afresh(tmp_path):
    """The best state is selected on the validation split: a resume must validate on the same tokens (their hash is
    the corpus's, with the training split's). Without resume, overwrite starts a new run whatever the file held."""
    from fwdlearn.sequences.data.text import Corpus, Vocabulary

    ids, vocab = torch.arange(400) % 4, Vocabulary(list("abcd"))
    ckpt = tmp_path / "run.pt"
    settings = dict(context=8, steps=2, batch_size=2, eval_every=2, checkpoint=ckpt, quiet=True)
    model = RecurrentLM(4, cell="gru", hidden=4, layers=1)
    model.fit(Corpus("mine", {"train": ids, "validation": ids[:64]}, vocab), **settings)
    other = Corpus("mine", {"train": ids, "validation": ids[1:65]}, vocab)
    with pytest.raises(ValueError, match=r"different run: corpus '400 \+ 64 tokens #\w+' \(checkpoint\) vs "
                                         r"'400 \+ 64 tokens #\w+' \(now\)"):
        model.fit(other, resume=True, **settings)
    # a task fit's checkpoint replaced by a corpus fit: overwrite reads nothing of it
    task = DelayedRecall(lag=2, symbols=4, length=8)
    RecurrentLM(4, cell="gru", hidden=4, layers=1, out_size=4).fit(task, steps=1, batch_size=2, eval_batches=1,
                                                                     checkpoint=ckpt, overwrite=True, quiet=True)
    assert model.fit(other, overwrite=True, **settings).resumed is None


class _OneStep(DelayedRecall):
    """Sequences of one step, each scored on its own token."""

    def __init__(self):
        super().__init__(lag=1, symbols=4, length=2)
        self.length, self.name = 1, "one-step"

    def sample(self, batch_size, generator=None):
        x = torch.randint(0, 4, (batch_size, 1), generator=generator)
        return x, x.clone()


def test_tbptt_on_a_task_of_one_step_sequences_is_told_there_is_nothing_to_truncate():
    """No k < 1 exists: the advice is bptt, not a shorter truncation."""
    task = _OneStep()
    model = RecurrentLM(4, cell="gru", hidden=4, layers=1, training="tbptt:1", out_size=4)
    with pytest.warns(UserWarning, match=r"tbptt:1 truncates nothing in the one-step task's sequences of 1 step: .*; "
                                         r"a sequence of one step has nothing to truncate: train it by bptt"):
        model.fit(task, steps=1, batch_size=2, eval_batches=1, quiet=True)
