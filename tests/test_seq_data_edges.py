"""sequences.data: edges of the synthetic tasks, corpus loading and batching (each test kills a planted mutant that
the other tests let live, or checks a fixed defect)."""

import pytest
import torch

from fwdlearn.sequences import (AddingProblem, CopyTask, DelayedRecall, StreamBatcher, Vocabulary, load_text,
                                make_task, random_windows)
from fwdlearn.sequences.data.text import check_splits, corpus_files


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- tasks


def test_delayed_recall_refuses_a_lag_of_zero():
    """lag 0 (recall the current token) is refused up front, not at the first sample with a shape mismatch."""
    with pytest.raises(ValueError, match="DelayedRecall needs lag >= 1"):
        DelayedRecall(lag=0)


def test_copy_task_with_lag_equal_to_count_recalls_right_after_the_data():
    """lag == count is legal (no blanks): go markers from step count on, targets the data in order."""
    task = CopyTask(lag=3, count=3, symbols=4)
    x, y = task.sample(5, _gen(1))
    assert x.shape == (5, 6) and task.vocab_size == 6
    assert bool((x[:, :3] >= 1).all() and (x[:, :3] <= 4).all()) and bool((x[:, 3:] == 5).all())
    assert torch.equal(y[:, 3:], x[:, :3] - 1) and bool((y[:, :3] == -100).all())


def test_adding_problem_tokens_decode_into_values_and_marks_within_its_vocabulary():
    """Token k + L m: the marked top level is token 2L - 1, so the vocabulary is 2L tokens (an embedding of 2L - 1
    rows fails on it)."""
    task = AddingProblem(length=6, levels=3)
    x, y = task.sample(64, _gen(3))
    assert task.vocab_size == 6 and int(x.max()) == 5 and int(x.min()) >= 0
    k, m = x % 3, x // 3
    assert bool(((m == 0) | (m == 1)).all()) and bool((m.sum(1) == 2).all())
    assert torch.allclose(y[:, -1], (((k.float() + 0.5) / 3) * m).sum(1))


def test_make_task_adding_is_lag_steps_long():
    task = make_task("adding", lag=12)
    assert task.length == 12 and task.sample(2, _gen())[0].shape == (2, 12)


def test_adding_problem_refuses_a_length_of_one():
    """One step cannot hold a mark in each half."""
    with pytest.raises(ValueError, match="AddingProblem needs length >= 2"):
        AddingProblem(length=1)


@pytest.mark.parametrize("task", [DelayedRecall(2), CopyTask(3, 2), AddingProblem(4)], ids=repr)
def test_tasks_refuse_an_empty_batch(task):
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        task.sample(0, _gen())


# --------------------------------------------------------------------------- corpora


def test_a_word_limit_of_the_whole_text_reads_the_whole_text(tmp_path):
    """limit == the text's length is all of it (at word level the cut looked one character past the end)."""
    path = tmp_path / "t.txt"
    text = "one two three\nfour five\n"
    path.write_text(text)
    full, limited = load_text(str(path), "word"), load_text(str(path), "word", limit=len(text))
    assert {k: v.tolist() for k, v in limited.splits.items()} == {k: v.tolist() for k, v in full.splits.items()}
    assert limited.vocab.decode(torch.cat([limited.train, limited.validation])) == text


@pytest.mark.parametrize("alias", ["valid", "val", "dev", "validation"])
def test_split_takes_the_folder_spellings_of_validation(tmp_path, alias):
    path = tmp_path / "t.txt"
    path.write_text("abcdefghij" * 2)
    corpus = load_text(str(path), split=alias)
    assert list(corpus.splits) == ["validation"] and corpus.validation.numel() == 2


def test_a_corpus_folder_reads_suffixless_and_hyphenated_split_files_and_skips_ambiguous_ones(tmp_path):
    """``train`` and ``valid`` (no suffix) and ``test-part.txt`` name their splits; ``train-vs-test.txt`` names two
    and is no split's; ``valid~`` is an editor's backup."""
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "train").write_text("train text\n" * 4)
    (folder / "valid").write_text("val\n" * 3)
    (folder / "test-part.txt").write_text("te\n" * 2)
    (folder / "train-vs-test.txt").write_text("notes\n")
    (folder / "valid~").write_text("old\n")
    corpus = load_text(str(folder))
    assert {k: v.numel() for k, v in corpus.splits.items()} == {"train": 44, "validation": 12, "test": 6}
    assert [p.name for p in corpus_files(str(folder))] == ["train", "valid", "test-part.txt"]


def test_fingerprints_differ_with_the_cut_and_with_the_split_of_the_bytes(tmp_path):
    """Equal fingerprints mean equal token streams: the limit and the train fraction are part of it, and so is which
    split file holds which bytes (train 'ab' + valid 'c' is not train 'a' + valid 'bc')."""
    path = tmp_path / "t.txt"
    path.write_text("abcdefghij" * 3)
    base = load_text(str(path)).fingerprint
    assert load_text(str(path), train_fraction=0.5).fingerprint != base
    assert load_text(str(path), limit=20).fingerprint != base
    corpora = []
    for name, train, valid in (("one", "ab", "c"), ("two", "a", "bc")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "train.txt").write_text(train)
        (folder / "valid.txt").write_text(valid)
        corpora.append(load_text(str(folder)))
    assert corpora[0].fingerprint != corpora[1].fingerprint
    assert corpora[1].vocab.decode(corpora[1].train) == "a" and corpora[1].vocab.decode(corpora[1].validation) == "bc"


def test_corpus_files_missing_ok_returns_nothing_for_an_unknown_corpus(tmp_path):
    assert corpus_files(str(tmp_path / "nope"), missing_ok=True) == []
    with pytest.raises(ValueError, match="unknown corpus"):
        corpus_files(str(tmp_path / "nope"))


def test_check_splits_of_a_single_file_loaded_with_split_says_to_keep_every_split(tmp_path):
    """A single text file loaded with split= is not a folder: the fix is to load it without split=."""
    path = tmp_path / "t.txt"
    path.write_text("abcdefghij" * 3)
    corpus = load_text(str(path), split="train")
    with pytest.raises(Exception, match="load_text's split= left the others out.*load the corpus without split="):
        check_splits(corpus, "train", "validation")


def test_decode_refuses_the_id_one_past_the_vocabulary_by_name():
    vocab = Vocabulary.build("ab")
    with pytest.raises(ValueError, match=r"ids \[2\] are outside this vocabulary's \[0, 1\]"):
        vocab.decode([2])


# --------------------------------------------------------------------------- batching


def test_stream_batcher_reads_the_last_whole_window_before_wrapping():
    """Streams of 2T + 1 tokens hold two windows (with their targets); the walk wraps after the second."""
    ids = torch.arange(14)  # 2 streams of 7, context 3
    batcher = StreamBatcher(ids, 2, 3)
    assert batcher.windows_per_epoch == 2
    x0, y0, new0 = batcher.next()
    x1, y1, new1 = batcher.next()
    assert new0 and not new1
    assert x1.tolist() == [[3, 4, 5], [10, 11, 12]] and y1.tolist() == [[4, 5, 6], [11, 12, 13]]
    assert batcher.next()[2] and batcher.epoch == 1


def test_epoch_windows_read_every_pair_once():
    batcher = StreamBatcher(torch.arange(22), 2, 4)  # streams of 11: 10 pairs, windows of 4, 4, 2
    xs, ys = zip(*batcher.epoch_windows())
    assert [x.shape[1] for x in xs] == [4, 4, 2]
    assert torch.equal(torch.cat(xs, 1), batcher.streams[:, :-1])
    assert torch.equal(torch.cat(ys, 1), batcher.streams[:, 1:])


def test_a_stream_of_exactly_context_tokens_is_refused():
    """context T needs T + 1 tokens per stream (the last target): T alone gave targets one shorter than the inputs."""
    with pytest.raises(ValueError, match="a window needs context \\+ 1 = 4"):
        StreamBatcher(torch.arange(6), 2, 3)


def test_random_windows_of_a_stream_that_fits_one_window_take_it():
    x, y = random_windows(torch.arange(5), 3, 4, _gen())
    assert x.tolist() == [[0, 1, 2, 3]] * 3 and y.tolist() == [[1, 2, 3, 4]] * 3


@pytest.mark.parametrize("shape", [(1, 20), (20, 1), (10, 2)])
def test_batching_refuses_ids_that_are_not_one_stream(shape):
    """A tokenizer's [1, N] input_ids: random_windows failed with 'index 16 is out of bounds for dimension 0 with
    size 1' ([N, 1]: windows of shape [B, T, 1]); StreamBatcher read the columns of [N, 2] interleaved as one
    stream."""
    ids = torch.arange(20).reshape(shape)
    with pytest.raises(ValueError, match=rf"ids must be one 1-D stream of token ids; got shape \({shape[0]}, "
                                         rf"{shape[1]}\): flatten a stream \(ids.flatten\(\)"):
        random_windows(ids, 2, 3, _gen())
    with pytest.raises(ValueError, match="ids must be one 1-D stream of token ids"):
        StreamBatcher(ids, 2, 3)
