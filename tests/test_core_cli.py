"""The command line: --help and --version as a subprocess; unfilled commands say so."""

import subprocess
import sys

import pytest

import fwdlearn
from fwdlearn.cli import ENTRY_POINTS, Entry, main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "fwdlearn", *args], capture_output=True, text=True, timeout=120)


def test_version_and_help_subprocess():
    out = _run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"fwdlearn {fwdlearn.__version__}"
    out = _run("--help")
    assert out.returncode == 0
    for group in ("quickstart", "graph", "seq", "influence", "bench"):
        assert group in out.stdout


def test_a_group_without_its_subcommand_is_a_usage_error_on_stderr(capsys):
    """``fwdlearn graph`` printed its help on stdout and exited 2."""
    assert main(["graph"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: fwdlearn graph [-h] SUBCOMMAND")


def test_unavailable_command_says_so(monkeypatch, capsys):
    monkeypatch.setitem(ENTRY_POINTS, ("bench", "seq"), Entry("fwdlearn.sequences.no_such_module:bench", "demo"))
    assert main(["bench", "seq"]) == 2
    assert "fwdlearn bench seq: not available yet" in capsys.readouterr().err


def test_dataclass_flags_map_one_to_one():
    import argparse
    from dataclasses import dataclass, field

    from fwdlearn.config import add_dataclass_arguments, dataclass_from_args

    @dataclass
    class Job:
        data: str = field(default="cora", metadata={"help": "data set"})
        layers: int = 4
        depths: tuple[int, ...] = (1, 2)
        quiet: bool = False
        method: str = field(default="sf", metadata={"choices": ["sf", "bp"]})

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Job)
    job = dataclass_from_args(Job, parser.parse_args(["--layers", "8", "--depths", "1", "4", "--quiet"]))
    assert job == Job(layers=8, depths=(1, 4), quiet=True)


def test_choices_and_help_may_be_functions_read_when_the_parser_is_built():
    """A registry's ``names`` as ``choices``: a name registered after the dataclass was defined is offered,
    accepted and listed; one removed again is refused by validate_config."""
    import argparse
    from dataclasses import dataclass, field

    from fwdlearn.config import add_dataclass_arguments, dataclass_from_args, validate_config
    from fwdlearn.errors import UsageError

    names = ["sf"]

    @dataclass
    class Job:
        method: str = field(default="sf", metadata={"choices": lambda: list(names),
                                                    "help": lambda: f"one of {', '.join(names)}"})

    names.append("bp")
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Job)
    assert dataclass_from_args(Job, parser.parse_args(["--method", "bp"])).method == "bp"
    assert "one of sf, bp" in parser.format_help()
    names.remove("bp")
    with pytest.raises(UsageError, match="--method must be one of sf, got 'bp'"):
        validate_config(Job(method="bp"))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["graph", "--help"], ["graph", "train", "--help"],
                                  ["seq", "train", "--help"], ["bench", "seq", "--help"], ["influence", "graph", "--help"],
                                  ["quickstart", "--help"], ["bench", "influence", "--help"], ["bench", "graph", "--help"],
                                  ["bench", "dfa", "--help"], ["influence", "seq", "--help"]])
def test_help_and_version_import_neither_torch_nor_a_domain_model(args):
    code = ("import sys\nfrom fwdlearn.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'torch_geometric', 'datasets', 'fwdlearn.graphs.nn', 'fwdlearn.sequences.nn')"
            " if m in sys.modules]\nprint('HEAVY', heavy, file=sys.stderr)" % (args,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stderr, out.stderr[-2000:]
    assert "usage:" in out.stdout or out.stdout.startswith("fwdlearn ")


@pytest.mark.parametrize("bench", ["seq", "graph", "influence", "dfa"])
def test_a_bench_s_help_says_how_it_resumes(bench, capsys):
    """Every bench takes --resume (tests/test_core_bench_resume.py), and its help says what it continues from."""
    with pytest.raises(SystemExit):
        main(["bench", bench, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "runs/<name>-progress.pt while it runs, which its --resume continues" in text
    assert ("continue the interrupted run of this bench with the same --out (or --name) and settings: the "
            "pieces it finished (each fit, each group of interleaved timings), kept in <out>-progress.pt, are read "
            "instead of run again") in text
