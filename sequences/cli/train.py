"""``fwdlearn seq train``: a language model trained by a rule, with validation, checkpoints and resume.

::

    fwdlearn seq train --data tinyshakespeare --model gru --training dsf --layers 2 --hidden 512 --context 256
    fwdlearn seq train --model transformer --training dfa --layers 4 --hidden 256 --heads 4 --context 128 \
        --align-every 100 --plot runs/dfa-alignment.png
    fwdlearn seq train --model gru --training dfa+dsf          # neither depth nor time backpropagated
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
MODELS = ("tanh", "gru", "lstm", "linear", "conv", "transformer")


@dataclass
class TrainSeqConfig:
    data: str = field(default="tinyshakespeare", metadata={"help": "corpus: tinyshakespeare, wikitext-2, or a text file/folder"})
    level: str = field(default="char", metadata={"help": "tokens", "choices": ["char", "word"]})
    model: str = field(default="gru", metadata={"help": "model: a recurrent cell (tanh, gru, lstm, linear), conv "
                                                        "(causal convolution) or transformer", "choices": list(MODELS)})
    training: str | None = field(default=None, metadata={"help": "the rule (see fwdlearn.rules): through time bptt | "
                                                                 "tbptt:k | ft-bptt | dsf[:gaussian|:orthogonal] "
                                                                 "(recurrent models); through depth bp | dfa[:micro] | "
                                                                 "local:readout | shallow (recurrent models and "
                                                                 "transformer); joined as dfa+dsf (default: dsf for a "
                                                                 "recurrent model, bp otherwise)"})
    feedback: str = field(default="diagonal", metadata={"help": "DSF feedback A", "choices": list(DSF_FEEDBACKS)})
    layers: int = 2
    hidden: int = 512
    norm: bool = field(default=False, metadata={"help": "pre-LayerNorm blocks with an MLP (recurrent models)"})
    heads: int = field(default=4, metadata={"help": "attention heads (transformer)"})
    tie: bool = field(default=False, metadata={"help": "the head's weight is the token embedding (transformer)"})
    reuse: bool = field(default=False, metadata={"help": "GRU DSF / FT-BPTT in one pass with reused projections (same "
                                                         "gradients as the reference recipe)"})
    context: int = field(default=256, metadata={"help": "window length T (state carried across windows; a "
                                                        "transformer's learned positions)"})
    batch_size: int = field(default=16, metadata={"help": "parallel streams B"})
    steps: int = field(default=2000, metadata={"help": "optimizer steps (the total, also when resuming)"})
    lr: float | None = field(default=None, metadata={"help": "peak learning rate (default: the rule's: Adam 1e-3 "
                                                             "under dfa; the model's own under backprop)"})
    weight_decay: float | None = field(default=None, metadata={"help": "weight decay (default: the rule's, 0)"})
    schedule: str | None = field(default=None, metadata={"help": "learning-rate schedule (default: the rule's: "
                                                                 "constant under dfa and for recurrent models, cosine "
                                                                 "for a transformer under backprop)",
                                                         "choices": ["constant", "cosine"]})
    warmup: int | None = field(default=None, metadata={"help": "warm-up steps of the cosine schedule (default: the "
                                                               "rule's)"})
    align_every: int = field(default=0, metadata={"help": "every N steps, the cosine between each feedback point's "
                                                          "DFA signal and the true gradient (dfa rules; 0: never)"})
    plot: str = field(default="", metadata={"help": "draw the alignment per block against steps to this image "
                                                    "(needs --align-every)"})
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
    from fwdlearn.diagnostics.plots import plot_alignment
    from fwdlearn.sequences.nn.language_model import MODEL_NAMES, make_language_model
    from fwdlearn.sequences.training import alignment_curves

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
    if config.plot and not config.align_every:
        raise ValueError("--plot draws the alignment diagnostic: pass --align-every N as well")
    kind = MODEL_NAMES[config.model][0]
    options = {"recurrent": dict(feedback=config.feedback, norm=config.norm, reuse=config.reuse),
               "transformer": dict(heads=config.heads, tie=config.tie, context=config.context)}.get(kind, {})
    training = config.training or ("dsf" if kind == "recurrent" else "bp")
    model = make_language_model(config.model, corpus.vocab_size, hidden=config.hidden, layers=config.layers,
                                training=training, **options).to(config.device)
    record = RunRecord("seq-train", config, seed=config.seed)
    if not config.quiet and lead:
        print(f"{corpus}; {sum(p.numel() for p in model.parameters()):,} parameters; training={model.rule}")
    start = time.perf_counter()
    report = model.fit(corpus, context=config.context, steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                       weight_decay=config.weight_decay, schedule=config.schedule, warmup=config.warmup,
                       clip=config.clip or None, eval_every=config.eval_every,
                       eval_tokens=config.eval_tokens or None, train_split=config.train_split,
                       valid_split=config.valid_split, align_every=config.align_every or None, checkpoint=checkpoint,
                       resume=config.resume, quiet=config.quiet, seed=config.seed)
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
    curves = alignment_curves(report.history)
    if curves:
        record.summary["alignment"] = {point: curve[-1][1] for point, curve in curves.items()}
        if config.plot:
            record.summary["plot"] = str(plot_alignment(curves, config.plot, title=f"{config.model} {model.rule}"))
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


train = Command(help="train a language model by a rule (bptt, tbptt:k, ft-bptt, dsf; bp, dfa, local:readout, shallow; "
                     "progress, validation, checkpoints, resume, JSON record)",
                configure=lambda parser: add_dataclass_arguments(parser, TrainSeqConfig), run=_run)
