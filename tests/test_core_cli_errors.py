"""Bad input on the command line: exit status 2, one line on stderr naming the problem, no traceback, and no
file written. Every case fails before any training (tiny settings keep the few that load data fast)."""

import os
import random
import subprocess
import sys

import pytest
import torch

from fwdlearn.cli import main
from fwdlearn.errors import UsageError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXT = "a stitch in time saves nine, and a rolling stone gathers no moss.\n" * 30
OTHER_TEXT = "no moss gathers a rolling stone, and nine saves time in a stitch.\n" * 30  # same characters


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Input files every case may name: a corpus, broken files, and a real checkpoint of a tiny run."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "corpus.txt").write_text(TEXT)
    (folder / "other.txt").write_text(OTHER_TEXT)
    (folder / "empty.txt").write_text("")
    (folder / "binaryfree.txt").write_text("0123456789 " * 400)  # another vocabulary than corpus.txt
    (folder / "binary.txt").write_bytes(bytes(range(128, 256)) * 64)
    # fixed bytes on which torch.load's unpickler raises a ValueError ("could not convert string to int"): random
    # ones failed one run in several with that message instead of the file's name
    (folder / "random.pt").write_bytes(random.Random(159).randbytes(4096))
    (folder / "afile").write_text("a file, not a folder")
    (folder / "existing.json").write_text("{}")
    (folder / "adir").mkdir()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["seq", "train", "--data", "corpus.txt", "--layers", "1", "--hidden", "8", "--context", "8",
                     "--batch-size", "2", "--steps", "4", "--eval-every", "2", "--sample", "0", "--quiet",
                     "--name", "tiny"]) == 0
    finally:
        os.chdir(cwd)
    checkpoint = (folder / "runs" / "tiny.pt").read_bytes()
    (folder / "tiny.pt").write_bytes(checkpoint)
    (folder / "truncated.pt").write_bytes(checkpoint[: len(checkpoint) // 2])
    torch.save({"weights": torch.zeros(3)}, folder / "not-a-checkpoint.pt")
    return folder


SEQ = ["seq", "train", "--data", "corpus.txt", "--layers", "1", "--hidden", "8", "--context", "8", "--batch-size", "2",
       "--steps", "4", "--eval-every", "2", "--sample", "0", "--quiet"]
RESUME = [*SEQ, "--checkpoint", "tiny.pt", "--json", "resumed.json", "--resume"]
INF_SEQ = ["influence", "seq", "--models", "gru", "--length", "8", "--max-lag", "4", "--positions", "2", "--quiet"]
INF_CHECKPOINTS = [w for w in INF_SEQ if w not in ("--models", "gru")]  # (--checkpoints instead of --models)
INF_GRAPH = ["influence", "graph", "--data", "karate", "--layers", "2", "--samples", "4", "--quiet"]
GRAPH = ["graph", "train", "--data", "karate", "--layers", "2", "--hidden", "8", "--epochs", "2", "--quiet"]
BENCH_GRAPH = ["bench", "graph", "--data", "karate", "--splits", "1", "--epochs", "2", "--hidden", "8", "--quiet"]
BENCH_SEQ = ["bench", "seq", "--data", "corpus.txt", "--quiet"]
BENCH_INF = ["bench", "influence", "--data", "karate", "--quiet"]

#: (id, arguments, what the one line must say)
CASES = [
    # value ranges of seq train
    ("layers-0", [*SEQ, "--layers", "0"], "--layers must be >= 1, got 0"),
    ("hidden-negative", [*SEQ, "--hidden", "-4"], "--hidden must be >= 1, got -4"),
    ("context-0", [*SEQ, "--context", "0"], "--context must be >= 1, got 0"),
    ("lr-negative", [*SEQ, "--lr", "-1"], "--lr must be > 0, got -1.0"),
    ("lr-nan", [*SEQ, "--lr", "nan"], "--lr must be a finite number, got nan"),
    ("lr-inf", [*SEQ, "--lr", "inf"], "--lr must be a finite number, got inf"),
    ("clip-negative", [*SEQ, "--clip", "-1"], "--clip must be >= 0, got -1.0"),
    ("limit-negative", [*SEQ, "--limit", "-5"], "--limit must be >= 0, got -5"),
    ("steps-0", [*SEQ, "--steps", "0"], "--steps must be >= 1, got 0"),
    ("batch-0", [*SEQ, "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    ("eval-every-0", [*SEQ, "--eval-every", "0"], "--eval-every must be >= 1, got 0"),
    ("sample-negative", [*SEQ, "--sample", "-1"], "--sample must be >= 0, got -1"),
    ("threads-negative", [*SEQ, "--threads", "-2"], "--threads must be >= 0, got -2"),
    ("diverge-factor-1", [*SEQ, "--diverge-factor", "1"], "--diverge-factor must be > 1, got 1.0"),
    # words the parser refuses
    ("layers-not-a-number", [*SEQ, "--layers", "x"], "argument --layers: invalid int value: 'x'"),
    # (an abbreviation meant one flag today and would mean another, or none, once a flag is added)
    ("abbreviated-flag", [*SEQ, "--lay", "2"], "unrecognized arguments: --lay 2"),
    # (a fresh run name's checkpoint can never exist)
    ("resume-without-name", [*SEQ, "--resume"], "--resume needs a checkpoint: pass the --name (or --checkpoint) of "
                                                "the run to continue"),
    ("unknown-model", [*SEQ, "--model", "rnn"], "argument --model: invalid choice: 'rnn'"),
    ("unknown-flag", [*SEQ, "--hiden", "8"],  # the command's --help lists its flags (the top level's does not)
     "fwdlearn seq train: error: unrecognized arguments: --hiden 8; --hiden: did you mean --hidden? (see fwdlearn seq "
     "train --help)"),
    ("unknown-flag-far-from-any", [*SEQ, "--bogus"],
     "fwdlearn seq train: error: unrecognized arguments: --bogus (see fwdlearn seq train --help)"),
    # another command's flags: named as this command calls them (they were only "unrecognized")
    ("graph-flags-to-seq-train", [*SEQ, "--method", "dsf", "--epochs", "3"],
     "unrecognized arguments: --method dsf --epochs 3; for --method use --training; for --epochs use --steps (see"),
    ("seq-flags-to-graph-train", [*GRAPH, "--training", "sf", "--steps=3"],
     "unrecognized arguments: --training sf --steps=3; for --training use --method; for --steps use --epochs (see"),
    ("checkpoint-to-seq-sample", ["seq", "sample", "--checkpoint", "tiny.pt"],
     "unrecognized arguments: --checkpoint tiny.pt; for --checkpoint use --model (see"),
    ("model-to-influence-seq", ["influence", "seq", "--model", "tiny.pt"],
     "unrecognized arguments: --model tiny.pt; for --model use --checkpoints or --models (see"),
    ("unknown-rule", [*SEQ, "--training", "rtrl"], "unknown rule 'rtrl'"),
    # devices
    ("device-missing-cuda", [*SEQ, "--device", "cuda:99"], "--device cuda:99: this machine has"),
    ("device-unknown", [*SEQ, "--device", "tpu"], "--device 'tpu' is not a device; use cpu, cuda, cuda:N, mps or auto"),
    ("device-meta", [*SEQ, "--device", "meta"], "--device meta: fwdlearn runs on cpu, cuda or mps"),
    # input files
    ("corpus-missing", [*SEQ, "--data", "missing.txt"], "unknown corpus 'missing.txt'"),
    ("corpus-binary", [*SEQ, "--data", "binary.txt"],
     "binary.txt is not UTF-8 text (invalid start byte at byte 0); a corpus must be"),
    ("corpus-empty", [*SEQ, "--data", "empty.txt"], "empty.txt is empty; a corpus needs text"),
    ("split-missing", [*SEQ, "--train-split", "test"],
     "--train-split test: corpus 'corpus.txt' has no 'test' split (it has train, validation); pass --train-split train"),
    ("context-too-long", [*SEQ, "--context", "10000"], "context 10000 is longer than the train split"),
    # output paths
    ("record-parent-is-a-file", [*SEQ, "--json", "afile/run.json"], "afile is a file, not a folder"),
    ("record-is-a-folder", [*SEQ, "--json", "adir"], "cannot write adir (--json): it is a folder"),
    ("record-exists", [*SEQ, "--json", "existing.json"], "existing.json already exists; choose another output path "
                                                          "or pass --overwrite"),
    ("record-is-checkpoint", [*SEQ, "--json", "same.pt", "--checkpoint", "same.pt", "--overwrite"],
     "--json and --checkpoint both name same.pt"),
    ("checkpoint-exists", [*SEQ, "--checkpoint", "tiny.pt", "--json", "fresh.json"],
     "checkpoint tiny.pt already exists; pass --resume to continue that run"),
    # resuming
    ("resume-nothing", [*SEQ, "--name", "never-ran", "--resume"],
     "--resume was given but the checkpoint runs/never-ran.pt does not exist"),
    ("resume-truncated", [*SEQ, "--checkpoint", "truncated.pt", "--json", "r.json", "--resume"],
     "cannot read truncated.pt as a fwdlearn checkpoint"),
    ("resume-random-bytes", [*SEQ, "--checkpoint", "random.pt", "--json", "r.json", "--resume"],
     "cannot read random.pt as a fwdlearn checkpoint"),
    ("resume-not-a-checkpoint", [*SEQ, "--checkpoint", "not-a-checkpoint.pt", "--json", "r.json", "--resume"],
     "not-a-checkpoint.pt is not a training checkpoint"),
    # a run's record (runs/<name>.json) for its checkpoint (runs/<name>.pt): it was "not a torch file (Unsupported
    # operand 123); it may have been cut short or is another kind of file"
    ("resume-run-record", [*SEQ, "--checkpoint", "runs/tiny.json", "--json", "r.json", "--resume"],
     "runs/tiny.json is a run record (JSON, job seq-train), not a torch file; the checkpoint that run wrote is "
     "runs/tiny.pt"),
    ("sample-run-record", ["seq", "sample", "--model", "runs/tiny.json"],
     "runs/tiny.json is a run record (JSON, job seq-train), not a torch file; the checkpoint that run wrote is "
     "runs/tiny.pt"),
    ("influence-run-record", [*INF_SEQ[:2], "--checkpoints", "runs/tiny.json", "--quiet"],
     "runs/tiny.json is a run record (JSON, job seq-train), not a torch file; the checkpoint that run wrote is "
     "runs/tiny.pt"),
    # (in the flags' words, the fix the flags to add: it said "model.hidden 8 (checkpoint) vs 12 (now)", "batch_size
    # 2 (checkpoint) vs 3 (now)", the fingerprint's names, and "resume with the settings and data it was made with")
    ("resume-other-model", [*RESUME, "--hidden", "12"],
     "--hidden 8 (checkpoint) vs 12 (now). Resume with --hidden 8, or start a new run"),
    ("resume-other-rule", [*RESUME, "--training", "bptt"],
     "--training dsf (checkpoint) vs bptt (now). Resume with --training dsf, or start a new run"),
    ("resume-other-corpus", [*RESUME, "--data", "other.txt", "--steps", "6"], "corpus '1,782 + 198 tokens #"),
    ("resume-other-batch", [*RESUME, "--batch-size", "3", "--steps", "6"],
     "--batch-size 2 (checkpoint) vs 3 (now). Resume with --batch-size 2, or start a new run"),
    ("resume-other-context", [*RESUME, "--context", "6", "--steps", "6"],
     "--context 8 (checkpoint) vs 6 (now). Resume with --context 8, or start a new run"),
    ("resume-other-norm", [*RESUME, "--no-norm"], "--norm (checkpoint) vs --no-norm (now). Resume with --norm"),
    ("resume-other-cell", [*RESUME, "--model", "lstm"],
     "--model gru (checkpoint) vs lstm (now). Resume with --model gru"),
    ("resume-fewer-steps", [*RESUME, "--steps", "3"], "is at step 4, beyond the step budget 3"),
    # influence seq
    ("influence-seq-length-0", [*INF_SEQ, "--length", "0"], "--length must be >= 1, got 0"),
    ("influence-seq-lag-negative", [*INF_SEQ, "--max-lag", "-1"], "--max-lag must be >= 0, got -1"),
    ("influence-seq-positions-0", [*INF_SEQ, "--positions", "0"], "--positions must be >= 1, got 0"),
    ("influence-seq-missing-checkpoint", [*INF_CHECKPOINTS, "--checkpoints", "nothere.pt"],
     "--checkpoints nothere.pt: no such file"),
    ("influence-seq-random-checkpoint", [*INF_CHECKPOINTS, "--checkpoints", "random.pt"],
     "cannot read random.pt as a language model"),
    ("influence-seq-plot-format", [*INF_SEQ, "--plot", "curves.xyz"], "matplotlib cannot write the format .xyz"),
    ("influence-seq-plot-is-record", [*INF_SEQ, "--plot", "same.png", "--json", "same.png"],
     "--json and --plot both name same.png"),
    ("influence-seq-other-vocab", [*INF_CHECKPOINTS, "--checkpoints", "tiny.pt", "--data", "binaryfree.txt"],
     "tiny.pt was trained with another vocabulary"),
    # influence graph
    ("influence-graph-layers-0", [*INF_GRAPH, "--layers", "0"], "--layers must be >= 1, got 0"),
    ("influence-graph-samples-0", [*INF_GRAPH, "--samples", "0"], "--samples must be >= 1, got 0"),
    # (gat's heads split --hidden: refused once its model was built, after gcn was trained and measured, as hidden=28)
    ("influence-graph-gat-width", [*INF_GRAPH, "--models", "gcn", "gat", "--hidden", "30", "--epochs", "2"],
     "gat concatenates 4 heads, so its width must be a multiple of 4; got 30 (choose e.g. --hidden 28)"),
    ("graph-gat-width", [*GRAPH, "--conv", "gat", "--hidden", "6"], "got 6 (choose e.g. --hidden 4)"),
    ("bench-graph-gat-width", [*BENCH_GRAPH, "--conv", "gat", "--hidden", "6"], "got 6 (choose e.g. --hidden 4)"),
    # (a load refuses in Python's words: "use split='random'"; the command's own flags are said as flags)
    ("graph-no-public-split", [*GRAPH, "--data", "sbm:60", "--split", "public"],
     "sbm:60 has no public split; use --split random (64/16/20 drawn from seed)"),
    ("influence-graph-unknown-graph", [*INF_GRAPH, "--data", "nosuchgraph"], "unknown graph 'nosuchgraph'"),
    ("influence-graph-plot-format", [*INF_GRAPH, "--plot", "curves.txt"], "matplotlib cannot write the format .txt"),
    ("influence-graph-lr-0", [*INF_GRAPH, "--lr", "0"], "--lr must be > 0, got 0.0"),
    # graph train
    ("graph-splits-0", [*GRAPH, "--splits", "0"], "--splits must be >= 1, got 0"),
    ("graph-epochs-0", [*GRAPH, "--epochs", "0"], "--epochs must be >= 1, got 0"),
    ("graph-weight-decay-negative", [*GRAPH, "--weight-decay", "-1"], "--weight-decay must be >= 0, got -1.0"),
    ("graph-patience-negative", [*GRAPH, "--patience", "-1"], "--patience must be >= 0, got -1"),
    ("graph-unknown-method", [*GRAPH, "--method", "nosuch"], "--method 'nosuch' is not a node method"),
    ("graph-node-method-for-links", [*GRAPH, "--task", "link", "--method", "sf"], "--method 'sf' is not a link method"),
    ("graph-resume-nothing", [*GRAPH, "--name", "never-ran", "--resume"], "runs/never-ran.pt does not exist"),
    ("graph-unknown-conv", [*GRAPH, "--conv", "gin"], "argument --conv: invalid choice: 'gin'"),
    # benches
    ("bench-graph-depth-0", [*BENCH_GRAPH, "--depths", "0", "2"], "--depths must be >= 1, got 0"),
    ("bench-graph-unknown-method", [*BENCH_GRAPH, "--methods", "bp", "xx"], "--methods: unknown graph method 'xx'; choose one of sf, "),
    ("bench-seq-context-0", [*BENCH_SEQ, "--cost-contexts", "0"], "--cost-contexts must be >= 1, got 0"),
    ("bench-seq-unknown-rule", [*BENCH_SEQ, "--quality-modes", "bptt", "nope"], "unknown rule 'nope'"),
    ("bench-seq-unknown-split", [*BENCH_SEQ, "--train-split", "nosuch"], "has no 'nosuch' split"),
    ("bench-seq-align-context-too-long", [*BENCH_SEQ, "--skip", "cost", "quality", "recall", "--align-context",
                                          "10000000"], "--align-context 10000000 needs a validation split of at least"),
    ("bench-seq-skip-everything", [*BENCH_SEQ, "--skip", "cost", "quality", "alignment", "recall"],
     "--skip names every part (cost, quality, alignment, recall); nothing would run"),
    ("bench-influence-samples-0", [*BENCH_INF, "--samples", "0"], "--samples must be >= 1, got 0"),
    ("bench-influence-unknown-graph", [*BENCH_INF, "--graphs", "synthetic-city:200", "nosuch"], "--graphs: unknown graph 'nosuch'"),
    ("bench-influence-unknown-data", ["bench", "influence", "--data", "nosuch", "--quiet"], "--data: unknown graph 'nosuch'"),
    ("bench-influence-unknown-method", [*BENCH_INF, "--forward-method", "nope"], "--forward-method: unknown graph method 'nope'"),
    ("bench-out-parent-is-a-file", [*BENCH_INF, "--out", "afile/results"], "afile is a file, not a folder"),
    ("bench-graph-repeated-method", [*BENCH_GRAPH, "--methods", "sf", "bp", "sf"],
     "--methods names 'sf' more than once; give each once"),
    ("bench-dfa-steps-0", ["bench", "dfa", "--steps", "0", "--quiet"], "--steps must be >= 1, got 0"),
    ("bench-dfa-cost-repeats-0", ["bench", "dfa", "--cost-repeats", "0", "--quiet"], "--cost-repeats must be >= 1, got 0"),
    ("bench-dfa-rnn-steps-negative", ["bench", "dfa", "--rnn-steps", "-3", "--quiet"], "--rnn-steps must be >= 0, got -3"),
    # finite in Python, past float32: torch's raw error at the first Adam step, or NaN losses blamed on the training
    ("seq-lr-past-float32", [*SEQ, "--lr", "1e39"], "--lr 1e+39 is larger than any float32 number"),
    ("seq-weight-decay-past-float32", [*SEQ, "--weight-decay", "1e39"], "--weight-decay 1e+39 is larger than any"),
    ("graph-lr-below-float32", [*GRAPH, "--lr", "1e-46"], "--lr 1e-46 is smaller than the smallest normal float32"),
    ("bench-graph-ff-lr-past-float32", [*BENCH_GRAPH, "--methods", "bp", "ff-la", "--ff-lr", "1e39"],
     "--ff-lr 1e+39 is larger than any float32 number"),  # (it was reported as 'lr')
    # sizes that hung or ran out of memory before any work
    ("graph-splits-huge", [*GRAPH, "--splits", str(10**12)], "--splits must be <= 1000, got 1000000000000"),
    ("seq-sample-huge", [*SEQ, "--sample", str(10**12)], "--sample must be <= 1000000, got 1000000000000"),
    ("threads-huge", [*GRAPH, "--threads", "100000"], "--threads must be <= 1024, got 100000"),
    ("seq-empty-data", [*SEQ, "--data", ""], "no corpus given (''): pass a known name"),
    ("name-blank", [*GRAPH, "--name", " "], "--name ' ': a run name (and each folder in it) must not be blank"),
    ("name-part-spaced", [*GRAPH, "--name", "sweep/ lr3"], "must not be blank or begin or end with a space"),
    ("bench-out-blank", [*BENCH_INF, "--out", " "], "--out ' ': a results prefix (and each folder in it) must not be"),
    ("bench-record-in-a-file-names-out", [*BENCH_INF, "--out", "afile/x"], "cannot write afile/x-record.json (--out)"),
]


@pytest.mark.parametrize("args,message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_and_exit_2(args, message, inputs, monkeypatch, capsys):
    monkeypatch.chdir(inputs)
    before = {p for p in inputs.rglob("*")}
    try:
        status = main(args)
    except SystemExit as exit:  # the parser's errors exit through SystemExit
        status = exit.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1, err
    assert message in lines[0]
    assert "Traceback" not in err
    assert {p for p in inputs.rglob("*")} == before  # nothing written, not even an empty runs/ folder


def test_an_allocation_too_large_is_one_line_naming_the_size_flags(inputs, monkeypatch, capsys):
    """graph train --hidden 10**12 printed torch's allocator traceback (exit 1)."""
    monkeypatch.chdir(inputs)
    assert main([*GRAPH, "--hidden", str(10**12)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fwdlearn: error: out of memory (") and "lower them (e.g. --hidden" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_the_table_covers_at_least_forty_inputs():
    assert len(CASES) >= 40 and len({case[0] for case in CASES}) == len(CASES)


def test_a_read_only_record_folder_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root writes into read-only folders; a folder of a read-only file system stands in for one
        target = "/sys/fwdlearn-test/run.json"
    else:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        target = str(folder / "run.json")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text(TEXT)
    assert main([*SEQ, "--json", target]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fwdlearn: error: cannot write {target} (--json):") and "is not writable" in err
    assert not (tmp_path / "runs").exists()


def test_debug_shows_the_traceback(inputs, monkeypatch):
    monkeypatch.chdir(inputs)
    with pytest.raises(UsageError, match="--layers must be >= 1"):
        main([*SEQ, "--layers", "0", "--debug"])
    monkeypatch.setenv("FWDLEARN_DEBUG", "1")
    with pytest.raises(UsageError, match="--hidden must be >= 1"):
        main([*SEQ, "--hidden", "0"])


def test_every_command_bounds_threads():
    """The sequence benches declare their own --threads (default 1) and had no bound: --threads 100000 crashed the
    process in torch's thread pool, 5000 ran a 5 s bench dfa in 39 s; every command refuses more than 1024."""
    from fwdlearn.cli.quickstart import QuickstartConfig
    from fwdlearn.graphs.cli.bench import BenchGraphConfig
    from fwdlearn.graphs.cli.influence import BenchInfluenceConfig, InfluenceGraphConfig
    from fwdlearn.graphs.cli.train import GraphTrainConfig
    from fwdlearn.sequences.cli.bench import SeqBenchConfig
    from fwdlearn.sequences.cli.bench_dfa import DfaBenchConfig
    from fwdlearn.sequences.cli.influence import InfluenceSeqConfig
    from fwdlearn.sequences.cli.sample import SampleSeqConfig
    from fwdlearn.sequences.cli.train import TrainSeqConfig

    for config in (QuickstartConfig, GraphTrainConfig, TrainSeqConfig, SampleSeqConfig, InfluenceGraphConfig,
                   InfluenceSeqConfig, BenchGraphConfig, SeqBenchConfig, DfaBenchConfig, BenchInfluenceConfig):
        with pytest.raises(UsageError, match="--threads must be <= 1024, got 5000"):
            config(threads=5000)
        config(threads=1024)


def test_no_debug_overrides_fwdlearn_debug(inputs, monkeypatch, capsys):
    """--no-debug was ignored where the environment set FWDLEARN_DEBUG=1 (the traceback was shown)."""
    monkeypatch.chdir(inputs)
    monkeypatch.setenv("FWDLEARN_DEBUG", "1")
    assert main([*SEQ, "--hidden", "0", "--no-debug"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "fwdlearn: error: --hidden must be >= 1, got 0"
    monkeypatch.setenv("FWDLEARN_DEBUG", "0")
    with pytest.raises(UsageError, match="--hidden must be >= 1"):
        main([*SEQ, "--hidden", "0", "--debug"])


def test_configs_are_checked_from_python_too():
    from fwdlearn.sequences.cli.train import TrainSeqConfig

    with pytest.raises(UsageError, match="--clip must be >= 0, got -1"):
        TrainSeqConfig(clip=-1)
    from fwdlearn.graphs.cli.bench import BenchGraphConfig
    from fwdlearn.sequences.cli.influence import InfluenceSeqConfig

    for build, message in ((lambda: InfluenceSeqConfig(models="gru"), "--models takes a list of values, got 'gru'"),
                           (lambda: BenchGraphConfig(overwrite="no"), "--overwrite must be true or false, got 'no'"),
                           (lambda: BenchGraphConfig(hidden=2.5), "--hidden must be an int, got 2.5"),
                           (lambda: BenchGraphConfig(data=5), "--data must be a string, got 5"),
                           (lambda: BenchGraphConfig(depths=[]), "--depths needs at least one value")):
        with pytest.raises(UsageError, match=message):  # ("gru" ran g, r, u; "no" was true: outputs replaced)
            build()
    from pathlib import Path

    import numpy as np

    from fwdlearn.graphs.cli.train import GraphTrainConfig

    assert TrainSeqConfig(diverge_factor=1e39).diverge_factor == 1e39  # compared in Python: no float32 bound
    config = GraphTrainConfig(checkpoint=Path("runs/x.pt"), lr=np.float32(0.01), hidden=np.int64(8))  # as Python has
    assert config.lr == pytest.approx(0.01) and str(config.checkpoint) == "runs/x.pt"  # them: still accepted


def test_an_integer_is_one_number_not_a_bool_or_a_longer_tensor():
    """torch's __index__ takes any one-element integer or bool tensor: layers=torch.tensor(True) was 1 layer."""
    import numpy as np
    import torch

    from fwdlearn.errors import check_int, is_integer

    taken = (3, np.int64(3), torch.tensor(3), torch.tensor(3, dtype=torch.uint8))
    refused = (True, np.bool_(True), 3.0, torch.tensor(3.0), torch.tensor([3]), torch.tensor([[3]]),
               torch.tensor(True), "3")
    assert [is_integer(v) for v in taken] == [True] * len(taken)
    assert [is_integer(v) for v in refused] == [False] * len(refused)
    with pytest.raises(ValueError, match=r"layers must be an int >= 1, got tensor\(True\)"):
        check_int("layers", torch.tensor(True), 1)


def test_a_list_flag_given_twice_keeps_every_value():
    """argparse kept the last use only: --models gru --models lstm measured lstm alone."""
    from fwdlearn.cli import build_parser
    from fwdlearn.config import dataclass_from_args
    from fwdlearn.graphs.cli.bench import BenchGraphConfig

    parser = build_parser(load=[("bench", "graph")])
    args = parser.parse_args(["bench", "graph", "--depths", "1", "--depths", "2", "4"])
    assert dataclass_from_args(BenchGraphConfig, args).depths == [1, 2, 4]
    args = parser.parse_args(["bench", "graph"])
    assert dataclass_from_args(BenchGraphConfig, args).depths == BenchGraphConfig().depths  # the default, not None


def test_every_flag_of_every_command_has_a_help_sentence():
    from fwdlearn.cli import ENTRY_POINTS, build_parser

    parser = build_parser()
    seen = 0
    for (group, name) in ENTRY_POINTS:
        words = [group] + ([name] if name else [])
        sub = parser
        for word in words:
            sub = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction").choices[word]
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                text = (action.help or "").split("(default")[0].strip()
                assert len(text) >= 8, f"fwdlearn {' '.join(words)} {action.option_strings[0]} has no help sentence"
                assert (action.help or "").count("(default") <= 1, action.help
                seen += 1
    assert seen > 100


@pytest.mark.parametrize("command", [["seq", "train"], ["graph", "train"], ["influence", "seq"], ["influence", "graph"],
                                     ["bench", "seq"], ["bench", "graph"], ["bench", "influence"]])
def test_every_training_influence_and_bench_command_takes_the_run_options(command):
    out = subprocess.run([sys.executable, "-m", "fwdlearn", *command, "--help"], capture_output=True, text=True,
                         timeout=60)
    for flag in ("--device", "--threads", "--seed", "--quiet", "--name", "--json", "--overwrite", "--debug"):
        assert flag in out.stdout
    assert "run options:" in out.stdout


def test_an_interrupt_without_a_message_says_interrupted(capsys, monkeypatch):
    """Ctrl-C before a run's first step raised a bare KeyboardInterrupt: the line read "fwdlearn: " alone."""
    from fwdlearn.cli import _report

    monkeypatch.delenv("RANK", raising=False)
    _report(KeyboardInterrupt())
    assert capsys.readouterr().err == "fwdlearn: interrupted\n"


def test_a_stray_rank_without_a_launch_of_several_processes_still_reports_errors(monkeypatch, capsys):
    """RANK=1 alone (WORLD_SIZE unset or 1) made the one process act as a non-leading rank: its errors were silenced
    (after a 3 s wait) and its run lock skipped."""
    from fwdlearn.cli import main
    from fwdlearn.runs import launch_rank

    monkeypatch.setenv("RANK", "1")
    for world in (None, "1"):
        if world is None:
            monkeypatch.delenv("WORLD_SIZE", raising=False)
        else:
            monkeypatch.setenv("WORLD_SIZE", world)
        assert launch_rank() == 0
        with pytest.raises(SystemExit) as exit:  # (the parser's errors exit through SystemExit)
            main(["seq", "train", "--bogus"])
        assert exit.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launch_rank() == 1


def test_a_reader_that_stops_reading_ends_the_command_quietly(tmp_path):
    """`fwdlearn ... | head` said "fwdlearn: error: [Errno 32] Broken pipe" (status 2) once the reader was gone, and a
    reader gone before the results table was printed lost the run's record (saved after it); now nothing is said,
    the status is 141 (128 + SIGPIPE) and the record is written."""
    process = subprocess.Popen([sys.executable, "-m", "fwdlearn", "graph", "train", "--data", "karate", "--epochs", "2",
                                "--layers", "1", "--hidden", "4", "--quiet", "--threads", "1",
                                "--json", str(tmp_path / "k.json")], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    process.stdout.close()  # (the reader is gone before the table is printed)
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141, err
    assert err == "" and (tmp_path / "k.json").is_file()


def test_an_allocation_numpy_cannot_make_is_one_line_too(inputs, monkeypatch, capsys):
    """NumPy's MemoryError ("Unable to allocate 7.28 TiB", a road graph or city too large) printed a traceback."""
    import numpy

    import fwdlearn.graphs.data.datasets as datasets

    def huge(*args, **kwargs):
        return numpy.ones(2**40, dtype=numpy.float64)  # (8 TiB: refused at once)

    monkeypatch.setattr(datasets, "load_graph", huge)
    monkeypatch.chdir(inputs)
    assert main([*GRAPH]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fwdlearn: error: out of memory (Unable to allocate") and "lower them" in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_python_meant_as_python_is_not_said_as_a_flag(tmp_path, monkeypatch, capsys):
    """The error boundary said every `name=value` of a command's flags as the flag, also inside a Python call and
    beside the flag itself: 'save(path, --vocab corpus.vocab)', '--download (--download in Python)'."""
    from fwdlearn.config import as_flags
    from fwdlearn.sequences.nn.language_model import make_language_model

    assert as_flags("use split='random' (64/16/20)", ["split"]) == "use --split random (64/16/20)"
    assert as_flags("choose e.g. hidden=28", ["hidden"]) == "choose e.g. --hidden 28"
    assert as_flags("save it (save(path, vocab=corpus.vocab)) or ...", ["vocab"]) == \
        "save it (save(path, vocab=corpus.vocab)) or ..."
    assert as_flags("pass --download (download=True in Python)", ["download"]) == \
        "pass --download (download=True in Python)"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text(TEXT)
    make_language_model("gru", 5, hidden=8, layers=1).save(tmp_path / "novocab.pt")
    assert main(["influence", "seq", "--checkpoints", "novocab.pt", "--data", "corpus.txt", "--length", "8",
                 "--max-lag", "4", "--positions", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "(save(path, vocab=corpus.vocab))" in err and "--vocab corpus" not in err, err


def test_a_switch_in_a_message_is_said_as_its_flag():
    """`tie=False` in an API message is the flag `--no-tie` on the command line (`--notie` is no flag), `tie=True`
    is `--tie`."""
    from fwdlearn.config import as_flags

    assert as_flags("resume with tie=False", ["tie"]) == "resume with --no-tie"
    assert as_flags("resume with tie=True", ["tie"]) == "resume with --tie"
    assert as_flags("use eval_every=5", ["eval_every"]) == "use --eval-every 5"


def test_fwdlearn_debug_0_keeps_the_one_line_error(inputs, monkeypatch, capsys):
    """FWDLEARN_DEBUG=0 is off (as unset): the error is one line and status 2, no traceback."""
    monkeypatch.chdir(inputs)
    monkeypatch.setenv("FWDLEARN_DEBUG", "0")
    assert main([*SEQ, "--hidden", "0"]) == 2
    assert capsys.readouterr().err.strip() == "fwdlearn: error: --hidden must be >= 1, got 0"


def test_sigterm_stops_a_command_in_one_line_with_status_143(inputs, monkeypatch, capsys):
    """SIGTERM (a scheduler stopping the job) ends the command as Ctrl-C does, with its own status, 143."""
    import signal
    import time

    import fwdlearn.graphs.data.datasets as datasets

    def stopped(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # (the handler raises at once)

    monkeypatch.setattr(datasets, "load_graph", stopped)
    monkeypatch.chdir(inputs)
    assert main([*GRAPH]) == 143
    err = capsys.readouterr().err.strip()
    assert err.startswith("fwdlearn: terminated (SIGTERM)") and len(err.splitlines()) == 1, err


def test_main_from_python_leaves_the_command_line_as_it_was(inputs, monkeypatch):
    """main([...]) says its own arguments for the records made while it runs, and only then: a record made in Python
    after it said the command that had run before."""
    from fwdlearn.invocation import invoked_as, invoked_command

    monkeypatch.chdir(inputs)
    before = invoked_command()
    assert main([*SEQ, "--hidden", "0"]) == 2
    assert invoked_command() == before
    with invoked_as(["graph", "train"]):
        assert invoked_command() == "fwdlearn graph train"
    assert invoked_command() == before
