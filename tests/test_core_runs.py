"""Run options and output paths: named runs, unique default paths under concurrency, checks before work,
interrupted and killed runs that resume exactly, torchrun errors said once."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fwdlearn.errors import UsageError
from fwdlearn.runs import RunOptions, fresh_stem, release_runs, run_outputs, start_run

TEXT = "to be or not to be, that is the question; whether tis nobler in the mind to suffer.\n" * 40
TINY = ["--layers", "1", "--hidden", "8", "--context", "8", "--batch-size", "2", "--quiet", "--threads", "1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _default_sigint() -> None:
    """Ctrl-C as a terminal delivers it: a test run started in the background (``cmd &`` in a script) ignores SIGINT,
    and its children inherit that (Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _fwdlearn(*args, cwd, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "fwdlearn", *args], cwd=cwd, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint, **kwargs)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    (tmp_path / "text.txt").write_text(TEXT)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_fresh_default_names_differ_even_within_one_second():
    stems = {fresh_stem("seq-train") for _ in range(20)}  # (20 draws of 2^24: a clash once in ~90,000 runs)
    assert len(stems) == 20
    assert all(re.fullmatch(r"runs/seq-train-\d{8}-\d{6}-[0-9a-f]{6}", str(stem)) for stem in stems), stems


def test_a_name_gives_predictable_paths_and_folders_make_a_run_folder(folder):
    paths = run_outputs("seq-train", RunOptions(name="dsf"), checkpoint="")
    assert (paths.record, paths.checkpoint) == (Path("runs/dsf.json"), Path("runs/dsf.pt"))
    paths = run_outputs("seq-train", RunOptions(name="sweep/lr3"), checkpoint="")
    assert (paths.record, paths.checkpoint) == (Path("runs/sweep/lr3.json"), Path("runs/sweep/lr3.pt"))
    paths = run_outputs("seq-train", RunOptions(json="out/a.json"), checkpoint="")
    assert paths.checkpoint == Path("out/a.pt")  # next to the record
    bench = run_outputs("bench-seq", RunOptions(name="b1"), out="")
    assert bench.results == (Path("runs/b1.json"), Path("runs/b1.md")) and bench.record == Path("runs/b1-record.json")
    assert not Path("runs").exists()  # checking writes nothing


def test_outputs_are_checked_before_any_work(folder):
    with pytest.raises(UsageError, match="--json and --checkpoint both name x.pt"):
        run_outputs("seq-train", RunOptions(json="x.pt"), checkpoint="x.pt")
    Path("runs").mkdir()
    Path("runs/a.json").write_text("{}")
    with pytest.raises(FileExistsError, match="runs/a.json already exists"):
        run_outputs("seq-train", RunOptions(name="a"), checkpoint="")
    Path("runs/a.pt").write_bytes(b"")
    with pytest.raises(FileExistsError, match="runs/a.json already exists"):  # not this run's record: it names no
        run_outputs("seq-train", RunOptions(name="a"), checkpoint="", resume=True)  # runs/a.pt
    Path("runs/a.json").write_text(json.dumps({"files": {"checkpoint": "runs/a.pt"}}))
    paths = run_outputs("seq-train", RunOptions(name="a"), checkpoint="", resume=True)  # a resumed run rewrites its record
    assert paths.checkpoint == Path("runs/a.pt")
    with pytest.raises(FileExistsError, match="checkpoint runs/a.pt already exists; pass --resume"):
        run_outputs("seq-train", RunOptions(json="runs/b.json", name="a"), checkpoint="")


def test_a_run_never_replaces_another_commands_record_that_names_files_it_keeps(folder):
    """influence seq --name foo over seq train --name foo's record was refused with 'pass --overwrite to replace it',
    and with --overwrite replaced it, leaving runs/foo.pt without its record (a later --resume was refused:
    'runs/foo.json already exists'); a bench's <out>-record.json replaced graph train --name <out>-record's record the
    same way."""
    Path("runs").mkdir()
    for name, job in (("foo", "seq-train"), ("b-record", "graph-train")):
        Path(f"runs/{name}.pt").write_bytes(b"")
        Path(f"runs/{name}.json").write_text(json.dumps({"job": job, "files": {"checkpoint": f"runs/{name}.pt"},
                                                         "cwd": str(folder)}))
    for overwrite in (False, True):
        with pytest.raises(UsageError, match=r"runs/foo.json is the record of a 'seq-train' run, which names its "
                                             r"checkpoint runs/foo.pt; .* give this run another --name"):
            run_outputs("influence-seq", RunOptions(name="foo", overwrite=overwrite))
        with pytest.raises(UsageError, match="runs/b-record.json is the record of a 'graph-train' run"):
            run_outputs("bench-graph", RunOptions(name="b", overwrite=overwrite), out="")
    with pytest.raises(UsageError, match="give this run another --json"):
        run_outputs("influence-graph", RunOptions(json="runs/foo.json", overwrite=True))
    with pytest.raises(FileExistsError, match=r"checkpoint runs/foo.pt is a 'seq-train' run's \(its record: "
                                              r"runs/foo.json\), which this command cannot continue; choose another "
                                              r"--name, or pass --overwrite"):  # (not '--resume', refused then)
        run_outputs("graph-train", RunOptions(name="foo"), checkpoint="")
    # a run that replaces the files the record names too, or a run of the same command, starts it over
    assert run_outputs("graph-train", RunOptions(name="foo", overwrite=True), checkpoint="").checkpoint == Path(
        "runs/foo.pt")
    Path("runs/foo.json").write_text(json.dumps({"job": "influence-seq", "files": {"plot": "runs/foo.pt"}}))
    assert run_outputs("influence-seq", RunOptions(name="foo", overwrite=True)).record == Path("runs/foo.json")
    Path("runs/foo.pt").unlink()  # a record whose files are gone describes nothing left behind
    Path("runs/foo.json").write_text(json.dumps({"job": "seq-train", "files": {"checkpoint": "runs/foo.pt"}}))
    assert run_outputs("influence-seq", RunOptions(name="foo", overwrite=True)).record == Path("runs/foo.json")


def test_a_name_ending_with_a_slash_is_refused_not_dropped(folder):
    """--name sweep/ wrote runs/sweep.json and runs/sweep.pt (the slash dropped), not a run in the folder runs/sweep/,
    where --json, --checkpoint and --out ending with a slash are refused as folders."""
    for job, extra in (("seq-train", {"checkpoint": ""}), ("influence-seq", {}), ("bench-seq", {"out": ""})):
        with pytest.raises(UsageError, match=r"--name 'sweep/' ends with a slash, a folder; .* e.g. --name sweep/run"):
            run_outputs(job, RunOptions(name="sweep/"), **extra)
    assert run_outputs("seq-train", RunOptions(name="sweep/run"), checkpoint="").record == Path("runs/sweep/run.json")


def _moved_run(folder: Path, record: dict) -> None:
    """A run's folder ``folder/moved`` (its checkpoint runs/x.pt, its record runs/x.json ``record``), moved there from
    the folder its record names (gone now)."""
    Path(folder / "moved/runs").mkdir(parents=True)
    torch.save({"weights": torch.zeros(2)}, folder / "moved/runs/x.pt")
    (folder / "moved/runs/x.json").write_text(json.dumps({"job": "seq-train", "config": {}, **record}))


@pytest.mark.parametrize("case", ["moved", "older-record-from-elsewhere", "checkpoint-gone"])
def test_a_run_record_given_for_a_torch_file_names_its_checkpoint_where_it_is_now(folder, monkeypatch, case):
    """A run record given where a torch file is read names the checkpoint its run wrote; of a run whose folder was
    moved it named the path it was written at (not there now: the record's "cwd"), and of a record without "cwd"
    (an older fwdlearn's) read from another folder a relative path that is not there from that folder."""
    from fwdlearn.errors import InputError
    from fwdlearn.fit import load_torch

    files = {"checkpoint": "runs/gone.pt" if case == "checkpoint-gone" else "runs/x.pt"}
    _moved_run(folder, {"files": files, **({} if case.startswith("older") else {"cwd": str(folder / "gone")})})
    if case == "older-record-from-elsewhere":
        record, where = "moved/runs/x.json", f"the checkpoint that run wrote is {folder / 'moved/runs/x.pt'}$"
    else:
        monkeypatch.chdir(folder / "moved")
        record, where = "runs/x.json", ("the checkpoint that run wrote is runs/x.pt$" if case == "moved" else
                                        f"the checkpoint that run wrote, {folder / 'gone/runs/gone.pt'}, is not there "
                                        "now \\(moved or removed since\\): give the path it was moved to$")
    with pytest.raises(InputError, match=rf"^{record} is a run record \(JSON, job seq-train\), not a torch file; "
                                         rf"{where}"):
        load_torch(record)


def test_a_moved_run_resumed_from_another_folder_rewrites_its_own_record(folder):
    """A run whose folder was moved, resumed from another folder (--json/--checkpoint naming its files there), was
    refused its own record: "moved/runs/x.json already exists; choose another output path or pass --overwrite"."""
    _moved_run(folder, {"files": {"checkpoint": "runs/x.pt"}, "cwd": str(folder / "gone")})
    paths = run_outputs("seq-train", RunOptions(json="moved/runs/x.json"), checkpoint="moved/runs/x.pt", resume=True)
    assert paths.record == Path("moved/runs/x.json")


def test_a_file_beside_a_record_is_not_its_runs_while_the_runs_own_is_where_it_wrote_it(folder):
    """A record a/rec.json of a run started here with --checkpoint ckpt.pt names "ckpt.pt", still here; a run resuming
    another run's a/ckpt.pt with --json a/rec.json was let rewrite that record (ckpt.pt read from the record's folder
    too: a/ckpt.pt, "its own"), leaving ckpt.pt without its record. The folders above a record are looked in only
    where the file is not where its run wrote it (a moved run: the test above)."""
    Path("a").mkdir()
    torch.save({}, "ckpt.pt")
    Path("a/rec.json").write_text(json.dumps({"job": "seq-train", "files": {"checkpoint": "ckpt.pt"},
                                              "cwd": str(folder)}))
    torch.save({}, "a/ckpt.pt")
    with pytest.raises(FileExistsError, match=r"^a/rec.json already exists; choose another output path or pass "
                                              r"--overwrite"):
        run_outputs("seq-train", RunOptions(json="a/rec.json"), checkpoint="a/ckpt.pt", resume=True)
    Path("ckpt.pt").unlink()  # (gone from where its run wrote it: a/ckpt.pt may be it, moved with its record)
    assert run_outputs("seq-train", RunOptions(json="a/rec.json"), checkpoint="a/ckpt.pt", resume=True).record == Path(
        "a/rec.json")


@pytest.mark.parametrize("damage, why", [
    ("cut", r"it is not valid JSON \(Expecting value: line 1 column 31 \(char 30\)\), cut short or damaged since it "
            r"was written"),
    ("bytes", r"it is not UTF-8 text \(byte 18\), damaged since it was written")])
def test_resuming_a_run_whose_record_is_damaged_says_so(folder, damage, why):
    """A resumed run rewrites its own record; one cut short or damaged was refused as "runs/a.json already exists;
    choose another output path or pass --overwrite", as if --resume did not rewrite it. The refusal says what the file
    is, and how to go on."""
    Path("runs").mkdir()
    Path("runs/a.pt").write_bytes(b"")
    text = json.dumps({"job": "seq-train", "files": {"checkpoint": "runs/a.pt"}, "cwd": str(folder)}).encode()
    Path("runs/a.json").write_bytes(text[:30] if damage == "cut" else text.replace(b"seq-train", b"seq-train\xff"))
    with pytest.raises(FileExistsError, match=rf"^runs/a.json is not a run record fwdlearn can read: {why}, so "
                                              r"--resume cannot tell whether it is this run's own record \(which it "
                                              r"rewrites\); pass --overwrite with --resume to replace it, or give "
                                              r"this run another --json$"):
        run_outputs("seq-train", RunOptions(name="a"), checkpoint="", resume=True)
    assert run_outputs("seq-train", RunOptions(name="a", overwrite=True), checkpoint="", resume=True).record == Path(
        "runs/a.json")


def test_a_named_runs_record_that_is_a_folder_says_to_choose_another_name(folder):
    """runs/a.json a folder was "cannot write runs/a.json (--name): it is a folder; give a file name", which --name
    cannot give."""
    Path("runs/a.json").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"^cannot write runs/a.json \(--name\): it is a folder; choose another "
                                         r"--name, or move the folder$"):
        run_outputs("seq-train", RunOptions(name="a"), checkpoint="")


def test_a_name_beginning_with_a_tilde_is_refused_not_made_a_folder(folder, capsys):
    """--name=~/x (the shell expands no ~ after '=') wrote runs/~/x.json and runs/~/x.pt, a folder named '~', where
    --json=~/x.json, --checkpoint, --plot and --out write in the home folder; quickstart made runs/~/x/ alike."""
    from fwdlearn.cli import main

    for job, extra in (("seq-train", {"checkpoint": ""}), ("influence-seq", {}), ("bench-seq", {"out": ""})):
        with pytest.raises(UsageError, match=r"--name '~/x' names a run under runs/, where a leading '~' is kept as "
                                             r"it is \(runs/~/x...\), not read as your home folder"):
            run_outputs(job, RunOptions(name="~/x"), **extra)
    assert main(["quickstart", "--name=~/x", "--no-plots"]) == 2
    assert "--name '~/x' names a run under runs/" in capsys.readouterr().err
    assert not Path("runs").exists()
    assert run_outputs("seq-train", RunOptions(name="a~b"), checkpoint="").record == Path("runs/a~b.json")


def test_a_name_that_would_name_no_file_is_refused(folder):
    """bench ... --out o --name n wrote o.json, o.md and o-record.json, and influence seq --name n --json j.json wrote
    j.json: --name named no file (dropped in silence)."""
    with pytest.raises(UsageError, match=r"--name n and --out o both name the bench's files .*: give one"):
        run_outputs("bench-seq", RunOptions(name="n"), out="o")
    for job in ("influence-seq", "influence-graph"):
        with pytest.raises(UsageError, match=r"--name n and --json j.json both name the run record, this command's "
                                             r"one file by name: give one"):
            run_outputs(job, RunOptions(name="n", json="j.json"), plot="p.png")
    assert run_outputs("bench-seq", RunOptions(), out="o").record == Path("o-record.json")
    assert run_outputs("bench-seq", RunOptions(name="n"), out="").record == Path("runs/n-record.json")
    bench = run_outputs("bench-seq", RunOptions(name="n", json="j.json"), out="")  # (--name: the tables)
    assert (bench.results, bench.record) == ((Path("runs/n.json"), Path("runs/n.md")), Path("j.json"))
    train = run_outputs("seq-train", RunOptions(name="n", json="j.json"), checkpoint="")  # (--name: the checkpoint)
    assert (train.record, train.checkpoint) == (Path("j.json"), Path("runs/n.pt"))


def test_a_stale_tmp_file_of_a_killed_run_is_removed(folder):
    Path("runs").mkdir()
    Path("runs/k.pt.tmp").write_bytes(b"half a checkpoint")
    Path("runs/k.json.tmp").write_text("{")
    options = RunOptions(name="k")
    paths = run_outputs("seq-train", options, checkpoint="")
    assert Path("runs/k.pt.tmp").exists()  # not before this run holds the names: it may be a live run's save
    start_run(options, paths)
    release_runs()
    assert not list(Path("runs").iterdir())


def test_concurrent_runs_without_names_never_share_a_file(folder):
    runs = [_fwdlearn("seq", "train", "--data", "text.txt", *TINY, "--hidden", str(hidden), "--steps", "3",
                      "--eval-every", "3", "--sample", "0", cwd=folder) for hidden in (8, 12)]
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    records = sorted(Path("runs").glob("seq-train-*.json"))
    assert len(records) == 2
    checkpoints = set()
    for path in records:
        record = json.loads(path.read_text())
        checkpoint = record["files"]["checkpoint"]
        saved = torch.load(folder / checkpoint, weights_only=False)
        assert saved["fingerprint"]["model"]["hidden"] == record["config"]["hidden"]  # its own weights
        checkpoints.add(checkpoint)
    assert len(checkpoints) == 2


def test_a_second_run_with_the_same_name_refuses_to_start_while_the_first_runs(folder, capsys):
    from fwdlearn.cli import main

    args = ["seq", "train", "--data", "text.txt", *TINY, "--steps", "2", "--eval-every", "2", "--sample", "0",
            "--name", "a"]
    first = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # a live process holds the lock
    try:
        Path("runs").mkdir()
        Path("runs/a.json.lock").write_text(str(first.pid))
        Path("runs/a.pt.tmp").write_text("x")  # the live run's checkpoint save in progress
        assert main(args) == 2
        assert capsys.readouterr().err == (
            f"fwdlearn: error: another fwdlearn run (process {first.pid}) is writing runs/a.json; wait for it to "
            "finish or choose another --name (remove runs/a.json.lock if no such run exists)\n")
        # nothing of its own written, and the live run's save left alone
        assert sorted(p.name for p in Path("runs").iterdir()) == ["a.json.lock", "a.pt.tmp"]
        Path("runs/a.pt.lock").write_text(str(first.pid))  # its checkpoint is locked too
        assert main([*args[:-1], "b", "--checkpoint", "runs/a.pt"]) == 2
        assert "is writing runs/a.pt; wait for it" in capsys.readouterr().err
        Path("runs/a.pt.lock").unlink()
    finally:
        first.kill()
        first.wait()
    assert main(args) == 0  # the holder is gone: its lock is taken over
    assert sorted(p.name for p in Path("runs").iterdir()) == ["a.json", "a.pt"]  # and released at the end
    for name in ("../escape", "/abs/escape", "."):
        assert main([*args[:-1], name]) == 2
        assert f"--name {name!r} must name a run under runs/" in capsys.readouterr().err


def _wait_for(path: Path, process, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, f"{path} was not written"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    (folder / "text.txt").write_text(TEXT)
    run = _fwdlearn("seq", "train", "--data", "text.txt", *TINY, "--steps", "300", "--eval-every", "10",
                    "--sample", "30", "--name", "ref", cwd=folder)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err
    return json.loads((folder / "runs" / "ref.json").read_text()), torch.load(folder / "runs" / "ref.pt",
                                                                            weights_only=False)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "term", "kill"])
def test_an_interrupted_run_resumes_to_exactly_the_uninterrupted_result(sig, uninterrupted, folder):
    args = ["seq", "train", "--data", "text.txt", *TINY, "--steps", "300", "--eval-every", "10", "--sample", "30",
            "--name", "cut"]
    run = _fwdlearn(*args, cwd=folder)
    _wait_for(folder / "runs" / "cut.pt", run)
    run.send_signal(sig)
    out, err = run.communicate(timeout=120)
    # (the signal is sent at the first checkpoint, step 10 of 300: a run that still finishes ignored it)
    assert run.returncode != 0, f"the run went on to its end after the signal: {err[-500:]}"
    if sig == signal.SIGINT:
        assert run.returncode == 130
        line, = err.strip().splitlines()
        assert line.startswith("fwdlearn: interrupted at step ") and "the last checkpoint is runs/cut.pt (step " in line
        assert "run the same command with --resume to continue (and --checkpoint " in line
    elif sig == signal.SIGTERM:  # (a scheduler's stop: as Ctrl-C, with its own status; the locks released)
        assert run.returncode == 143
        line, = err.strip().splitlines()
        assert line.startswith("fwdlearn: terminated (SIGTERM): interrupted at step ") and "--resume" in line
        assert not list((folder / "runs").glob("*.lock"))
    else:
        assert run.returncode == -signal.SIGKILL
    assert not (folder / "runs" / "cut.json").exists()
    resumed = _fwdlearn(*args, "--resume", cwd=folder)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    record, reference = json.loads((folder / "runs" / "cut.json").read_text()), uninterrupted[0]
    for key in ("val_loss", "val_bpc", "steps", "best_step", "sample"):
        assert record["summary"][key] == reference["summary"][key], key
    assert [row for row in record["metrics"]] == reference["metrics"]
    weights = torch.load(folder / "runs" / "cut.pt", weights_only=False)["state"]["model"]
    assert all(torch.equal(weights[k], v) for k, v in uninterrupted[1]["state"]["model"].items())
    assert record["summary"]["resumed"]["changed"] == {}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "term"])
def test_an_interrupt_after_training_says_how_to_resume(sig, folder, monkeypatch, capsys):
    """Ctrl-C (or SIGTERM) in the final evaluation or the sample, after the last checkpoint was saved, said
    'fwdlearn: interrupted' alone, although --resume finishes the run (its record) without training again."""
    from fwdlearn.cli import main
    from fwdlearn.sequences.nn.language_model import LanguageModel

    def stop(*args, **kwargs):
        signal.raise_signal(sig)  # (to this thread: os.kill may be delivered to another of the process's threads)
        time.sleep(1)  # (the handler has raised by here)

    args = ["seq", "train", "--data", "text.txt", *TINY, "--steps", "4", "--eval-every", "2", "--sample", "5",
            "--name", "s"]
    # (Python's own Ctrl-C handler: a test run started in the background by a shell, `pytest &`, inherits SIGINT
    # ignored, and Python then installs none)
    kept = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(LanguageModel, "generate", stop)
            assert main(args) == (130 if sig == signal.SIGINT else 143)
    finally:
        signal.signal(signal.SIGINT, kept)
    line, = capsys.readouterr().err.strip().splitlines()
    said = "interrupted" if sig == signal.SIGINT else "terminated (SIGTERM)"
    assert line == (f"fwdlearn: {said}; runs/s.pt holds the run so far: run the same command with --resume to continue "
                    "(and --checkpoint runs/s.pt if it had no --name)")
    assert not Path("runs/s.json").exists()
    assert main([*args, "--resume"]) == 0
    assert json.loads(Path("runs/s.json").read_text())["summary"]["steps"] == 4


def test_a_command_without_a_checkpoint_is_not_told_to_resume_an_earlier_runs(folder, monkeypatch, capsys):
    """start_run noted a run's checkpoints but a later start_run without one (another command in the same process, after
    run_train called from Python, which releases nothing) kept them: Ctrl-C in `influence graph` said 'runs/a.pt holds
    the run so far: run the same command with --resume', a flag that command does not have, for another run's file."""
    import importlib

    importlib.import_module("fwdlearn.graphs.influence.bench")  # (before load_graph is patched: a module first
    # imported inside the patch -- influence graph imports this one -- kept the patch as its load_graph for good)
    from fwdlearn.cli import main
    from fwdlearn.runs import resumable_checkpoint

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    paths = run_outputs("seq-train", RunOptions(name="a"), checkpoint="")
    try:
        start_run(RunOptions(name="a"), paths)  # (as run_train does; it leaves the process's run state to main)
        torch.save({}, paths.checkpoint)  # the run saved its checkpoint
        assert resumable_checkpoint() == paths.checkpoint
        with monkeypatch.context() as patch:
            patch.setattr("fwdlearn.graphs.data.datasets.load_graph", stop)
            assert main(["influence", "graph", "--data", "karate", "--quiet", "--threads", "1", "--name", "inf"]) == 130
        assert capsys.readouterr().err == "fwdlearn: interrupted\n"
        start_run(RunOptions(name="a"), paths)
        start_run(RunOptions())  # (quickstart's: no paths)
        assert resumable_checkpoint() is None
    finally:
        release_runs()


@pytest.mark.parametrize("sig,status", [("SIGINT", 130), ("SIGTERM", 143)], ids=["ctrl-c", "term"])
def test_python_m_fwdlearn_exits_130_or_143_whenever_the_interrupt_lands(sig, status, folder):
    """An interrupt that landed while code run from a string ran (the __init__ an import's dataclass gets is written
    so, and torch defines hundreds: ~15% of Ctrl-Cs or SIGTERMs in a run's first seconds) made CPython mark it as
    unhandled, and 'python -m fwdlearn' then killed itself by SIGINT at exit: status -2, not 130, nor 143 (a
    SIGTERM reported as an interrupt by SIGINT)."""
    Path("stopper.py").write_text(
        "import sys\n"
        "from fwdlearn import cli\n"
        "def run(args):\n"
        f"    exec('import os, signal, time; os.kill(os.getpid(), signal.{sig}); time.sleep(30)')\n"
        "cli._load = lambda target: cli.Command('stop', lambda parser: None, run)\n"
        "sys.exit(cli.main(['quickstart']))\n")
    run = subprocess.run([sys.executable, "-m", "stopper"], cwd=folder, env=ENV, capture_output=True, text=True,
                         timeout=120, preexec_fn=_default_sigint)
    assert run.returncode == status, run.stderr
    said = "interrupted" if sig == "SIGINT" else "terminated (SIGTERM)"
    assert run.stderr == f"fwdlearn: {said}\n"


def test_under_torchrun_an_error_found_before_connecting_is_said_once(folder):
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                          "-m", "fwdlearn", "seq", "train", "--data", "text.txt", *TINY, "--layers", "0",
                          "--name", "dp"], cwd=folder, env=ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    lines = [line for line in (run.stdout + run.stderr).splitlines() if "fwdlearn: error" in line]
    assert lines == ["fwdlearn: error: --layers must be >= 1, got 0"]
    frames = [line for line in run.stderr.splitlines() if line.strip().startswith("File") and "/fwdlearn/" in line]
    assert not frames  # the launcher reports its children's exit codes; no rank shows a traceback


def test_under_torchrun_an_error_every_process_finds_after_connecting_is_said_once(folder):
    """A check made after the processes connect, alike in each (here the warm-up against the budget, in fit_lm), was
    printed by every process, each with its rank."""
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                          "-m", "fwdlearn", "seq", "train", "--data", "text.txt", *TINY, "--steps", "4", "--warmup",
                          "4", "--name", "dp"], cwd=folder, env=ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    lines = [line for line in (run.stdout + run.stderr).splitlines() if "fwdlearn: error" in line]
    assert lines == ["fwdlearn: error: --warmup 4 is not shorter than the budget of --steps 4: the learning rate "
                     "would reach 0.002 only at the last step; give a shorter warm-up (e.g. --warmup 1)"]
    # a divergence too: every process checks the global batch's loss (each said it, rank 1 with its rank)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                          "-m", "fwdlearn", "seq", "train", "--data", "text.txt", *TINY, "--steps", "20", "--lr", "3",
                          "--diverge-factor", "1.05", "--name", "dv"], cwd=folder, env=ENV, capture_output=True,
                         text=True, timeout=300)
    lines = [line for line in (run.stdout + run.stderr).splitlines() if "fwdlearn: error" in line]
    assert len(lines) == 1 and lines[0].startswith("fwdlearn: error: dsf: step ") and "training diverged" in lines[0]


def test_under_torchrun_an_error_one_process_finds_after_connecting_names_its_rank(folder):
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "fwdlearn",
              "seq", "train", "--data", "text.txt", *TINY, "--eval-every", "2", "--sample", "0", "--name", "dp"]
    first = subprocess.run([*launch, "--steps", "2"], cwd=folder, env=ENV, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    Path("runs/dp.pt.rank1").unlink()  # process 1's part of the checkpoint is lost
    run = subprocess.run([*launch, "--steps", "4", "--resume"], cwd=folder, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode != 0
    lines = [line for line in (run.stdout + run.stderr).splitlines() if "fwdlearn: error" in line]
    assert lines[0] == ("fwdlearn: error (rank 1): runs/dp.pt.rank1, process 1's part of the checkpoint, is missing; "
                        "resume with as many processes as the run was started with (if it was, the run stopped "
                        "before this process's first save: start over with --overwrite)")
    # rank 0, when torchrun has not stopped it first, says in one line why it stops (it printed a gloo traceback)
    assert lines[1:] in ([], ["fwdlearn: error (rank 0): another process of this torchrun job stopped (its own "
                              "message says why), so this one could not go on"])
    assert "Connection closed by peer" not in run.stderr
    frames = [line for line in run.stderr.splitlines() if line.strip().startswith("File") and "/fwdlearn/" in line]
    assert not frames
    assert json.loads(Path("runs/dp.json").read_text())["summary"]["steps"] == 2  # the record was not rewritten


def test_an_out_prefix_that_is_a_folder_is_refused(tmp_path, capsys):
    """--out docs/benchmarks/ used to write docs/benchmarks.json/.md beside the folder (and with --overwrite replace
    docs/benchmarks.md)."""
    from fwdlearn.cli import main

    folder = tmp_path / "results"
    folder.mkdir()
    for out in (str(folder), f"{tmp_path / 'new'}/"):
        assert main(["bench", "seq", "--skip", "quality", "alignment", "recall", "--cost-modes", "bptt",
                     "--cost-contexts", "4", "--cost-hidden", "4", "--out", out, "--quiet"]) == 2
        assert "is a folder; --out is a prefix of the result files" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_a_refused_run_removes_no_split_checkpoint_and_a_run_without_splits_none_at_all(folder):
    """A second graph run of a live run's name deleted its finished split checkpoints before the lock refused it (the
    live run then lost its record); and every command read '<name>-split<N>.pt' as an earlier split of its own run:
    seq train --name lm refused, or with --overwrite deleted, the unrelated run lm-split1's checkpoint."""
    Path("runs").mkdir()
    Path("runs/g-split2.pt").write_text("a live run's finished split")
    Path("runs/lm-split1.pt").write_text("another run's checkpoint")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        Path("runs/g.json.lock").write_text(str(live.pid))
        paths = run_outputs("graph-train", RunOptions(name="g", overwrite=True), checkpoint="", splits=1)
        with pytest.raises(UsageError, match="is writing runs/g.json"):
            start_run(RunOptions(name="g"), paths)
        assert Path("runs/g-split2.pt").exists()
    finally:
        live.kill()
        live.wait()
        release_runs()
    for overwrite in (False, True):
        start_run(RunOptions(name="lm"), run_outputs("seq-train", RunOptions(name="lm", overwrite=overwrite),
                                                      checkpoint=""))
        release_runs()
        assert Path("runs/lm-split1.pt").exists()
    with pytest.raises(FileExistsError, match="runs/g-split2.pt is a checkpoint of an earlier run of this name with "
                                              "more splits"):
        run_outputs("graph-train", RunOptions(name="g"), checkpoint="", splits=2)
    start_run(RunOptions(name="g"), run_outputs("graph-train", RunOptions(name="g", overwrite=True), checkpoint="",
                                                splits=2))  # the holder is gone: now it is removed
    release_runs()
    assert not Path("runs/g-split2.pt").exists()


def test_a_run_named_like_a_split_keeps_its_checkpoint(folder):
    """graph train --name g --overwrite deleted runs/g-split1.pt of a run named 'g-split1', finished (its record
    beside it) or live (its lock held)."""
    Path("runs").mkdir()
    Path("runs/g-split1.pt").write_text("run g-split1's checkpoint")
    Path("runs/g-split1.json").write_text("{}")  # its record
    start_run(RunOptions(name="g"), run_outputs("graph-train", RunOptions(name="g", overwrite=True), checkpoint="",
                                                splits=1))
    release_runs()
    assert Path("runs/g-split1.pt").exists()
    Path("runs/g-split1.json").unlink()  # still running: no record yet, its checkpoint locked
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        Path("runs/g-split1.pt.lock").write_text(str(live.pid))
        with pytest.raises(UsageError, match="is writing runs/g-split1.pt"):
            start_run(RunOptions(name="g"), run_outputs("graph-train", RunOptions(name="g", overwrite=True),
                                                        checkpoint="", splits=1))
    finally:
        live.kill()
        live.wait()
        release_runs()
    assert Path("runs/g-split1.pt").exists()


def test_threads_apply_for_the_command_and_are_restored_after_it(folder):
    """``main([...])`` called from Python leaves torch's thread count as it found it."""
    import torch

    from fwdlearn.cli import main

    before = torch.get_num_threads()
    seen = []
    real = start_run

    def spy(*args, **kwargs):
        device = real(*args, **kwargs)
        seen.append(torch.get_num_threads())
        return device

    target = 2 if before == 1 else 1
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("fwdlearn.runs.start_run", spy)
        assert main(["seq", "train", "--data", "text.txt", "--steps", "1", "--eval-every", "1", *TINY[:-2],
                     "--threads", str(target)]) == 0
    assert seen == [target] and torch.get_num_threads() == before


def test_running_a_named_training_run_again_suggests_resume(folder, capsys):
    from fwdlearn.cli import main

    args = ["seq", "train", "--data", "text.txt", "--steps", "1", "--eval-every", "1", *TINY, "--name", "again"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert "already exists; pass --resume to continue that run, --overwrite to start it over" in capsys.readouterr().err


def test_a_run_resumes_from_another_working_folder(folder, monkeypatch, capsys):
    """The record names its files as typed, relative to the run's folder: resumed from elsewhere, the run was refused
    as not its own ('runs/r.json already exists')."""
    from fwdlearn.cli import main

    args = ["seq", "train", "--data", str(folder / "text.txt"), "--eval-every", "1", *TINY]
    assert main([*args, "--steps", "1", "--json", "out/r.json"]) == 0
    record = json.loads((folder / "out/r.json").read_text())
    assert record["files"]["checkpoint"] == "out/r.pt" and record["cwd"] == str(folder)
    (folder / "elsewhere").mkdir()
    monkeypatch.chdir(folder / "elsewhere")
    capsys.readouterr()
    assert main([*args, "--steps", "2", "--json", "../out/r.json", "--resume"]) == 0, capsys.readouterr().err
    record = json.loads((folder / "out/r.json").read_text())
    assert record["summary"]["steps"] == 2 and record["files"]["checkpoint"] == "../out/r.pt"


def test_a_run_resumes_after_its_folder_was_moved(folder, monkeypatch, capsys):
    """The record's cwd names the folder the run started in: once that folder was renamed (or mounted elsewhere),
    a resume from the same place inside it was refused as not the run's own ('runs/r.json already exists'), which it
    was not before the record named its folder."""
    from fwdlearn.cli import main

    (folder / "project").mkdir()
    (folder / "text.txt").rename(folder / "project" / "text.txt")
    monkeypatch.chdir(folder / "project")
    args = ["seq", "train", "--data", "text.txt", "--eval-every", "1", "--name", "r", *TINY]
    assert main([*args, "--steps", "1"]) == 0
    (folder / "project").rename(folder / "moved")
    monkeypatch.chdir(folder / "moved")
    capsys.readouterr()
    assert main([*args, "--steps", "2", "--resume"]) == 0, capsys.readouterr().err
    record = json.loads((folder / "moved" / "runs" / "r.json").read_text())
    assert record["summary"]["steps"] == 2 and record["cwd"] == str(folder / "moved")


def test_an_earlier_runs_process_checkpoints_are_refused_before_work_and_removed_by_overwrite(folder, capsys):
    """<checkpoint>.rank<r> (a torchrun run's processes r > 0) was never checked: a fresh run of several processes
    failed at its first save, and an --overwrite run left them beside its own checkpoint."""
    from fwdlearn.cli import main

    Path("runs").mkdir()
    for name in ("dp.pt.rank1", "dp.pt.rank3", "dp.pt.rank1.prev"):  # (.prev: each process's save before the last)
        Path(f"runs/{name}").write_text("an earlier run's")
    Path("runs/dp.pt.rank1.notes").write_text("not a checkpoint")
    args = ["seq", "train", "--data", "text.txt", *TINY, "--steps", "1", "--sample", "0", "--name", "dp"]
    assert main(args) == 2
    assert ("runs/dp.pt.rank1 is a checkpoint of an earlier run of this name with several processes; pass --resume "
            "(with as many processes) to continue it, --overwrite to start over") in capsys.readouterr().err
    assert not Path("runs/dp.json").exists()  # (refused before any work)
    assert main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in Path("runs").iterdir()) == ["dp.json", "dp.pt", "dp.pt.rank1.notes"]


def test_two_runs_taking_over_one_dead_processs_lock_do_not_both_hold_it(tmp_path, monkeypatch):
    """Both read the dead owner, the first removed the lock and took it, the second then removed the first's fresh
    lock and took it too: two runs of one name. The takeover is now one process at a time per folder."""
    from fwdlearn.runs import lock_run

    monkeypatch.chdir(tmp_path)
    Path("runs").mkdir()
    Path("runs/r.json.lock").write_text("999999999")  # a process that is gone
    slow = ("import pathlib, sys, time\n"
            "from fwdlearn.runs import lock_run\n"
            "unlink = pathlib.Path.unlink\n"
            "def slow_unlink(self, missing_ok=False):\n"
            "    if self.name == 'r.json.lock': time.sleep(1.5)  # between reading the owner and removing the lock\n"
            "    return unlink(self, missing_ok=missing_ok)\n"
            "pathlib.Path.unlink = slow_unlink\n"
            "lock_run(pathlib.Path('runs/r.json')); print('holds', flush=True); sys.stdin.read()\n")
    first = subprocess.Popen([sys.executable, "-c", slow], cwd=tmp_path, env=ENV, text=True, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    try:
        time.sleep(0.7)  # the first is inside its takeover
        with pytest.raises(UsageError, match=rf"another fwdlearn run \(process {first.pid}\) is writing runs/r.json"):
            lock_run(Path("runs/r.json"))
        assert first.stdout.readline() == "holds\n"
    finally:
        release_runs()
        first.communicate("", timeout=60)


def test_a_folder_that_cannot_be_opened_for_its_flock_still_takes_locks(tmp_path, monkeypatch):
    """The folder's flock needs it opened for reading: a folder one may write but not read (or NFS, which may refuse
    flock on folders) raised a raw PermissionError where the run had taken its lock before."""
    import fwdlearn.runs as runs

    opened = os.open

    def no_folders(path, flags, *args):
        if Path(path).is_dir():
            raise PermissionError(13, "Permission denied", str(path))
        return opened(path, flags, *args)

    monkeypatch.setattr(runs.os, "open", no_folders)
    try:
        runs.lock_run(tmp_path / "r.json")
        assert (tmp_path / "r.json.lock").read_text() == str(os.getpid())
    finally:
        release_runs()


def test_output_paths_are_spelled_as_a_user_means_them(folder, monkeypatch, capsys):
    """~ in an output flag made a folder named '~'; a trailing slash wrote a file where a folder was meant; a symlinked
    spelling of the record's path let the checkpoint replace it; graph train, influence graph and the benches could
    replace the file they read; an over-long --plot name failed after training, and a model saved onto a folder
    raised a raw error."""
    from fwdlearn.cli import main

    home = folder / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    seq = ["seq", "train", "--data", "text.txt", *TINY, "--steps", "1"]
    assert main([*seq, "--json", "~/t.json"]) == 0
    assert (home / "t.json").is_file() and (home / "t.pt").is_file() and not (folder / "~").exists()
    assert main(["influence", "seq", "--checkpoints=~/t.pt", "--length", "4", "--batch", "1", "--positions", "2",
                 "--quiet", "--json", "inf.json"]) == 0  # (an input's ~ too: '--checkpoints ~/t.pt: no such file')
    for flag, value in (("--checkpoint", "ck/"), ("--json", "jj/")):
        assert main([*seq, flag, value]) == 2
        assert f"{flag} '{value}' ends with a slash, a folder; {flag} names a file" in capsys.readouterr().err
    os.symlink("runs", "runlink")
    assert main([*seq, "--json", "runs/dup.json", "--checkpoint", "runlink/dup.json", "--overwrite"]) == 2
    assert "--json and --checkpoint both name" in capsys.readouterr().err
    (folder / "g.edges").write_text("0 1\n1 2\n2 3\n3 0\n0 2\n" * 3)
    before = (folder / "g.edges").read_text()
    assert main(["graph", "train", "--data", "city:g.edges", "--epochs", "1", "--hidden", "4", "--layers", "1",
                 "--quiet", "--threads", "1", "--json", "g.edges", "--overwrite"]) == 2
    assert "--json g.edges is the file --data g.edges reads" in capsys.readouterr().err
    assert (folder / "g.edges").read_text() == before
    assert main([*seq, "--training", "dfa+dsf", "--align-every", "1", "--plot", "p" * 251 + ".png"]) == 2
    assert "its name is 255 bytes long, too long for this file system" in capsys.readouterr().err
    assert not list((folder / "runs").glob("*.json.lock"))
    from fwdlearn.sequences import RecurrentLM

    (folder / "exdir").mkdir()
    with pytest.raises(IsADirectoryError, match="exdir is a folder; give the model file's path"):
        RecurrentLM(4, hidden=4, layers=1).save("exdir", overwrite=True)



#: a child process that writes a bench's results, table and record together (as BenchRun.finish does, through
#: atomic_write_all), of run argv[1]; with argv[2] == "kill" it is SIGKILLed (no handler runs: the OOM killer) once
#: the results are renamed into place, before the table and the record are
_SAVE_THE_SET = """
import json, os, signal, sys
from pathlib import Path
from fwdlearn.files import atomic_write_all
version = sys.argv[1]
if sys.argv[2] == "kill":
    replace = os.replace
    def killing(source, target):
        if Path(target).name == "b.md":
            os.kill(os.getpid(), signal.SIGKILL)
        replace(source, target)
    os.replace = killing
texts = {"b.json": json.dumps({"rows": [], "version": version}), "b.md": version,
         "b-record.json": json.dumps({"job": "bench-graph", "files": {"results": "b.json", "table": "b.md"},
                                      "summary": {"version": version}})}
atomic_write_all({path: lambda tmp, text=text: tmp.write_text(text) for path, text in texts.items()})
"""


def _save_the_set(folder: Path, version: str, how: str = "save") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _SAVE_THE_SET, version, how], cwd=folder, env=ENV,
                          capture_output=True, text=True, timeout=120)


def _versions(folder: Path) -> tuple[str, str, str]:
    """The run each file of the set in ``folder`` is from: results, table, record."""
    return (json.loads((folder / "b.json").read_text())["version"], (folder / "b.md").read_text(),
            json.loads((folder / "b-record.json").read_text())["summary"]["version"])


def test_a_set_of_files_killed_between_its_renames_is_finished_by_the_next_run(folder):
    """atomic_write_all renamed a bench's results, table and record one after another: a process killed between two
    renames (SIGKILL, the OOM killer) left run B's results beside run A's table and record, and the next run of the
    name removed B's other .tmp files, keeping the mix (its refusal offered --overwrite, as for a whole set)."""
    assert _save_the_set(folder, "A").returncode == 0
    killed = _save_the_set(folder, "B", "kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads(Path("b.json").read_text())["version"] == "B"  # killed between two renames
    with pytest.raises(FileExistsError, match="already exists; choose another output path or pass --overwrite"):
        run_outputs("bench-graph", RunOptions(), out="b")  # the next run of these names
    assert _versions(folder) == ("B", "B", "B")  # one run's set, whole
    assert sorted(p.name for p in folder.iterdir()) == ["b-record.json", "b.json", "b.md", "text.txt"]


def test_a_set_killed_between_its_renames_is_finished_in_its_folder_moved(folder):
    """The list of renames named the set's files by absolute path: once the folder had moved (renamed, or the volume
    mounted at another path) after the kill, the next run of the names renamed nothing there, removed the list and
    the new set's last .tmp files, and kept run B's results beside run A's table and record. The names are relative to
    the list's folder."""
    Path("a").mkdir()
    assert _save_the_set(folder / "a", "A").returncode == 0
    killed = _save_the_set(folder / "a", "B", "kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    Path("a").rename("moved")
    with pytest.raises(FileExistsError, match="already exists; choose another output path or pass --overwrite"):
        run_outputs("bench-graph", RunOptions(), out="moved/b")  # the next run of these names, in the moved folder
    assert _versions(folder / "moved") == ("B", "B", "B")  # one run's set, whole
    assert sorted(p.name for p in (folder / "moved").iterdir()) == ["b-record.json", "b.json", "b.md"]


def test_ctrl_c_between_the_renames_of_a_set_finishes_them(folder, monkeypatch):
    """Ctrl-C between two renames of atomic_write_all removed the .tmp files left: new results beside an old table."""
    from fwdlearn.records import RunRecord

    assert _save_the_set(folder, "A").returncode == 0
    replace, stopped = os.replace, []

    def interrupted(source, target):
        if Path(target).name == "b.md" and not stopped:
            stopped.append(target)
            raise KeyboardInterrupt
        replace(source, target)

    record = RunRecord("bench-graph", {"version": "B"})
    record.summary["version"] = "B"
    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        record.save_with("b-record.json", {"results": ("b.json", '{"rows": [], "version": "B"}'),
                                           "table": ("b.md", "B")}, overwrite=True)
    assert stopped and _versions(folder) == ("B", "B", "B")
    assert sorted(p.name for p in folder.iterdir()) == ["b-record.json", "b.json", "b.md", "text.txt"]


def test_the_renames_a_live_process_is_making_are_left_to_it(folder):
    """finish_renames finishes the list of a process that is gone; a live writer's (its renames under way) is its own,
    unless the caller holds the run's lock."""
    from fwdlearn.files import finish_renames

    for name in ("b.json", "b.md"):
        Path(name).write_text("old")
        Path(name + ".tmp").write_text("new")
    renames = [[os.path.abspath(name + ".tmp"), os.path.abspath(name)] for name in ("b.json", "b.md")]
    Path("b.md.renaming").write_text(json.dumps({"pid": os.getppid(), "renames": renames}))  # (a live process)
    assert finish_renames("b.md") == [] and Path("b.md").read_text() == "old"
    assert finish_renames("b.md", held=True) == [Path("b.md.renaming")]
    assert [Path(name).read_text() for name in ("b.json", "b.md")] == ["new", "new"]
    assert sorted(p.name for p in folder.iterdir()) == ["b.json", "b.md", "text.txt"]


def test_a_huge_file_at_a_list_of_renames_is_not_read_whole(tmp_path, monkeypatch):
    """finish_renames read a file at '<path>.renaming' whole to find it no list (256 MiB: 1.5 s and 512 MB of memory;
    2 GB: about 12 s and 4 GB), as _lock_owner read a lock before LOCK_BYTES. Only RENAMES_BYTES are read: a longer
    file is no list, removed as one that is not JSON; a list is still finished, and atomic_write_all writes none
    longer than that."""
    import tracemalloc

    from fwdlearn import files
    from fwdlearn.files import RENAMES_BYTES, atomic_write_all, finish_renames

    monkeypatch.chdir(tmp_path)
    with open("b.md.renaming", "wb") as f:  # (sparse: no disk used)
        f.write(json.dumps({"pid": 1, "renames": [["b.md.tmp", "b.md"]]}).encode())
        f.truncate(64 * RENAMES_BYTES)
    Path("b.md").write_text("old")
    Path("b.md.tmp").write_text("new")
    tracemalloc.start()
    try:
        assert finish_renames("b.md", held=True) == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * RENAMES_BYTES and not Path("b.md.renaming").exists() and Path("b.md").read_text() == "old"
    Path("b.md.renaming").write_text(json.dumps({"pid": 1, "renames": [["b.md.tmp", "b.md"]]}))
    assert finish_renames("b.md", held=True) == [Path("b.md.renaming")] and Path("b.md").read_text() == "new"
    monkeypatch.setattr(files, "RENAMES_BYTES", 60)
    with pytest.raises(ValueError, match=r"the list of renames of these 3 files would take \d+ bytes, more than "
                                         r"finish_renames reads of one \(RENAMES_BYTES, 60\); write them in smaller "
                                         r"sets"):
        atomic_write_all({name: lambda tmp: tmp.write_text("x") for name in ("c.json", "c.md", "c.txt")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.md"]  # (no '.tmp' left, nothing renamed)


class _Killed(BaseException):
    """A kill, in the process: nothing of fwdlearn's catches it (SIGKILL runs no handler at all)."""


def test_a_run_started_over_and_killed_leaves_no_record_of_the_run_it_replaced(folder, monkeypatch):
    """A run started over with --overwrite and killed after its first save left the earlier run's record (its config,
    steps and scores) naming the checkpoint, now the new run's: runs/o.json said a finished run of 2 steps at the
    default learning rate, runs/o.pt held step 2 of a run of 4 at --lr 0.01."""
    from fwdlearn import fit
    from fwdlearn.cli import main

    args = ["seq", "train", "--data", "text.txt", *TINY, "--eval-every", "2", "--sample", "0", "--name", "o"]
    assert main([*args, "--steps", "2"]) == 0
    assert json.loads(Path("runs/o.json").read_text())["config"]["steps"] == 2
    write = fit.atomic_write

    def killed(path, save):
        write(path, save)
        raise _Killed  # once the new run's first checkpoint is in place

    with monkeypatch.context() as patch:
        patch.setattr(fit, "atomic_write", killed)
        with pytest.raises(_Killed):
            main([*args, "--steps", "4", "--lr", "0.01", "--overwrite"])
    assert torch.load("runs/o.pt", weights_only=False)["settings"]["lr"] == 0.01  # the new run's first save
    assert not Path("runs/o.json").exists()  # no record of the run it replaced
    assert main([*args, "--steps", "4", "--lr", "0.01", "--resume"]) == 0
    record = json.loads(Path("runs/o.json").read_text())
    assert (record["config"]["steps"], record["config"]["lr"]) == (4, 0.01)  # the new run's, continued
    assert record["summary"]["resumed"]["from_step"] == 2


@pytest.mark.parametrize("what", ["notes", "folder", "pipe"])
def test_a_users_file_at_a_lock_name_is_refused_not_deleted(tmp_path, monkeypatch, what):
    """A file at '<record>.lock' that holds no process id was taken for a dead run's lock and deleted (a user's
    runs/a.json.lock notes, without --overwrite); a folder there was "it is a folder; give a file's path", and a named
    pipe was read without end. Each is refused, naming it, and left as it was."""
    from fwdlearn.runs import lock_run

    monkeypatch.chdir(tmp_path)
    Path("runs").mkdir()
    lock = Path("runs/a.json.lock")
    if what == "notes":
        lock.write_text("my notes\n")
    elif what == "folder":
        lock.mkdir()
    else:
        os.mkfifo(lock)

    def endless(*args):
        raise TimeoutError("the lock was read without end")

    before = signal.signal(signal.SIGALRM, endless)  # (a failure, not a hung suite, where the pipe is read)
    signal.alarm(20)
    try:
        with pytest.raises(UsageError, match=r"^runs/a\.json\.lock is in the way of this run's lock on runs/a\.json: "
                                             r"it is not a lock fwdlearn left .*; move or remove it, or choose "
                                             r"another --name$"):
            lock_run(Path("runs/a.json"))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
        release_runs()
    assert lock.read_text() == "my notes\n" if what == "notes" else lock.exists()
    assert sorted(p.name for p in Path("runs").iterdir()) == ["a.json.lock"]


def test_a_huge_file_at_a_record_or_a_lock_is_refused_without_being_read_whole(tmp_path, monkeypatch):
    """A file of 2 GB put at a run's lock or record path (beginning like one: a process id, a JSON object) was read
    whole to be found no lock (16 s, 4 GB of memory) or no record (18 s, "not valid JSON ... cut short or damaged").
    Only a lock's few bytes and a record's RECORD_BYTES are read: the lock is refused as a file in the way, the
    record as larger than a record, by name, and --resume names the fix."""
    import tracemalloc

    from fwdlearn.records import RECORD_BYTES, NoRunRecord, read_record
    from fwdlearn.runs import lock_run

    monkeypatch.chdir(tmp_path)
    Path("runs").mkdir()
    for name, head in (("runs/a.json.lock", b"4242"), ("runs/a.json", b'{"job": "graph-train", "files": {}')):
        with open(name, "wb") as f:  # (sparse: no disk used)
            f.write(head)
            f.truncate(4 * RECORD_BYTES)
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match=r"^runs/a\.json\.lock is in the way of this run's lock on runs/a\.json: "
                                             r"it is not a lock fwdlearn left"):
            lock_run(Path("runs/a.json"))
        assert tracemalloc.get_traced_memory()[1] < 1 << 20  # (no more than the lock's few bytes read)
        with pytest.raises(NoRunRecord, match=rf"^runs/a\.json is not a run record: it is larger than "
                                              rf"{RECORD_BYTES:,} bytes, more than a run record holds") as refused:
            read_record("runs/a.json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        release_runs()
    assert not refused.value.json and peak < 1 << 20  # (neither file read beyond its cap)
    Path("runs/a.json").write_text(json.dumps({"job": "graph-train", "metrics": [{"loss": 0.5}] * 50_000}))
    assert read_record("runs/a.json").job == "graph-train"  # (a long run's record, 0.8 MB, is read)
    Path("runs/a.json").write_text(json.dumps({"job": "graph-train", "metrics": [{"loss": 0.5}] * 50}) + "\n ")
    assert read_record("runs/a.json", largest=100).job == "graph-train"  # (a record past the cap, ending as one)
    with open("runs/a.json", "ab") as f:
        f.write(b"\0" * 100)
    with pytest.raises(NoRunRecord, match="larger than 100 bytes"):  # (largest: the cap the caller gives)
        read_record("runs/a.json", largest=100)


def test_a_long_runs_record_larger_than_record_bytes_is_read_and_resumed(tmp_path, monkeypatch):
    """A record the run itself wrote, past RECORD_BYTES (seq train logs a row per step, about 125 bytes: 560,000
    steps wrote 70 MB), was refused as "larger than 67,108,864 bytes, more than a run record holds", and --resume
    with it ("pass --overwrite with --resume to replace it"). It ends with its closing brace: it is read whole."""
    from fwdlearn.records import RunRecord, read_record
    from fwdlearn.runs import record_files

    monkeypatch.chdir(tmp_path)
    record = RunRecord("seq-train", None, seed=0)
    for step in range(1, 101):
        record.log(step=step, loss=2.884335517883301, grad_norm=0.6494225859642029, lr=0.002)
    Path("run.pt").touch()
    record.add_file("checkpoint", "run.pt")
    record.save("run.json")
    size = Path("run.json").stat().st_size
    assert size > 10_000
    assert read_record("run.json", largest=size // 4).job == "seq-train"
    monkeypatch.setattr(read_record, "__defaults__", (size // 4,))  # (RECORD_BYTES, as a long run outgrows it)
    assert record_files("run.json")[0] == "seq-train"


def test_a_list_of_renames_found_in_a_folder_renames_nothing_outside_it(tmp_path, monkeypatch):
    """finish_renames made every rename a '<path>.renaming' listed, of '<target>.tmp' over 'target' anywhere on the
    disk: a list in a runs/ folder one was given (a dead process's id) made the next run of that name replace the
    user's notes.md with the notes.md.tmp another program kept beside it, without --overwrite. Only renames over a
    file in the list's own folder or among the run's outputs are made."""
    from fwdlearn.files import finish_renames

    monkeypatch.chdir(tmp_path)
    victim, runs = tmp_path / "elsewhere", tmp_path / "runs"
    victim.mkdir()
    runs.mkdir()
    (victim / "notes.md").write_text("my notes")
    (victim / "notes.md.tmp").write_text("another program's draft")
    (runs / "a.json.tmp").write_text("the killed run's record")
    (runs / "a.json.renaming").write_text(json.dumps({"pid": 999999999, "renames": [
        [str(victim / "notes.md.tmp"), str(victim / "notes.md")], [str(runs / "a.json.tmp"), str(runs / "a.json")]]}))
    assert finish_renames(Path("runs/a.json"), held=True) == [Path("runs/a.json.renaming")]
    assert (victim / "notes.md").read_text() == "my notes" and (victim / "notes.md.tmp").exists()
    assert (runs / "a.json").read_text() == "the killed run's record"


@pytest.mark.parametrize("listed", ['{"pid": 1e999, "renames": []}', '{"pid": 1000000000000000000000000, '
                                    '"renames": []}', '{"pid": 1, "renames": ' + "[" * 100000 + "]" * 100000 + "}"])
def test_a_list_of_renames_that_is_no_list_a_run_writes_is_removed_without_a_traceback(tmp_path, listed):
    """A '.renaming' beside a run's output whose "pid" is 1e999 (JSON's infinity) or too large for a process id, or
    whose JSON nests too deeply to read, ended the next run of that name in a traceback (OverflowError, RecursionError:
    "fwdlearn quickstart --name x" with runs/x/record.json.renaming). It is no list a run writes: removed, as one that
    is not JSON is (a process id no process has: a dead run's list, finished), and nothing is renamed."""
    from fwdlearn.files import finish_renames

    (tmp_path / "a.json.tmp").write_text("another program's draft")
    (tmp_path / "a.json.renaming").write_text(listed)
    finish_renames(tmp_path / "a.json")  # (no process has that id: a dead one's list, finished or removed)
    assert not (tmp_path / "a.json.renaming").exists() and not (tmp_path / "a.json").exists()


def test_a_named_runs_checkpoint_that_is_a_folder_names_the_flag_given(folder):
    """runs/tiny.pt a folder, with --name tiny, was "--checkpoint runs/tiny.pt is a folder", a flag not given; so was a
    split's checkpoint, and --json x.pt (the record and the checkpoint named after it) said "--json and --checkpoint
    both name x.pt"."""
    Path("runs/tiny.pt").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"^the checkpoint runs/tiny.pt, named after --name, is a folder; choose "
                                         r"another --name, move the folder, or give --checkpoint a file path$"):
        run_outputs("seq-train", RunOptions(name="tiny"), checkpoint="", resume=True)
    with pytest.raises(UsageError, match=r"^the checkpoint runs/tiny.pt, named after --json, is a folder; choose "
                                         r"another --json"):
        run_outputs("seq-train", RunOptions(json="runs/tiny.json"), checkpoint="")
    with pytest.raises(UsageError, match=r"^--checkpoint runs/tiny.pt is a folder; give the checkpoint's file path"):
        run_outputs("seq-train", RunOptions(json="other.json"), checkpoint="runs/tiny.pt")
    Path("runs/s-split1.pt").mkdir()
    with pytest.raises(UsageError, match=r"^cannot write runs/s-split1.pt \(--name\): it is a folder; choose another "
                                         r"--name"):
        run_outputs("graph-train", RunOptions(name="s"), checkpoint="", splits=2)
    with pytest.raises(UsageError, match=r"^--json x.pt would name the record and the checkpoint beside it \(the "
                                         r"record's name with .pt\) alike; end --json with .json"):
        run_outputs("seq-train", RunOptions(json="x.pt"), checkpoint="")


def test_json_given_for_a_torch_file_is_said_to_be_json(folder):
    """A run record cut short (or not UTF-8), given where a torch file is read, was "not a torch file (Unsupported
    operand 123)": it is said to be a run record that cannot be read; other JSON (a bench's results, an object that
    names no command) is said to be JSON."""
    from fwdlearn.errors import InputError, reading
    from fwdlearn.fit import load_torch

    Path("runs").mkdir()
    cases = {"cut.json": ('{"job": "seq-train", "files": {"checkpoint": "runs/x.p',
                          r"it is JSON \(a run record that cannot be read\), not a torch file: it is not valid JSON "
                          r"\(Unterminated string .*\), cut short or damaged since it was written\); it may"),
             "bytes.json": (b'{"job": "seq-train\xff"}', r"it is JSON \(a run record that cannot be read\), not a "
                                                        r"torch file: it is not UTF-8 text \(byte 18\)"),
             "bench.json": ('{"rows": []}', r"it is JSON, not a torch file: it is a bench's results\); it may"),
             "mine.json": ('{"a": 1}', r"it is JSON \(no run record: it names no command\), not a torch file\); it")}
    for name, (content, message) in cases.items():
        path = Path("runs") / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(InputError, match=rf"^cannot read {path} as a model \(UnpicklingError: {message}"):
            with reading(path, "a model", "it may have been cut short or is another kind of file"):
                load_torch(path)
