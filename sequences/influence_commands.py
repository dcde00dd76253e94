"""``fwdlearn influence seq``: lag-wise influence of recurrent / causal-convolution models.

::

    fwdlearn influence seq --models gru lstm --length 128 --max-lag 64 --plot lags.png
    fwdlearn influence seq --checkpoints runs/bptt.pt runs/dsf.pt --data tinyshakespeare --length 256 --max-lag 128

Untrained ``--models`` read random embeddings; trained ``--checkpoints`` (``fwdlearn seq train``
checkpoints or :meth:`RecurrentLM.save` files) read windows of the ``--data`` validation text
(random tokens when no data is named).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.fit import seed_everything
from fwdlearn.diagnostics.plots import plot_influence_curves
from fwdlearn.records import RunRecord, refuse_overwrite

from .influence import lag_influence

__all__ = ["influence", "InfluenceSeqConfig", "make_sequence_model"]

MODELS = ["rnn", "gru", "lstm", "conv"]


class RecurrentStack(torch.nn.Module):
    """``torch.nn.RNN/GRU/LSTM`` (batch first) + a linear read-out: embeddings ``[B,T,E]`` -> ``[B,T,C]``."""

    def __init__(self, cell: str, features: int, hidden: int, layers: int, out: int) -> None:
        super().__init__()
        kind = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell]
        self.rnn = kind(features, hidden, num_layers=layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.rnn(x)[0])


class CausalConvStack(torch.nn.Module):
    r"""``layers`` left-padded Conv1d of width ``width`` with tanh: receptive field ``layers * (width - 1)``."""

    def __init__(self, features: int, hidden: int, layers: int, out: int, width: int = 4) -> None:
        super().__init__()
        dims = [features] + [hidden] * layers
        self.width = width
        self.convs = torch.nn.ModuleList(torch.nn.Conv1d(a, b, width) for a, b in zip(dims[:-1], dims[1:]))
        self.head = torch.nn.Linear(hidden, out)

    def forward(self, x: Tensor) -> Tensor:
        h = x.transpose(1, 2)
        for conv in self.convs:
            h = torch.tanh(conv(torch.nn.functional.pad(h, (self.width - 1, 0))))
        return self.head(h.transpose(1, 2))


def make_sequence_model(kind: str, features: int, hidden: int, layers: int, out: int) -> torch.nn.Module:
    if kind in ("rnn", "gru", "lstm"):
        return RecurrentStack(kind, features, hidden, layers, out)
    if kind == "conv":
        return CausalConvStack(features, hidden, layers, out)
    raise ValueError(f"unknown sequence model {kind!r}; choose one of {', '.join(MODELS)}")


@dataclass
class InfluenceSeqConfig:
    models: list[str] = field(default_factory=lambda: ["gru"], metadata={"help": "untrained models to compare", "choices": MODELS})
    checkpoints: list[str] = field(default_factory=list, metadata={"help": "trained RecurrentLM files (seq train "
                                                                          "checkpoints); replaces --models"})
    data: str = field(default="", metadata={"help": "corpus whose validation windows the checkpoints read "
                                                    "(default: random tokens)"})
    features: int = 16
    hidden: int = 32
    layers: int = 1
    outputs: int = 8
    length: int = field(default=64, metadata={"help": "sequence length T"})
    batch: int = field(default=4, metadata={"help": "input sequences"})
    max_lag: int = 32
    positions: int = field(default=16, metadata={"help": "output positions sampled per sequence"})
    seed: int = 0
    plot: str = field(default="", metadata={"help": "write the normalised curves (log scale) to this image"})
    json: str = field(default="", metadata={"help": "run record path (default runs/influence-seq-<time>.json)"})
    overwrite: bool = False
    quiet: bool = False


def _configure(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, InfluenceSeqConfig)


def _run(args: argparse.Namespace) -> int:
    config = dataclass_from_args(InfluenceSeqConfig, args)
    path = Path(config.json) if config.json else RunRecord.default_path("influence-seq")
    refuse_overwrite(path, config.plot, overwrite=config.overwrite)
    record = RunRecord("influence-seq", config, seed=config.seed)
    seed_everything(config.seed)
    curves = {}
    for kind, model, inputs in _models_and_inputs(config):
        start = time.perf_counter()
        curve, R, _ = lag_influence(model, inputs, config.max_lag, positions=config.positions, seed=config.seed,
                                    quiet=config.quiet)
        record.log(model=kind, R=R, seconds=time.perf_counter() - start, curve=curve.tolist())
        curves[kind] = curve.tolist()
        print(f"{kind:5s} R={R:.3f}")
    if config.plot:
        plot_influence_curves(curves, config.plot, xlabel="lag")
    record.summary["curves"] = curves
    print(f"record: {record.save(path, overwrite=config.overwrite)}")
    return 0


def _models_and_inputs(config: InfluenceSeqConfig):
    """``(name, model, inputs)`` for every untrained ``--models`` entry or every ``--checkpoints`` file."""
    if not config.checkpoints:
        inputs = torch.randn(config.batch, config.length, config.features)
        for kind in config.models:
            seed_everything(config.seed)
            yield kind, make_sequence_model(kind, config.features, config.hidden, config.layers, config.outputs), inputs
        return
    from .datasets import load_text
    from .recurrent import RecurrentLM

    corpora: dict[str, object] = {}  # one read of --data per tokenisation level
    for path in config.checkpoints:
        model, vocab = RecurrentLM.load(path)
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
            gen = torch.Generator().manual_seed(config.seed)
            inputs = torch.randint(0, model.config["vocab_size"], (config.batch, config.length), generator=gen)
        yield f"{Path(path).stem} ({model.config['training']})", model, inputs


influence = Command(help="lag-wise Jacobian influence and range R of sequence models", configure=_configure, run=_run)
