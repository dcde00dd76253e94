"""``fwdlearn seq train``: a language model trained by a rule, with validation, checkpoints and resume.

::

    fwdlearn seq train --data tinyshakespeare --model gru --training dsf --name dsf
    fwdlearn seq train --data tinyshakespeare --training dsf --name dsf --resume --steps 4000
    fwdlearn seq train --hidden 512 --context 256 --device cuda ...                          # GPU-sized
    torchrun --nproc_per_node=2 -m fwdlearn seq train --data tinyshakespeare --name dp         # data parallel

The defaults are sized for a laptop CPU (hidden 128, context 128); a GPU run would use hidden 512 and
context 256. ``--name dsf`` writes ``runs/dsf.json`` (the record) and ``runs/dsf.pt`` (the checkpoint,
read by ``fwdlearn influence seq --checkpoints runs/dsf.pt``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.records import RunRecord
from fwdlearn.rules import DSF_FEEDBACKS
from fwdlearn.runs import RunOptions

__all__ = ["TrainSeqConfig", "train", "run_train", "MODELS"]

#: the model names (the same words as :data:`fwdlearn.sequences.nn.language_model.MODEL_NAMES`)
MODELS = ("tanh", "gru", "lstm", "linear", "conv")


@dataclass
class TrainSeqConfig(RunOptions):
    data: str = field(default="tinyshakespeare", metadata={"help": "corpus: tinyshakespeare, wikitext-2, a UTF-8 "
                                                                   "text file, or a folder of train/valid/test files"})
    level: str = field(default="char", metadata={"help": "tokens: characters or whitespace-separated words",
                                                 "choices": ["char", "word"]})
    model: str = field(default="gru", metadata={"help": "model: a recurrent cell (tanh, gru, lstm, linear) or conv "
                                                        "(causal convolution)", "choices": list(MODELS)})
    training: str = field(default="dsf", metadata={"help": "the rule (see fwdlearn.rules): bptt | tbptt:k | ft-bptt | "
                                                           "dsf[:gaussian|:orthogonal] for recurrent models, bp"})
    feedback: str = field(default="diagonal", metadata={"help": "DSF feedback A", "choices": list(DSF_FEEDBACKS)})
    layers: int = field(default=2, metadata={"help": "layers of the model", "min": 1})
    hidden: int = field(default=128, metadata={"help": "width of every layer (a GPU run: 512)", "min": 1})
    norm: bool = field(default=False, metadata={"help": "pre-LayerNorm blocks with an MLP"})
    context: int = field(default=128, metadata={"help": "window length T, the state carried across windows (a GPU "
                                                        "run: 256)", "min": 1})
    batch_size: int = field(default=16, metadata={"help": "parallel streams B", "min": 1})
    steps: int = field(default=2000, metadata={"help": "optimizer steps in all (when resuming: the total, not more)",
                                               "min": 1})
    lr: float = field(default=2e-3, metadata={"help": "AdamW learning rate (a new value applies when resuming)",
                                              "gt": 0})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay", "min": 0})
    clip: float = field(default=1.0, metadata={"help": "clip the gradient norm to this value (0: no clipping)",
                                               "min": 0})
    diverge_factor: float = field(default=100.0, metadata={"help": "stop when the training loss exceeds this many "
                                                                   "times its first value", "gt": 1})
    eval_every: int = field(default=200, metadata={"help": "steps between validation passes and checkpoints",
                                                   "min": 1})
    eval_tokens: int = field(default=100_000, metadata={"help": "validation tokens per pass during training (progress "
                                                                "bar, record rows; 0: all); the final figures use the "
                                                                "whole split", "min": 0})
    train_split: str = field(default="train", metadata={"help": "split to train on"})
    valid_split: str = field(default="validation", metadata={"help": "split to validate on"})
    limit: int = field(default=0, metadata={"help": "read only the first N characters of each file (0: all)",
                                            "min": 0})
    checkpoint: str = field(default="", metadata={"help": "checkpoint file (default: runs/<name>.pt, or next to "
                                                          "--json)"})
    resume: bool = field(default=False, metadata={"help": "continue the run whose checkpoint --name (or --checkpoint) "
                                                          "names"})
    sample: int = field(default=200, metadata={"help": "tokens to generate after training (0: none)", "min": 0})


def run_train(config: TrainSeqConfig) -> dict:
    """Train one model as configured; returns the record's summary.

    Under ``torchrun`` the model is trained data-parallel (``DistributedDataParallel``, gloo on CPU): every
    process walks its own shard of the training text; rank 0 writes the record and the checkpoint.
    """
    from fwdlearn.distributed import init_from_env, rank, world_size
    from fwdlearn.errors import UsageError
    from fwdlearn.fit import seed_everything
    from fwdlearn.rules import parse_rule
    from fwdlearn.runs import run_outputs, start_run
    from fwdlearn.sequences.data.text import read_corpus
    from fwdlearn.sequences.nn.language_model import MODEL_NAMES, make_language_model

    parse_rule(config.training)  # an unknown rule is refused before anything else
    paths = run_outputs("seq-train", config, checkpoint=config.checkpoint, resume=config.resume)
    device = start_run(config)
    init_from_env()
    lead = rank() == 0
    seed_everything(config.seed)
    corpus = read_corpus(config.data, level=config.level, limit=config.limit or None)
    for flag, split in (("--train-split", config.train_split), ("--valid-split", config.valid_split)):
        if split not in corpus.splits:
            raise UsageError(f"{flag} {split}: {corpus.name} has the splits {', '.join(corpus.splits)}; pick one "
                             "of those (wikitext-2 stored without train.txt: --train-split validation "
                             "--valid-split test)")
    recurrent = MODEL_NAMES[config.model][0] == "recurrent"
    model = make_language_model(config.model, corpus.vocab_size, hidden=config.hidden, layers=config.layers,
                                training=config.training, feedback=config.feedback if recurrent else None,
                                norm=config.norm if recurrent else None).to(device)
    record = RunRecord("seq-train", config, seed=config.seed)
    if not config.quiet and lead:
        valid_tokens = corpus.split(config.valid_split).numel()
        subset = (f"its first {config.eval_tokens:,} tokens" if 0 < config.eval_tokens < valid_tokens
                  else "the whole split")
        print(f"{corpus}; {sum(p.numel() for p in model.parameters()):,} parameters; training={model.rule}; "
              f"checkpoint {paths.checkpoint}\nthe progress bar's val_* are on {subset} of {config.valid_split}, "
              "every --eval-every steps; the final figures on the whole split")
    report = model.fit(corpus, context=config.context, steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                       weight_decay=config.weight_decay, clip=config.clip or None, eval_every=config.eval_every,
                       eval_tokens=config.eval_tokens or None, train_split=config.train_split,
                       valid_split=config.valid_split, checkpoint=paths.checkpoint, resume=config.resume,
                       overwrite=config.overwrite, quiet=config.quiet, seed=config.seed,
                       diverge_factor=config.diverge_factor)
    if not lead:  # rank 0 evaluates, reports and writes; the others are done
        return {"steps": report.steps, "train_seconds": report.seconds}
    for row in report.history:
        record.log(**row)
    valid = corpus.split(config.valid_split)
    final = model.evaluate(valid, context=config.context, batch_size=config.batch_size)
    record.summary.update({f"val_{k}": v for k, v in final.items()})
    record.summary.update({
        "steps": report.steps, "best_step": report.best_step, "train_seconds": report.seconds,
        "tokens_per_second": world_size() * config.batch_size * config.context * report.steps / max(report.seconds, 1e-9),
        "val_tokens": valid.numel(), "vocab_size": corpus.vocab_size, "model": model.config_dict(),
        "processes": world_size(), "device": str(device),
        "notes": "val_* in the summary: the best state on the whole validation split; val_* in the metrics rows: "
                 + (f"on its first {config.eval_tokens:,} tokens" if config.eval_tokens else "on the whole split")})
    if report.resumed is not None:
        record.summary["resumed"] = report.resumed  # the step it continued from and the settings that changed
    record.add_file("checkpoint", paths.checkpoint)
    if config.sample:
        prompt = corpus.vocab.decode(valid[:1])
        record.summary["sample"] = model.generate(prompt, config.sample, vocab=corpus.vocab, seed=config.seed,
                                                  temperature=0.8)
    saved = record.save(paths.record, overwrite=config.overwrite or config.resume)
    print(f"{model.rule}: val loss {final['loss']:.4f}, perplexity {final['perplexity']:.3f}, bits/token "
          f"{final['bpc']:.4f} on the whole {config.valid_split} split ({valid.numel():,} tokens), best state of "
          f"step {report.best_step} of {report.steps}")
    if report.resumed is not None and report.resumed["changed"]:
        changed = ", ".join(f"{k} {then} -> {now}" for k, (then, now) in report.resumed["changed"].items())
        print(f"resumed from step {report.resumed['from_step']} with {changed}")
    if config.sample and not config.quiet:
        print(record.summary["sample"])
    print(f"record: {saved}\ncheckpoint: {paths.checkpoint}")
    return record.summary


def _run(args: argparse.Namespace) -> int:
    run_train(dataclass_from_args(TrainSeqConfig, args))
    return 0


train = Command(help="train a language model by a rule (bptt, tbptt:k, ft-bptt, dsf; progress, validation, "
                     "checkpoints, resume, JSON record)",
                configure=lambda parser: add_dataclass_arguments(parser, TrainSeqConfig), run=_run)
