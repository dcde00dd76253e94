"""TransformerLM: causal under every rule, windows and generation, checkpoints and resume, the alignment diagnostic."""

import math

import pytest
import torch

from fwdlearn.sequences.nn.language_model import load_language_model, make_language_model
from fwdlearn.sequences.nn.transformer import TransformerLM
from fwdlearn.sequences.training import alignment_curves, lm_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RULES = ["bp", "dfa", "dfa:micro", "local:readout", "shallow"]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_changing_a_later_token_never_changes_earlier_outputs(rule, mode):
    torch.manual_seed(0)
    model = TransformerLM(13, hidden=16, layers=2, heads=4, context=10, training=rule).train(mode == "train")
    tokens = torch.randint(0, 13, (3, 10))
    logits, _ = model(tokens)
    for t in range(9):
        changed = tokens.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 1 + torch.arange(3)) % 13
        again, _ = model(changed)
        torch.testing.assert_close(again[:, : t + 1], logits[:, : t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(again[:, t + 1], logits[:, t + 1])  # the changed position does see it


def test_windows_longer_than_the_positions_are_refused_and_generation_rereads_the_context(tiny_corpus):
    model = TransformerLM(tiny_corpus.vocab_size, hidden=16, layers=1, heads=2, context=8)
    with pytest.raises(ValueError, match="at most 8 positions"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="context 16 is longer than the model reads"):
        model.fit(tiny_corpus, context=16, steps=1, quiet=True)
    text = model.generate("the quick", 20, vocab=tiny_corpus.vocab, seed=0)  # 9 + 20 tokens > 8 positions
    assert text.startswith("the quick") and len(text) == 29
    assert model.evaluate(tiny_corpus.validation, context=64, batch_size=2)["bpc"] > 0  # windows cut to 8
    with pytest.raises(ValueError, match="no recurrence"):
        TransformerLM(5, hidden=8, heads=2, training="dfa+dsf")
    with pytest.raises(ValueError, match=r"^hidden \(10\) must be divisible by heads \(4\): each head reads hidden / "
                       r"heads channels; choose hidden a multiple of 4 \(e.g. 12\) or heads dividing 10$"):
        TransformerLM(5, hidden=10, heads=4)
    with pytest.raises(ValueError, match=r"a multiple of 4 \(e.g. 4\)"):  # (not 0)
        TransformerLM(5, hidden=3, heads=4)


def test_tied_and_untied_heads():
    tied, untied = TransformerLM(9, hidden=8, heads=2, tie=True), TransformerLM(9, hidden=8, heads=2)
    assert tied.head.weight is tied.embedding.weight
    assert untied.head.weight is not untied.embedding.weight
    assert sum(p.numel() for p in untied.parameters()) == sum(p.numel() for p in tied.parameters()) + 9 * 8


@pytest.mark.parametrize("rule", ["bp", "dfa:micro"])
def test_checkpoint_load_and_resume_give_the_same_evaluation_and_continue_the_steps(tiny_corpus, tmp_path, rule):
    settings = dict(context=16, batch_size=4, eval_every=2, quiet=True, warmup=2, schedule="cosine")
    torch.manual_seed(2)
    model = TransformerLM(tiny_corpus.vocab_size, hidden=16, layers=2, heads=2, context=16, training=rule)
    ckpt = tmp_path / "run.pt"
    first = model.fit(tiny_corpus, steps=4, checkpoint=ckpt, **settings)
    assert first.steps == 4
    loaded, vocab = load_language_model(ckpt)
    assert isinstance(loaded, TransformerLM) and vocab == tiny_corpus.vocab and str(loaded.rule) == rule
    a = model.evaluate(tiny_corpus.validation, context=16, batch_size=2)
    b = loaded.evaluate(tiny_corpus.validation, context=16, batch_size=2)
    assert b["loss"] == pytest.approx(a["loss"], abs=1e-6)
    # a resumed run continues the step count; the schedule follows the new budget from the step it resumes at
    torch.manual_seed(2)
    straight = TransformerLM(tiny_corpus.vocab_size, hidden=16, layers=2, heads=2, context=16, training=rule)
    whole = straight.fit(tiny_corpus, steps=8, checkpoint=tmp_path / "whole.pt", **settings)
    torch.manual_seed(99)
    again = TransformerLM(tiny_corpus.vocab_size, hidden=16, layers=2, heads=2, context=16, training=rule)
    resumed = again.fit(tiny_corpus, steps=8, checkpoint=ckpt, resume=True, **settings)
    assert [r["step"] for r in resumed.history] == list(range(1, 9))
    assert [r["lr"] for r in resumed.history[4:]] == pytest.approx([r["lr"] for r in whole.history[4:]])
    assert resumed.history[3]["lr"] != pytest.approx(whole.history[3]["lr"])  # step 4 ran under the 4-step budget
    # under a constant schedule, stopping and resuming is the uninterrupted run
    constant = {**settings, "schedule": "constant", "checkpoint": None}
    runs = []
    for stops in ([4, 8], [8]):
        for steps in stops:  # a fresh model, built under another seed, resumes: dropout draws the checkpoint's RNG
            torch.manual_seed(2 if steps == stops[0] else 99)
            model = TransformerLM(tiny_corpus.vocab_size, hidden=16, layers=2, heads=2, context=16, training=rule,
                                  dropout=0.1)
            report = model.fit(tiny_corpus, steps=steps, checkpoint=tmp_path / f"c{len(stops)}.pt",
                               resume=steps != stops[0], **{k: v for k, v in constant.items() if k != "checkpoint"})
        runs.append([r["loss"] for r in report.history])
    assert runs[0] == pytest.approx(runs[1], rel=1e-5)
    saved = again.save(tmp_path / "model.pt", vocab=tiny_corpus.vocab)
    reloaded, _ = TransformerLM.load(saved)
    assert reloaded.evaluate(tiny_corpus.validation, context=16, batch_size=2)["loss"] == pytest.approx(
        again.evaluate(tiny_corpus.validation, context=16, batch_size=2)["loss"], abs=1e-6)


def test_alignment_is_logged_per_feedback_point_and_needs_a_dfa_rule(tiny_corpus):
    torch.manual_seed(0)
    model = make_language_model("transformer", tiny_corpus.vocab_size, hidden=16, layers=2, heads=2, context=16,
                                training="dfa")
    report = model.fit(tiny_corpus, context=16, steps=6, batch_size=4, eval_every=3, align_every=3, quiet=True)
    curves = alignment_curves(report.history)
    assert list(curves) == ["block0.out", "block1.out"]
    assert [step for step, _ in curves["block0.out"]] == [1, 3, 6]
    assert all(-1 <= v <= 1 and math.isfinite(v) for curve in curves.values() for _, v in curve)
    bp = TransformerLM(tiny_corpus.vocab_size, hidden=16, layers=1, heads=2, context=16)
    before = {k: v.clone() for k, v in bp.state_dict().items()}
    with pytest.raises(ValueError, match="needs a dfa rule"):
        bp.fit(tiny_corpus, context=16, steps=2, batch_size=4, align_every=1, quiet=True)
    assert all(torch.equal(before[k], v) for k, v in bp.state_dict().items())  # refused before any update


def test_the_last_alignment_reading_is_of_the_trained_weights_and_dropout_does_not_perturb_training(tiny_corpus):
    """Readings were taken before each step's update (the last one never of the final model), and under dropout
    they drew from torch's generator, so switching the diagnostic on changed the training run."""
    from fwdlearn.sequences.training import alignment_window

    def fit(align_every):
        torch.manual_seed(0)
        model = TransformerLM(tiny_corpus.vocab_size, hidden=16, layers=2, heads=2, context=16, training="dfa",
                              dropout=0.1)
        report = model.fit(tiny_corpus, context=16, steps=4, batch_size=4, eval_every=4, align_every=align_every,
                           quiet=True)
        return model, report

    plain, plain_report = fit(None)
    probed, report = fit(2)
    assert [row["loss"] for row in report.history] == [row["loss"] for row in plain_report.history]
    window = alignment_window(tiny_corpus.validation, 4, 16)
    last = {k.split("/", 1)[1]: v for k, v in report.history[-1].items() if k.startswith("align/")}
    assert probed.feedback_alignment(*window) == pytest.approx(last, abs=1e-6)
    assert probed.feedback_alignment(*window) == probed.feedback_alignment(*window)  # the same at every call


def test_training_gradients_reach_the_model_only_through_the_rule_not_the_alignment_probe(tiny_corpus):
    torch.manual_seed(0)
    model = TransformerLM(tiny_corpus.vocab_size, hidden=16, layers=2, heads=2, context=16, training="dfa")
    x = tiny_corpus.train[:32].view(2, 16)
    y = tiny_corpus.train[1:33].view(2, 16)
    model.feedback_alignment(x, y)
    assert all(p.grad is None for p in model.parameters())  # the probe leaves parameter gradients alone
    assert model.training  # and the mode as it was


@pytest.mark.parametrize("placement", ["dfa", "dfa:micro"])
def test_the_alignment_probe_reads_the_backprop_gradient_at_every_block(placement):
    """Inside probing() the model is plain backprop: the true-gradient half of every block output's pair equals a
    BP twin's gradient there (points seen through a LayerNorm included), and the signal half is what the point
    delivers into h, (e B) dLN/dh: no component along the mean."""
    torch.manual_seed(0)
    dfa = TransformerLM(11, hidden=8, layers=3, heads=2, context=8, training=placement).double()
    bp = TransformerLM(11, hidden=8, layers=3, heads=2, context=8, training="bp").double()
    bp.load_state_dict(dfa.state_dict(), strict=False)
    tokens, targets = torch.randint(0, 11, (2, 6)), torch.randint(0, 11, (2, 6))
    logits, _, hiddens = bp._forward(tokens)
    true = torch.autograd.grad(lm_loss(logits, targets), hiddens)
    with dfa.depth.feedback.probing() as probe:
        logits, _, _ = dfa._forward(tokens, exact=True)
        pairs = probe.compare(lm_loss(logits, targets))
    for i, g in enumerate(true):
        signal, gradient = pairs[f"block{i}.out"]
        torch.testing.assert_close(gradient, g, rtol=1e-10, atol=1e-12)
        assert signal.sum(-1).abs().max() < 1e-10 and signal.abs().max() > 0


def test_dropout_must_be_a_probability_and_eval_context_fit_the_positions(tiny_corpus):
    """dropout=True zeroed every logit in train() and NaN failed at the first training step; fit's eval_context past the
    positions was cut to them in silence (context past them was refused)."""
    from fwdlearn.errors import UsageError
    from fwdlearn.sequences.training import fit_lm

    for bad, kind, message in ((True, UsageError, "dropout must be a number, got True"),
                               (math.nan, UsageError, "dropout must be a finite number, got nan"),
                               (1.0, ValueError, r"dropout must be a probability in \[0, 1\), got 1.0"),
                               (-0.1, UsageError, "dropout must be >= 0, got -0.1")):
        with pytest.raises(kind, match=message):
            TransformerLM(11, hidden=8, layers=1, heads=2, context=8, dropout=bad)
    model = TransformerLM(tiny_corpus.vocab_size, hidden=8, layers=1, heads=2, context=8, dropout=0.1)
    with pytest.raises(ValueError, match=r"eval_context 16 is longer than the model reads \(8 positions\); validate "
                                         "with eval_context <= 8"):
        fit_lm(model, tiny_corpus, context=8, eval_context=16, steps=1, batch_size=2, quiet=True)


def test_a_tied_model_under_a_depth_rule_no_language_model_takes_is_refused_for_its_rule():
    """tie=True with local:ff (or sf, local:ce) was told "build it with tie=False", which was then refused too."""
    for rule, name in (("local:ff", "local:ff"), ("sf", "local:prototype"), ("local:ce", "local:ce")):
        with pytest.raises(ValueError, match=rf"^language models are trained through depth by one of .*; got {name}$"):
            TransformerLM(5, hidden=8, heads=2, training=rule, tie=True)
    with pytest.raises(ValueError, match="build it with tie=False"):  # (a rule that trains untied: still the fix)
        TransformerLM(5, hidden=8, heads=2, training="local:readout", tie=True)


def test_make_language_model_refuses_another_value_of_an_option_its_name_fixes():
    """make_language_model("gru", cell="lstm") failed with Python's "got multiple values for keyword argument 'cell'"
    (and cell="gru", the name's own value, too)."""
    assert make_language_model("gru", 5, hidden=4, cell="gru").config.cell == "gru"
    with pytest.raises(ValueError, match=r"^model 'gru' is built with cell='gru'; got cell='lstm': leave cell out, or "
                                         r"make model 'lstm'$"):
        make_language_model("gru", 5, hidden=4, cell="lstm")


def test_influence_seq_refuses_a_width_the_transformer_heads_cannot_split_before_measuring(tmp_path, monkeypatch,
                                                                                              capsys):
    """--hidden 6 with --models gru transformer measured the GRU, then failed naming hidden and heads, and offered
    "heads dividing 6", which influence seq has no flag for."""
    from fwdlearn.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["influence", "seq", "--models", "gru", "transformer", "--hidden", "6", "--length", "8", "--max-lag",
                 "4", "--name", "h", "--quiet"]) == 2
    line, = capsys.readouterr().err.strip().splitlines()
    assert line.endswith("--hidden (6) must be divisible by the transformer's 4 attention heads (each reads --hidden "
                         "/ 4 channels); choose --hidden a multiple of 4 (e.g. 8)"), line
    assert not any(tmp_path.iterdir())  # refused before anything ran or was written
