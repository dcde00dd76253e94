"""LanguageModel.generate's top_k, and fwdlearn seq sample end to end on a tiny saved model."""

import pytest
import torch

from fwdlearn.cli import main
from fwdlearn.sequences import RecurrentLM, TransformerLM, load_text

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(vocab_size=20, seed=0):
    torch.manual_seed(seed)
    return RecurrentLM(vocab_size, cell="gru", hidden=16, layers=1)


def _recording(model):
    """The last logits of every step generate reads (prefill, then one per token drawn)."""
    seen = []
    prefill, next_logits = model.prefill, model.next_logits

    def record(call):
        def wrapped(*args):
            logits, state = call(*args)
            seen.append(logits[0, -1].detach().clone())
            return logits, state
        return wrapped

    model.prefill, model.next_logits = record(prefill), record(next_logits)
    return seen


@pytest.mark.parametrize("kind", ["recurrent", "transformer"])
def test_top_k_draws_only_among_the_k_largest_logits_at_every_step(kind):
    torch.manual_seed(0)
    model = (RecurrentLM(20, cell="gru", hidden=16, layers=1) if kind == "recurrent"
             else TransformerLM(20, hidden=16, layers=1, heads=2, context=64))
    prompt = torch.tensor([1, 2, 3])
    for k in (2, 3, 5):
        seen = _recording(model)
        ids = model.generate(prompt, 40, temperature=5.0, seed=k, top_k=k)
        drawn = ids[3:]
        assert len(seen) == 40  # (the logits after the last token are never read)
        for token, logits in zip(drawn.tolist(), seen):
            assert logits[token] >= torch.topk(logits, k).values[-1], (k, token)
        del model.prefill, model.next_logits
    seen = _recording(model)  # without top_k, a hot sample leaves the top 2 (the check above has teeth)
    ids = model.generate(prompt, 40, temperature=5.0, seed=2)
    assert any(logits[t] < torch.topk(logits, 2).values[-1] for t, logits in zip(ids[3:].tolist(), seen))


def test_top_k_1_is_greedy_and_a_k_of_the_whole_vocabulary_filters_nothing():
    model = _model()
    prompt = torch.tensor([4, 5])
    greedy = model.generate(prompt, 30, greedy=True)
    for seed in (0, 1):
        assert torch.equal(model.generate(prompt, 30, top_k=1, seed=seed, temperature=3.0), greedy)
    for k in (20, 21, 10**6):  # the same draws, bit for bit, as without top_k
        assert torch.equal(model.generate(prompt, 30, seed=3, top_k=k), model.generate(prompt, 30, seed=3))
    assert torch.equal(model.generate(prompt, 30, seed=3, top_k=None), model.generate(prompt, 30, seed=3))
    small = model.generate(prompt, 30, seed=3, top_k=4)
    assert torch.equal(model.generate(prompt, 30, seed=3, top_k=4), small)  # seeded
    assert torch.equal(model.generate(prompt, 30, seed=3, top_k=torch.tensor(4)), small)  # (any integer)


def test_top_k_that_is_not_a_positive_int_is_refused_naming_the_fix():
    model = _model()
    prompt = torch.tensor([1])
    for k in (0, -3):
        with pytest.raises(ValueError, match=rf"top_k must be >= 1 \(the most likely tokens kept; 1 is greedy\) or "
                                             rf"None \(keep every token\), got {k}"):
            model.generate(prompt, 2, top_k=k)
    for k in (2.5, "3", True, 3.0):
        with pytest.raises(TypeError, match=r"top_k must be an int >= 1 \(the most likely tokens kept\) or None"):
            model.generate(prompt, 2, top_k=k)


@pytest.fixture
def saved(tmp_path, tiny_corpus):
    model = _model(tiny_corpus.vocab_size)
    path = model.save(tmp_path / "lm.pt", vocab=tiny_corpus.vocab)
    return path, model, tiny_corpus.vocab


def _sample(capsys, *args):
    status = main(["seq", "sample", "--threads", "1", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_seq_sample_prints_what_generate_draws_the_same_for_the_same_seed(saved, capsys):
    path, model, vocab = saved
    status, out, err = _sample(capsys, "--model", path, "--prompt", "the ", "--length", 20, "--top-k", 4,
                               "--temperature", 0.7, "--seed", 3)
    assert status == 0
    assert out == model.generate("the ", 20, vocab=vocab, temperature=0.7, seed=3, top_k=4) + "\n"
    assert err.count("\n") == 1 and "20 tokens, temperature 0.7, top-k 4, seed 3" in err  # one line on stderr
    again = _sample(capsys, "--model", path, "--prompt", "the ", "--length", 20, "--top-k", 4, "--temperature", 0.7,
                    "--seed", 3, "--quiet")
    assert again == (0, out, "")  # reproducible; --quiet prints the text alone
    other = _sample(capsys, "--model", path, "--prompt", "the ", "--length", 20, "--seed", 4, "--quiet")[1]
    assert other != out and other.startswith("the ")
    greedy = _sample(capsys, "--model", path, "--prompt", "the ", "--length", 20, "--greedy", "--quiet")[1]
    assert greedy == model.generate("the ", 20, vocab=vocab, greedy=True) + "\n"
    assert _sample(capsys, "--model", path, "--prompt", "the ", "--length", 20, "--top-k", 1, "--quiet")[1] == greedy
    # no prompt: the model starts after the vocabulary's first token, and only what it drew is printed
    status, out, _ = _sample(capsys, "--model", path, "--length", 15, "--quiet")
    start = torch.tensor([0])
    assert status == 0 and out == vocab.decode(model.generate(start, 15, seed=0)[1:]) + "\n"


def test_seq_sample_reads_a_seq_train_checkpoint_and_starts_a_word_model_after_eos(tmp_path, capsys):
    words = tmp_path / "words.txt"
    words.write_text("a stitch in time saves nine\nand a rolling stone gathers no moss\n" * 20)
    corpus = load_text(str(words), level="word")
    model = _model(corpus.vocab_size)
    model.fit(corpus, context=8, steps=1, batch_size=2, checkpoint=tmp_path / "run.pt", quiet=True)
    loaded, vocab = RecurrentLM.load(tmp_path / "run.pt")
    status, out, _ = _sample(capsys, "--model", tmp_path / "run.pt", "--length", 6, "--seed", 1, "--quiet")
    start = torch.tensor([vocab.index["<eos>"]])
    assert status == 0 and out == vocab.decode(loaded.generate(start, 6, seed=1)[1:]) + "\n"


def test_seq_sample_refuses_a_file_without_a_vocabulary_and_flags_that_change_nothing(saved, tmp_path, capsys):
    path, model, _ = saved
    bare = model.save(tmp_path / "bare.pt")  # saved without vocab=
    status, out, err = _sample(capsys, "--model", bare)
    assert status == 2 and out == ""
    assert err == (f"fwdlearn: error: {bare} holds no vocabulary (its model was saved without vocab=), so its token "
                   "ids cannot be read or written as text: save it again with model.save(path, vocab=corpus.vocab) (a "
                   "seq train checkpoint holds it), or draw ids in Python with model.generate(ids, steps)\n")
    status, _, err = _sample(capsys)
    assert status == 2 and err.startswith("fwdlearn: error: fwdlearn seq sample needs --model PATH: a file model.save(")
    status, _, err = _sample(capsys, "--model", path, "--greedy", "--top-k", 3, "--seed", 1)
    assert status == 2 and err == ("fwdlearn: error: --greedy takes the most likely token at every step, so --top-k, "
                                   "--seed would change nothing: leave them out, or leave out --greedy to sample\n")
    # --top-k 1 is greedy too: a --seed or --temperature with it was accepted and printed the same text for every
    # value (its stderr line said 'temperature 5, top-k 1, seed 3'), while --greedy --seed was refused
    status, _, err = _sample(capsys, "--model", path, "--top-k", 1, "--seed", 3, "--temperature", 5)
    assert status == 2 and err == ("fwdlearn: error: --top-k 1 keeps only the most likely token at every step (as "
                                   "--greedy), so --temperature, --seed would change nothing: leave them out, or give "
                                   "--top-k 2 or more to sample\n")
    status, out, err = _sample(capsys, "--model", path, "--top-k", 1, "--length", 5)
    assert status == 0 and err.endswith("5 tokens, greedy (top-k 1)\n")
    assert out == _sample(capsys, "--model", path, "--greedy", "--length", 5)[1]
    status, _, err = _sample(capsys, "--model", path, "--top-k", 0)
    assert status == 2 and err == "fwdlearn: error: --top-k must be >= 1, got 0\n"
    status, _, err = _sample(capsys, "--model", path, "--prompt", "THE")
    assert status == 2 and err.startswith("fwdlearn: error: the prompt's tokens 'E', 'H', 'T' are not in the "
                                          "vocabulary") and err.count("\n") == 1  # (the error alone: no header)
    status, _, err = _sample(capsys, "--model", tmp_path / "missing.pt")
    assert status == 2 and "no model file at" in err


def test_seq_sample_without_a_prompt_draws_only_tokens_its_vocabulary_holds(tmp_path, tiny_corpus, capsys):
    """A model of a larger vocab_size than the vocabulary saved with it (model.save allows it, a prompt's draw keeps to
    the vocabulary's ids) failed without --prompt: "ids [11, 15, 20, ...] are outside this vocabulary's [0, 2]"."""
    vocab = tiny_corpus.vocab
    model = _model(len(vocab) + 40)
    path = model.save(tmp_path / "wide.pt", vocab=vocab)
    status, out, err = _sample(capsys, "--model", path, "--length", 30, "--seed", 1, "--quiet")
    assert status == 0 and err == ""
    drawn = model.generate(vocab.tokens[:1], 30, vocab=vocab, seed=1)  # the draw after the first token, as a prompt's
    assert out == drawn[1:] + "\n" and set(out[:-1]) <= set(vocab.tokens)
    # a word vocabulary without <eos> (a line cut short by limit) starts after its first word, its space left out too
    words = tmp_path / "words.txt"
    words.write_text("red green blue " * 40)
    corpus = load_text(str(words), level="word", limit=400)
    assert "<eos>" not in corpus.vocab.index
    model = _model(len(corpus.vocab))
    path = model.save(tmp_path / "words.pt", vocab=corpus.vocab)
    status, out, _ = _sample(capsys, "--model", path, "--length", 6, "--seed", 2, "--quiet")
    assert status == 0 and out == corpus.vocab.decode(model.generate(torch.tensor([0]), 6, seed=2)[1:]) + "\n"


def test_a_word_prompt_of_whitespace_alone_is_named_so(tmp_path, capsys):
    """At word level a prompt of spaces holds no token, and was refused as 'generate needs a non-empty prompt'."""
    words = tmp_path / "words.txt"
    words.write_text("a stitch in time saves nine\n" * 20)
    corpus = load_text(str(words), level="word")
    model = _model(corpus.vocab_size)
    with pytest.raises(ValueError, match=r"the prompt holds only whitespace \(3 characters\), no word: a word-level "
                                         r"vocabulary reads whitespace as the space between words; give at least one "
                                         r"word, or start after a line's end: a prompt of '\\n' \(seq sample: leave "
                                         r"--prompt out\)"):
        model.generate("   ", 3, vocab=corpus.vocab, seed=0)
    assert model.generate("\n", 3, vocab=corpus.vocab, seed=0).startswith("\n")  # the fix it names
    path = model.save(tmp_path / "w.pt", vocab=corpus.vocab)
    status, _, err = _sample(capsys, "--model", path, "--prompt", " \t ")
    assert status == 2 and err.startswith("fwdlearn: error: the prompt holds only whitespace (3 characters), no word")
    with pytest.raises(ValueError, match="generate needs a non-empty prompt"):  # (an empty one is still that)
        model.generate("", 3, vocab=corpus.vocab, seed=0)


@pytest.mark.parametrize("flags, expected", [
    (["--temperature", "0.5", "--seed", "2"], {"temperature": 0.5, "seed": 2, "top_k": None, "greedy": False}),
    (["--top-k", "3"], {"temperature": 1.0, "seed": 0, "top_k": 3, "greedy": False}),
    (["--greedy"], {"greedy": True}),
])
def test_seq_sample_hands_each_flag_to_generate(saved, capsys, monkeypatch, flags, expected):
    """--temperature, --top-k, --seed and --greedy each reach generate (a temperature dropped on its way drew a text
    that an untrained model's near-uniform logits made look alike)."""
    from fwdlearn.sequences.nn.language_model import LanguageModel

    seen, generate = {}, LanguageModel.generate

    def spy(self, prompt, steps, **kwargs):
        seen.update(kwargs, steps=steps)
        return generate(self, prompt, steps, **kwargs)

    monkeypatch.setattr(LanguageModel, "generate", spy)
    path = saved[0]
    assert _sample(capsys, "--model", path, "--prompt", "the ", "--length", 5, "--quiet", *flags)[0] == 0
    assert {k: seen[k] for k in expected} == expected and seen["steps"] == 5
