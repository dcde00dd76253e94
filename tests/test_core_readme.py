"""The README works as written: its test command is the one CI runs, and every command and snippet in
its code blocks runs (in README order, in one fresh folder, as a user would) with tiny budgets. Every command
docs/*.md and the generated benchmark files print parses with today's flags, and docs/benchmarks.md's Reproduce
block has the command of every generated file there."""

import json
import os
import re
import shlex
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DATA_NAMES = ("cora", "tinyshakespeare", "city:roads/", "wikitext-2")
# ``--threads 1`` sets torch's thread count for the process: restored after each test
pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    if job == ("seq", "sample"):
        return [*words, *run, "--length", "8"]
    if job == ("influence", "seq"):
        return [*words, *run, "--length", "16", "--max-lag", "4", "--positions", "2", "--batch", "2"]
    if job == ("influence", "graph"):
        return [*words, *run, "--data", "synthetic-city:300", "--epochs", "2", "--samples", "4", "--hidden", "8"]
    if job == ("bench", "seq"):
        return [*words, *run, "--cost-contexts", "8", "--cost-hidden", "8", "--cost-repeats", "1"]
    raise AssertionError(f"no tiny budget for README command 'fwdlearn {' '.join(words)}': add one to this test")


def _needs_data(text: str) -> bool:
    return any(name in text for name in DATA_NAMES)


def _model_files(words: list[str]) -> list[str]:
    """The model files a command reads: ``seq sample``'s ``--model``, the ``--checkpoints`` of ``influence seq``."""
    files = [words[words.index("--model") + 1]] if words[:2] == ["seq", "sample"] and "--model" in words else []
    for word in words[words.index("--checkpoints") + 1:] if "--checkpoints" in words else []:
        if word.startswith("-"):
            break
        files.append(word)
    return files


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


FWDLEARN_COMMANDS = [c for c in _commands() if c.startswith("fwdlearn ")]


def _files(folder: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in (folder / "runs").rglob("*") if p.is_file()}


@pytest.mark.parametrize(  # README order: a later command reads what an earlier one wrote
    "command", FWDLEARN_COMMANDS,
    ids=[f"{i + 1:02d} {' '.join(c.split()[1:]).replace('/', '|')}" for i, c in enumerate(FWDLEARN_COMMANDS)])
def test_readme_command_runs_with_a_tiny_budget(command, folder, capsys):
    from fwdlearn.cli import main

    if _needs_data(command) and not os.environ.get("FWDLEARN_DATA_DIR"):
        pytest.skip("this README command reads real data: set FWDLEARN_DATA_DIR to the data folder")
    words = shlex.split(command)[1:]
    for checkpoint in _model_files(words):
        if not (folder / checkpoint).is_file() and not os.environ.get("FWDLEARN_DATA_DIR"):  # (seq sample --model
            # runs/dsf.pt failed where FWDLEARN_DATA_DIR is unset: the seq train above that writes it was skipped)
            pytest.skip(f"this README command reads {checkpoint}, which a README command above trains on real data: "
                        "set FWDLEARN_DATA_DIR to the data folder")
        assert (folder / checkpoint).is_file(), f"{checkpoint} is read before any README command above wrote it"
    before = _files(folder)
    assert main(_tiny(words)) == 0, capsys.readouterr().err

    written = [path for path, stamp in _files(folder).items() if before.get(path) != stamp]
    if words[:2] == ["seq", "sample"]:  # text on stdout, no file written
        assert written == [] and capsys.readouterr().out.strip()
        return
    records = [json.loads(p.read_text()) for p in written if p.suffix == ".json"]
    records = [r for r in records if isinstance(r, dict) and "job" in r]
    assert records, f"no run record written under runs/ (new files: {written})"
    for record in records:  # every file a record names exists (checkpoints, plots, bench tables)
        for path in record.get("files", {}).values():
            assert (folder / path).is_file(), f"{record['job']} names {path}, which is missing"
    if "--name" in words:
        name = words[words.index("--name") + 1]
        if words[0] == "quickstart":  # the report folder
            assert (folder / "runs" / name / "report.md").is_file()
        else:  # the run record and, for training, the checkpoint (see the Command line section)
            record = json.loads((folder / "runs" / f"{name}.json").read_text())
            if words[1] == "train":
                assert (folder / "runs" / f"{name}.pt").is_file()
            if "--resume" in words:  # continued from the earlier run of the same name, to the new total
                tiny = _tiny(words)
                steps = int(tiny[len(tiny) - 1 - tiny[::-1].index("--steps") + 1])
                assert record["summary"]["steps"] == steps
                assert 0 < record["summary"]["resumed"]["from_step"] < steps
    if "--plot" in words:
        assert (folder / words[words.index("--plot") + 1]).stat().st_size > 1000


def _tiny_python(source: str) -> str:
    for name, small in (("steps", 2), ("epochs", 2), ("samples", 4), ("hidden", 16), ("align_every", 1)):
        source = re.sub(rf"\b{name}\s*=\s*\d+", f"{name}={small}", source)
    # a budget written another way (steps = n_steps, a new budget keyword) would run at full size: refuse it
    large = re.findall(r"\b(?:steps|epochs|samples|hidden|iterations|max_steps)\s*=\s*[^,)\s]+", source)
    assert all(re.fullmatch(r"\w+=\d{1,2}", budget) for budget in large), large
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
    for match in re.findall(r'checkpoint="([^"]+)"', "".join(blocks)):  # relative: under the fresh folder
        assert (tmp_path / match).is_file(), match
    from fwdlearn.graphs import ForwardGNN  # the saved model reads back as the one that wrote it

    loaded = ForwardGNN.load(tmp_path / "runs" / "sf-api.pt")
    assert loaded.rule == namespace["model"].rule
    assert torch.equal(loaded(namespace["data"].x, namespace["data"].edge_index), namespace["scores"])
    from fwdlearn.graphs import load_graph  # the "Your own graph" file reads back with its masks, as file:<path>

    own, saved = namespace["graph"], load_graph("file:my_graph.pt", split="public")
    assert all(torch.equal(saved[key], own[key]) for key in ("x", "edge_index", "y", "train_mask", "test_mask"))


DOCS = ROOT / "docs"


def _results_table(text: str, heading: str) -> list[str]:
    """The rows of the first markdown table under ``heading`` (a ``## `` line), as written."""
    section = re.search(rf"^## {heading}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert section, f"no '## {heading}' section"
    table = re.search(r"^\|.*?(?=\n[^|])", section.group(1), flags=re.S | re.M)
    assert table, f"no table under '## {heading}'"
    return table.group(0).splitlines()


def test_the_readme_results_table_is_the_benchmarks_headline():
    """README's Results table says it is taken from docs/benchmarks.md: it is that page's Headline table, row for row, so a
    figure updated on one page is updated on the other (the two had drifted apart in three rows' settings)."""
    readme = _results_table(README, "Results")
    headline = _results_table((DOCS / "benchmarks.md").read_text(), "Headline")
    assert len(readme) >= 10
    assert [row for row in readme if row not in headline] == [], "README rows that docs/benchmarks.md does not have"
    assert [row for row in headline if row not in readme] == [], "docs/benchmarks.md headline rows the README lacks"
    assert readme == headline, "the README's rows are in another order than docs/benchmarks.md's"


def _printed_commands() -> list[tuple[str, str]]:
    """``(file:line, command)`` for every ``fwdlearn ...`` command of docs/*.md (code spans, bash blocks) and of the
    generated files' ``Command:`` lines under docs/benchmarks/ (continuation lines joined, comments dropped)."""
    found = []
    for path in sorted([*DOCS.glob("*.md"), *DOCS.glob("benchmarks/*.md")]):
        text = path.read_text()
        for block in re.finditer(r"```bash\n(.*?)```", text, flags=re.S):
            first = text[:block.start()].count("\n") + 2
            for i, line in enumerate(block.group(1).replace("\\\n", " ").splitlines()):
                line = re.sub(r"\s#.*$", "", line).strip()
                if line.startswith("fwdlearn "):
                    found.append((f"{path.relative_to(ROOT)}:{first + i}", line))
        for span in re.finditer(r"`(fwdlearn [^`]*)`", text):
            command = " ".join(span.group(1).split())
            if "..." not in command and "<" not in command.replace("<record>", ""):  # (not a pattern)
                found.append((f"{path.relative_to(ROOT)}:{text[:span.start()].count(chr(10)) + 1}", command))
    return found


def _config_class(named, args):
    """The config dataclass that the command's module builds from ``args`` (the one whose fields are the parsed
    flags: a RunOptions one, or seq sample's, which writes no file)."""
    import dataclasses
    import importlib

    from fwdlearn.cli import ENTRY_POINTS

    module = importlib.import_module(ENTRY_POINTS[named].target.split(":")[0])
    given = {key for key in vars(args) if key not in ("group", "run", "command_parser", "group_parser")}
    # (``name`` is also where the parser keeps the subcommand's name: a command without --name has it too)
    classes = [c for c in vars(module).values() if isinstance(c, type) and dataclasses.is_dataclass(c)
               and {f.name for f in dataclasses.fields(c)} in (given, given - {"name"})]
    assert len(classes) == 1, (named, classes)
    return classes[0]


def test_every_command_the_docs_print_parses():
    """A renamed or removed flag leaves no command in the docs that stops at its first word (docs/benchmarks.md
    prints the commands its figures came from; the README's are run above)."""
    from fwdlearn.cli import _named_command, build_parser
    from fwdlearn.config import dataclass_from_args

    printed = _printed_commands()
    assert len(printed) >= 30
    for where, command in printed:
        argv = [word.replace("<record>", "record.json") for word in shlex.split(command)[1:]]
        named = _named_command(argv)
        if named is None and set(argv) <= {"--help", "--version"}:
            continue
        assert named is not None, f"{where}: {command!r} names no fwdlearn command"
        try:
            args, unknown = build_parser(load=[named]).parse_known_args(argv)
        except SystemExit:
            raise AssertionError(f"{where}: {command!r} does not parse") from None
        assert not unknown, f"{where}: {command!r}: unknown flags {unknown}"
        dataclass_from_args(_config_class(named, args), args)  # (values in range, names that exist)


def _without_output_flags(command: str) -> tuple[str | None, list[str]]:
    """``(--out value, the other words)`` of a bench command, without ``--quiet`` / ``--overwrite``."""
    words, out, kept = shlex.split(command), None, []
    while words:
        word = words.pop(0)
        if word == "--out":
            out = words.pop(0)
        elif word not in ("--quiet", "--overwrite"):
            kept.append(word)
    return out, kept


def test_the_benchmarks_reproduce_block_writes_every_generated_file():
    """Each generated file under docs/benchmarks/ is written by a command of the Reproduce block, the same as the
    one its ``Command:`` line names (five had none: graph-dfa-300, influence-ranges, seq-recall and the two
    reference-block quality files)."""
    text = (DOCS / "benchmarks.md").read_text()
    block = re.search(r"^## Reproduce\n.*?```bash\n(.*?)```", text, flags=re.S | re.M).group(1)
    reproduce = {}
    for line in block.splitlines():
        if line.startswith("fwdlearn "):
            out, words = _without_output_flags(line)
            assert out is not None and out.startswith("docs/benchmarks/"), line
            reproduce[out.removeprefix("docs/benchmarks/")] = words
    generated = {}
    for path in sorted(DOCS.glob("benchmarks/*.md")):
        match = re.search(r"^Command: `([^`]*)`", path.read_text(), flags=re.M)
        assert match, f"{path.name} names no command"
        generated[path.stem] = _without_output_flags(match.group(1))[1]
    assert sorted(set(generated) - set(reproduce)) == [], "generated files without a Reproduce command"
    assert sorted(set(reproduce) - set(generated)) == [], "Reproduce commands whose file is not in docs/benchmarks/"
    for name, words in generated.items():
        assert reproduce[name] == words, f"{name}: the Reproduce command differs from the one that wrote the file"
