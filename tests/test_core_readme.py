"""The README works as written: its test command is the one CI runs, and every command and snippet in
its code blocks runs (in README order, in one fresh folder, as a user would) with tiny budgets."""

import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DATA_NAMES = ("cora", "tinyshakespeare", "city:roads/", "wikitext-2")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    command = next(line for line in README.splitlines() if line.endswith("python -m pytest"))
    assert command in ci.splitlines(), f"{command!r} from README.md is not a line of .ci/run"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _commands() -> list[str]:
    """Every command of the bash blocks, in order: continuation lines joined, comments dropped, ``&&`` split."""
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.extend(part.strip() for part in line.split("&&"))
    return commands


def _tiny(words: list[str]) -> list[str]:
    """The command's arguments with tiny budgets appended (argparse: the last value of a flag wins)."""
    def value(flag: str, default: int) -> int:
        return int(words[words.index(flag) + 1]) if flag in words else default

    job = tuple(words[:2])
    run = ["--quiet", "--threads", "1"]
    if job[0] == "quickstart":
        return [*words, *run, "--graph", "sbm:300", "--epochs", "3", "--seq-steps", "4", "--samples", "4",
                "--hidden", "8"]
    if job == ("graph", "train"):
        return [*words, *run, "--epochs", "2", "--splits", "1", "--hidden", "8", "--eval-every", "1"]
    if job == ("seq", "train"):  # the step budget keeps its order (a resumed run asks for more than the first)
        steps = max(2, value("--steps", 2000) // 200)
        extra = ["--align-every", "1"] if "--align-every" in words else []
        return [*words, *run, "--steps", str(steps), "--eval-every", "1", "--eval-tokens", "200", "--hidden", "8",
                "--context", "16", "--batch-size", "2", "--sample", "0", *extra]
    if job == ("influence", "seq"):
        return [*words, *run, "--length", "16", "--max-lag", "4", "--positions", "2", "--batch", "2"]
    if job == ("influence", "graph"):
        return [*words, *run, "--data", "synthetic-city:300", "--epochs", "2", "--samples", "4", "--hidden", "8"]
    if job == ("bench", "seq"):
        return [*words, *run, "--cost-contexts", "8", "--cost-hidden", "8", "--cost-repeats", "1"]
    raise AssertionError(f"no tiny budget for README command 'fwdlearn {' '.join(words)}': add one to this test")


def _needs_data(text: str) -> bool:
    return any(name in text for name in DATA_NAMES)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One folder for the whole README, as a user's working directory."""
    path = tmp_path_factory.mktemp("readme")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(path)
        yield path


def test_every_readme_command_is_run_by_this_file():
    others = [c for c in _commands() if not c.startswith("fwdlearn ")]
    # pip cannot run offline and the test command is the one CI runs (test above); nothing else may hide
    assert all(c.startswith('pip install "torch==2.13.0" -e ".[') for c in others if c != "python -m pytest"), others
    assert sum(c == "python -m pytest" for c in others) == 1
    assert len([c for c in _commands() if c.startswith("fwdlearn ")]) >= 10


@pytest.mark.parametrize("command", [c for c in _commands() if c.startswith("fwdlearn ")])
def test_readme_command_runs_with_a_tiny_budget(command, folder, capsys):
    from fwdlearn.cli import main

    if _needs_data(command) and not os.environ.get("FWDLEARN_DATA_DIR"):
        pytest.skip("this README command reads real data: set FWDLEARN_DATA_DIR to the data folder")
    words = shlex.split(command)[1:]
    assert main(_tiny(words)) == 0, capsys.readouterr().err
    if "--name" in words:
        name = words[words.index("--name") + 1]
        assert (folder / "runs" / name).is_dir() or (folder / "runs" / f"{name}.json").exists()
    if "--plot" in words:
        assert (folder / words[words.index("--plot") + 1]).stat().st_size > 1000


def _tiny_python(source: str) -> str:
    for name, small in (("steps", 2), ("epochs", 2), ("samples", 4), ("hidden", 16), ("align_every", 1)):
        source = re.sub(rf"\b{name}=\d+", f"{name}={small}", source)
    return source


def test_readme_python_snippets_run_in_order_with_tiny_budgets(tmp_path, monkeypatch):
    blocks = _blocks("python")
    assert len(blocks) >= 4
    if not os.environ.get("FWDLEARN_DATA_DIR") and any(_needs_data(b) for b in blocks):
        pytest.skip("the README's snippets read Cora, tinyshakespeare and road data: set FWDLEARN_DATA_DIR")
    monkeypatch.chdir(tmp_path)  # the Python API section comes first in the README: a fresh folder
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(_tiny_python(block), f"README.md python block {i + 1}", "exec"), namespace)
    assert namespace["scores"].shape == (namespace["data"].num_nodes, namespace["data"].num_classes)
    assert namespace["tf"].rule.depth.name == "dfa"
