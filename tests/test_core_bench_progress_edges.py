"""A bench's progress at its edges: which files name a bench, how the files a bench reads are fingerprinted, which
refusal a resume gets when several things changed, the plural and singular of its messages and of a resumed run's
note, and the settings a bench's own types and a newer config give."""

from dataclasses import dataclass, field

import pytest
import torch

from fwdlearn.bench_progress import BenchProgress, digests, plain, saved_job
from fwdlearn.errors import InputError, UsageError


@dataclass
class Config:
    steps: int = 3
    depths: list = field(default_factory=list)


def test_only_a_dict_with_a_job_named_by_a_string_and_a_dict_of_pieces_names_a_bench(tmp_path):
    """saved_job names the bench of a progress; a dict whose pieces are no dict, or whose job is no string, is none."""
    BenchProgress.open(tmp_path / "p.pt", "bench-seq", Config(), resume=False).piece("a", lambda: 1)
    assert saved_job(tmp_path / "p.pt") == "bench-seq"
    for name, saved in [("list.pt", {"job": "bench-seq", "pieces": [1]}), ("number.pt", {"job": 3, "pieces": {}}),
                        ("none.pt", {"job": None, "pieces": {}})]:
        torch.save(saved, tmp_path / name)
        assert saved_job(tmp_path / name) is None, name


def test_a_progress_missing_a_part_of_the_run_it_describes_is_no_bench_s_progress(tmp_path):
    """A torch file with a job and pieces but no settings (or inputs, or versions) is refused as no bench's progress,
    not read as one with a KeyError."""
    for missing in ("settings", "inputs", "versions"):
        saved = {"job": "bench-x", "settings": {"steps": 3}, "inputs": {}, "versions": {}, "pieces": {}}
        del saved[missing]
        torch.save(saved, tmp_path / f"{missing}.pt")
        with pytest.raises(InputError, match=f"{missing}.pt is not a bench's progress"):
            BenchProgress.open(tmp_path / f"{missing}.pt", "bench-x", Config(), resume=True)


def test_digests_fingerprint_each_file_whole_and_skip_what_is_not_a_file(tmp_path):
    """Two files alike in their first MiB and apart after it differ; a folder (or a graph's name) is no file read."""
    head = b"x" * (1 << 20)
    (tmp_path / "a").write_bytes(head + b"a")
    (tmp_path / "b").write_bytes(head + b"b")
    (tmp_path / "folder").mkdir()
    found = digests([("--data", tmp_path / "a"), ("--more", tmp_path / "b"), ("--data", tmp_path / "folder"),
                     ("--data", "karate")])
    assert list(found) == [f"--data {tmp_path / 'a'}", f"--more {tmp_path / 'b'}"]
    assert found[f"--data {tmp_path / 'a'}"] != found[f"--more {tmp_path / 'b'}"]


def test_a_file_read_that_went_since_the_interrupt_is_refused(tmp_path):
    """The interrupted run read a file that is gone now: this run reads no such file, yet the pieces were measured on
    it."""
    data = tmp_path / "corpus.txt"
    data.write_text("abc")
    BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(), False, [("--data", data)]).piece("a", lambda: 1)
    data.unlink()
    with pytest.raises(UsageError) as refused:
        BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(), True, [("--data", data)])
    assert str(refused.value) == (f"--resume: --data {data}: the file changed (or went) since the interrupted run that "
                                  f"saved {tmp_path / 'p.pt'} measured its pieces on it: put back what it read, or "
                                  "start over with --overwrite in place of --resume")


def test_two_files_changed_are_named_in_the_plural_and_other_settings_come_first(tmp_path):
    """Two files changed: 'the files changed ... on them'; other settings too: the settings are named (the files
    read may differ because the settings do)."""
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("1")
    two.write_text("2")
    inputs = [("--data", one), ("--more", two)]
    BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(), False, inputs).piece("a", lambda: 1)
    one.write_text("one")
    two.write_text("two")
    with pytest.raises(UsageError) as refused:
        BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(), True, inputs)
    assert str(refused.value).startswith(f"--resume: --data {one}, --more {two}: the files changed (or went) since "
                                         f"the interrupted run that saved {tmp_path / 'p.pt'} measured its pieces on "
                                         "them: ")
    with pytest.raises(UsageError, match=r"^--resume: the interrupted run that saved .* had other settings \(--steps 3 "
                                         r"there, 4 here\)"):
        BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(steps=4), True, inputs)


def test_an_empty_list_setting_is_shown_as_none_and_a_setting_new_since_the_interrupt_is_named(tmp_path):
    """--depths given empty reads '(none)' in the refusal, two settings that differ are named apart by ';'; a field
    the interrupted run's config did not have (a newer config) is a setting that differs, named, not a KeyError."""

    @dataclass
    class Newer:
        steps: int = 3
        depths: list = field(default_factory=list)
        layer_norm: bool = True

    BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(), resume=False).piece("a", lambda: 1)
    with pytest.raises(UsageError, match=r"other settings \(--depths \(none\) there, 1 2 here\)"):
        BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(depths=[1, 2]), resume=True)
    with pytest.raises(UsageError, match=r"other settings \(--steps 3 there, 4 here; --depths \(none\) there, 1 "
                                         r"here\)"):
        BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(steps=4, depths=[1]), resume=True)
    with pytest.raises(UsageError, match=r"other settings \(--layer-norm None there, True here\)"):
        BenchProgress.open(tmp_path / "p.pt", "bench-x", Newer(), resume=True)


def test_a_setting_of_a_bench_s_own_type_is_compared_by_its_text(tmp_path):
    """A setting of a type the safe reader does not read (a bench's own) is kept as its text: two equal objects
    resume one another (their default repr, which names where each lives, would not)."""

    class Schedule:
        def __init__(self, name):
            self.name = name

        def __str__(self):
            return self.name

    @dataclass
    class Own:
        schedule: object = None

    BenchProgress.open(tmp_path / "p.pt", "bench-x", Own(Schedule("cosine")), resume=False).piece("a", lambda: 1)
    again = BenchProgress.open(tmp_path / "p.pt", "bench-x", Own(Schedule("cosine")), resume=True)
    assert again.settings == {"schedule": "cosine"}
    assert again.piece("a", lambda: pytest.fail("a finished piece ran again")) == 1
    with pytest.raises(UsageError, match=r"other settings \(--schedule cosine there, step here\)"):
        BenchProgress.open(tmp_path / "p.pt", "bench-x", Own(Schedule("step")), resume=True)


def test_integer_keys_are_kept_and_a_nested_refusal_names_its_place():
    assert plain({1: {"a": [2, (3,)], "b": None}}, "piece") == {1: {"a": [2, (3,)], "b": None}}
    with pytest.raises(TypeError, match=r"^piece\[1\]\['a'\]\[1\]: a object cannot be kept"):
        plain({1: {"a": [2, object()]}}, "piece")


def test_a_resumed_run_s_note_counts_its_pieces_in_the_singular_and_the_plural(tmp_path):
    """One piece read of three asked: 'was', two ran here; two read of two: 'were', none ran; no piece read: no
    note. The file is named without its folder."""
    progress = BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(), resume=False)
    progress.piece("a", lambda: 1)
    assert progress.note() == ""
    again = BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(), resume=True)
    for key in ("a", "b", "c"):
        again.piece(key, lambda: 2)
    assert again.note().startswith("Resumed (--resume): 1 of the 3 pieces was finished by an earlier, interrupted "
                                   "run and read from p.pt (a); 2 ran in this one. A read piece's seconds were timed "
                                   "by the earlier process")
    last = BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(), resume=True)
    assert last.piece("c", lambda: 3) == 2 and last.piece("a", lambda: 3) == 1
    assert last.note().startswith("Resumed (--resume): 2 of the 2 pieces were finished by an earlier, interrupted run "
                                  "and read from p.pt (c, a); 0 ran in this one.")
