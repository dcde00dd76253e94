"""``fwdlearn influence seq``: lag-wise influence of the package's sequence models.

::

    fwdlearn influence seq --models gru lstm conv --length 128 --max-lag 64 --plot lags.png
    fwdlearn influence seq --checkpoints runs/bptt.pt runs/dsf.pt --data tinyshakespeare --length 256 --max-lag 128

Untrained ``--models`` (the names of ``fwdlearn seq train --model``) read random tokens; trained
``--checkpoints`` (``fwdlearn seq train`` checkpoints or saved models) read windows of the ``--data``
validation text (random tokens when no data is named).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.records import RunRecord, refuse_overwrite

from fwdlearn.sequences.cli.train import MODELS

__all__ = ["influence", "InfluenceSeqConfig"]


@dataclass
class InfluenceSeqConfig:
    models: list[str] = field(default_factory=lambda: ["gru"], metadata={"help": "untrained models to compare",
                                                                          "choices": list(MODELS)})
    checkpoints: list[str] = field(default_factory=list, metadata={"help": "trained language models (seq train "
                                                                          "checkpoints); replaces --models"})
    data: str = field(default="", metadata={"help": "corpus whose validation windows the checkpoints read "
                                                    "(default: random tokens)"})
    vocab: int = field(default=16, metadata={"help": "vocabulary of the untrained models (random tokens)"})
    hidden: int = 32
    layers: int = 1
    length: int = field(default=64, metadata={"help": "sequence length T"})
    batch: int = field(default=4, metadata={"help": "input sequences"})
    max_lag: int = 32
    positions: int = field(default=16, metadata={"help": "output positions sampled per sequence"})
    seed: int = 0
    plot: str = field(default="", metadata={"help": "write the normalised curves (log scale) to this image"})
    json: str = field(default="", metadata={"help": "run record path (default runs/influence-seq-<time>.json)"})
    overwrite: bool = False
    quiet: bool = False


def _run(args: argparse.Namespace) -> int:
    from fwdlearn.diagnostics.plots import plot_influence_curves
    from fwdlearn.fit import seed_everything
    from fwdlearn.sequences.influence import lag_influence

    config = dataclass_from_args(InfluenceSeqConfig, args)
    path = Path(config.json) if config.json else RunRecord.default_path("influence-seq")
    refuse_overwrite(path, config.plot, overwrite=config.overwrite)
    record = RunRecord("influence-seq", config, seed=config.seed)
    seed_everything(config.seed)
    curves = {}
    for name, model, inputs in _models_and_inputs(config):
        start = time.perf_counter()
        curve, R, _ = lag_influence(model, inputs, config.max_lag, positions=config.positions, seed=config.seed,
                                    quiet=config.quiet)
        record.log(model=name, R=R, seconds=time.perf_counter() - start, curve=curve.tolist())
        curves[name] = curve.tolist()
        print(f"{name:5s} R={R:.3f}")
    if config.plot:
        plot_influence_curves(curves, config.plot, xlabel="lag")
    record.summary["curves"] = curves
    print(f"record: {record.save(path, overwrite=config.overwrite)}")
    return 0


def _models_and_inputs(config: InfluenceSeqConfig):
    """``(name, model, inputs)`` for every untrained ``--models`` entry or every ``--checkpoints`` file."""
    import torch

    from fwdlearn.fit import seed_everything
    from fwdlearn.sequences.nn.language_model import load_language_model, make_language_model

    gen = torch.Generator().manual_seed(config.seed)
    if not config.checkpoints:
        inputs = torch.randint(0, config.vocab, (config.batch, config.length), generator=gen)
        for name in config.models:
            seed_everything(config.seed)
            yield name, make_language_model(name, config.vocab, hidden=config.hidden, layers=config.layers), inputs
        return
    from fwdlearn.sequences.data.text import load_text

    corpora: dict[str, object] = {}  # one read of --data per tokenisation level
    for path in config.checkpoints:
        model, vocab = load_language_model(path)
        if config.data:
            level = vocab.level if vocab is not None else "char"
            if level not in corpora:
                corpora[level] = load_text(config.data, level=level)
            corpus = corpora[level]
            if vocab is not None and vocab.tokens != corpus.vocab.tokens:
                raise ValueError(f"{path} was trained with another vocabulary ({len(vocab)} tokens) than "
                                 f"{config.data} gives ({corpus.vocab_size}); pass the corpus it was trained on")
            ids = corpus.split("validation")
            need = config.batch * config.length
            if ids.numel() < need:
                raise ValueError(f"{config.data} validation has {ids.numel()} tokens; --batch x --length needs {need}")
            inputs = ids[:need].view(config.batch, config.length)
        else:
            inputs = torch.randint(0, model.vocab_size, (config.batch, config.length), generator=gen)
        yield f"{Path(path).stem} ({model.rule})", model, inputs


influence = Command(help="lag-wise Jacobian influence and range R of sequence models",
                    configure=lambda parser: add_dataclass_arguments(parser, InfluenceSeqConfig), run=_run)
