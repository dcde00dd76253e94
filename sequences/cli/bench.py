"""``fwdlearn bench seq``: DSF against BPTT (cost per step, quality, gradient alignment, long range).

::

    fwdlearn bench seq --quiet
    fwdlearn bench seq --skip quality alignment recall --cost-repeats 5 --cost-cells gru lstm

The run itself is :func:`fwdlearn.sequences.bench.run_bench`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fwdlearn.bench_progress import RESUME_HELP
from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.runs import MAX_THREADS, RunOptions

from fwdlearn.sequences.registries import RECURRENT_CELLS

__all__ = ["SeqBenchConfig", "bench", "PARTS"]

PARTS = ["cost", "quality", "alignment", "recall"]


@dataclass
class SequenceBenchOptions(RunOptions):
    """The run options of the sequence benches: one thread on the CPU unless asked (their timings are the docs')."""

    threads: int = field(default=1, metadata={"help": "torch CPU threads for every part (0: torch's default)",
                                              "min": 0, "max": MAX_THREADS, "group": "run options"})
    device: str = field(default="cpu", metadata={"help": "cpu (the measurements of docs/benchmarks.md), cuda, cuda:N "
                                                         "or auto", "group": "run options"})
    resume: bool = field(default=False, metadata={"help": RESUME_HELP, "group": "run options"})


@dataclass
class SeqBenchConfig(SequenceBenchOptions):
    out: str = field(default="", metadata={"help": "results prefix: writes <out>.json, <out>.md and <out>-record.json "
                                                   "(default: runs/<name>, or a fresh name under runs/; pass "
                                                   "docs/benchmarks/seq-results to update the docs)"})
    skip: list[str] = field(default_factory=list, metadata={"help": "parts to skip (not all of them; the flags of a "
                                                                       "skipped part go unused)", "choices": PARTS,
                                                               "not_all": True, "unordered": True})
    # 1. cost
    cost_contexts: list[int] = field(default_factory=lambda: [128, 512, 2048],
                                     metadata={"help": "contexts T of the cost part", "min": 1})
    cost_modes: list[str] = field(default_factory=lambda: ["bptt", "dsf", "ft-bptt"],
                                  metadata={"help": "time rules timed in the cost part (bptt is the baseline; for "
                                                    "tanh and GRU on a CPU, BPTT is also timed through torch's fused "
                                                    "module)"})
    cost_cells: list[str] = field(default_factory=lambda: ["gru"], metadata={
        "help": "recurrent cells of the timed models (one cost table per cell)", "choices": RECURRENT_CELLS.names})
    cost_hidden: int = field(default=256, metadata={"help": "width of the models timed in the cost part (every "
                                                            "--cost-cells cell)", "min": 1})
    cost_layers: int = field(default=2, metadata={"help": "layers of the models timed in the cost part (every "
                                                          "--cost-cells cell)", "min": 1})
    cost_batch: int = field(default=16, metadata={"help": "batch of the cost part", "min": 1})
    cost_repeats: int = field(default=3, metadata={"help": "interleaved repeats per mode; the median is reported",
                                                   "min": 1})
    # 2. quality
    data: str = field(default="tinyshakespeare", metadata={"help": "corpus of the quality and alignment parts"})
    level: str = field(default="char", metadata={"help": "tokens of the corpus: characters or words",
                                                 "choices": ["char", "word"]})
    train_split: str = field(default="train", metadata={"help": "split the quality models train on (wikitext-2 "
                                                                "stored without train.txt: validation)"})
    valid_split: str = field(default="validation", metadata={"help": "split they are evaluated on (wikitext-2 without "
                                                                     "train.txt: test)"})
    quality_modes: list[str] = field(default_factory=lambda: ["bptt", "tbptt:32", "ft-bptt", "dsf"],
                                     metadata={"help": "time rules trained in the quality part"})
    model: str = field(default="gru", metadata={"help": "cell of the quality, alignment and recall models",
                                                "choices": RECURRENT_CELLS.names})
    hidden: int = field(default=128, metadata={"help": "width of the quality and alignment models", "min": 1})
    layers: int = field(default=2, metadata={"help": "layers of the quality and alignment models", "min": 1})
    norm: bool = field(default=True, metadata={"help": "pre-LayerNorm blocks with an MLP (the paper's block layout) "
                                                       "in the quality, alignment and recall models (the cost part: "
                                                       "plain blocks)"})
    reference_block: bool = field(default=False, metadata={
        "help": "the DSF reference code's block exactly in those models: a linear map after every recurrent layer "
                "and its N(0, 0.02) initialisation (with --norm)"})
    context: int = field(default=128, metadata={"help": "window length T of the quality part", "min": 1})
    batch_size: int = field(default=16, metadata={"help": "parallel streams of the quality part", "min": 1})
    steps: int = field(default=1000, metadata={"help": "the equal step budget of every mode of the quality part "
                                                       "(the recall part's: --recall-steps)", "min": 1})
    lr: float = field(default=3e-3, metadata={"help": "learning rate of the quality part (the rule's optimizer: AdamW, "
                                                                "Adam under dfa rules)", "gt": 0})
    eval_every: int = field(default=250, metadata={"help": "steps between validation passes of the quality part (the "
                                                           "recall part validates every --recall-steps / 6)", "min": 1})
    eval_tokens: int = field(default=20_000, metadata={"help": "validation tokens per pass of the quality part",
                                                       "min": 1})
    # 3. alignment
    align_batch: int = field(default=8, metadata={"help": "validation windows of the alignment part", "min": 1})
    align_context: int = field(default=128, metadata={"help": "window length of the alignment part", "min": 1})
    # 4. recall
    recall_lag: int = field(default=50, metadata={"help": "delay of the recall task", "min": 1})
    recall_symbols: int = field(default=8, metadata={"help": "symbols of the recall task", "min": 2})
    recall_modes: list[str] = field(default_factory=lambda: ["bptt", "ft-bptt", "dsf"],
                                    metadata={"help": "time rules trained on the recall task"})
    recall_hidden: int = field(default=64, metadata={"help": "width of the recall model", "min": 1})
    recall_layers: int = field(default=1, metadata={"help": "layers of the recall model", "min": 1})
    recall_steps: int = field(default=600, metadata={"help": "step budget of the recall part", "min": 1})
    recall_batch: int = field(default=32, metadata={"help": "batch of the recall part", "min": 1})
    recall_lr: float = field(default=1e-2, metadata={"help": "learning rate of the recall part (the rule's optimizer: "
                                                                      "AdamW, Adam under dfa rules)", "gt": 0})


def _run(args) -> int:
    from fwdlearn.sequences.bench import run_bench

    run_bench(dataclass_from_args(SeqBenchConfig, args))  # (its rules are checked before any work)
    return 0


bench = Command(help="DSF vs BPTT: cost per step by context, quality on tinyshakespeare, gradient alignment, "
                     "delayed recall", configure=lambda parser: add_dataclass_arguments(parser, SeqBenchConfig),
                run=_run)
