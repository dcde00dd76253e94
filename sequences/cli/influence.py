"""``fwdlearn influence seq``: lag-wise influence of the package's sequence models.

::

    fwdlearn influence seq --models gru lstm conv --length 128 --max-lag 64 --plot lags.png
    fwdlearn influence seq --checkpoints runs/bptt.pt runs/dsf.pt --data tinyshakespeare --length 256 --max-lag 128

Untrained ``--models`` (the names of ``fwdlearn seq train --model``) read random tokens; trained
``--checkpoints`` (``fwdlearn seq train`` checkpoints or saved models) read windows of the ``--data`` text's
``--split`` (validation by default; random tokens when no data is named).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.records import RunRecord
from fwdlearn.runs import RunOptions

from fwdlearn.sequences.registries import MODEL_NAMES

__all__ = ["influence", "InfluenceSeqConfig"]

#: the largest lag binned when --max-lag is not given (cut to --length - 1 for a shorter sequence)
DEFAULT_MAX_LAG = 32
#: the output positions measured per sequence when --positions is not given (cut to --length for a shorter one)
DEFAULT_POSITIONS = 16


@dataclass
class InfluenceSeqConfig(RunOptions):
    models: list[str] = field(default_factory=lambda: ["gru"], metadata={"help": "untrained models to compare",
                                                                          "choices": MODEL_NAMES.keys})
    checkpoints: list[str] = field(default_factory=list, metadata={"help": "trained language models (seq train "
                                                                          "checkpoints or saved models), instead of "
                                                                          "--models"})
    data: str = field(default="", metadata={"help": "corpus whose windows the checkpoints read (default: random "
                                                    "tokens)"})
    split: str = field(default="validation", metadata={"help": "the --data split read (a model trained on "
                                                               "validation, as wikitext-2 offline: pass test)"})
    limit: int = field(default=0, metadata={"help": "read only the first N characters of --data, as seq train "
                                                    "--limit did (its vocabulary must match; 0: all)", "min": 0})
    vocab: int = field(default=16, metadata={"help": "vocabulary of the untrained models (random tokens)", "min": 1})
    hidden: int = field(default=32, metadata={"help": "width of the untrained models", "min": 1})
    layers: int = field(default=1, metadata={"help": "layers of the untrained models", "min": 1})
    length: int = field(default=64, metadata={"help": "sequence length T", "min": 1})
    batch: int = field(default=4, metadata={"help": "input sequences", "min": 1})
    max_lag: int | None = field(default=None, metadata={"help": "largest lag binned, below --length (a sequence of T "
                                                                "tokens has lags 0..T-1; default: 32, or --length - 1 "
                                                                "when that is smaller)", "min": 0})
    positions: int | None = field(default=None, metadata={"help": "output positions sampled per sequence, at most "
                                                                  "--length (default: 16, or --length when that is "
                                                                  "smaller)", "min": 1})
    plot: str = field(default="", metadata={"help": "write the normalised curves (log scale) to this image "
                                                    "(.png, .pdf, .svg, ...)"})


def _run(args: argparse.Namespace) -> int:
    from fwdlearn.diagnostics.plots import plot_influence_curves
    from fwdlearn.errors import UsageError
    from fwdlearn.fit import seed_everything
    from fwdlearn.reporting import markdown_table
    from fwdlearn.runs import run_outputs, start_run
    from fwdlearn.sequences.data.text import corpus_files
    from fwdlearn.sequences.influence import lag_influence
    from fwdlearn.sequences.registries import LM_KINDS, MODEL_NAMES

    # (a list flag not given parses as None: --models gru, its default typed out, is given too)
    models_given = getattr(args, "models", None) is not None
    config = dataclass_from_args(InfluenceSeqConfig, args)
    # (~ expanded, as the outputs' and the model files' are: --checkpoints=~/m.pt is not expanded by the shell)
    config = dataclasses.replace(config, checkpoints=[os.path.expanduser(p) for p in config.checkpoints])
    for path in config.checkpoints:
        if Path(path).is_dir():
            raise UsageError(f"--checkpoints {path} is a folder; pass the .pt files a seq train run wrote "
                             f"(e.g. {Path(path) / '<name>.pt'})")
        if not Path(path).is_file():
            raise FileNotFoundError(f"--checkpoints {path}: no such file; pass the .pt a seq train run wrote "
                                    "(runs/<name>.pt)")
    if not config.checkpoints:
        for name in config.models:  # (the width each kind is built at, before any model is measured: a LayerNorm over
            # one channel, or a width the transformer's heads cannot split, was refused by the model in Python's
            # words, after the models before it were measured)
            LM_KINDS.get(MODEL_NAMES[name][0]).check_width("--hidden", config.hidden)
            _sizes(config, name)  # (a size a model does not take)
        ignored = [flag for flag, given in (("--data", config.data), ("--split", config.split != "validation"),
                                            ("--limit", config.limit)) if given]
        if ignored:
            raise UsageError(f"{', '.join(ignored)} choose the text that --checkpoints read; the untrained --models "
                             "read random tokens: add --checkpoints (trained models), or leave them out")
    else:  # (both were read as nothing: --models gave way to the checkpoints, --split/--limit read no --data)
        defaults = InfluenceSeqConfig()
        if models_given or config.models != defaults.models:  # (--models gru, the default, was dropped in silence)
            raise UsageError("--models names untrained models, which --checkpoints replace: give one or the other")
        sizes = [flag for flag, name in (("--vocab", "vocab"), ("--hidden", "hidden"), ("--layers", "layers"))
                 if getattr(config, name) != getattr(defaults, name)]
        if sizes:  # (the record would name sizes the checkpoints do not have)
            raise UsageError(f"{', '.join(sizes)} size the untrained --models; the --checkpoints keep the sizes they "
                             "were trained with: leave them out")
        ignored = [flag for flag, given in (("--split", config.split != "validation"), ("--limit", config.limit))
                   if given and not config.data]
        if ignored:
            raise UsageError(f"{', '.join(ignored)} choose the text that --data reads (without it the checkpoints read "
                             "random tokens): add --data, or leave them out")
    if config.max_lag is not None and config.max_lag >= config.length:  # (the curve's lags >= --length were 0 at
        # every position, recorded and plotted as if measured)
        raise UsageError(f"--max-lag {config.max_lag} reaches past --length {config.length}: a sequence of "
                         f"{config.length} tokens has lags 0..{config.length - 1} only; give --max-lag "
                         f"{config.length - 1} or less, or a longer --length")
    if config.positions is not None and config.positions > config.length:  # (every position was measured, and the
        # record said the count asked for)
        raise UsageError(f"--positions {config.positions} is more than --length {config.length}: a sequence of "
                         f"{config.length} tokens has {config.length} output positions; give --positions "
                         f"{config.length} or less, or a longer --length")
    # (the defaults, 32 and 16, cut to the lags and positions a short --length has; the record says those measured)
    config = dataclasses.replace(config, max_lag=min(DEFAULT_MAX_LAG, config.length - 1) if config.max_lag is None
                                 else config.max_lag,
                                 positions=min(DEFAULT_POSITIONS, config.length) if config.positions is None
                                 else config.positions)
    paths = run_outputs("influence-seq", config, plot=config.plot,
                        inputs=[*(("--checkpoints", c) for c in config.checkpoints),
                                *(("--data", f) for f in (corpus_files(config.data) if config.data else ()))])
    device = start_run(config, paths)
    record = RunRecord("influence-seq", config, seed=config.seed)
    seed_everything(config.seed)
    curves, rows = {}, []
    for name, model, inputs in _models_and_inputs(config):
        if name in curves:  # two checkpoints of one file name and rule, or a model named twice: keep both curves
            name = next(f"{name} #{k}" for k in range(2, len(curves) + 2) if f"{name} #{k}" not in curves)
        start = time.perf_counter()
        try:
            curve, R, _ = lag_influence(model.to(device), inputs.to(device), config.max_lag,
                                        positions=config.positions, seed=config.seed, quiet=config.quiet)
        except ZeroDivisionError:
            raise UsageError(f"{name}: the influence at lag 0 is zero at every position measured (its outputs do not "
                             "depend on the input at their own position), so its curve cannot be normalised; "
                             "measure more positions (--positions, --batch) or another --seed, or check the "
                             "model") from None
        row = {"model": name, "R": R, "seconds": time.perf_counter() - start}
        record.log(**row, curve=curve.tolist())
        curves[name] = curve.tolist()
        rows.append(row)
    # (R is a mean lag: its unit said, as the graph command's hops are; the record keeps the key "R")
    print(markdown_table(rows, ["model", "R", "seconds"], headers={"R": "R (tokens)"}), end="")
    record.summary["curves"] = curves
    record.summary["device"] = str(device)
    saved = paths.save_record(record, config.overwrite,
                              draw=lambda path: plot_influence_curves(curves, path, xlabel="lag"))
    if paths.plot is not None:
        print(f"plot: {paths.plot}")
    print(f"record: {saved}")
    return 0


def _sizes(config: InfluenceSeqConfig, name: str) -> dict:
    """``hidden`` and ``layers`` for the untrained model ``name``: left out for a kind registered without them while
    they hold their defaults (the kind was given --layers 1, and refused), refused when set to anything else."""
    from fwdlearn.sequences.nn.language_model import model_sizes

    defaults = InfluenceSeqConfig()
    return model_sizes(name, {"hidden": config.hidden, "layers": config.layers},
                       {"hidden": defaults.hidden, "layers": defaults.layers}, f"--models {name}")


def _models_and_inputs(config: InfluenceSeqConfig):
    """``(name, model, inputs)`` for every untrained ``--models`` entry or every ``--checkpoints`` file."""
    import torch

    from fwdlearn.errors import UsageError
    from fwdlearn.fit import seed_everything
    from fwdlearn.sequences.nn.language_model import load_language_model, make_language_model

    gen = torch.Generator().manual_seed(config.seed)
    if not config.checkpoints:
        inputs = torch.randint(0, config.vocab, (config.batch, config.length), generator=gen, device="cpu")
        for name in config.models:
            seed_everything(config.seed)
            context = config.length if name == "transformer" else None  # learned positions: as many as --length
            yield name, make_language_model(name, config.vocab, **_sizes(config, name), context=context), inputs
        return
    from fwdlearn.sequences.data.text import read_corpus

    corpora: dict[str, object] = {}  # one read of --data per tokenisation level
    drawn: dict[int, object] = {}  # random inputs per vocabulary size (without --data)
    for path in config.checkpoints:
        model, vocab = load_language_model(path)
        if model.max_context is not None and config.length > model.max_context:
            raise UsageError(f"{path} reads at most {model.max_context} positions (its context); pass --length <= "
                             f"{model.max_context}")
        if config.data:
            level = vocab.level if vocab is not None else "char"
            if level not in corpora:
                corpora[level] = read_corpus(config.data, level=level, limit=config.limit or None)
            corpus = corpora[level]
            if config.split not in corpus.splits:
                raise UsageError(f"--split {config.split}: {corpus.name} has the splits {', '.join(corpus.splits)}")
            if vocab is not None and vocab.tokens != corpus.vocab.tokens:
                raise UsageError(f"{path} was trained with another vocabulary ({len(vocab)} tokens) than "
                                 f"{config.data} gives ({corpus.vocab_size}); pass the corpus it was trained on (and "
                                 "its --limit)")
            if vocab is None and corpus.vocab_size != model.vocab_size:
                raise UsageError(f"{path} holds no vocabulary and reads {model.vocab_size} token ids, but "
                                 f"{config.data} has {corpus.vocab_size}: its ids would not mean what the model "
                                 "learned. Save the model with its vocabulary (save(path, vocab=corpus.vocab)) or "
                                 "leave out --data (random token ids)")
            ids = corpus.split(config.split)
            need = config.batch * config.length
            if ids.numel() < need:
                raise UsageError(f"{config.data} {config.split} has {ids.numel()} tokens; --batch x --length needs "
                                 f"{need}")
            inputs = ids[:need].view(config.batch, config.length)
        else:  # one draw per vocabulary size, shared by every checkpoint of that size (as by the --models)
            if model.vocab_size not in drawn:
                gen = torch.Generator().manual_seed(config.seed)
                drawn[model.vocab_size] = torch.randint(0, model.vocab_size, (config.batch, config.length),
                                                        generator=gen, device="cpu")
            inputs = drawn[model.vocab_size]
        yield f"{Path(path).stem} ({model.rule})", model, inputs


influence = Command(help="lag-wise Jacobian influence and range R of sequence models",
                    configure=lambda parser: add_dataclass_arguments(parser, InfluenceSeqConfig), run=_run)
