"""``fwdlearn graph train``: a GNN trained by a forward method or by BP, on one or several splits.

::

    fwdlearn graph train --data cora --method sf --conv gcn --layers 4 --splits 5 --name cora-sf
    fwdlearn graph train --data cora --method sf --layers 4 --splits 5 --name cora-sf --resume  # after an interruption
    fwdlearn graph train --data cora --task link --method ce --layers 4
    fwdlearn graph train --data file:my_graph.pt --method sf --layers 4   # a PyG Data, torch.save(data, "my_graph.pt")
    fwdlearn graph train --data file:my_graph.pt --task link             # its x and edge_index: no labels needed

Every split keeps a checkpoint (``runs/<name>.pt``; with ``--splits N`` the later splits'
``runs/<name>-split<i>.pt``), written at every evaluation; ``--resume`` continues each split from
its checkpoint (the splits finished before are only scored again).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.records import RunRecord
from fwdlearn.reporting import describe_resume, markdown_table, mean_std
from fwdlearn.runs import RunOptions

from fwdlearn.graphs.registries import CONV_KINDS, GRAPH_TASKS

__all__ = ["GraphTrainConfig", "train_runs", "train", "check_conv_widths"]


def _method_help() -> str:
    """The --method help, listing each task's methods as the registries hold them when the parser is built (no torch
    is imported)."""
    tasks = [(name, GRAPH_TASKS.get(name)) for name in GRAPH_TASKS]
    methods = "; ".join(f"{name}: {', '.join(task.method_names())} {task.methods_also}".rstrip()
                        for name, task in tasks)
    defaults = ", ".join(f"{task.default_method} for --task {name}" for name, task in tasks)
    return f"{methods} (default: {defaults})"


@dataclass
class GraphTrainConfig(RunOptions):
    data: str = field(default="cora", metadata={"help": "cora, citeseer, pubmed, karate, synthetic-city[:N], "
                                                        "city:<path>, ..., or file:<path>, a graph of your own: a "
                                                        "torch_geometric.data.Data saved with torch.save(data, path) "
                                                        "(x, edge_index, integer y; its masks are used with --split "
                                                        "public; --task link reads x and edge_index only)"})
    task: str = field(default="node", metadata={"help": "node classification or link prediction",
                                                "choices": GRAPH_TASKS.names})
    # (None is "not given": the task's own default, filled in when the config is built; a default of sf refused
    # --task link alone as if the user had typed --method sf)
    method: str | None = field(default=None, metadata={"help": _method_help})
    conv: str = field(default="gcn", metadata={"help": "GNN layer", "choices": CONV_KINDS.names})
    layers: int = field(default=4, metadata={"help": "number of GNN layers", "min": 1})
    hidden: int = field(default=128, metadata={"help": "width of every layer", "min": 1})
    epochs: int = field(default=300, metadata={"help": "epochs per layer (layer-by-layer methods) or in total (bp, "
                                                       "dfa, sf-top2input, sf-top2loss)", "min": 1})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate (the goodness methods ff-* and dfa learn "
                                                      "best at about 1e-2; a new value applies when resuming)",
                                              "gt": 0})
    weight_decay: float = field(default=5e-4, metadata={"help": "Adam weight decay", "min": 0})
    patience: int = field(default=100, metadata={"help": "early-stopping patience in evaluations (0 = none)",
                                                 "min": 0})
    eval_every: int = field(default=1, metadata={"help": "epochs between validation passes and checkpoints",
                                                 "min": 1})
    split: str = field(default="random", metadata={"help": "node split: the data set's own (a file:<path> graph's "
                                                           "masks) or random 64/16/20 drawn from the seed",
                                                   "choices": ["public", "random"]})
    splits: int = field(default=1, metadata={"help": "random splits (seeds seed..seed+splits-1); mean ± std (a "
                                                     "generated graph, sbm or synthetic-city, is drawn once, from "
                                                     "--seed)",
                                             "min": 1, "max": 1000})  # (10**12 built as many paths before any work)
    download: bool = field(default=False, metadata={"help": "let PyG download data sets that are not local"})
    checkpoint: str = field(default="", metadata={"help": "checkpoint file (default: runs/<name>.pt, or next to "
                                                          "--json); the later splits add -split<i>"})
    resume: bool = field(default=False, metadata={"help": "continue the run whose checkpoint --name (or --checkpoint) "
                                                          "names"})

    def __post_init__(self) -> None:
        super().__post_init__()  # (refuses a --task no task is registered under)
        if self.method is None:  # (the node and the link methods are two registries: neither default fits both)
            self.method = GRAPH_TASKS.get(self.task).default_method


def train_runs(config: GraphTrainConfig, record: RunRecord | None = None, device=None,
               checkpoints: list[Path] | None = None) -> list[dict]:
    """Train ``config.splits`` models (one per split seed) on ``device``, each keeping its checkpoint when
    ``checkpoints`` are given; the rows of metrics. The config is checked as the CLI checks it (a method of the
    other task, several runs of one public split) before any work."""
    _check_method(config)
    from fwdlearn.errors import OncePerCause
    from fwdlearn.graphs.data.datasets import load_graph

    task = GRAPH_TASKS.get(config.task)
    once = OncePerCause()  # (a warning met in every split, e.g. a DFA fit that learned nothing, is shown once)
    rows = []
    for i in range(config.splits):
        seed = config.seed + i
        # the graph's warnings (a saved file's directed edges) are the file's: once in the run, in no summary line
        with once.part(f"the graph of split {seed}", alike=True):  # (a generated graph is drawn once, from
            data = load_graph(config.data, split=config.split, seed=seed,  # --seed; each split seed splits it)
                              download=config.download, quiet=config.quiet, graph_seed=config.seed,
                              labels=task.labels)  # (--task link reads no node label nor mask: a saved graph
            # without labels was refused, and the warning that a random split replaced a saved graph's masks named
            # the fix --split public, which --task link refuses)
        with once.part(f"split {seed}"):
            rows.append(_train_split(config, i, data, record, device, checkpoints))
    once.summary()
    return rows


def _train_split(config: GraphTrainConfig, i: int, data, record: RunRecord | None, device,
                 checkpoints: list[Path] | None) -> dict:
    """Split ``i`` of :func:`train_runs` (seed ``config.seed + i``) on its graph ``data``: its row of metrics."""
    from fwdlearn.errors import TrainingInterrupted
    from fwdlearn.fit import AnotherKindOfRun, CheckpointMismatch, seed_everything

    seed = config.seed + i
    patience = config.patience or None
    if device is not None:
        data = data.to(device)
    saving = {}
    if checkpoints is not None:
        saving = {"checkpoint": checkpoints[i], "resume": config.resume, "overwrite": config.overwrite}
    task = GRAPH_TASKS.get(config.task)
    seed_everything(seed)
    try:
        report = task.train(
            data, method=config.method, conv=config.conv, hidden=config.hidden, layers=config.layers, seed=seed,
            epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay, patience=patience,
            eval_every=config.eval_every, quiet=config.quiet, **saving)
    except CheckpointMismatch as refused:  # in the flags' words: "model.hidden 8 (checkpoint) vs 16 (now)" was
        error = _in_flags(refused, config, i)  # --hidden 8, and the fix the flags to add
        # (a saved graph's file that changed was "graph '3bd2...' (checkpoint) vs '891d...' (now)", naming no file)
        raise (_changed_graph_file(config, error) or error) from None
    except AnotherKindOfRun as refused:  # (a --task node checkpoint resumed with --task link --method bp, bp being
        others = [name for name in GRAPH_TASKS.names() if name != config.task]  # a method of both tasks)
        raise AnotherKindOfRun(refused.path, refused.theirs, refused.ours, this=f"this --task {config.task} run's",
                               fix=f"It is another task's: resume it with the --task it was made with "
                                   f"({' or '.join(f'--task {name}' for name in others)})") from None
    except TrainingInterrupted as stop:
        if config.splits == 1 or checkpoints is None:
            raise
        split = f"split {i}" + (f" (seed {seed})" if seed != i else "")  # (as its file: <name>-split<i>.pt)
        # say the split, and resume with split 0's checkpoint: the later splits' are derived from it (the
        # split's own, as --checkpoint, was refused as another run's, or made it split 0)
        raise TrainingInterrupted(stop.step, stop.checkpoint, stop.saved_step,
                                  where=", ".join(filter(None, [stop.where, split])),
                                  saved=stop.saved, resume_with=checkpoints[0]) from None
    values = report.as_dict()
    if task.metric not in values:  # (a KeyError once every split had trained, naming neither the task nor the fix)
        raise TypeError(f"the graph task {config.task!r} ({type(task).__name__}) says its metric is {task.metric!r}, "
                        f"but the report its train() returned holds {', '.join(map(repr, values)) or 'nothing'} "
                        "(as_dict()): set the task's metric to the key of its held-out score, or add that key to "
                        "the report")
    if "method" in values:  # the method as --method names it, for either task (a node fit's rule, local:prototype,
        try:                # stood in the table where a link fit's name, ce, stood)
            values = {**values, "method": task.method_name(str(values["method"]))}
        except ValueError:  # (a task's own report naming a method it does not list: kept as it is)
            pass
    row = {"split": seed, **{k: v for k, v in values.items() if k not in ("per_layer", "history", "resumed")}}
    # (a report of the task's own may have no resumed: it was read as an attribute every report has)
    resumed = getattr(report, "resumed", None)
    if record is not None:
        record.log(**values, split=seed)
        if resumed is not None:  # the step each split continued from and the settings that changed
            record.summary.setdefault("resumed", {})[f"split {seed}"] = resumed
    if describe_resume(resumed):
        print(f"split {seed}: {describe_resume(resumed)}")
    return row


#: a node or link model's fingerprint entry -> the field of the flag that sets it (the seed and the method aside)
_RESUME_FLAGS = {"model.conv": "conv", "model.layers": "layers", "model.hidden": "hidden", "blocks": "layers"}


def _in_flags(error, config: GraphTrainConfig, i: int):
    """The refusal to resume split ``i``'s checkpoint made by another run (``error``, a
    :class:`~fwdlearn.fit.CheckpointMismatch`) in the flags' words: ``--hidden 8 (checkpoint) vs 16 (now)``, the method
    as ``--method`` names it (``sf``, not its rule ``local:prototype``), the seed as ``--seed`` (split ``i`` trains with
    ``--seed`` + ``i``), and the fix those flags with the checkpoint's values; the graph keeps its words."""
    from fwdlearn.config import flag_name

    def spell(name: str, value, fingerprint) -> str | None:
        if name in ("model.seed", "seed"):  # (the link predictor's is the fit's, the node model's the model's)
            return f"--seed {value - i}" if isinstance(value, int) and value >= i else None
        if name == "model.method":
            return _method_flag(config.task, value)
        if name == "blocks" and value != (fingerprint.get("model") or {}).get("layers"):
            return None  # (a layer-by-layer fit's blocks are its layers, said once as --layers; others: in words)
        return f"{flag_name(_RESUME_FLAGS[name])} {value}" if name in _RESUME_FLAGS else None

    graph = GRAPH_TASKS.get(config.task).graph_words
    return error.in_flags(spell, words={"graph": graph, "model.in_dim": graph, "model.num_classes": graph})


def _method_flag(task: str, rule) -> str | None:
    """``--method <name>`` of the method that trains by ``rule`` (a checkpoint's ``model.method``), as ``task``'s
    methods are named; ``--task <other> --method <name>`` for a method of another task alone (a ``--task link``
    checkpoint resumed with ``--task node`` was refused as "model.method 'local:ce' (checkpoint) vs
    'local:prototype' (now)", naming no flag); ``None`` for one not registered now."""
    try:
        return f"--method {GRAPH_TASKS.get(task).method_name(str(rule))}"
    except ValueError:
        pass
    for other in GRAPH_TASKS.names():
        try:
            return f"--task {other} --method {GRAPH_TASKS.get(other).method_name(str(rule))}"
        except ValueError:
            continue
    return None


def _changed_graph_file(config: GraphTrainConfig, error) -> Exception | None:
    """The refusal to resume a checkpoint (``error``, a :class:`~fwdlearn.fit.CheckpointMismatch`) that was trained on
    another graph than ``--data file:<path>`` gives now, naming the file, whether it changed since the checkpoint was
    written, and what to do; ``None`` where the graph is no saved file or the same."""
    from datetime import datetime

    from fwdlearn.errors import UsageError
    from fwdlearn.graphs.data.datasets import graph_files, is_saved_graph

    task = GRAPH_TASKS.get(config.task)
    files = graph_files(config.data) if is_saved_graph(config.data) else []
    if "graph" not in error.names or not files:
        return None
    file, checkpoint = files[0], error.path
    others = [text for name, text in zip(error.names, error.differences) if name != "graph"]
    also = f" (the run's settings differ too: {'; '.join(others)})" if others else ""
    written, modified = checkpoint.stat().st_mtime, file.stat().st_mtime

    def when(stamp: float) -> str:
        return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")

    if modified > written:
        return UsageError(f"the checkpoint {checkpoint} was trained on another graph than {file} holds now: the file "
                          f"has changed since the checkpoint was written (the file modified {when(modified)}, the "
                          f"checkpoint written {when(written)}){also}. To resume, restore the file as it was; to "
                          "train on it as it is, start a new run (another --name or --checkpoint, or --overwrite to "
                          "replace this one)")
    if others:  # (another --seed draws another split: the settings say why, as for any graph)
        return None
    return UsageError(f"the checkpoint {checkpoint} was trained on another graph than the one read from {file} now "
                      f"(its {task.graph_holds} differ): the file was replaced since (by a copy not modified "
                      f"after the checkpoint was written){', or the run used another --split' if task.labels else ''}"
                      ". To resume, restore the file and the flags the run was made with; to train on the graph as it "
                      "is, start a new run (another --name or --checkpoint, or --overwrite to replace this one)")


def check_conv_widths(convs, hidden: int) -> None:
    """Refuse, in the flags' words, a ``--hidden`` one of the ``convs`` (names of ``CONV_KINDS``) cannot build (gat's
    heads split it): the model refused it once built, naming ``hidden=``, after the models before it had run."""
    from fwdlearn.config import as_flags
    from fwdlearn.errors import UsageError

    for conv in convs:
        check = getattr(CONV_KINDS.get(conv), "check_width", None)  # (a kind registered without subclassing ConvKind)
        try:
            if check is not None:
                check(hidden)
        except ValueError as error:
            raise UsageError(as_flags(str(error), ["hidden"])) from None


def _check_method(config: GraphTrainConfig) -> None:
    """Refuse a method of the other task before any work (the registries are consulted lazily), several splits of a
    fixed public split (their spread would be the model seeds', reported as the splits'), and a width the conv cannot
    build."""
    from fwdlearn.errors import UsageError
    from fwdlearn.graphs.data.datasets import PLANETOID, is_saved_graph

    check_conv_widths([config.conv], config.hidden)
    task = GRAPH_TASKS.get(config.task)

    fixed = config.data.strip().lower() in PLANETOID or config.data.strip().lower().startswith("citynetwork:") \
        or is_saved_graph(config.data)  # (a saved graph's split is its masks)
    if config.splits > 1 and config.split == "public" and task.labels \
            and fixed:  # (spelled as load_graph reads it: " cora" is Cora; PyG's CityNetwork ships one split too)
        raise UsageError(f"--split public is one fixed split of {config.data}: --splits {config.splits} would report "
                         "the spread over model seeds as the spread over splits; use --split random, or --splits 1")

    if not task.labels and config.split != "random":  # (ignored, yet it failed on a graph without a public split)
        raise UsageError(f"--split {config.split} chooses the node split, which --task {config.task} does not read"
                         + (f"; it {task.own_split}" if task.own_split else " (it reads no node label)")
                         + ": leave --split out")
    try:
        task.method_name(config.method)
    except ValueError as error:
        raise UsageError(f"--method {config.method!r} is not a {config.task} method: {error}") from None


def _run(args: argparse.Namespace) -> int:
    from fwdlearn.runs import run_outputs, start_run

    config = dataclass_from_args(GraphTrainConfig, args)
    _check_method(config)
    from fwdlearn.graphs.data.datasets import graph_files

    paths = run_outputs("graph-train", config, checkpoint=config.checkpoint, resume=config.resume,
                        splits=config.splits, inputs=[("--data", f) for f in graph_files(config.data)])
    checkpoints = [paths.checkpoint, *paths.split_checkpoints]
    device = start_run(config, paths)
    record = RunRecord("graph-train", config, seed=config.seed)
    rows = train_runs(config, record, device, checkpoints)
    metric = GRAPH_TASKS.get(config.task).metric
    columns = ["split", "method", "conv", "layers", metric, "fit_seconds", "saved_bytes_per_step", "peak_memory_bytes"]
    table = list(rows)
    if len(rows) > 1:
        m, s = mean_std([r[metric] for r in rows])
        # (the method and the fit time as the task's report gives them: one of its own may hold its metric alone)
        seconds = [r["fit_seconds"] for r in rows if "fit_seconds" in r]
        table.append({"split": "mean ± std", "method": rows[0].get("method"), metric: f"{m:.4f} ± {s:.4f}",
                      "fit_seconds": mean_std(seconds)[0] if len(seconds) == len(rows) else None})
        record.summary.update({f"{metric}_mean": m, f"{metric}_std": s})
    else:
        record.summary[metric] = rows[0][metric]
    record.summary["device"] = str(device)
    for i, path in enumerate(checkpoints):
        record.add_file("checkpoint" if i == 0 else f"checkpoint split {config.seed + i}", path)
    print(markdown_table(table, columns), end="")
    print(f"record: {record.save(paths.record, overwrite=config.overwrite or config.resume)}")
    return 0


train = Command(help="train a GNN without backprop (ForwardGNN) or by BP; node classification or link prediction",
                configure=lambda parser: add_dataclass_arguments(parser, GraphTrainConfig), run=_run)
