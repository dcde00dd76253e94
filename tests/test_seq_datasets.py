"""sequences.datasets: vocabularies, corpora through HF datasets, batching, synthetic tasks."""

import hashlib
import math
import os
import re
from pathlib import Path

import pytest
import torch

from fwdlearn.data import data_dir
from fwdlearn.sequences import (AddingProblem, CopyTask, DelayedRecall, StreamBatcher, Vocabulary, load_text,
                                make_task, random_windows)

needs_data = pytest.mark.skipif(data_dir() is None, reason="FWDLEARN_DATA_DIR is unset: real text corpora not available")


def test_char_vocabulary_round_trips_and_saves():
    text = "To be, or not to be:\nthat is the question."
    vocab = Vocabulary.build([text], "char")
    ids = vocab.encode(text)
    assert ids.dtype == torch.long and len(ids) == len(text)
    assert vocab.decode(ids) == text
    again = Vocabulary.from_state_dict(vocab.state_dict())
    assert again == vocab and again.decode(ids) == text
    with pytest.raises(ValueError, match=r"tokens 'Q', 'x', 'y', 'z' are not in the vocabulary \(\d+ char tokens\)"):
        vocab.encode("xyzQ")  # (every unknown token named: it named the first alone)
    with pytest.raises(ValueError, match=r"ids \[-1, 99\] are outside this vocabulary's \[0, \d+\]"):
        vocab.decode([0, -1, 99])  # (-1 decoded as the last token; 99 a bare IndexError)


def test_word_vocabulary_round_trips_lines():
    text = "the cat sat\non the mat\n"
    vocab = Vocabulary.build([text], "word")
    ids = vocab.encode(text)
    assert vocab.decode(ids) == "the cat sat\non the mat\n"
    assert "<eos>" in vocab.tokens and len(ids) == 8


def test_load_text_from_a_file_splits_90_10(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("abcdefghij" * 20)
    corpus = load_text(str(path))
    assert corpus.train.numel() == 180 and corpus.validation.numel() == 20
    assert corpus.vocab.decode(corpus.train[:10]) == "abcdefghij"
    only = load_text(str(path), split="validation")
    assert list(only.splits) == ["validation"]


def test_load_text_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus 'no-such-corpus'"):
        load_text("no-such-corpus")
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n")
    with pytest.raises(ValueError, match="is empty"):
        load_text(str(empty))
    with pytest.raises(ValueError, match="level must be"):
        load_text(str(empty), level="byte")


@needs_data
def test_tinyshakespeare_uses_the_usual_split():
    corpus = load_text("tinyshakespeare")
    assert corpus.vocab_size == 65
    assert corpus.train.numel() == 1_003_854 and corpus.validation.numel() == 111_540
    assert corpus.vocab.decode(corpus.train[:14]) == "First Citizen:"
    # the published char-level figures depend on this exact cut (the train ids and validation ids, byte for byte)
    assert corpus.vocab.decode(corpus.train[-8:]) + "|" + corpus.vocab.decode(corpus.validation[:8]) == \
        "mes here|?\n\nGREMI"
    assert [hashlib.sha256(ids.numpy().tobytes()).hexdigest()[:16] for ids in (corpus.train, corpus.validation)] == \
        ["0f4025c3c124bb92", "370f8961a8d4fb30"]
    small = load_text("tinyshakespeare", limit=2000)
    assert small.train.numel() == 1800


@needs_data
def test_wikitext2_words_from_local_valid_and_test():
    corpus = load_text("wikitext-2", level="word")
    assert set(corpus.splits) == {"validation", "test"}
    assert "<unk>" in corpus.vocab.tokens and "<eos>" in corpus.vocab.tokens
    with pytest.raises(ValueError, match=r"no 'train' split; available: validation, test. Pick one of those \(e.g. "
                                         "--train-split validation --valid-split test: train on one, select the model "
                                         r"on another; in Python, corpus.split\('validation'\) and "
                                         r"corpus.split\('test'\)\)$"):
        corpus.train


def test_stream_batcher_continues_streams_and_resumes():
    ids = torch.arange(103)
    batcher = StreamBatcher(ids, batch_size=4, context=5)  # 4 streams of 25 tokens
    x1, y1, fresh1 = batcher.next()
    x2, y2, fresh2 = batcher.next()
    assert fresh1 and not fresh2
    assert x1.shape == (4, 5) and torch.equal(y1, x1 + 1)
    assert torch.equal(x2[:, 0], x1[:, -1] + 1)  # window 2 continues where window 1 stopped
    assert torch.equal(x1[:, 0], torch.tensor([0, 25, 50, 75]))
    state = batcher.state_dict()
    x3, _, _ = batcher.next()
    other = StreamBatcher(ids, 4, 5)
    other.load_state_dict(state)
    assert torch.equal(other.next()[0], x3)
    assert batcher.windows_per_epoch == 4
    assert not batcher.next()[2]  # the 4th and last window of the epoch
    x5, _, fresh5 = batcher.next()
    assert fresh5 and torch.equal(x5, x1) and batcher.epoch == 1  # wrapped around: a new epoch starts fresh


def test_context_longer_than_data_is_refused():
    with pytest.raises(ValueError, match="context 50 is longer than"):
        StreamBatcher(torch.arange(100), batch_size=4, context=50)
    with pytest.raises(ValueError, match="context 200 is longer than"):
        random_windows(torch.arange(100), 2, 200)
    x, y = random_windows(torch.arange(100), 3, 10, torch.Generator().manual_seed(0))
    assert x.shape == (3, 10) and torch.equal(y, x + 1)


def test_delayed_recall_targets_and_chance():
    task = DelayedRecall(lag=5, symbols=4, length=12)
    x, y = task.sample(3, torch.Generator().manual_seed(0))
    assert torch.equal(y[:, 5:], x[:, :7]) and bool((y[:, :5] == -100).all())
    assert task.chance == 0.25
    with pytest.raises(ValueError, match="must exceed the lag"):
        DelayedRecall(lag=10, length=10)


def test_copy_task_recalls_after_exactly_lag_steps():
    task = CopyTask(lag=10, count=3, symbols=5)
    x, y = task.sample(2, torch.Generator().manual_seed(1))
    assert x.shape == (2, 13)
    assert torch.equal(y[:, 10:13] + 1, x[:, 0:3])  # data tokens are 1..symbols, classes 0..symbols-1
    assert bool((x[:, 10:] == 6).all()) and bool((y[:, :10] == -100).all())
    with pytest.raises(ValueError, match="lag >= count"):
        CopyTask(lag=2, count=3)


def test_adding_problem_sums_two_marked_values():
    task = AddingProblem(length=20, levels=10)
    x, y = task.sample(64, torch.Generator().manual_seed(2))
    marks = x // 10
    values = (x % 10 + 0.5) / 10
    assert bool((marks.sum(1) == 2).all())
    assert torch.allclose(y[:, -1], (values * marks).sum(1))
    assert bool(torch.isnan(y[:, :-1]).all())
    assert task.chance == pytest.approx(2 * 99 / 1200)
    assert math.isclose(make_task("adding", lag=20).chance, task.chance)
    with pytest.raises(ValueError, match="unknown task"):
        make_task("parity")


def test_load_text_reads_changed_content_even_with_the_same_mtime(tmp_path, monkeypatch):
    """The HF cache is keyed on content: rewriting a file in place (same size, same mtime) gives the new text."""
    import os

    from fwdlearn.sequences import load_text

    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "tiny.txt"
    path.write_text("abcabcabcabc\n" * 20)
    first = load_text(str(path))
    stamp = os.stat(path)
    path.write_text("xyzxyzxyzxyz\n" * 20)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    second = load_text(str(path))
    assert first.vocab.decode(first.train[:3]) == "abc" and second.vocab.decode(second.train[:3]) == "xyz"
    assert first.fingerprint != second.fingerprint
    assert load_text(str(path)).fingerprint == second.fingerprint


def test_a_damaged_build_in_the_cache_is_built_again_not_blamed_on_the_corpus(tmp_path, monkeypatch):
    """An arrow file of HF's build cut short failed every later read of the same text with Arrow's "Expected to read
    152 metadata bytes, but only read 44", naming no file; a dataset_info.json of '{}' with "cannot read c.txt as a
    text corpus (TypeError: can only join an iterable); a corpus must be a UTF-8 text file": the corpus was fine."""
    from fwdlearn.sequences import load_text

    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "c.txt"
    path.write_text("to be or not to be\n" * 20)
    first = load_text(str(path))
    for name, damage in (("*.arrow", lambda f: f.write_bytes(f.read_bytes()[:300])),
                         ("dataset_info.json", lambda f: f.write_text("{}"))):
        found = list((tmp_path / "cache").rglob(name))
        assert found
        for file in found:
            damage(file)
        again = load_text(str(path))
        assert again.fingerprint == first.fingerprint
        assert all(torch.equal(ids, first.splits[k]) for k, ids in again.splits.items())


def _finding_the_same_damage(path, cache, events, out):
    """The second process of the test below: ``load_text(path)`` that finds the build damaged, then waits until the
    first process has removed it and is building it again, and goes on; what it loaded (or its error) in ``out``."""
    os.environ["FWDLEARN_CACHE_DIR"] = cache
    torch.set_num_threads(1)
    import fwdlearn.sequences.data.text as text

    damaged, building, removed = events
    load, remove, failed = text._load_documents, text._remove_build, []

    def loading(*args):
        try:
            return load(*args)
        except Exception:
            failed.append(len(failed) + 1)
            if len(failed) == 1:
                damaged.set()
                building.wait(60)  # (the first process has removed the build and is building it again)
            raise

    def removing(folder):
        remove(folder)
        removed.set()

    text._load_documents, text._remove_build = loading, removing
    try:
        corpus = text.load_text(path)
        result = f"ok {corpus.vocab.decode(corpus.train[:19])!r} {corpus.train.numel()}, loads failed {failed}"
    except BaseException as error:
        result = f"{type(error).__name__}: {error} ({error.__cause__ or error.__context__})"
    Path(out).write_text(result)


def test_two_processes_finding_one_damaged_build_rebuild_it_in_turn(tmp_path, monkeypatch):
    """A process that found a damaged build and removed it while another one built it again deleted that one's
    half-built files, and the other one failed: "DatasetGenerationError: An error occurred while generating the
    dataset" (FileNotFoundError: .../0.0.0/<hash>.incomplete/text-full-00000-00000-of-NNNNN.arrow). Now the second
    one waits its turn and loads the first one's build."""
    import multiprocessing

    import datasets.builder

    import fwdlearn.sequences.data.text as text

    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "c.txt"
    path.write_text("to be or not to be\n" * 20)
    first = load_text(str(path))
    for file in (tmp_path / "cache").rglob("*.arrow"):
        file.write_bytes(file.read_bytes()[:300])
    spawn = multiprocessing.get_context("spawn")
    damaged, building, removed = events = (spawn.Event(), spawn.Event(), spawn.Event())
    other = spawn.Process(target=_finding_the_same_damage, args=(str(path), str(tmp_path / "cache"), events,
                                                                 str(tmp_path / "other")))
    other.start()
    try:
        prepare = datasets.builder.DatasetBuilder._download_and_prepare

        def preparing(self, *args, **kwargs):  # (its <build>.incomplete folder made)
            building.set()
            removed.wait(1.5)  # (for the other process to remove the build: waiting its turn, it does not)
            return prepare(self, *args, **kwargs)

        monkeypatch.setattr(datasets.builder.DatasetBuilder, "_download_and_prepare", preparing)
        assert damaged.wait(60)  # (the other process has found the build damaged)
        again = text.load_text(str(path))
    finally:
        building.set()
        other.join(60)
        other.kill()  # (one that hangs)
    assert torch.equal(again.train, first.train) and torch.equal(again.validation, first.validation)
    assert (tmp_path / "other").read_text() == f"ok 'to be or not to be\\n' {first.train.numel()}, loads failed [1]"
    assert not removed.is_set()  # (it found the first one's build, and removed none)


def test_load_text_refuses_a_binary_file_by_name(tmp_path):
    from fwdlearn.sequences import load_text

    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match=r"weights\.bin is not UTF-8 text"):
        load_text(str(path))


def test_a_corpus_folder_finds_its_splits_by_the_words_of_the_file_names(tmp_path):
    """``train_part.txt`` / ``wiki.valid.tokens`` name their splits (only exact stems did: the validation file was
    ignored and the train file split 90/10); several unnamed .txt files are refused instead of reading the first."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train_part.txt").write_text("the train text is here\n" * 20)
    (folder / "wiki.valid.tokens").write_text("validation words\n" * 5)
    corpus = load_text(str(folder))
    assert corpus.validation.numel() == len("validation words\n" * 5)
    assert corpus.train.numel() == len("the train text is here\n" * 20)
    other = tmp_path / "books"
    other.mkdir()
    for name in ("a.txt", "b.txt"):
        (other / name).write_text("some text\n" * 10)
    with pytest.raises(ValueError, match=r"holds 2 .txt files \(a.txt, b.txt\) and none is named as a split"):
        load_text(str(other))


def test_a_corpus_folder_ignores_hidden_and_backup_files(tmp_path):
    """An editor's swap file or a macOS ._ file named like a split made the folder 'hold two train files'."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.txt").write_text("some train text\n" * 10)
    (folder / "valid.txt").write_text("valid text\n" * 3)
    for junk in (".train.txt.swp", "._train.txt", "train.txt~"):
        (folder / junk).write_text("junk")
    corpus = load_text(str(folder))
    assert corpus.train.numel() == len("some train text\n" * 10)


def test_a_corpus_folder_reads_only_text_split_files_and_names_a_bad_one(tmp_path):
    """test_results.json became the test split (its characters in the vocabulary), train.py beside train.txt made
    'two train files'; the CLI's reader named the folder, not the file that is not UTF-8, and the byte offset
    counted within a 1 MiB block."""
    from fwdlearn.sequences.data.text import read_corpus

    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.txt").write_text("some train text\n" * 10)
    (folder / "valid.txt").write_text("valid text\n" * 3)
    (folder / "test_results.json").write_text('{"val_loss": 1.23, "note": "ÆØÅ"}')
    (folder / "train.py").write_text("print(1)")
    corpus = load_text(str(folder))
    assert [f.name for f in map(Path, corpus.files)] == ["train.txt", "valid.txt"] and "Æ" not in corpus.vocab.tokens
    (folder / "valid.txt").write_bytes(b"a" * (1 << 21) + b"xyz\xe9\n")
    for read in (load_text, read_corpus):
        with pytest.raises(ValueError, match=rf"{re.escape(str(folder / 'valid.txt'))} is not UTF-8 text \(invalid "
                                             r"continuation byte at byte 2,097,155\)"):
            read(str(folder))


def test_a_missing_split_suggests_two_splits_the_corpus_has(tmp_path):
    """The hint said '--train-split validation' alone, which then validated on the training text."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "test.txt").write_text("test text\n" * 5)
    (folder / "valid.txt").write_text("valid text\n" * 5)
    corpus = load_text(str(folder))
    with pytest.raises(ValueError, match=r"corpus 'corpus' has no 'train' split; available: validation, test. Pick one "
                                         r"of those \(e.g. --train-split validation --valid-split test: train on one"):
        corpus.train


@pytest.mark.parametrize("name", ["shakes[1].txt", "q?.txt", "s*.txt"])
def test_a_corpus_path_with_glob_characters_reads_that_file(tmp_path, name, monkeypatch):
    """HF reads data_files as glob patterns: 'shakes[1].txt' read shakes1.txt, 'q?.txt' read every q<x>.txt."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "dir[a]"  # a folder with glob characters too, beside the folder it would match
    folder.mkdir()
    (tmp_path / "dira").mkdir()
    for other in (folder / name.replace("[1]", "1").replace("?", "x").replace("*", "x"), tmp_path / "dira" / name):
        other.write_text("zzzz qqqq xxxx\n" * 20)
    (folder / name).write_text("To be, or not to be\n" * 10)
    for path in (folder / name, Path("dir[a]") / name):  # absolute and relative
        corpus = load_text(str(path))
        assert corpus.files == [str(path)]
        assert corpus.vocab.decode(torch.cat([corpus.train, corpus.validation])) == "To be, or not to be\n" * 10


@pytest.mark.parametrize("name", ["$CORPUS_NAME.txt", "a::b.txt", "dir::x/train.txt"])
def test_a_corpus_path_hf_would_rewrite_reads_that_file(tmp_path, name, monkeypatch):
    """HF expands '$NAME' in a local path and reads '::' as a chain of URLs: '$CORPUS_NAME.txt' read other.txt's
    text in silence, 'a::b.txt' was "Unable to find" though it exists."""
    monkeypatch.setenv("CORPUS_NAME", "other")
    (tmp_path / "other.txt").write_text("zzzz qqqq xxxx\n" * 20)
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    for text in ("To be, or not to be\n" * 10, "Edited in place\n" * 10):  # (a link per content)
        path.write_text(text)
        for given in {path, path.parent} - {tmp_path}:  # the file, and a folder of it alone
            corpus = load_text(str(given))
            assert corpus.files == [str(path)]
            assert corpus.vocab.decode(torch.cat(list(corpus.splits.values()))) == text


def test_reading_a_corpus_leaves_hf_progress_bars_as_they_were(tmp_path):
    """load_text turned HF datasets' progress bars off for good: the caller's own load_dataset showed none."""
    import datasets

    (tmp_path / "t.txt").write_text("To be, or not to be\n" * 10)
    was_off = datasets.are_progress_bars_disabled()
    try:
        for off in (False, True):
            datasets.disable_progress_bars() if off else datasets.enable_progress_bars()
            load_text(str(tmp_path / "t.txt"))
            assert datasets.are_progress_bars_disabled() is off
    finally:
        datasets.disable_progress_bars() if was_off else datasets.enable_progress_bars()


@pytest.mark.parametrize("fraction", [0.9, 0.75, 0.5])
def test_a_word_split_cuts_the_whole_text_s_tokens(tmp_path, fraction):
    """Each half was tokenised on its own, and tokenize ends a text without a final newline with <eos>: a spurious
    <eos> at the cut (16 tokens became 17)."""
    from fwdlearn.sequences.data.text import tokenize

    path = tmp_path / "w.txt"
    path.write_text("a b c\nd e f\ng h i\nj k l\n")
    corpus = load_text(str(path), level="word", train_fraction=fraction)
    words = [corpus.vocab.tokens[i] for i in torch.cat([corpus.train, corpus.validation])]
    assert words == tokenize(path.read_text(), "word") and len(words) == 16
    assert corpus.train.numel() == int(16 * fraction)


def test_a_word_limit_keeps_whole_words_and_adds_no_line_end(tmp_path):
    """limit cut 'gamma' to 'gamm' and ended the cut line with <eos>; now the tokens kept are the whole text's first."""
    from fwdlearn.sequences.data.text import tokenize

    path = tmp_path / "w.txt"
    path.write_text("alpha beta gamma\ndelta epsilon zeta\n" * 10)
    whole = tokenize(path.read_text(), "word")
    for limit, kept in ((15, 2), (16, 3), (17, 4), (20, 4), (21, 4), (23, 5), (60, 13)):
        corpus = load_text(str(path), level="word", limit=limit, split=["train", "validation"])
        words = [corpus.vocab.tokens[i] for i in torch.cat([corpus.train, corpus.validation])]
        assert words == whole[:kept], limit
    with pytest.raises(ValueError, match=r"w.txt: its first 3 characters \(limit\) hold no whole word; raise limit"):
        load_text(str(path), level="word", limit=3)
    with pytest.raises(ValueError, match=r"limit must be an int >= 1 \(characters read of every file"):
        load_text(str(path), limit=-5)


@needs_data
def test_word_level_tinyshakespeare_splits_its_tokens_without_adding_any():
    from fwdlearn.sequences.data.text import tokenize

    corpus = load_text("tinyshakespeare", level="word")
    whole = tokenize((data_dir() / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8"), "word")
    assert corpus.train.numel() + corpus.validation.numel() == len(whole)
    assert corpus.train.numel() == int(0.9 * len(whole))
    assert [corpus.vocab.tokens[i] for i in corpus.validation[-3:]] == whole[-3:]


def test_train_fraction_must_leave_both_splits_non_empty(tmp_path):
    """-0.2 gave an 80/20 split, 1.0 and 1.5 an empty validation split, 0.0 an empty train split, all silently."""
    from fwdlearn.errors import UsageError

    path = tmp_path / "t.txt"
    path.write_text("abcdefghij" * 2)
    for bad in (-0.2, 0.0, 1.0, 1.5):
        with pytest.raises(UsageError, match=rf"train_fraction must lie strictly between 0 and 1 \(the train share of "
                                             rf"a single-file corpus; the rest is the validation split\), got {bad}"):
            load_text(str(path), train_fraction=bad)
    with pytest.raises(UsageError, match="train_fraction must be a finite number, got nan"):
        load_text(str(path), train_fraction=float("nan"))
    with pytest.raises(UsageError, match=r"train_fraction 0.01 of the 20 char tokens of .*t.txt leaves the train split "
                                         "empty; raise train_fraction or give a longer text"):
        load_text(str(path), train_fraction=0.01)
    corpus = load_text(str(path), train_fraction=0.99)  # int(19.8): the validation split keeps one token
    assert (corpus.train.numel(), corpus.validation.numel()) == (19, 1)


def test_a_limit_that_leaves_one_token_names_limit_as_the_fix(tmp_path):
    """seq train --limit 10 --level word (tinyshakespeare: 'First ') said 'raise train_fraction or give a longer
    text': no train_fraction splits one token, seq train has no such flag, and the text was long enough."""
    from fwdlearn.errors import UsageError

    path = tmp_path / "t.txt"
    path.write_text("alpha beta gamma\ndelta epsilon zeta\n" * 10)
    for level, limit in (("char", 1), ("word", 7)):
        with pytest.raises(UsageError, match=rf"t.txt: its first {limit} characters? \(limit\) hold one {level} "
                                             r"token, too few for a train and a validation split; raise limit$"):
            load_text(str(path), level=level, limit=limit)
    with pytest.raises(UsageError, match=r"leaves the train split empty; raise train_fraction or raise limit$"):
        load_text(str(path), level="word", limit=17, train_fraction=0.2)  # (4 tokens)
    (tmp_path / "one.txt").write_text("a")
    with pytest.raises(UsageError, match=r"one.txt: it holds one char token, too few for a train and a validation "
                                         r"split; give a longer text$"):
        load_text(str(tmp_path / "one.txt"))


@pytest.mark.parametrize("level", ["char", "word"])
def test_a_byte_order_mark_is_not_read_as_a_character(tmp_path, level):
    """A file saved with a UTF-8 BOM gave '\\ufeff' as its first token (and a vocabulary entry)."""
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "First word\nFirst again\n".encode() * 10)
    corpus = load_text(str(path), level=level)
    assert "\ufeff" not in "".join(corpus.vocab.tokens)
    assert corpus.vocab.decode(corpus.train[:2 if level == "word" else 10]) == "First word"
    plain = tmp_path / "plain.txt"
    plain.write_text("First word\nFirst again\n" * 10)
    assert corpus.vocab == load_text(str(plain), level=level).vocab


def test_wikitext2_by_name_reads_the_release_s_file_names(tmp_path, monkeypatch):
    """--data wikitext-2 looked for train.txt / valid.txt / test.txt only: the release's wiki.valid.tokens gave
    'no train.txt, valid.txt or test.txt', and a wiki.train.tokens beside valid.txt was dropped in silence, though
    the same folder passed as a path read all three."""
    monkeypatch.setenv("FWDLEARN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "wikitext-2"
    folder.mkdir()
    for split, text in (("train", " = A = \n a b c \n"), ("valid", " a b \n"), ("test", " c \n")):
        (folder / f"wiki.{split}.tokens").write_text(text)
    corpus = load_text("wikitext-2", level="word")
    assert {k: v.numel() for k, v in corpus.splits.items()} == {"train": 8, "validation": 3, "test": 2}
    by_path = load_text(str(folder), level="word")  # (the same folder passed as a path)
    assert all(torch.equal(ids, by_path.splits[k]) for k, ids in corpus.splits.items())
    assert [Path(f).name for f in corpus.files] == ["wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"]
    for split in ("valid", "test"):
        (folder / f"wiki.{split}.tokens").rename(folder / f"{split}.txt")
    assert list(load_text("wikitext-2", level="word").splits) == ["train", "validation", "test"]


def test_a_split_file_that_is_a_broken_link_is_refused_by_name(tmp_path):
    """A train.txt linking to a file no longer there was skipped: the folder 'had no train split' and the fix
    offered was --train-split validation --valid-split test (training on the validation text)."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.txt").symlink_to(tmp_path / "moved" / "train.txt")
    (folder / "valid.txt").write_text("valid text\n" * 5)
    (folder / "test.txt").write_text("test text\n" * 5)
    with pytest.raises(ValueError, match=rf"{re.escape(str(folder / 'train.txt'))}, the train split of folder .*, is "
                                         r"a link to .*moved/train.txt, which does not exist; point it at the text "
                                         "file, or remove it"):
        load_text(str(folder))


def test_a_pipe_is_refused_as_neither_a_file_nor_a_folder(tmp_path):
    """--data <(cat book.txt) ended in '[Errno 20] Not a directory: /dev/fd/63' (it was listed as a folder)."""
    import os

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(ValueError, match=r"pipe is neither a file nor a folder \(a pipe or a device\); save the text "
                                         "to a file and pass its path"):
        load_text(str(pipe))


def test_a_dev_file_is_the_validation_split_and_an_upper_case_txt_is_read(tmp_path):
    """dev.txt (HF datasets' name for validation) was ignored: 'it holds the train split only'; a folder of one
    Book.TXT 'held no .txt files', though split files are matched case-blind."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.txt").write_text("some train text\n" * 10)
    (folder / "dev.txt").write_text("dev text\n" * 3)
    corpus = load_text(str(folder))
    assert list(corpus.splits) == ["train", "validation"] and corpus.validation.numel() == len("dev text\n" * 3)
    book = tmp_path / "book"
    book.mkdir()
    (book / "Book.TXT").write_text("To be, or not to be\n" * 10)
    assert load_text(str(book)).files == [str(book / "Book.TXT")]


def test_a_file_of_whitespace_is_not_called_empty(tmp_path):
    """A file of blank lines was refused as 'is empty' (it holds characters, which the error did not say); a char
    limit reading only whitespace said it held 'no whole char'."""
    path = tmp_path / "blank.txt"
    path.write_text("  \n\t\n")
    with pytest.raises(ValueError, match=r"blank.txt is empty but for whitespace \(5 characters\); a corpus needs text"):
        load_text(str(path))
    path.write_text("\n\n\n" + "some text here\n" * 10)
    with pytest.raises(ValueError, match=r"blank.txt: its first 2 characters \(limit\) hold only whitespace; raise "
                                         "limit"):
        load_text(str(path), limit=2)


def test_a_missing_or_empty_split_choice_is_a_plain_error(tmp_path):
    """split='nope' raised a KeyError (its message printed in quotes); split=[] gave a corpus of no splits, which
    check_splits then failed on with an IndexError."""
    (tmp_path / "t.txt").write_text("some text for a corpus\n" * 20)
    with pytest.raises(ValueError, match=r"^corpus 't.txt' has no split 'nope'; available: train, validation$"):
        load_text(str(tmp_path / "t.txt"), split="nope")
    with pytest.raises(ValueError, match=r"^split=\[\] keeps no split; available: train, validation$"):
        load_text(str(tmp_path / "t.txt"), split=[])


def test_copy_task_shows_go_at_the_recall_steps_only_and_blanks_between():
    """Layout 0 blank, 1..symbols data, symbols + 1 go: data at t < count, blanks until lag, go from lag on (go
    markers at every blank would tell the model nothing about when to recall); chance 1/symbols."""
    task = CopyTask(lag=10, count=3, symbols=5)
    x, _ = task.sample(32, torch.Generator().manual_seed(1))
    assert bool(((x[:, :3] >= 1) & (x[:, :3] <= 5)).all())
    assert bool((x[:, 3:10] == 0).all()) and bool((x[:, 10:] == 6).all())
    assert task.vocab_size == 7 and task.out_size == 5 and task.chance == pytest.approx(1 / 5)


@pytest.mark.parametrize("length", [7, 20])
def test_adding_problem_marks_one_step_in_each_half(length):
    """One mark in t < length // 2, the other in t >= length // 2, every position of each half drawn."""
    task = AddingProblem(length=length, levels=4)
    x, _ = task.sample(2000, torch.Generator().manual_seed(3))
    marked = (x // 4).nonzero()[:, 1].view(-1, 2)  # per row, the two marked steps in order
    half = length // 2
    assert bool((marked[:, 0] < half).all()) and bool((marked[:, 1] >= half).all())
    assert set(marked[:, 0].tolist()) == set(range(half)) and set(marked[:, 1].tolist()) == set(range(half, length))
