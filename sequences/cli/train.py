"""``fwdlearn seq train``: a language model trained by a rule, with validation, checkpoints and resume.

::

    fwdlearn seq train --data tinyshakespeare --model gru --training dsf --layers 2 --hidden 512 --context 256
    fwdlearn seq train --data tinyshakespeare --training dsf --checkpoint runs/ts.pt --resume --steps 4000
    torchrun --nproc_per_node=2 -m fwdlearn seq train --data tinyshakespeare --training dsf   # data parallel
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.records import RunRecord, refuse_overwrite
from fwdlearn.rules import DSF_FEEDBACKS

__all__ = ["TrainSeqConfig", "train", "run_train", "MODELS"]

#: the model names (the same words as :data:`fwdlearn.sequences.nn.language_model.MODEL_NAMES`)
MODELS = ("tanh", "gru", "lstm", "linear", "conv")


@dataclass
class TrainSeqConfig:
    data: str = field(default="tinyshakespeare", metadata={"help": "corpus: tinyshakespeare, wikitext-2, or a text file/folder"})
    level: str = field(default="char", metadata={"help": "tokens", "choices": ["char", "word"]})
    model: str = field(default="gru", metadata={"help": "model: a recurrent cell (tanh, gru, lstm, linear) or conv "
                                                        "(causal convolution)", "choices": list(MODELS)})
    training: str = field(default="dsf", metadata={"help": "the rule (see fwdlearn.rules): bptt | tbptt:k | ft-bptt | "
                                                           "dsf[:gaussian|:orthogonal] for recurrent models, bp"})
    feedback: str = field(default="diagonal", metadata={"help": "DSF feedback A", "choices": list(DSF_FEEDBACKS)})
    layers: int = 2
    hidden: int = 512
    norm: bool = field(default=False, metadata={"help": "pre-LayerNorm blocks with an MLP"})
    context: int = field(default=256, metadata={"help": "window length T (state carried across windows)"})
    batch_size: int = field(default=16, metadata={"help": "parallel streams B"})
    steps: int = field(default=2000, metadata={"help": "optimizer steps (the total, also when resuming)"})
    lr: float = 2e-3
    weight_decay: float = 0.0
    clip: float = field(default=1.0, metadata={"help": "gradient-norm clip (0: none)"})
    eval_every: int = field(default=200, metadata={"help": "steps between validation passes and checkpoints"})
    eval_tokens: int = field(default=100_000, metadata={"help": "validation tokens per pass during training (0: all)"})
    train_split: str = "train"
    valid_split: str = "validation"
    limit: int = field(default=0, metadata={"help": "read only the first N characters of each file (0: all)"})
    checkpoint: str = field(default="", metadata={"help": "checkpoint file (default: next to the record, .pt)"})
    resume: bool = field(default=False, metadata={"help": "continue from --checkpoint"})
    sample: int = field(default=200, metadata={"help": "tokens to generate after training (0: none)"})
    json: str = field(default="", metadata={"help": "run record path (default runs/seq-train-<time>.json)"})
    overwrite: bool = False
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch's default)"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    seed: int = 0
    quiet: bool = False


def run_train(config: TrainSeqConfig) -> dict:
    """Train one model as configured; returns the record's summary.

    Under ``torchrun`` the model is trained data-parallel (``DistributedDataParallel``, gloo on CPU): every
    process walks its own shard of the training text; rank 0 writes the record and the checkpoint.
    """
    import torch

    from fwdlearn.distributed import init_from_env, rank, world_size
    from fwdlearn.fit import seed_everything
    from fwdlearn.sequences.data.text import load_text
    from fwdlearn.sequences.nn.language_model import MODEL_NAMES, make_language_model

    init_from_env()
    lead = rank() == 0
    if config.json:
        path = Path(config.json)
    elif world_size() > 1:
        raise ValueError("under torchrun pass --json (every process must agree on the record and checkpoint paths)")
    else:
        path = RunRecord.default_path("seq-train")
    refuse_overwrite(path, overwrite=config.overwrite)
    checkpoint = Path(config.checkpoint) if config.checkpoint else path.with_suffix(".pt")
    if config.resume and not checkpoint.exists():
        raise FileNotFoundError(f"--resume was given but the checkpoint {checkpoint} does not exist; "
                                "pass the --checkpoint of the run to continue")
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    corpus = load_text(config.data, level=config.level, limit=config.limit or None)
    recurrent = MODEL_NAMES[config.model][0] == "recurrent"
    model = make_language_model(config.model, corpus.vocab_size, hidden=config.hidden, layers=config.layers,
                                training=config.training, feedback=config.feedback if recurrent else None,
                                norm=config.norm if recurrent else None).to(config.device)
    record = RunRecord("seq-train", config, seed=config.seed)
    if not config.quiet and lead:
        print(f"{corpus}; {sum(p.numel() for p in model.parameters()):,} parameters; training={model.rule}")
    start = time.perf_counter()
    report = model.fit(corpus, context=config.context, steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                       weight_decay=config.weight_decay, clip=config.clip or None, eval_every=config.eval_every,
                       eval_tokens=config.eval_tokens or None, train_split=config.train_split,
                       valid_split=config.valid_split, checkpoint=checkpoint, resume=config.resume,
                       quiet=config.quiet, seed=config.seed)
    seconds = time.perf_counter() - start
    if not lead:  # rank 0 evaluates, reports and writes; the others are done
        return {"steps": report.steps, "train_seconds": seconds}
    for row in report.history:
        record.log(**row)
    final = model.evaluate(corpus.split(config.valid_split), context=config.context, batch_size=config.batch_size)
    record.summary.update({f"val_{k}": v for k, v in final.items()})
    record.summary.update({"steps": report.steps, "best_step": report.result.best_step, "train_seconds": seconds,
                           "tokens_per_second": world_size() * config.batch_size * config.context * report.steps / max(report.result.seconds, 1e-9),
                           "checkpoint": str(checkpoint), "vocab_size": corpus.vocab_size,
                           "model": model.config_dict(), "processes": world_size()})
    if config.sample:
        prompt = corpus.vocab.decode(corpus.split(config.valid_split)[:1])
        record.summary["sample"] = model.generate(prompt, config.sample, vocab=corpus.vocab, seed=config.seed,
                                                  temperature=0.8)
    saved = record.save(path, overwrite=config.overwrite)
    print(f"{model.rule}: val loss {final['loss']:.4f}, perplexity {final['perplexity']:.3f}, "
          f"bits/token {final['bpc']:.4f} after {report.steps} steps")
    if config.sample and not config.quiet:
        print(record.summary["sample"])
    print(f"record: {saved}\ncheckpoint: {checkpoint}")
    return record.summary


def _run(args: argparse.Namespace) -> int:
    run_train(dataclass_from_args(TrainSeqConfig, args))
    return 0


train = Command(help="train a language model by a rule (bptt, tbptt:k, ft-bptt, dsf; progress, validation, "
                     "checkpoints, resume, JSON record)",
                configure=lambda parser: add_dataclass_arguments(parser, TrainSeqConfig), run=_run)
