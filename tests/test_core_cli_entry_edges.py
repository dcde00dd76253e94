"""The ``fwdlearn`` entry point's edges (:mod:`fwdlearn.cli`): which commands are "not available yet", the one error
line of each kind of failure (the rank that says it, the exit status), flag hints, and a ``main([...])`` that leaves
the process as it found it (stdout, the SIGTERM handler, ``warnings.showwarning``). A stand-in command runs in the
place of ``bench seq`` so that each case fails exactly as it says, at once."""

import errno
import signal
import sys
import types
import warnings

import pytest

import fwdlearn
import fwdlearn.cli as cli
from fwdlearn.cli import ENTRY_POINTS, Command, Entry, main
from fwdlearn.errors import FwdlearnWarning, UsageError


@pytest.fixture
def command(monkeypatch):
    """``install(run, configure=None, elsewhere="")``: ``fwdlearn bench seq`` runs ``run`` (flags: ``configure``'s)."""
    monkeypatch.delenv("FWDLEARN_DEBUG", raising=False)
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)

    def install(run, configure=None, elsewhere=""):
        module = types.ModuleType("fwdlearn_edges_stand_in")
        module.command = Command("a stand-in", configure or (lambda parser: None), run, elsewhere)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(ENTRY_POINTS, ("bench", "seq"), Entry(f"{module.__name__}:command", "demo"))

    return install


def _raises(error):
    def run(args):
        raise error

    return run


# ---------------------------------------------------------------------------- commands not there yet
def test_a_missing_domain_package_is_not_available_but_a_missing_dependency_is_a_bug(monkeypatch, tmp_path, capsys):
    """A command whose package is missing (not only its module) is "not available yet"; a command module that is
    there but imports a missing dependency raises that ModuleNotFoundError (it is no planned command)."""
    monkeypatch.setitem(ENTRY_POINTS, ("bench", "seq"), Entry("fwdlearn.no_such_package.cli:bench", "demo"))
    assert main(["bench", "seq"]) == 2
    assert capsys.readouterr().err == (f"fwdlearn bench seq: not available yet in fwdlearn {fwdlearn.__version__} "
                                       "(this command is planned but not implemented).\n")
    (tmp_path / "fwdlearn_edges_broken.py").write_text("import fwdlearn_edges_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(ENTRY_POINTS, ("bench", "seq"), Entry("fwdlearn_edges_broken:bench", "demo"))
    with pytest.raises(ModuleNotFoundError, match="fwdlearn_edges_no_such_dependency"):
        main(["bench", "seq"])


def test_a_module_without_the_command_is_not_available_and_its_help_says_so(monkeypatch, capsys):
    monkeypatch.setitem(ENTRY_POINTS, ("bench", "seq"), Entry("fwdlearn.cli:no_such_command", "demo"))
    assert main(["bench", "seq"]) == 2
    assert capsys.readouterr().err == (f"fwdlearn bench seq: not available yet in fwdlearn {fwdlearn.__version__} "
                                       "(this command is planned but not implemented).\n")
    with pytest.raises(SystemExit) as exit:
        main(["bench", "seq", "--help"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == "usage: fwdlearn bench seq [-h]\n\ndemo [not available yet]\n\noptions:\n" \
                                      "  -h, --help  show this help message and exit\n"


# ---------------------------------------------------------------------------- dispatch
def test_no_command_prints_the_help_and_succeeds(capsys):
    assert main([]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: fwdlearn [-h] [--version] COMMAND ...\n") and err == ""


def test_the_command_s_status_is_main_s(command):
    command(lambda args: 5)
    assert main(["bench", "seq"]) == 5
    command(lambda args: None)
    assert main(["bench", "seq"]) == 0


def test_main_leaves_stdout_the_sigterm_handler_and_showwarning_as_it_found_them(command):
    stdout, handler, show = sys.stdout, signal.getsignal(signal.SIGTERM), warnings.showwarning
    seen = []

    def run(args):
        seen.append((sys.stdout is stdout, signal.getsignal(signal.SIGTERM) is handler,
                     warnings.showwarning is show))

    command(run)
    assert main(["bench", "seq"]) == 0
    assert seen == [(False, False, False)]  # (inside: its own three)
    assert sys.stdout is stdout and signal.getsignal(signal.SIGTERM) is handler and warnings.showwarning is show
    command(_raises(UsageError("bad")))
    assert main(["bench", "seq"]) == 2
    assert sys.stdout is stdout and signal.getsignal(signal.SIGTERM) is handler and warnings.showwarning is show


# ---------------------------------------------------------------------------- one line per failure
@pytest.mark.parametrize("error, line", [
    (UsageError("a message\n   on two lines"), "fwdlearn: error: a message on two lines"),
    (UsageError(), "fwdlearn: error: UsageError"),
    (UsageError("pass hidden=8 or tie=False"), "fwdlearn: error: pass --hidden 8 or --no-tie"),
])
def test_an_anticipated_error_is_one_line_in_the_flags_words(command, capsys, error, line):
    command(_raises(error), lambda parser: (parser.add_argument("--hidden"), parser.add_argument("--tie")))
    assert main(["bench", "seq"]) == 2
    assert capsys.readouterr().err == line + "\n"


@pytest.mark.parametrize("error, said", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:83] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 8 GB\nError code 12"),
     "[enforce fail at alloc_cpu.cpp:83] DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"),
    (MemoryError("\n  Unable to allocate 7.28 TiB\n  for an array\n"), "Unable to allocate 7.28 TiB"),
    (MemoryError(), "MemoryError"),
])
def test_an_allocation_refused_is_one_line_naming_its_first_line_and_the_size_flags(command, capsys, error, said):
    command(_raises(error))
    assert main(["bench", "seq"]) == 2
    assert capsys.readouterr().err == (
        f"fwdlearn: error: out of memory ({said}): the sizes given need more memory than this machine has; lower them "
        "(e.g. --hidden, --layers, --batch-size, --context, --samples, --max-lag / --max-hops) or use a larger "
        "machine\n")


def test_a_runtime_error_of_another_kind_keeps_its_traceback(command):
    command(_raises(RuntimeError("bad shape")))
    with pytest.raises(RuntimeError, match="bad shape"):
        main(["bench", "seq"])


def test_sigterm_then_ctrl_c_each_say_their_own_line(command, capsys):
    """The mark SIGTERM leaves is the command's alone: a Ctrl-C in the next main() is an interrupt (130), not a
    termination (143)."""
    import os

    def terminated(args):
        os.kill(os.getpid(), signal.SIGTERM)

    command(terminated)
    assert main(["bench", "seq"]) == 143
    assert capsys.readouterr().err == "fwdlearn: terminated (SIGTERM)\n"
    command(_raises(KeyboardInterrupt()))
    assert main(["bench", "seq"]) == 130
    assert capsys.readouterr().err == "fwdlearn: interrupted\n"


def test_a_process_other_than_rank_0_leaves_the_errors_every_process_meets_to_rank_0(command, monkeypatch, capsys):
    """Under torchrun (RANK=1 of WORLD_SIZE=2) before the processes connect, rank 1 says neither an error nor an
    interrupt (rank 0 says them); once in a group, it names its rank for an error of its own and leaves one every
    process met alike (a divergence) to rank 0."""
    from fwdlearn.errors import DivergenceError

    monkeypatch.setattr(cli, "RANK_0_SPEAKS", 0.0)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for error, status in ((UsageError("bad"), 2), (KeyboardInterrupt(), 130), (DivergenceError("nan"), 3)):
        command(_raises(error))
        assert main(["bench", "seq"]) == status
        assert capsys.readouterr().err == ""
    monkeypatch.setattr(cli, "_group_rank", lambda: 1)
    command(_raises(UsageError("its own part is missing")))
    assert main(["bench", "seq"]) == 2
    assert capsys.readouterr().err == "fwdlearn: error (rank 1): its own part is missing\n"
    command(_raises(DivergenceError("nan")))
    assert main(["bench", "seq"]) == 3
    assert capsys.readouterr().err == ""


def test_rank_0_of_a_group_says_no_rank(command, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_group_rank", lambda: 0)
    command(_raises(UsageError("bad")))
    assert main(["bench", "seq"]) == 2
    assert capsys.readouterr().err == "fwdlearn: error: bad\n"


def test_a_peer_that_reset_the_connection_is_a_peer_that_stopped(monkeypatch):
    from torch import distributed

    assert distributed.is_available()  # (_peer_failed reads its DistNetworkError)
    monkeypatch.setattr(cli, "_group_rank", lambda: 1)
    assert cli._peer_failed(RuntimeError("[../gloo/transport/tcp/pair.cc:598] Connection reset by peer"))
    assert cli._peer_failed(RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer"))
    assert not cli._peer_failed(RuntimeError("bad shape"))
    assert not cli._peer_failed(ValueError("Connection reset by peer"))


def test_a_process_whose_peer_stopped_says_so_in_one_line(command, monkeypatch, capsys):
    from torch import distributed

    assert distributed.is_available()
    monkeypatch.setattr(cli, "_group_rank", lambda: 1)
    command(_raises(RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:1234")))
    assert main(["bench", "seq"]) == 2
    assert capsys.readouterr().err == ("fwdlearn: error (rank 1): another process of this torchrun job stopped (its "
                                       "own message says why), so this one could not go on\n")
    monkeypatch.setenv("FWDLEARN_DEBUG", "1")  # (the traceback, on asking for it)
    with pytest.raises(RuntimeError, match="Connection closed by peer"):
        main(["bench", "seq"])


def test_a_reader_gone_before_the_command_wrote_ends_it_quietly_with_141(command, capsys):
    """A BrokenPipeError the command met itself (not through print) is the reader gone too: no line, status 141."""
    command(_raises(BrokenPipeError(32, "Broken pipe")))
    assert main(["bench", "seq"]) == 141
    assert capsys.readouterr().err == ""


def test_a_warning_of_fwdlearn_is_one_line_and_another_goes_where_python_shows_it(command, monkeypatch, capsys):
    shown = []
    monkeypatch.setattr(warnings, "showwarning",
                        lambda message, category, *rest: shown.append((category, str(message))))

    def run(args):
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("ours", FwdlearnWarning)
            warnings.warn("theirs", UserWarning)
            warnings.warn("numpy's", RuntimeWarning)

    command(run)
    assert main(["bench", "seq"]) == 0
    assert capsys.readouterr().err == "fwdlearn: warning: ours\n"
    assert shown == [(UserWarning, "theirs"), (RuntimeWarning, "numpy's")]


# ---------------------------------------------------------------------------- file-system errors: the fix's words
def _disk_full(path):
    error = OSError(errno.ENOSPC, "No space left on device", path)
    error.fwdlearn_writing = True
    return error


def test_a_full_disk_names_the_command_s_output_flags_that_hold_a_path(command, tmp_path, capsys):
    def configure(parser):
        parser.add_argument("--json", default=None)
        parser.add_argument("--out", default="bench-out")
        parser.add_argument("--plot", action="store_true")  # (a switch: no path to move)

    command(_raises(_disk_full(str(tmp_path / "r.json"))), configure)
    assert main(["bench", "seq", "--json", "r.json"]) == 2
    assert capsys.readouterr().err == (f"fwdlearn: error: cannot write {tmp_path / 'r.json'}: the disk is full "
                                       "(No space left on device); free space on that disk, or write the outputs "
                                       "elsewhere (--out, --json)\n")
    command(_raises(_disk_full(str(tmp_path / "r.json"))), configure, elsewhere="pass --out elsewhere")
    assert main(["bench", "seq"]) == 2
    assert capsys.readouterr().err == (f"fwdlearn: error: cannot write {tmp_path / 'r.json'}: the disk is full "
                                       "(No space left on device); free space on that disk, or pass --out elsewhere\n")


# ---------------------------------------------------------------------------- flag hints
@pytest.mark.parametrize("args, said", [
    (["seq", "train", "--cell", "gru"], "--cell gru; for --cell use --model"),
    (["seq", "train", "--rule", "dsf"], "--rule dsf; for --rule use --training"),
    (["graph", "train", "--rule", "sf"], "--rule sf; for --rule use --method"),
    (["seq", "train", "--bogus", "hidden"], "--bogus hidden"),  # (a value is no flag: "hidden" is no --hidden)
    (["seq", "train", "--h"], "--h"),  # (-h is no --flag to be named)
])
def test_another_command_s_flag_is_named_as_this_command_calls_it(capsys, args, said):
    with pytest.raises(SystemExit) as exit:
        main(args)
    assert exit.value.code == 2
    prog = " ".join(args[:2])
    assert capsys.readouterr().err == (f"fwdlearn {prog}: error: unrecognized arguments: {said} "
                                       f"(see fwdlearn {prog} --help)\n")
