"""Edges of the ``fwdlearn seq`` commands' flags (seq train, influence seq, seq sample, bench seq, bench dfa): the
defaults a flag left out stands for, the refusals' exact words, and what each command prints and writes."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from fwdlearn.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("a stitch in time saves nine, and a rolling stone gathers no moss.\n" * 30)
    return path


def _train(text_file, record, *extra, quiet=True):
    return main(["seq", "train", "--data", str(text_file), "--layers", "1", "--hidden", "8", "--context", "8",
                 "--batch-size", "2", "--steps", "1", "--eval-every", "1", "--sample", "0", "--threads", "1",
                 "--json", str(record), *(["--quiet"] if quiet else []), *extra])


@pytest.mark.parametrize("model, shape", [
    ("gru", {"feedback": "diagonal", "norm": True, "reference_block": False}),
    ("transformer", {"heads": 4, "tie": False}),
])
def test_seq_train_builds_the_model_s_own_flags_at_their_documented_defaults(text_file, tmp_path, model, shape):
    """The model-shaping flags default to None ("not given"): left out, each takes the default its help names
    (--heads 4, --no-tie; --feedback diagonal, --norm, --no-reference-block), which the record's model says."""
    record = tmp_path / "r.json"
    assert _train(text_file, record, "--model", model) == 0
    built = json.loads(record.read_text())["summary"]["model"]
    assert {key: built[key] for key in shape} == shape


def test_seq_train_says_which_validation_tokens_the_progress_bar_scores(text_file, tmp_path, capsys):
    """The header names the tokens of the progress bar's val_*: an --eval-tokens as long as the split or longer (the
    default, 100,000, on a small corpus) is the whole split, not "its first 100,000 tokens"."""
    assert _train(text_file, tmp_path / "a.json", quiet=False) == 0
    assert ("the progress bar's val_* are on the whole split of validation, every --eval-every steps"
            in capsys.readouterr().out)
    assert _train(text_file, tmp_path / "b.json", "--eval-tokens", "10", quiet=False) == 0
    assert "the progress bar's val_* are on its first 10 tokens of validation" in capsys.readouterr().out
    notes = json.loads((tmp_path / "b.json").read_text())["summary"]["notes"]
    assert notes.endswith("val_* in the metrics rows: on its first 10 tokens")


def test_influence_seq_measures_32_lags_at_16_positions_by_default(tmp_path):
    """Left out, --max-lag and --positions are 32 and 16 (their help's defaults) for a --length longer than both; the
    record names the device measured on."""
    record = tmp_path / "d.json"
    assert main(["influence", "seq", "--models", "gru", "--hidden", "4", "--batch", "1", "--device", "cpu", "--json",
                 str(record), "--quiet"]) == 0
    data = json.loads(record.read_text())
    assert (data["config"]["length"], data["config"]["max_lag"], data["config"]["positions"]) == (64, 32, 16)
    assert len(data["metrics"][0]["curve"]) == 33 and data["summary"]["device"] == "cpu"  # (the device measured on)


def test_seq_train_reads_the_split_again_only_when_the_fit_validated_on_part_of_it(text_file, tmp_path, capsys):
    """An --eval-tokens of exactly the split's length validates on the whole split during the fit: its best
    evaluation is the final figures, with no second pass ("evaluating:" bar); one token fewer needs that pass."""
    from fwdlearn.sequences import load_text

    tokens = load_text(str(text_file)).validation.numel()
    for eval_tokens, again in ((tokens, False), (tokens - 1, True)):
        assert _train(text_file, tmp_path / f"{eval_tokens}.json", "--eval-tokens", str(eval_tokens), quiet=False) == 0
        assert ("evaluating:" in capsys.readouterr().err) == again


def test_influence_seq_names_a_folder_given_as_a_checkpoint(tmp_path, capsys):
    """A folder given to --checkpoints is said to be one, with the file to pass (not "no such file")."""
    assert main(["influence", "seq", "--checkpoints", str(tmp_path), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"fwdlearn: error: --checkpoints {tmp_path} is a folder; pass the .pt files a "
                                       f"seq train run wrote (e.g. {tmp_path / '<name>.pt'})\n")
    assert not list(tmp_path.iterdir())


def test_influence_seq_names_every_text_option_the_untrained_models_would_ignore(text_file, tmp_path, capsys):
    """Without --checkpoints, each of --data, --split and --limit given is named (--limit was dropped silently)."""
    assert main(["influence", "seq", "--data", str(text_file), "--split", "test", "--limit", "5", "--length", "8",
                 "--quiet", "--json", str(tmp_path / "r.json")]) == 2
    assert capsys.readouterr().err == ("fwdlearn: error: --data, --split, --limit choose the text that --checkpoints "
                                       "read; the untrained --models read random tokens: add --checkpoints (trained "
                                       "models), or leave them out\n")
    assert main(["influence", "seq", "--limit", "5", "--length", "8", "--quiet", "--json",
                 str(tmp_path / "r.json")]) == 2
    assert capsys.readouterr().err.startswith("fwdlearn: error: --limit choose the text that --checkpoints read")
    assert not (tmp_path / "r.json").exists()


def test_seq_sample_refusals_say_the_one_flag_that_changes_nothing_and_torchrun(tmp_path, monkeypatch, capsys):
    """One unused flag beside --greedy is "it" (two are "them"); a length past the cap and a torchrun launch are
    refused before the model file is read."""
    missing = tmp_path / "none.pt"
    assert main(["seq", "sample", "--model", str(missing), "--greedy", "--seed", "1"]) == 2
    assert capsys.readouterr().err == ("fwdlearn: error: --greedy takes the most likely token at every step, so --seed "
                                       "would change nothing: leave it out, or leave out --greedy to sample\n")
    assert main(["seq", "sample", "--model", str(missing), "--length", "1000001"]) == 2
    assert capsys.readouterr().err.strip().endswith("--length must be <= 1000000, got 1000001")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["seq", "sample", "--model", str(missing)]) == 2
    assert capsys.readouterr().err == ("fwdlearn: error: fwdlearn seq sample runs in one process: start it without "
                                       "torchrun (torchrun scales out seq train and influence graph)\n")


def test_influence_seq_takes_every_position_and_lag_of_the_length_and_no_more(tmp_path, capsys):
    """--positions up to --length and --max-lag up to --length - 1 are measured; one more of either is refused."""
    flags = ["influence", "seq", "--models", "gru", "--hidden", "4", "--length", "8", "--batch", "1", "--quiet"]
    assert main([*flags, "--positions", "9", "--json", str(tmp_path / "a.json")]) == 2
    assert capsys.readouterr().err == ("fwdlearn: error: --positions 9 is more than --length 8: a sequence of 8 tokens "
                                       "has 8 output positions; give --positions 8 or less, or a longer --length\n")
    assert main([*flags, "--max-lag", "8", "--json", str(tmp_path / "a.json")]) == 2
    assert "--max-lag 8 reaches past --length 8" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists()
    assert main([*flags, "--positions", "8", "--max-lag", "7", "--json", str(tmp_path / "b.json")]) == 0
    data = json.loads((tmp_path / "b.json").read_text())
    assert (data["config"]["positions"], len(data["metrics"][0]["curve"])) == (8, 8)


def test_seq_train_under_quiet_prints_the_figures_then_names_the_record_and_the_checkpoint(text_file, tmp_path,
                                                                                          capsys):
    """--quiet leaves the results: the final figures, then the record and the checkpoint it wrote (the record's
    files name the checkpoint too)."""
    record = tmp_path / "q.json"
    assert _train(text_file, record) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("dsf: val loss ") and lines[0].endswith(", best state of step 1 of 1")
    assert lines[1:] == [f"record: {record}", f"checkpoint: {tmp_path / 'q.pt'}"]
    assert json.loads(record.read_text())["files"]["checkpoint"] == str(tmp_path / "q.pt")


def test_influence_seq_names_its_plot_and_reads_a_checkpoint_at_its_full_context(tmp_path, capsys):
    """The plot is named beside the record, as seq train names its; a transformer checkpoint reads a --length of
    exactly its context (one more is refused)."""
    from fwdlearn.sequences import TransformerLM

    path = tmp_path / "t.pt"
    TransformerLM(10, hidden=8, layers=1, heads=2, context=8).save(path)
    record, plot = tmp_path / "r.json", tmp_path / "lags.png"
    flags = ["influence", "seq", "--checkpoints", str(path), "--batch", "1", "--positions", "2", "--quiet"]
    assert main([*flags, "--length", "8", "--plot", str(plot), "--json", str(record)]) == 0
    assert capsys.readouterr().out.endswith(f"plot: {plot}\nrecord: {record}\n") and plot.stat().st_size > 0
    assert main([*flags, "--length", "9", "--json", str(tmp_path / "s.json")]) == 2
    assert f"{path} reads at most 8 positions (its context); pass --length <= 8" in capsys.readouterr().err


@pytest.mark.parametrize("command, record, given", [
    ("bench", "seq-results", {"out", "overwrite", "cost_cells", "cost_repeats"}),
    ("bench_dfa", "dfa-transformer", {"out", "skip"}),
    ("bench_dfa", "dfa-recurrent", {"out", "skip"}),
    ("bench_dfa", "dfa-cost", {"out", "skip", "cost_repeats"}),
])
def test_the_bench_defaults_are_the_settings_of_the_docs_figures(command, record, given):
    """docs/benchmarks.md gives each bench's command with a few flags: every setting left out is the default, so the
    defaults are the settings its record holds (a default changed would no longer make the figures published)."""
    import importlib

    module = importlib.import_module(f"fwdlearn.sequences.cli.{command}")
    config = next(getattr(module, name) for name in ("SeqBenchConfig", "DfaBenchConfig") if hasattr(module, name))
    saved = json.loads((DOCS / f"{record}-record.json").read_text())["config"]
    left_out = set(saved) - given - {"quiet", "debug"}  # (--quiet, and --debug resolved from the environment)
    defaults = asdict(config())
    assert {key: defaults[key] for key in left_out} == {key: saved[key] for key in left_out}


def test_influence_seq_reads_a_checkpoint_s_text_at_its_level_and_vocabulary(text_file, tmp_path, capsys):
    """A word-level model reads --data as words; a vocabulary of the same size but other tokens is refused (its ids
    would mean other tokens); --batch x --length may take the whole split, not one token more."""
    from fwdlearn.sequences import RecurrentLM, load_text

    words = load_text(str(text_file), level="word")
    word_model = RecurrentLM(words.vocab_size, cell="gru", hidden=4, layers=1).save(tmp_path / "w.pt",
                                                                                   vocab=words.vocab)
    flags = ["influence", "seq", "--data", str(text_file), "--batch", "1", "--positions", "2", "--max-lag", "2",
             "--quiet"]
    assert main([*flags, "--checkpoints", str(word_model), "--length", "4", "--json", str(tmp_path / "w.json")]) == 0
    chars = load_text(str(text_file))
    other = tmp_path / "other.txt"  # as many distinct characters, every one another
    other.write_text("".join(chr(ord("A") + i) for i in range(chars.vocab_size)) * 40)
    assert load_text(str(other)).vocab_size == chars.vocab_size
    model = RecurrentLM(chars.vocab_size, cell="gru", hidden=4, layers=1).save(tmp_path / "c.pt", vocab=chars.vocab)
    assert main([*flags[:3], str(other), *flags[4:], "--checkpoints", str(model), "--length", "4"]) == 2
    assert capsys.readouterr().err == (f"fwdlearn: error: {model} was trained with another vocabulary "
                                       f"({chars.vocab_size} tokens) than {other} gives ({chars.vocab_size}); pass the "
                                       "corpus it was trained on (and its --limit)\n")
    tokens = chars.validation.numel()
    assert main([*flags, "--checkpoints", str(model), "--length", str(tokens), "--json", str(tmp_path / "c.json")]) == 0
    assert main([*flags, "--checkpoints", str(model), "--length", str(tokens + 1)]) == 2
    assert capsys.readouterr().err == (f"fwdlearn: error: {text_file} validation has {tokens} tokens; --batch x "
                                       f"--length needs {tokens + 1}\n")


def test_seq_train_s_resume_refusal_keeps_a_feedback_given_under_a_dsf_rule(text_file, tmp_path, capsys):
    """A --feedback given with a rule that has DSF is a difference like any other: the fix resumes with the
    checkpoint's feedback (not "without --feedback", the fix for a rule without DSF), and those flags resume it."""
    checkpoint = tmp_path / "r.pt"
    assert _train(text_file, tmp_path / "a.json", "--checkpoint", str(checkpoint)) == 0
    capsys.readouterr()
    again = ["--steps", "2", "--checkpoint", str(checkpoint), "--resume", "--feedback", "orthogonal", "--hidden", "12"]
    assert _train(text_file, tmp_path / "b.json", *again) == 2
    assert capsys.readouterr().err == (
        f"fwdlearn: error: the checkpoint {checkpoint} was made by a different run: --hidden 8 (checkpoint) vs 12 "
        "(now); --training dsf (checkpoint) vs dsf:orthogonal (now); --feedback diagonal (checkpoint) vs orthogonal "
        "(now). Resume with --hidden 8 --training dsf --feedback diagonal, or start a new run (another --name or "
        "--checkpoint)\n")
    assert _train(text_file, tmp_path / "b.json", *again, "--hidden", "8", "--training", "dsf", "--feedback",
                  "diagonal") == 0
    assert json.loads((tmp_path / "b.json").read_text())["summary"]["resumed"]["from_step"] == 1


def test_the_bench_configs_take_the_bounds_their_help_names():
    """A recall task of one symbol has nothing to recall (--recall-symbols >= 2); bench dfa's --rnn-steps 0 means
    --steps (so 0 is taken) while --align-every 0 is refused (its readings are every N >= 1 steps)."""
    from fwdlearn.errors import UsageError
    from fwdlearn.sequences.cli.bench import SeqBenchConfig
    from fwdlearn.sequences.cli.bench_dfa import DfaBenchConfig

    with pytest.raises(UsageError, match=r"^--recall-symbols must be >= 2, got 1$"):
        SeqBenchConfig(recall_symbols=1)
    assert SeqBenchConfig(recall_symbols=2).recall_symbols == 2
    assert DfaBenchConfig(rnn_steps=0).rnn_steps == 0
    with pytest.raises(UsageError, match=r"^--align-every must be >= 1, got 0$"):
        DfaBenchConfig(align_every=0)


@pytest.mark.parametrize("command", ["seq", "dfa"])
def test_a_sequence_bench_s_help_lists_its_run_options_together(command, capsys):
    """--resume, --device and --threads of bench seq and bench dfa are run options, listed under that heading with
    the others (as every command's are), not among the bench's own settings."""
    with pytest.raises(SystemExit) as exit:
        main(["bench", command, "--help"])
    assert exit.value.code == 0
    own, run = capsys.readouterr().out.split("\nrun options:\n")
    for flag in ("--resume", "--device DEVICE", "--threads THREADS", "--seed SEED"):
        assert f"\n  {flag}" in run and f"\n  {flag}" not in own


def test_seq_sample_starts_after_eos_wherever_the_vocabulary_holds_it(tmp_path, capsys, monkeypatch):
    """Without --prompt a word-level model starts after <eos> (a line's start), not after the vocabulary's first
    token, which is another word where one sorts before it ("1"); only what it drew is printed."""
    import torch

    from fwdlearn.sequences import RecurrentLM, load_text
    from fwdlearn.sequences.nn.language_model import LanguageModel

    words = tmp_path / "words.txt"
    words.write_text("1 stitch in time saves 9\n2 rolling stones gather no moss\n" * 20)
    corpus = load_text(str(words), level="word")
    eos = corpus.vocab.index["<eos>"]
    assert eos != 0
    torch.manual_seed(0)
    path = RecurrentLM(corpus.vocab_size, cell="gru", hidden=8, layers=1).save(tmp_path / "w.pt", vocab=corpus.vocab)
    prompts, generate = [], LanguageModel.generate

    def spy(self, prompt, steps, **kwargs):
        prompts.append(prompt.tolist())
        return generate(self, prompt, steps, **kwargs)

    monkeypatch.setattr(LanguageModel, "generate", spy)
    assert main(["seq", "sample", "--model", str(path), "--length", "6", "--seed", "1", "--quiet"]) == 0
    assert prompts == [[eos]]
    model, vocab = RecurrentLM.load(path)
    drawn = generate(model, torch.tensor([eos]), 6, vocab=vocab, seed=1)
    assert capsys.readouterr().out == drawn[len("\n"):] + "\n"


def test_bench_dfa_refuses_to_skip_every_part(tmp_path, capsys):
    """--skip of all three parts would run nothing and write empty tables: refused before any work, as bench seq's."""
    assert main(["bench", "dfa", "--skip", "recurrent", "transformer", "cost", "--out", str(tmp_path / "d"),
                 "--quiet"]) == 2
    assert capsys.readouterr().err == ("fwdlearn: error: --skip names every part (transformer, cost, recurrent); "
                                       "nothing would run: leave at least one out\n")
    assert not list(tmp_path.iterdir())
