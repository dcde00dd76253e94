"""``fwdlearn bench seq``: DSF against BPTT (cost per step, quality, gradient alignment, long range).

::

    fwdlearn bench seq --quiet
    fwdlearn bench seq --skip quality alignment recall --cost-repeats 5 --cost-cells gru lstm

The run itself is :func:`fwdlearn.sequences.bench.run_bench`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args

__all__ = ["SeqBenchConfig", "bench", "PARTS"]

PARTS = ["cost", "quality", "alignment", "recall"]


@dataclass
class SeqBenchConfig:
    out: str = field(default="docs/benchmarks/seq-results", metadata={"help": "writes <out>.json and <out>.md"})
    overwrite: bool = False
    skip: list[str] = field(default_factory=list, metadata={"help": "parts to skip", "choices": PARTS})
    threads: int = field(default=1, metadata={"help": "torch CPU threads for every part (0: torch's default)"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    seed: int = 0
    quiet: bool = False
    # 1. cost
    cost_contexts: list[int] = field(default_factory=lambda: [128, 512, 2048], metadata={"help": "contexts T"})
    cost_modes: list[str] = field(default_factory=lambda: ["bptt", "dsf", "ft-bptt"])
    cost_cells: list[str] = field(default_factory=lambda: ["gru"], metadata={
        "help": "recurrent cells of the timed models", "choices": ["tanh", "gru", "lstm", "linear"]})
    cost_hidden: int = 256
    cost_layers: int = 2
    cost_batch: int = 16
    cost_repeats: int = field(default=3, metadata={"help": "interleaved repeats per mode; the median is reported"})
    # 2. quality
    data: str = field(default="tinyshakespeare", metadata={"help": "corpus for the quality part (char level)"})
    quality_modes: list[str] = field(default_factory=lambda: ["bptt", "tbptt:32", "ft-bptt", "dsf"])
    model: str = field(default="gru", metadata={"help": "cell of the quality and recall models"})
    hidden: int = 128
    layers: int = 2
    norm: bool = field(default=True, metadata={"help": "pre-LayerNorm blocks with an MLP (the paper's block) in the "
                                                       "quality and alignment models"})
    context: int = 128
    batch_size: int = 16
    steps: int = field(default=1000, metadata={"help": "the equal step budget of every mode"})
    lr: float = 3e-3
    eval_every: int = 250
    eval_tokens: int = field(default=20_000, metadata={"help": "validation tokens per pass during training"})
    # 3. alignment
    align_batch: int = 8
    align_context: int = 128
    # 4. recall
    recall_lag: int = 50
    recall_symbols: int = 8
    recall_modes: list[str] = field(default_factory=lambda: ["bptt", "ft-bptt", "dsf"])
    recall_hidden: int = 64
    recall_layers: int = 1
    recall_steps: int = 600
    recall_batch: int = 32
    recall_lr: float = 1e-2


def _run(args) -> int:
    from fwdlearn.sequences.bench import run_bench

    run_bench(dataclass_from_args(SeqBenchConfig, args))
    return 0


bench = Command(help="DSF vs BPTT: cost per step by context, quality on tinyshakespeare, gradient alignment, "
                     "delayed recall", configure=lambda parser: add_dataclass_arguments(parser, SeqBenchConfig), run=_run)
