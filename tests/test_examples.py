"""Every script in examples/ runs as its docstring says and prints what it is for (they were never run by the tests,
so a renamed argument or a changed report would have gone unseen)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fwdlearn.data import data_dir

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: script -> what its output must hold (``count`` times)
EXPECTED = {
    "graph_forward_training.py": [("test accuracy", 3), ("scores (34, 4)", 1)],
    "graph_link_prediction.py": [("test ROC-AUC", 3)],
    "influence_city.py": [("GCN 2 layers: test accuracy", 1), ("GCN 8 layers: test accuracy", 1)],
    "influence_sequence.py": [("gru: R = ", 1), ("conv: R = ", 1)],
    "seq_delayed_recall.py": [("accuracy", 4), ("(chance 0.125)", 4)],
    "seq_dsf_tinyshakespeare.py": [("bits/char in", 2), ("ROMEO:", 2)],
}
NEEDS_DATA = {"seq_dsf_tinyshakespeare.py"}


def test_every_example_is_run_here():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_an_example_runs_and_reports(script, tmp_path):
    if script in NEEDS_DATA and data_dir() is None:
        pytest.skip(f"{script} reads tinyshakespeare: set FWDLEARN_DATA_DIR to the data folder")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "FWDLEARN_CACHE_DIR": str(tmp_path / "cache")}
    if data_dir() is not None:  # (a relative folder, read here, must not be read again from the script's cwd)
        env["FWDLEARN_DATA_DIR"] = str(data_dir())
    run = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    for text, count in EXPECTED[script]:
        assert run.stdout.count(text) == count, (text, run.stdout)


@pytest.mark.parametrize("script", ["graph_forward_training.py", "graph_link_prediction.py", "influence_city.py"])
def test_an_example_given_a_bad_graph_says_so_in_one_line(script, tmp_path):
    """``--help`` or a mistyped name ended in a traceback (the argument went straight to the loader)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FWDLEARN_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, str(EXAMPLES / script), "nope"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1].startswith(f"{script}: error: unknown graph 'nope'; choose one of cora, ")
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("script", ["influence_sequence.py", "seq_delayed_recall.py", "seq_dsf_tinyshakespeare.py"])
def test_an_example_answers_help_without_training(script, tmp_path):
    """These had no parser: ``--help`` (or any argument) was ignored and the training started (minutes for
    seq_dsf_tinyshakespeare.py). (The scripts that read a graph name parse theirs: the test above.)"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FWDLEARN_CACHE_DIR": str(tmp_path / "cache")}
    try:
        run = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script} --help ran for 30 s: it trained instead of showing its help")
    assert run.returncode == 0, run.stderr[-2000:]
    first_line = (EXAMPLES / script).read_text().split('"""')[1].splitlines()[0]
    assert run.stdout.startswith(f"usage: {script}") and first_line in run.stdout, run.stdout
    assert not any(text in run.stdout for text, _ in EXPECTED[script])  # (nothing trained or measured)
    stray = subprocess.run([sys.executable, str(EXAMPLES / script), "lag=50"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=30)
    assert stray.returncode == 2 and stray.stderr.splitlines()[-1] == f"{script}: error: unrecognized arguments: lag=50"


def _run_in_process(script, args, capsys) -> tuple[int, str, str]:
    """Run ``script`` with ``args`` here (no new interpreter: a few seconds less each); exit status, stdout, stderr."""
    import runpy

    argv = sys.argv
    sys.argv = [script, *args]
    try:
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("script", ["graph_forward_training.py", "graph_link_prediction.py", "influence_city.py"])
def test_an_example_takes_the_flag_its_data_error_names(script, tmp_path, monkeypatch, capsys):
    """Cora not found: the error said "let PyG download them: --download", and the script answered
    "unrecognized arguments: --download" (offline, --download fails in one line: PyG could not download ...)."""
    monkeypatch.setenv("FWDLEARN_DATA_DIR", str(tmp_path))  # (a data folder without Planetoid/)
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "cache"))
    code, _, err = _run_in_process(script, ["cora"], capsys)
    assert code == 2 and "--download" in err.splitlines()[-1], err
    code, out, _ = _run_in_process(script, ["--help"], capsys)
    assert code == 0 and "--download" in out, out


@pytest.mark.parametrize("script, graph, expected", [
    ("graph_link_prediction.py", "sbm:40", "test ROC-AUC"),  # (fit splits the edges; sbm has no node split)
    ("influence_city.py", "sbm:40", "GCN 8 layers: test accuracy"),
    ("influence_city.py", "karate", "GCN 8 layers: test accuracy"),  # (no feature_names: an AttributeError)
])
def test_an_example_runs_on_a_graph_without_a_public_split_or_feature_names(script, graph, expected, capsys,
                                                                            one_torch_thread):
    """"sbm has no public split; use split='random'" (which the script cannot be told), and karate, one of the graphs
    its own unknown-name error offered, ended in a traceback."""
    code, out, err = _run_in_process(script, [graph], capsys)
    assert code == 0, err[-2000:]
    assert expected in out, out
