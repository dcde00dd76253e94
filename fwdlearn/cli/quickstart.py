"""``fwdlearn quickstart``: the point of fwdlearn in about a minute on a laptop CPU, offline.

Three small experiments, each next to its baseline, written to a report folder:

1. **Graphs**: a GCN trained by end-to-end backprop (BP) and by ForwardGNN's single-forward method
   (SF, layer-local losses: no gradient crosses layers) on Cora when ``FWDLEARN_DATA_DIR`` has it, else on a
   built-in contextual stochastic block model (``sbm``: 5 classes, weak node features, homophilous edges).
   Test accuracy next to the chance level, fit time and the bytes autograd keeps for backward per step, with
   the ratios SF / BP.
2. **Sequences**: a GRU trained by BPTT, by DSF (stationary state feedback: the backward pass through time
   replaced by a fixed decay) and by fully truncated BPTT (no credit through time) on delayed recall (output
   the token seen a few steps ago): accuracy next to chance, and training time per step.
3. **Influence**: how far each trained model's predictions reach: the range R (influence-weighted mean
   distance) in hops for the GNNs and in time steps for the recurrent models.

The folder holds ``report.md`` (every number explained in one sentence), ``record.json`` (config, all
metrics, timings, versions) and PNG plots of the training and influence curves. This is a CLI module: it
composes the domains' public APIs (the one place besides the dispatcher that may import both domains).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.runs import RUN_OPTIONS, RUNS_FOLDER, RunOptions

__all__ = ["QuickstartConfig", "quickstart", "run_quickstart"]

MIB = 1024 * 1024  # bytes per MiB


@dataclass
class QuickstartConfig(RunOptions):
    graph: str = field(default="auto", metadata={"help": "graph of part 1: auto (cora when FWDLEARN_DATA_DIR has it, "
                                                         "else the built-in sbm, with a warning when FWDLEARN_DATA_DIR "
                                                         "is set), or any load_graph name"})
    graph_layers: int = field(default=3, metadata={"help": "GCN layers of both graph models", "min": 1})
    hidden: int = field(default=64, metadata={"help": "width of every layer of every model", "min": 1})
    epochs: int = field(default=100, metadata={"help": "graph epoch budget: per layer (SF) / in total (BP)", "min": 1})
    lag: int = field(default=4, metadata={"help": "delay of the recall task of part 2 (time steps)", "min": 1})
    seq_steps: int = field(default=300, metadata={"help": "training steps of every recurrent model", "min": 1})
    samples: int = field(default=200, metadata={"help": "seed nodes (and output positions) whose influence is measured",
                                                "min": 1})
    plots: bool = field(default=True, metadata={"help": "write PNG plots (needs matplotlib: pip install "
                                                        "'fwdlearn[plot]')"})
    name: str = field(default="", metadata={"help": "the report folder runs/<name>/ (record.json, report.md, the "
                                                    "plots; default: a fresh runs/quickstart-<time>-<id>)",
                                            "group": RUN_OPTIONS})
    json: str = field(default="", metadata={"help": "not taken here: the record is record.json in the report folder "
                                                    "(name the folder with --name)", "group": RUN_OPTIONS})


def _folder(config: QuickstartConfig) -> Path:
    from fwdlearn.errors import UsageError
    from fwdlearn.files import check_writable, finish_renames
    from fwdlearn.runs import RUNS_FOLDER, check_run_name, fresh_stem, refuse_torchrun

    refuse_torchrun("quickstart")
    if config.name:
        check_run_name(config.name, "")
    folder = Path(RUNS_FOLDER) / config.name if config.name else fresh_stem("quickstart")
    from fwdlearn.sequences.nn.language_model import check_norm_width

    check_norm_width("--hidden", config.hidden)  # (the GRUs' blocks: refused by the model after the graph part ran)
    if config.json:
        raise UsageError("quickstart writes a report folder (record.json inside it); name it with --name, not --json")
    if config.plots:  # (the plots are drawn last: without matplotlib the whole run ended in a traceback, unsaved)
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            raise UsageError("--plots needs matplotlib, which is not installed: pip install 'fwdlearn[plot]', or "
                             "pass --no-plots") from None
    if folder.exists() and not folder.is_dir():  # (iterdir gave the raw "[Errno 20] Not a directory")
        raise UsageError(f"{folder} is a file; quickstart writes a report folder there: choose another --name")
    if folder.exists():
        finish_renames(folder / "record.json")  # (the report and record a killed run was renaming into place)
        _check_folder_contents(folder, config.overwrite)
    # the report always goes under ./runs/ (no --json, no absolute --name): "choose another path" named a fix
    # quickstart does not take. An obstacle inside runs/ is passed by another --name; one at runs/ or above it (the
    # current folder not writable, a file called runs) only by running quickstart from another folder.
    first = next(p for p in (folder, *folder.parents) if p.exists())
    elsewhere = ("run it from a folder you can write" if first.is_dir() else
                 "move that file or run it from another folder")
    fix = ("choose another --name" if Path(RUNS_FOLDER) in first.parents else
           f"quickstart writes its report under {RUNS_FOLDER}/ in the current folder: {elsewhere}")
    check_writable(folder / "record.json", "--name" if config.name else "", fix=fix)
    return folder


def _own(name: str) -> bool:
    """Whether a file name in a report folder is one quickstart writes (a file, its lock, a killed save's ``.tmp``, the
    list of renames of a save killed between two: ``record.json.renaming``)."""
    name = name.removesuffix(".tmp").removesuffix(".lock").removesuffix(".renaming")
    return name in ("record.json", "report.md", *PLOT_FILES)


def _check_folder_contents(folder: Path, overwrite: bool) -> None:
    """Refuse a report folder that holds another command's record, ``--overwrite`` or not (``--name sweep`` over
    ``graph train --name sweep/record``'s runs/sweep/record.json deleted that run's record and left its checkpoint
    without it); without ``--overwrite``, refuse one that holds anything, saying what it holds."""
    from fwdlearn.errors import UsageError
    from fwdlearn.runs import record_files

    found = record_files(folder / "record.json")
    if found is not None and found[0] not in ("", "quickstart"):
        raise UsageError(f"{folder / 'record.json'} is the record of a '{found[0]}' run, not a quickstart report: "
                         "quickstart would replace it (--overwrite replaces a quickstart report only); choose "
                         "another --name")
    held = sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))
    if not held or overwrite:
        return
    others = [name for name in held if not _own(name)]
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise FileExistsError(f"{folder} already holds files that are not a quickstart report's ({shown}); choose "
                              "another --name (--overwrite would write the report among them)")
    raise FileExistsError(f"{folder} already holds a report; choose another --name or pass --overwrite")


def _take(folder: Path) -> None:
    """Hold the report folder (made here, once the inputs are checked): a second run of this name is refused, not
    merged in; an overwritten report leaves none of its old files."""
    from fwdlearn.files import remove_stale_tmp
    from fwdlearn.runs import lock_run

    lock_run(folder / "record.json")
    names = ("record.json", "report.md", *PLOT_FILES)
    remove_stale_tmp(*(folder / name for name in names))  # (a killed run's save; first, as it finishes the renames
    for name in names:                                    # of a save killed between two: nothing of it is left)
        (folder / name).unlink(missing_ok=True)


def _graph(config: QuickstartConfig, device):
    """``(name, data)``: the graph of the graph part, read before the report folder is made (a graph that is not
    there leaves no empty folder behind)."""
    from fwdlearn.data import DataNotFoundError, data_dir
    from fwdlearn.errors import warn
    from fwdlearn.graphs import load_graph

    name = config.graph
    if name == "auto":
        root = data_dir()
        name = "cora" if root is not None and (root / "Planetoid" / "Cora" / "raw").is_dir() else "sbm"
        if root is not None and name == "sbm":  # (a mistyped folder trained on the sbm without a word)
            warn(f"FWDLEARN_DATA_DIR={root} " + ("has no Planetoid/Cora/raw/" if root.is_dir() else "is not a folder")
                 + ": the graph part trains on the built-in sbm; point FWDLEARN_DATA_DIR at the folder that holds "
                 "Planetoid/ (the README's data table) for Cora, or pass --graph sbm to choose the sbm")
    try:
        return name, load_graph(name, split="random", seed=config.seed).to(device)
    except DataNotFoundError:  # (the loader's fix, --download, is not a quickstart flag: quickstart stays offline)
        where = data_dir()
        raise DataNotFoundError(f"--graph {name}: its files are not in FWDLEARN_DATA_DIR "
                                f"({where if where is not None else 'not set'}); quickstart reads local data only: "
                                "set FWDLEARN_DATA_DIR to a folder holding them (the README's data table), or use "
                                "--graph sbm or karate (built in)") from None


def _graph_part(config: QuickstartConfig, name: str, data, record, quiet: bool) -> dict:
    import torch

    from fwdlearn.fit import seed_everything
    from fwdlearn.graphs import ForwardGNN, hop_influence

    def commonest(mask):  # the accuracy of always guessing a split's commonest class
        labels = data.y[mask]
        return float(torch.bincount(labels).max()) / labels.numel()

    out = {"data": name, "nodes": data.num_nodes, "classes": data.num_classes, "chance": commonest(data.test_mask),
           "val_chance": commonest(data.val_mask), "epochs": config.epochs, "runs": {}}
    chance = out["chance"]
    for method in ("bp", "sf"):
        seed_everything(config.seed)
        model = ForwardGNN(data.num_features, data.num_classes, conv="gcn", hidden=config.hidden,
                           layers=config.graph_layers, method=method, seed=config.seed)
        report = model.fit(data, epochs=config.epochs, lr=1e-2, patience=20, eval_every=5, quiet=quiet)
        curve, R, _ = hop_influence(model, data, config.graph_layers, samples=min(config.samples, data.num_nodes),
                                    seed=config.seed)
        run = {"test_accuracy": report.test_accuracy, "fit_seconds": report.fit_seconds,
               "saved_bytes_per_step": report.saved_bytes_per_step, "R": R, "influence_curve": curve.tolist(),
               "history": [(r["epoch"], r["val_accuracy"]) for r in report.history if "val_accuracy" in r]}
        out["runs"][method] = run
        record.log(part="graphs", method=method, **{k: v for k, v in run.items() if k != "history"})
        # (a result: printed under --quiet too, which silences the progress bars and the report text)
        print(f"graphs  {name} {method.upper():3s} test accuracy {report.test_accuracy:.3f} (chance {chance:.3f}), "
              f"{report.fit_seconds:.1f} s, R {R:.2f} hops")
    return out


def _sequence_part(config: QuickstartConfig, device, record, quiet: bool) -> dict:
    import torch

    from fwdlearn.fit import seed_everything
    from fwdlearn.sequences import DelayedRecall, RecurrentLM, lag_influence

    task = DelayedRecall(config.lag, symbols=8, length=config.lag + 32)
    out = {"task": f"delayed recall, lag {config.lag}, 8 symbols", "lag": config.lag, "chance": task.chance,
           "runs": {}}
    probe = task.sample(8, torch.Generator().manual_seed((config.seed + 1) % 2**64))[0].to(device)
    for rule in ("bptt", "dsf", "ft-bptt"):
        seed_everything(config.seed)
        model = RecurrentLM(task.vocab_size, cell="gru", hidden=config.hidden, layers=1, training=rule,
                            out_size=task.out_size).to(device)
        start = time.perf_counter()
        fit = model.fit(task, steps=config.seq_steps, batch_size=32, lr=1e-2, eval_every=max(1, config.seq_steps // 10),
                        quiet=quiet, seed=config.seed)
        seconds = time.perf_counter() - start
        accuracy = model.evaluate(task, batches=8)["accuracy"]
        # (every lag of the window: a cut-off dropped 23-28 % of DSF's and FT-BPTT's influence from R)
        curve, R, _ = lag_influence(model, probe, max_lag=task.length - 1,
                                    positions=min(config.samples, task.length), seed=config.seed)
        run = {"accuracy": accuracy, "seconds_per_step": seconds / max(fit.steps, 1), "R": R,
               "influence_curve": curve.tolist(),
               "history": [(r["step"], r["val_accuracy"]) for r in fit.history if "val_accuracy" in r]}
        out["runs"][rule] = run
        record.log(part="sequences", rule=rule, **{k: v for k, v in run.items() if k != "history"})
        print(f"seq     {rule:8s} accuracy {accuracy:.3f} (chance {task.chance:.3f}), "
              f"{1000 * run['seconds_per_step']:.1f} ms/step, R {R:.2f} steps")
    return out


#: the plots a report holds, in its order
PLOT_FILES = ("graph-training.png", "sequence-training.png", "graph-influence.png", "sequence-influence.png")


def _plots(folder: Path, graphs: dict, sequences: dict) -> list[str]:
    from fwdlearn.diagnostics.plots import plot_curves, plot_influence_curves

    names = {"bp": "BP", "sf": "ForwardGNN SF", "bptt": "BPTT", "dsf": "DSF", "ft-bptt": "FT-BPTT"}
    files = [
        plot_curves({names[m]: tuple(zip(*r["history"])) for m, r in graphs["runs"].items() if r["history"]},
                    folder / PLOT_FILES[0], "epoch (SF: layer after layer)", "validation accuracy",
                    f"{graphs['data']}: GCN-{len(graphs['runs']['bp']['influence_curve']) - 1}",
                    graphs["val_chance"]),  # (the validation split's: the curves are validation accuracies)
        plot_curves({names[m]: tuple(zip(*r["history"])) for m, r in sequences["runs"].items() if r["history"]},
                    folder / PLOT_FILES[1], "step", "validation accuracy", sequences["task"],
                    sequences["chance"]),
        plot_influence_curves({names[m]: r["influence_curve"] for m, r in graphs["runs"].items()},
                              folder / PLOT_FILES[2], xlabel="hops", title=graphs["data"]),
        plot_influence_curves({names[m]: r["influence_curve"] for m, r in sequences["runs"].items()},
                              folder / PLOT_FILES[3], xlabel="lag", title=sequences["task"]),
    ]
    return [f.name for f in files]


def _report(graphs: dict, sequences: dict, plots: list[str], seconds: float) -> str:
    g, s = graphs["runs"], sequences["runs"]
    bp, sf = g["bp"], g["sf"]
    lines = [
        "# fwdlearn quickstart",
        "",
        f"Whole run: {seconds:.0f} s. Files: `record.json` (every number, the config, versions)"
        + "".join(f", `{p}`" for p in plots) + ".",
        "",
        f"## 1. Graphs: a {len(bp['influence_curve']) - 1}-layer GCN on {graphs['data']} "
        f"({graphs['nodes']:,} nodes, {graphs['classes']} classes)",
        "",
        "| training | test accuracy | fit seconds | bytes saved for backward per step | range R (hops) |",
        "|---|---|---|---|---|",
        f"| BP (end-to-end backprop) | {bp['test_accuracy']:.3f} | {bp['fit_seconds']:.1f} | "
        f"{bp['saved_bytes_per_step'] / MIB:.1f} MiB | {bp['R']:.2f} |",
        f"| ForwardGNN SF (layer-local) | {sf['test_accuracy']:.3f} | {sf['fit_seconds']:.1f} | "
        f"{sf['saved_bytes_per_step'] / MIB:.1f} MiB | {sf['R']:.2f} |",
        f"| SF / BP | | {sf['fit_seconds'] / bp['fit_seconds']:.2f}x | "
        f"{sf['saved_bytes_per_step'] / max(bp['saved_bytes_per_step'], 1):.2f}x | |",
        "",
        f"- **Chance** is {graphs['chance']:.3f}: the accuracy of always guessing the most common class of the test "
        f"nodes; {_against_chance({'BP': bp, 'SF': sf}, graphs['chance'])}",
        "- **SF** trains each layer by its own loss (prototype cross-entropy against class virtual nodes) on a "
        "detached copy of the layer below, so no gradient crosses layers.",
        f"- **Fit seconds** are the whole training's wall time: BP trains the stack for at most {graphs['epochs']} "
        f"epochs, SF each of the {len(bp['influence_curve']) - 1} layers for at most {graphs['epochs']}, one after "
        "another (each keeps its state of best validation accuracy, checked every 5 epochs), so the **SF / BP** "
        "time ratio compares whole trainings, not epochs; it moves with the machine's load.",
        "- **Bytes saved for backward per step** are the activations autograd keeps for the backward pass: BP keeps "
        "every layer's, SF only the layer it is training, so SF's figure does not grow with depth (**SF / BP**: "
        "their ratio).",
        "- **R** is the influence-weighted mean distance of the nodes that move a prediction (the L1 norm of the "
        "Jacobian, summed per hop): 0 would mean each node looks only at itself.",
        "",
        f"## 2. Sequences: a GRU on {sequences['task']}",
        "",
        "| training | accuracy | ms per training step | range R (time steps) |",
        "|---|---|---|---|",
    ]
    labels = {"bptt": "BPTT (backprop through time)", "dsf": "DSF (stationary state feedback)",
              "ft-bptt": "FT-BPTT (no credit through time)"}
    for rule, r in s.items():
        lines.append(f"| {labels[rule]} | {r['accuracy']:.3f} | {1000 * r['seconds_per_step']:.1f} | {r['R']:.2f} |")
    lines += [
        "",
        f"- **Chance** is {sequences['chance']:.3f} (8 equally likely symbols): the task asks for the token seen "
        f"{sequences['lag']} steps earlier, so it needs credit assigned back through time.",
        "- **DSF** replaces BPTT's backward recursion through the recurrent Jacobian by a fixed decay "
        "g_t = e_t + A g_(t+1), computed for all steps at once; **FT-BPTT** drops it (g_t = e_t): no credit reaches "
        "the recurrent weights for earlier inputs, so it reads only what its recurrence happens to keep of them.",
        "- **ms per training step** is training wall time (with a few small evaluations) divided by the steps.",
        f"- **R** here is the influence-weighted mean lag, lag 0 included: how far back the predictions reach on "
        f"average, not whether they reach the right step. A model that solves the task looks at lag 0 and lag "
        f"{sequences['lag']}; one that does not may spread its influence further"
        + (" (`sequence-influence.png` shows the influence per lag)." if "sequence-influence.png" in plots else "."),
        "",
    ]
    return "\n".join(lines)  # (written with the record: run_quickstart)


def _against_chance(models: dict[str, dict], chance: float) -> str:
    """How the measured test accuracies compare with chance, in words."""
    above = [name for name, r in models.items() if r["test_accuracy"] > chance]
    if len(above) == len(models):
        return "both models are above it."
    if above:
        return f"only {' and '.join(above)} is above it (more --epochs would help the other)."
    return "neither model is above it yet: train longer (--epochs)."


def next_commands(graph: str) -> str:
    """The three commands the quickstart suggests next (the graph it trained on, quoted for the shell: a ``city:``
    path with a space split into two words; a text corpus needs the data)."""
    import shlex

    from fwdlearn.data import data_dir

    root = data_dir()
    needs = "" if root is not None and (root / "tinyshakespeare" / "input.txt").is_file() else \
        "   # needs FWDLEARN_DATA_DIR with tinyshakespeare/input.txt"
    data = shlex.quote(graph)
    return ("next:\n"
            f"  fwdlearn graph train --data {data} --method sf --layers 8        # deeper: SF's memory stays flat\n"
            f"  fwdlearn seq train --data tinyshakespeare --training dsf --name quickstart-dsf{needs}\n"
            "  fwdlearn influence graph --data synthetic-city:2500 --models gcn mlp --layers 8 --epochs 100")


def run_quickstart(config: QuickstartConfig) -> int:
    from fwdlearn.records import RunRecord
    from fwdlearn.runs import start_run

    folder = _folder(config)
    device = start_run(config)
    start = time.perf_counter()
    name, data = _graph(config, device)
    _take(folder)  # (made after the device and the graph are checked: an error there leaves no empty folder)
    record = RunRecord("quickstart", config, seed=config.seed)
    quiet = config.quiet
    graphs = _graph_part(config, name, data, record, quiet)
    sequences = _sequence_part(config, device, record, quiet)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        plots = _plots(folder, graphs, sequences) if config.plots else []
        seconds = time.perf_counter() - start
        record.summary.update({"graphs": graphs, "sequences": sequences, "seconds": seconds})
        text = _report(graphs, sequences, plots, seconds)
        for plot in plots:
            record.add_file(Path(plot).stem, folder / plot)
        # the report and its record together (a report was written first, and an interrupt or an error while the
        # record was made left it without one, a finished report to look at): each file whole, both or neither
        record.save_with(folder / "record.json", {"report": (folder / "report.md", text)}, overwrite=True)
    except BaseException:  # no plots left without their record (a full disk left them; the command says the file
        for name in PLOT_FILES:  # and the fix of a full disk as every command does: fwdlearn.files.describe_os_error)
            (folder / name).unlink(missing_ok=True)  # (this run's: _take removed the old ones)
        raise
    if not quiet:
        print("\n" + text)
    print(f"report: {folder / 'report.md'}")
    print(next_commands(graphs["data"]))
    return 0


quickstart = Command(help="the main job in about a minute, offline: a GNN trained without backprop (ForwardGNN) next "
                          "to BP, a GRU trained by DSF next to BPTT, and how far each one looks (influence range R); "
                          "writes a report folder",
                     configure=lambda parser: add_dataclass_arguments(parser, QuickstartConfig),
                     run=lambda args: run_quickstart(dataclass_from_args(QuickstartConfig, args)),
                     elsewhere=f"run quickstart from another folder (its report goes under ./{RUNS_FOLDER}/ there)")
