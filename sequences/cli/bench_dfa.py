"""``fwdlearn bench dfa``: direct feedback alignment against backprop for transformer and recurrent language models.

::

    fwdlearn bench dfa --threads 1
    fwdlearn bench dfa --skip recurrent --steps 500 --out runs/dfa-transformer

The run itself is :func:`fwdlearn.sequences.bench_dfa.run_bench_dfa`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.sequences.cli.bench import SequenceBenchOptions
from fwdlearn.sequences.registries import RECURRENT_CELLS

__all__ = ["DfaBenchConfig", "bench", "PARTS"]

PARTS = ["transformer", "cost", "recurrent"]


@dataclass
class DfaBenchConfig(SequenceBenchOptions):
    out: str = field(default="", metadata={"help": "results prefix: writes <out>.json, <out>.md, <out>-record.json "
                                                   "and, when the transformer part runs a dfa rule, "
                                                   "<out>-alignment.png (see --plot; default: runs/<name>, or a fresh "
                                                   "name under runs/; the docs' files are "
                                                   "docs/benchmarks/dfa-transformer, dfa-recurrent and dfa-cost, one "
                                                   "part each)"})
    skip: list[str] = field(default_factory=list, metadata={"help": "parts to skip (not all of them; the flags of a "
                                                                       "skipped part go unused)", "choices": PARTS,
                                                               "not_all": True, "unordered": True})
    data: str = field(default="tinyshakespeare", metadata={"help": "corpus (char level)"})
    train_split: str = field(default="train", metadata={"help": "split the models train on (wikitext-2 stored "
                                                                "without train.txt: validation)"})
    valid_split: str = field(default="validation", metadata={"help": "split they are evaluated and aligned on "
                                                                     "(wikitext-2 without train.txt: test)"})
    context: int = field(default=128, metadata={"help": "window length T (the transformer's positions)", "min": 1})
    batch_size: int = field(default=16, metadata={"help": "parallel streams B of every part", "min": 1})
    steps: int = field(default=1000, metadata={"help": "the equal step budget of every rule of a part", "min": 1})
    eval_every: int = field(default=250, metadata={"help": "steps between validation passes", "min": 1})
    eval_tokens: int = field(default=20_000, metadata={"help": "validation tokens per pass during training", "min": 1})
    align_every: int = field(default=100, metadata={"help": "steps between alignment readings (dfa rules)", "min": 1})
    plot: bool = field(default=True, metadata={"help": "draw the transformer's alignment per block against steps "
                                                       "to <out>-alignment.png (needs matplotlib); drawn only when "
                                                       "the transformer part runs (not in --skip) with a dfa rule in "
                                                       "--rules: the recurrent part's alignment is in the tables "
                                                       "alone"})
    # 1. transformer
    rules: list[str] = field(default_factory=lambda: ["bp", "dfa", "dfa:micro", "local:readout", "shallow"],
                             metadata={"help": "depth rules of the transformer; bp is the baseline"})
    hidden: int = field(default=256, metadata={"help": "transformer width d", "min": 1})
    layers: int = field(default=4, metadata={"help": "transformer blocks", "min": 1})
    heads: int = field(default=4, metadata={"help": "attention heads of every block", "min": 1})
    # 2. cost
    cost_repeats: int = field(default=3, metadata={"help": "interleaved repeats of one step per rule; medians",
                                                   "min": 1})
    # 3. recurrent
    rnn_rules: list[str] = field(default_factory=lambda: ["bptt", "dsf", "dfa+bptt", "dfa+dsf"],
                                 metadata={"help": "rules of the recurrent stack; bptt is the baseline"})
    cell: str = field(default="gru", metadata={"help": "recurrent cell of the recurrent part",
                                               "choices": RECURRENT_CELLS.names})
    rnn_hidden: int = field(default=256, metadata={"help": "width of the recurrent stack", "min": 1})
    rnn_layers: int = field(default=2, metadata={"help": "layers of the recurrent stack", "min": 1})
    rnn_norm: bool = field(default=True, metadata={"help": "pre-LayerNorm recurrent blocks with an MLP (the "
                                                           "RecurrentLM default; --no-rnn-norm: plain blocks)"})
    rnn_steps: int = field(default=0, metadata={"help": "step budget of the recurrent part (0: --steps)", "min": 0})


def _run(args) -> int:
    from fwdlearn.sequences.bench_dfa import run_bench_dfa

    run_bench_dfa(dataclass_from_args(DfaBenchConfig, args))
    return 0


bench = Command(help="DFA vs BP: transformer bits/char for bp, dfa, dfa:micro, local:readout, shallow; alignment per "
                     "block; step time and saved bytes; GRU stacks with dfa+bptt / dfa+dsf",
                configure=lambda parser: add_dataclass_arguments(parser, DfaBenchConfig), run=_run)
