"""A file the file system will not write (a full disk, a read-only one, a permission, a name too long), and an output
path that is no regular file: every command says it in one line -- the file, the cause in words and the fix -- from
one place (fwdlearn.files.describe_os_error at the command's error boundary), exits with status 2 and leaves no
half-written file or stray lock behind. Tensors on the meta device are refused in one wording everywhere."""

import errno
import os
import signal
from pathlib import Path

import pytest
import torch

from fwdlearn.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NO_SPACE = os.strerror(errno.ENOSPC)
GRAPH = ["graph", "train", "--data", "karate", "--layers", "1", "--hidden", "8", "--epochs", "2", "--quiet"]
SEQ = ["seq", "train", "--data", "corpus.txt", "--layers", "1", "--hidden", "8", "--context", "8", "--batch-size",
       "2", "--steps", "2", "--eval-every", "1", "--sample", "0", "--quiet"]
INF_SEQ = ["influence", "seq", "--models", "gru", "--hidden", "8", "--length", "8", "--max-lag", "4", "--batch", "1",
           "--quiet"]
BENCH_GRAPH = ["bench", "graph", "--data", "karate", "--depths", "1", "--methods", "sf", "--splits", "1", "--epochs",
               "2", "--hidden", "8", "--link-layers", "0", "--quiet"]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("a stitch in time saves nine, and a rolling stone gathers no moss.\n" * 20)
    return tmp_path


def _full_disk_on(monkeypatch, name_ends: str) -> None:
    """Writing a file whose name ends with ``name_ends`` fails as on a full disk (a write's OSError names no file)."""
    write_text = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.endswith(name_ends):
            raise OSError(errno.ENOSPC, NO_SPACE)
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)


def _left(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name != "corpus.txt")


@pytest.mark.parametrize("args, full, named, flags, left", [
    (GRAPH + ["--name", "g"], "g.json.tmp", "runs/g.json", "--json, --checkpoint", ["runs", "runs/g.pt"]),
    (SEQ + ["--name", "s"], "s.json.tmp", "runs/s.json", "--json, --checkpoint, --plot", ["runs", "runs/s.pt"]),
    (INF_SEQ + ["--json", "i.json"], "i.json.tmp", "i.json", "--json, --plot", []),
    (BENCH_GRAPH + ["--out", "b"], "b.md.tmp", "b.md", "--out, --json", ["b-progress.pt"]),
    (GRAPH + ["--name", "g"], f".lock.{os.getpid()}", "runs/g.json.lock", "--json, --checkpoint", ["runs"]),
], ids=["graph-record", "seq-record", "influence-record", "bench-results", "lock-at-start"])
def test_a_full_disk_names_the_file_the_cause_and_the_fix(args, full, named, flags, left, folder, monkeypatch,
                                                           capsys):
    """Every command but quickstart said "fwdlearn: error: [Errno 28] No space left on device" (no file, no fix); one
    that failed as it took its lock left the lock's <record>.lock.<pid> file behind. A run that saved a checkpoint (a
    bench's progress) before the disk filled says that --resume continues it once there is room."""
    _full_disk_on(monkeypatch, full)
    assert main(args) == 2
    kept = {"runs/g.pt": "--checkpoint runs/g.pt if it had no --name", "runs/s.pt": "--checkpoint runs/s.pt if it had "
            "no --name", "b-progress.pt": "--out b if it had no --out or --name"}  # (what the run saved stays: said)
    resumes = "".join(f"; {os.path.join(*path.split('/'))} holds the run so far: once that is fixed, the same command "
                      f"with --resume continues it (and {naming.replace('runs/', os.path.join('runs', ''))})"
                      for path, naming in kept.items() if path in left)
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"fwdlearn: error: cannot write {os.path.join(*named.split('/'))}: the disk is full ({NO_SPACE}); free space "
        f"on that disk, or write the outputs elsewhere ({flags}){resumes}")
    assert _left(folder) == left  # (a finished run's checkpoint, a bench's progress, stays; no .tmp, no lock)


@pytest.mark.parametrize("args, again", [
    (SEQ + ["--model", "transformer", "--training", "dfa", "--align-every", "1", "--plot", "p.png", "--name", "s"],
     ["--resume"]),
    (INF_SEQ + ["--plot", "p.png", "--json", "i.json"], []),
    (["influence", "graph", "--data", "karate", "--layers", "1", "--models", "gcn", "--samples", "4", "--quiet",
      "--plot", "p.png", "--json", "i.json"], []),
], ids=["seq-train", "influence-seq", "influence-graph"])
def test_a_run_whose_record_fails_leaves_no_plot_of_its_own(args, again, folder, monkeypatch, capsys):
    """seq train and influence graph|seq draw their plot before they write the record: on a full disk the failed
    run kept the plot, and its re-run was refused ("p.png already exists; ... pass --overwrite"). The plot this run
    drew goes with the failed record (seq train's checkpoint stays, for --resume); a plot there before is kept."""
    write_text = Path.write_text
    _full_disk_on(monkeypatch, ".json.tmp")
    assert main(args) == 2
    assert "the disk is full" in capsys.readouterr().err
    assert not (folder / "p.png").exists() and not list(folder.rglob("*.tmp"))
    monkeypatch.setattr(Path, "write_text", write_text)
    assert main(args + again) == 0, capsys.readouterr().err  # (the disk has room again: the same command goes on)
    assert (folder / "p.png").is_file()
    made = (folder / "p.png").stat().st_mtime_ns
    _full_disk_on(monkeypatch, ".json.tmp")
    assert main(args + (again or ["--overwrite"])) == 2  # a plot there before the run is not this run's to remove
    assert (folder / "p.png").is_file() and (folder / "p.png").stat().st_mtime_ns >= made


def test_a_checkpoint_on_a_full_disk_is_said_as_any_other_file(folder, monkeypatch, capsys):
    """torch.save given a path reports a full disk as "RuntimeError: [enforce fail at inline_container.cc:672] .
    unexpected pos 576 vs 534" (measured on a full tmpfs), which the checkpoint's message repeated as the cause;
    through a Python file the write's own OSError (ENOSPC) comes out, said as for any other file."""
    save = torch.save

    class Full:  # a file on a full disk: every write fails
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            raise OSError(errno.ENOSPC, NO_SPACE)

        def __getattr__(self, name):
            return getattr(self.handle, name)

    def full_disk(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
        return save(obj, Full(f), *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    assert main(GRAPH + ["--name", "g"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"fwdlearn: error: cannot write {os.path.join('runs', 'g.pt')}: the disk is full ({NO_SPACE}); free space on "
        "that disk, or write the outputs elsewhere (--json, --checkpoint)")
    assert _left(folder) == ["runs"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_an_output_that_is_a_pipe_is_refused_before_any_work(folder, capsys):
    """--json naming a named pipe hung for ever (its check of an earlier run's record read the pipe), /dev/zero was
    read until memory ran out ("out of memory ... lower --hidden"), and --json /dev/null --overwrite renamed a regular
    file over the device (as root)."""
    os.mkfifo(folder / "pipe")

    def hung(signum, frame):
        pytest.fail("the command hung reading the pipe")

    before = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        assert main(GRAPH + ["--json", "pipe", "--overwrite"]) == 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
    assert capsys.readouterr().err.strip() == (
        "fwdlearn: error: cannot write pipe (--json): it is a named pipe, not a regular file (an output is written "
        "beside its path and renamed over it, which would replace the pipe); give a regular file's path")
    assert (folder / "pipe").is_fifo() and _left(folder) == ["pipe"]


def test_file_system_errors_are_worded_by_their_cause(tmp_path, monkeypatch):
    from fwdlearn.files import describe_os_error, writing

    def error(code, path="out/r.json", wrote=True):
        raised = OSError(code, os.strerror(code), path)
        if wrote:
            raised.fwdlearn_writing = True
        return describe_os_error(raised, "write the outputs elsewhere (--out)")

    assert error(errno.EROFS) == (f"cannot write out/r.json: the file system is read-only ({os.strerror(errno.EROFS)}); "
                                  "write the outputs elsewhere (--out)")
    assert error(errno.EACCES) == ("cannot write out/r.json: permission denied; check the permissions of it and its "
                                   "folder, or write the outputs elsewhere (--out)")
    assert error(errno.EACCES, wrote=False) == ("out/r.json: permission denied; check the permissions of it and its "
                                                "folder")  # (a read's: writing elsewhere is no fix)
    assert error(errno.ENAMETOOLONG).endswith("a name in the path is too long for the file system "
                                              f"({os.strerror(errno.ENAMETOOLONG)}); choose shorter names")
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "cache"))
    assert error(errno.ENOSPC, str(tmp_path / "cache" / "x.pt")).endswith(
        "free space on that disk, or point FWDLEARN_CACHE_DIR at a folder elsewhere (fwdlearn's cache)")
    assert describe_os_error(FileExistsError("runs/a.json already exists; pass --overwrite")) is None  # (its own)
    with pytest.raises(OSError) as raised, writing("runs/a.json"):
        raise OSError(errno.ENOSPC, NO_SPACE)  # (as a write says it: no file)
    assert raised.value.filename == "runs/a.json"


def test_a_full_cache_disk_is_not_blamed_on_the_data(folder, monkeypatch, capsys):
    """HF datasets' "Not enough disk space" for its cache was said as "cannot read corpus.txt as a text corpus ...; a
    corpus must be a UTF-8 text file"; PyG's full disk as "the Planetoid raw files ... could not be read ...; one of
    them is truncated or damaged: copy the 8 files again"; a full disk under the road-graph cache was torch's
    RuntimeError, a traceback, leaving the .tmp file."""
    import datasets
    from torch_geometric.data import Data

    from fwdlearn.graphs.data import citynet
    from fwdlearn.graphs.data.datasets import _unreadable

    cache = folder / "cache"
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(cache))

    def no_room(*args, **kwargs):
        raise OSError("Not enough disk space. Needed: Unknown size (download: Unknown size, generated: Unknown size")

    monkeypatch.setattr(datasets, "load_dataset", no_room)
    assert main(SEQ + ["--name", "s"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fwdlearn: error: cannot write {cache / 'hf-datasets'}") and err.endswith(
        f": the disk is full ({NO_SPACE}); free space on that disk, or point FWDLEARN_CACHE_DIR at a folder elsewhere "
        "(fwdlearn's cache)")

    full = OSError(errno.ENOSPC, NO_SPACE)
    assert _unreadable("cora", folder / "raw", full, True, cache / "processed") is full
    assert full.filename == str(cache / "processed")

    def full_disk(obj, f, *args, **kwargs):  # (torch given a path says a full disk so; a Python file: ENOSPC)
        if isinstance(f, (str, os.PathLike)):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
        raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left") as raised:
        citynet._cached({"k": 1}, "roads", lambda: Data(x=torch.zeros(2, 1)))
    assert raised.value.filename.startswith(str(cache / "citynet" / "roads-"))
    assert raised.value.filename.endswith(".pt") and list((cache / "citynet").iterdir()) == []  # (no .tmp left)


def test_every_refusal_of_a_meta_tensor_names_the_argument_a_shape_without_values_and_the_fix(tmp_path):
    """Worded three ways in three modules: "tokens are on the meta device ...: a shape without ids", "decode reads
    token ids, but these are on the meta device ...", "data.x is on the meta device: a shape without values" (no
    shape), "the state is on the meta device, shapes without values" (no argument named)."""
    from torch_geometric.data import Data

    from fwdlearn.graphs import ForwardGNN, hop_influence
    from fwdlearn.sequences import RecurrentLM, Vocabulary

    lm = RecurrentLM(5, cell="gru", hidden=4, layers=1)
    tokens = torch.randint(0, 5, (2, 6))
    _, state = lm(tokens)
    graph = Data(x=torch.randn(4, 3), edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]), y=torch.tensor([0, 1, 0, 1]))
    gnn = ForwardGNN(3, 2, hidden=4, layers=1, method="bp")
    cases = [
        ("tokens", lambda: lm(tokens.to("meta"))),
        ("state[0]", lambda: lm(tokens, [s.to("meta") for s in state])),
        ("ids", lambda: Vocabulary.build("abc").decode(torch.tensor([1, 2], device="meta"))),
        ("x", lambda: gnn(graph.x.to("meta"), graph.edge_index)),
        ("edge_index", lambda: gnn(graph.x, graph.edge_index.to("meta"))),
        ("nodes=", lambda: hop_influence(gnn, graph, 1, nodes=torch.tensor([0], device="meta"))),
        ("the model's", lambda: lm.to("meta").save(tmp_path / "m.pt")),
    ]
    for name, call in cases:
        with pytest.raises(ValueError) as refused:
            call()
        message = str(refused.value)
        assert message.startswith(f"{name}") and " is on the meta device (shape [" in message, message
        assert "]): a shape without values, and " in message and "; " in message.partition("without values")[2]
        assert any(fix in message for fix in ("on the CPU or a GPU", "None to start from zeros")), message


def test_a_refused_rename_names_the_file_written_not_its_tmp(tmp_path, monkeypatch):
    """atomic_write writes '<path>.tmp' and renames it over the path; a rename the file system refused (another user's
    file in a sticky /tmp, --overwrite; a folder made there meanwhile) names its source first, and the line read
    "cannot write out.json.tmp: the operation is not permitted", a file the user never gave."""
    import fwdlearn.files as files

    def refused(src, dst):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(src), None, str(dst))

    monkeypatch.setattr(files.os, "replace", refused)
    with pytest.raises(PermissionError) as raised:
        files.atomic_write(tmp_path / "out.json", lambda tmp: tmp.write_text("{}"))
    assert files.describe_os_error(raised.value, "write the outputs elsewhere (--json)") == (
        f"cannot write {tmp_path / 'out.json'}: the operation is not permitted ({os.strerror(errno.EPERM)}); check the "
        "permissions of it and its folder, or write the outputs elsewhere (--json)")
    assert not (tmp_path / "out.json.tmp").exists()


def test_a_temporary_file_that_cannot_be_removed_does_not_hide_the_writes_own_error(tmp_path, monkeypatch):
    """A write that failed (an I/O error, after which the file system was remounted read-only) had its '.tmp' removed,
    and that removal's own error (read-only file system, naming out.json.tmp) was raised in place of the write's: the
    line named a file the user never gave and not the cause. The write's error is raised; the removal's is dropped."""
    import fwdlearn.files as files

    def failing_write(tmp):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def read_only(self, missing_ok=False):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(files.Path, "unlink", read_only)
    for write in (lambda: files.atomic_write(tmp_path / "out.json", failing_write),
                  lambda: files.atomic_write_all({tmp_path / "out.json": failing_write})):
        with pytest.raises(OSError) as raised:
            write()
        assert files.describe_os_error(raised.value) == (
            f"cannot write {tmp_path / 'out.json'}: the disk reported an input/output error ({os.strerror(errno.EIO)}); "
            "check the disk, or write the outputs elsewhere")


def test_the_other_clean_ups_after_a_failed_write_do_not_hide_its_error_either(tmp_path, monkeypatch):
    """The same as above for the previous checkpoint's copy (fit._keep_previous), a run's lock (runs.lock_run) and the
    synthetic city's cache (citynet): each removed its half-written file in the except, and a removal the file system
    refused raised its own error (read-only, naming the half-written file) in place of the write's I/O error."""
    import fwdlearn.files as files
    from fwdlearn import fit, runs
    from fwdlearn.graphs.data import citynet

    def read_only(self, missing_ok=False):  # (a name that is not there is not found first, as Linux does)
        if os.path.lexists(self) or not missing_ok:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    def io_error(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    checkpoint = tmp_path / "ckpt.pt"
    checkpoint.write_bytes(b"saved")
    monkeypatch.setattr(fit.os, "replace", io_error)
    monkeypatch.setattr(files.Path, "unlink", read_only)
    with pytest.raises(OSError) as raised:
        fit._keep_previous(checkpoint)
    assert raised.value.errno == errno.EIO
    monkeypatch.undo()

    monkeypatch.setattr(files.Path, "write_text", io_error)
    monkeypatch.setattr(files.Path, "unlink", read_only)
    with pytest.raises(OSError) as raised:
        runs.lock_run(tmp_path / "runs" / "a.json")
    assert raised.value.errno == errno.EIO
    monkeypatch.undo()

    import torch
    from torch_geometric.data import Data

    monkeypatch.setattr(citynet, "cache_dir", lambda name: tmp_path)
    monkeypatch.setattr(citynet, "save_torch", io_error)
    monkeypatch.setattr(files.Path, "unlink", read_only)
    with pytest.raises(OSError) as raised:
        citynet._cached({"graph": "tiny"}, "tiny", lambda: Data(x=torch.zeros(2, 1)))
    assert raised.value.errno == errno.EIO


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_link_at_the_tmp_name_is_not_written_through(tmp_path, link):
    """atomic_write opened '<path>.tmp' as it found it: a link there (m.pt.tmp -> notes.md) was written through, the
    model replaced the user's notes.md, and m.pt was left a link to it. The link is removed first; notes.md stays."""
    from fwdlearn.graphs import ForwardGNN

    notes = tmp_path / "notes.md"
    notes.write_text("my notes\n")
    for name in ("m.pt", "r.json"):
        staged = tmp_path / f"{name}.tmp"
        staged.symlink_to(notes) if link == "symbolic" else os.link(notes, staged)
    ForwardGNN(4, 2, hidden=8, layers=1).save(tmp_path / "m.pt")
    from fwdlearn.files import atomic_write_all

    atomic_write_all({tmp_path / "r.json": lambda tmp: tmp.write_text("{}")})
    assert notes.read_text() == "my notes\n"
    assert not (tmp_path / "m.pt").is_symlink() and ForwardGNN.load(tmp_path / "m.pt").layers == 1
    assert (tmp_path / "r.json").read_text() == "{}" and not (tmp_path / "r.json").is_symlink()
    assert not list(tmp_path.glob("*.tmp"))
