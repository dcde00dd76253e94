"""``fwdlearn seq train``: a language model trained by a rule, with validation, checkpoints and resume.

::

    fwdlearn seq train --data tinyshakespeare --model gru --training dsf --name dsf
    fwdlearn seq train --data tinyshakespeare --training dsf --name dsf --resume --steps 4000
    fwdlearn seq train --model transformer --training dfa --layers 4 --hidden 256 --heads 4 --context 128 \
        --align-every 100 --plot runs/dfa-alignment.png
    fwdlearn seq train --model gru --training dfa+dsf --name dfa-dsf     # neither depth nor time backpropagated
    fwdlearn seq train --hidden 512 --context 256 --device cuda ...                          # GPU-sized
    torchrun --nproc_per_node=2 -m fwdlearn seq train --data tinyshakespeare --name dp         # data parallel

The defaults are sized for a laptop CPU (hidden 128, context 128); a GPU run would use hidden 512 and
context 256. ``--name dsf`` writes ``runs/dsf.json`` (the record) and ``runs/dsf.pt`` (the checkpoint,
read by ``fwdlearn influence seq --checkpoints runs/dsf.pt``).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.records import RunRecord
from fwdlearn.reporting import describe_resume
from fwdlearn.rules import DSF_FEEDBACKS
from fwdlearn.runs import RunOptions

from fwdlearn.sequences.registries import LM_KINDS, MODEL_NAMES

__all__ = ["TrainSeqConfig", "train", "run_train"]


@dataclass
class TrainSeqConfig(RunOptions):
    data: str = field(default="tinyshakespeare", metadata={"help": "corpus: tinyshakespeare, wikitext-2, a UTF-8 "
                                                                   "text file, or a folder of train/valid/test files"})
    level: str = field(default="char", metadata={"help": "tokens: characters or whitespace-separated words",
                                                 "choices": ["char", "word"]})
    model: str = field(default="gru", metadata={"help": "model: a recurrent cell (tanh, gru, lstm, linear, or one "
                                                        "registered in RECURRENT_CELLS by a script that then calls "
                                                        "fwdlearn.cli.main), conv (causal convolution) or "
                                                        "transformer", "choices": MODEL_NAMES.keys})
    training: str | None = field(default=None, metadata={"help": "the rule (see fwdlearn.rules): through time bptt | "
                                                                 "tbptt:k | ft-bptt | dsf[:gaussian|:orthogonal] "
                                                                 "(recurrent models); through depth bp | dfa[:micro] | "
                                                                 "local:readout | shallow (recurrent models and "
                                                                 "transformer); joined as dfa+dsf (default: dsf for a "
                                                                 "recurrent model, bp otherwise)"})
    # (the model-shaping flags below default to None, "not given": a flag of another kind of model is refused even
    # when it names that model's default; _MODEL_FLAGS holds the defaults filled in for the model's own kind)
    feedback: str | None = field(default=None, metadata={
        "help": "DSF feedback A where --training names none ('dsf'; a 'dsf:<kind>' already names it; recurrent "
                "models; default: diagonal)", "choices": list(DSF_FEEDBACKS)})
    layers: int = field(default=2, metadata={"help": "layers of the model", "min": 1})
    hidden: int = field(default=128, metadata={"help": "width of every layer (a GPU run: 512)", "min": 1})
    norm: bool | None = field(default=None, metadata={
        "help": "pre-LayerNorm blocks with an MLP (recurrent models; the DSF paper's block layout; --no-norm: plain "
                "residual blocks; default: --norm)"})
    reference_block: bool | None = field(default=None, metadata={
        "help": "the DSF reference code's block exactly: a linear map after every recurrent layer and its N(0, 0.02) "
                "initialisation (recurrent models, with --norm; default: --no-reference-block)"})
    heads: int | None = field(default=None, metadata={"help": "attention heads (transformer; default: 4)", "min": 1})
    tie: bool | None = field(default=None, metadata={
        "help": "the head's weight is the token embedding (transformer; default: --no-tie)"})
    context: int = field(default=128, metadata={"help": "window length T: the state carried across windows, a "
                                                        "transformer's learned positions (a GPU run: 256)", "min": 1})
    batch_size: int = field(default=16, metadata={"help": "parallel streams B", "min": 1})
    steps: int = field(default=2000, metadata={"help": "optimizer steps in all (when resuming: the total, not more)",
                                               "min": 1})
    lr: float | None = field(default=None, metadata={"help": "peak learning rate (default: the rule's: Adam 1e-3 under "
                                                             "dfa, else AdamW 2e-3 for a recurrent or conv model, 1e-3 "
                                                             "for a transformer; a new value applies when resuming)",
                                                     "gt": 0})
    weight_decay: float | None = field(default=None, metadata={"help": "weight decay (default: the rule's, 0)",
                                                               "min": 0})
    schedule: str | None = field(default=None, metadata={"help": "learning-rate schedule (default: the rule's: "
                                                                 "cosine for a transformer not under dfa, else "
                                                                 "constant)",
                                                         "choices": ["constant", "cosine"]})
    warmup: int | None = field(default=None, metadata={"help": "linear warm-up steps before either schedule "
                                                               "(default: the rule's: 100 for a transformer not under "
                                                               "dfa, else 0; a default not shorter than --steps is cut "
                                                               "to a tenth of them)", "min": 0})
    align_every: int = field(default=0, metadata={"help": "every N steps, the cosine between each feedback point's "
                                                          "DFA signal and the true gradient (dfa rules; 0: never)",
                                                  "min": 0})
    plot: str = field(default="", metadata={"help": "draw the alignment per block against steps to this image "
                                                    "(needs --align-every)"})
    clip: float = field(default=1.0, metadata={"help": "clip the gradient norm to this value (0: no clipping; per "
                                                       "block under local:readout)",
                                               "min": 0})
    diverge_factor: float = field(default=100.0, metadata={"help": "stop when the training loss exceeds this many "
                                                                   "times its first value", "gt": 1,
                                                            "python_float": True})
    eval_every: int = field(default=200, metadata={"help": "steps between validation passes and checkpoints",
                                                   "min": 1})
    eval_tokens: int = field(default=100_000, metadata={"help": "validation tokens per pass during training (progress "
                                                                "bar, record rows; 0: all; a new value applies when "
                                                                "resuming, the best state so far scored again on it); "
                                                                "the final figures use the whole split", "min": 0})
    train_split: str = field(default="train", metadata={"help": "split to train on (wikitext-2 stored without "
                                                                "train.txt: validation, with --valid-split test)"})
    valid_split: str = field(default="validation", metadata={"help": "split to validate on and select the best state "
                                                                     "on (not the --train-split)"})
    limit: int = field(default=0, metadata={"help": "read only the first N characters of each file (--level word: "
                                                    "the whole words among them; 0: all)", "min": 0})
    checkpoint: str = field(default="", metadata={"help": "checkpoint file (default: runs/<name>.pt, or next to "
                                                          "--json)"})
    resume: bool = field(default=False, metadata={"help": "continue the run whose checkpoint --name (or --checkpoint) "
                                                          "names"})
    sample: int = field(default=200, metadata={"help": "tokens to generate after training (0: none)", "min": 0,
                                               "max": 1_000_000})


#: flags that shape one kind of model only (the others would silently ignore them): the kind, the value when not given
_MODEL_FLAGS = {"feedback": ("recurrent", "diagonal"), "norm": ("recurrent", True),
                "reference_block": ("recurrent", False), "heads": ("transformer", 4), "tie": ("transformer", False)}


def _model_options(config: TrainSeqConfig, kind: str) -> dict:
    """The model-shaping flags of ``kind`` with their defaults filled in; a flag of another kind of model given (even
    with that model's default value) is refused."""
    from fwdlearn.config import flag_name
    from fwdlearn.errors import UsageError

    options = {}
    for name, (owner, default) in _MODEL_FLAGS.items():
        value = getattr(config, name)
        if owner == kind:
            options[name] = default if value is None else value
        elif value is not None:
            flag = flag_name(name) if value is not False else "--no-" + flag_name(name)[2:]
            flag += f" {value}" if not isinstance(value, bool) else ""
            raise UsageError(f"{flag} applies to {owner} models only; --model {config.model} does not take it")
    return options


def _sizes(config: TrainSeqConfig) -> dict:
    """``hidden`` and ``layers`` for the model: left out for a kind registered without them (a bigram model) when
    they hold their defaults, refused when set to anything else."""
    from dataclasses import fields

    from fwdlearn.sequences.nn.language_model import model_sizes

    defaults = {f.name: f.default for f in fields(TrainSeqConfig)}
    return model_sizes(config.model, {"hidden": config.hidden, "layers": config.layers}, defaults,
                       f"--model {config.model}")


#: a language model's fingerprint entry -> the field of the flag that sets it (the model's kind and cell: --model)
_RESUME_FLAGS = {"model.hidden": "hidden", "model.layers": "layers", "model.training": "training",
                 "model.feedback": "feedback", "model.norm": "norm", "model.reference_block": "reference_block",
                 "model.heads": "heads", "model.tie": "tie", "model.context": "context", "context": "context",
                 "batch_size": "batch_size", "seed": "seed"}


def _resume_flag(name: str, value, fingerprint) -> str | None:
    """The flag, with its value, that gives the fingerprint entry ``name`` (``"model.hidden"``) ``value``
    (``--hidden 8``, ``--no-norm``, ``--model gru`` for the model's kind and cell); ``None`` for an entry no flag
    sets (the corpus, the vocabulary, the number of processes)."""
    from fwdlearn.config import flag_name

    if name in ("model.kind", "model.cell"):
        model = fingerprint.get("model") or {}
        named = [n for n, (kind, fixed) in MODEL_NAMES.items()
                 if kind == model.get("kind") and all(model.get(k) == v for k, v in fixed.items())]
        return f"--model {named[0]}" if named else None
    if name not in _RESUME_FLAGS:
        return None
    flag = flag_name(_RESUME_FLAGS[name])
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    return f"{flag} {value}"


def _in_flags(error, config: TrainSeqConfig):
    """The refusal to resume a checkpoint made by another run (``error``, a :class:`~fwdlearn.fit.CheckpointMismatch`)
    in the flags' words, ``--hidden 8 (checkpoint) vs 16 (now)``, with the flags to add to resume it: the
    checkpoint's values of those that differ; for a checkpoint of another kind of model, every flag of its model (its
    defaults are not this one's), without the flags given of this kind's only. ``--feedback`` is left to
    ``--training`` (which names a DSF feedback other than the diagonal one), unless the command gives it."""
    from fwdlearn.config import flag_name
    from fwdlearn.rules import DSF, parse_rule

    model = error.saved.get("model") or {}
    extra, without = [], []
    if model.get("kind") != (error.fingerprint.get("model") or {}).get("kind"):
        extra = [flag for key, value in model.items() if (flag := _resume_flag(f"model.{key}", value, error.saved))]
        without = [flag_name(name) if value is not False else "--no-" + flag_name(name)[2:]
                   for name, (owner, _) in _MODEL_FLAGS.items()
                   if owner != model.get("kind") and (value := getattr(config, name)) is not None]
    try:
        dsf = isinstance(parse_rule(str(model.get("training"))).time, DSF)
    except ValueError:  # (a rule not known now: its feedback as the checkpoint says)
        dsf = True
    drop = ["--feedback"] if config.feedback is None else []
    if config.feedback is not None and not dsf and "--feedback" not in without:  # (refused with a rule of no DSF)
        without.append("--feedback")
    return error.in_flags(_resume_flag, extra=extra, drop=drop, without=without,
                          words={"model.vocab_size": "vocabulary", "processes": "number of processes"})


def run_train(config: TrainSeqConfig) -> dict:
    """Train one model as configured; returns the record's summary.

    Under ``torchrun`` the model is trained data-parallel (``DistributedDataParallel``, gloo on CPU): every
    process walks its own shard of the training text; rank 0 writes the record and the checkpoint.
    """
    from dataclasses import fields

    from fwdlearn.config import as_flags
    from fwdlearn.distributed import init_from_env, process_device, rank, world_size
    from fwdlearn.errors import UsageError, alike_on_every_process
    from fwdlearn.fit import CheckpointMismatch, seed_everything
    from fwdlearn.diagnostics.plots import plot_alignment
    from fwdlearn.rules import DFA, DSF, parse_rule
    from fwdlearn.runs import run_outputs, start_run
    from fwdlearn.sequences.data.text import check_splits, corpus_files, read_corpus
    from fwdlearn.sequences.nn.language_model import make_language_model
    from fwdlearn.sequences.training import alignment_curves

    kind = MODEL_NAMES[config.model][0]
    shape = _model_options(config, kind)
    if kind == "transformer":
        from fwdlearn.sequences.nn.transformer import check_heads

        try:
            check_heads(config.hidden, shape["heads"], ("--hidden", "--heads"))
        except ValueError as error:
            raise UsageError(str(error)) from None
    # (None is "not given"; an empty --training "" goes on to the parser, which refuses it as the Python API does)
    training = config.training if config.training is not None else ("dsf" if kind == "recurrent" else "bp")
    rule = parse_rule(training)  # an unknown rule is refused before anything else
    # (before reading the data; said as typed: 'sf', not its rule's name. A transformer's time rule and a conv model's
    # rule other than bp were refused after the corpus was read)
    try:
        LM_KINDS.get(kind).check_rule(rule)
    except ValueError as error:
        raise UsageError(f"--training {training}: {error}") from None
    if config.feedback is not None and not isinstance(rule.time, DSF):
        raise UsageError(f"--feedback {config.feedback} chooses DSF's feedback through time; --training {training} "
                         "has no DSF part (use --training dsf, or dfa+dsf)")
    if config.feedback is not None and rule.time.feedback not in (None, config.feedback):  # (it was dropped in silence)
        raise UsageError(f"--feedback {config.feedback} and --training {training} name two DSF feedbacks "
                         f"({config.feedback} and {rule.time.feedback}); give one: --training "
                         f"{rule.with_time(DSF())} --feedback {config.feedback}, or --training {training} alone")
    if config.plot and not config.align_every:
        raise UsageError("--plot draws the alignment diagnostic: pass --align-every N as well")
    # (it failed after the data was read and the model built, naming the Python API's training='dfa')
    if config.align_every and kind == "conv":  # (no dfa rule to suggest: a conv model trains by bp alone)
        raise UsageError(f"--align-every reads the alignment of DFA's feedback signals; --model {config.model} trains "
                         "by bp alone, with no feedback points: leave --align-every out")
    if config.align_every and not isinstance(rule.depth, DFA):
        raise UsageError(f"--align-every reads the alignment of DFA's feedback signals; --training {training} has no "
                         "dfa part: use a dfa rule (--training dfa, dfa:micro or dfa+dsf), or leave --align-every out")
    paths = run_outputs("seq-train", config, checkpoint=config.checkpoint, plot=config.plot, resume=config.resume,
                        scales_out=True, inputs=[("--data", f) for f in corpus_files(config.data)])
    device = start_run(config, paths)
    corpus = read_corpus(config.data, level=config.level, limit=config.limit or None)
    # two different splits the corpus has (before the processes connect: rank 0 alone says it)
    check_splits(corpus, config.train_split, config.valid_split, ("--train-split", "--valid-split"))
    init_from_env(device=device)
    device = process_device(device)
    lead = rank() == 0
    seed_everything(config.seed)
    options = {"recurrent": dict(shape, feedback_seed=config.seed),
               "transformer": dict(shape, context=config.context, feedback_seed=config.seed)}.get(kind, {})
    # (a conv model has no feedback)
    with alike_on_every_process():  # (a size that cannot be built fails in every process: rank 0 says it)
        try:
            model = make_language_model(config.model, corpus.vocab_size, **_sizes(config),
                                        training=training, **options).to(device)
        except ValueError as error:  # (the model's own check, in the flags' words: norm=True is --norm)
            raise UsageError(as_flags(str(error), [f.name for f in fields(TrainSeqConfig)])) from None
    record = RunRecord("seq-train", config, seed=config.seed)
    if not config.quiet and lead:
        valid_tokens = corpus.split(config.valid_split).numel()
        subset = (f"its first {config.eval_tokens:,} tokens" if 0 < config.eval_tokens < valid_tokens
                  else "the whole split")
        print(f"{corpus}; {sum(p.numel() for p in model.parameters()):,} parameters; training={model.rule}; "
              f"checkpoint {paths.checkpoint}\nthe progress bar's val_* are on {subset} of {config.valid_split}, "
              "every --eval-every steps; the final figures on the whole split")
    try:
        report = model.fit(corpus, context=config.context, steps=config.steps, batch_size=config.batch_size,
                           lr=config.lr, weight_decay=config.weight_decay, schedule=config.schedule,
                           warmup=config.warmup, clip=config.clip or None, eval_every=config.eval_every,
                           eval_tokens=config.eval_tokens or None, train_split=config.train_split,
                           valid_split=config.valid_split, align_every=config.align_every or None,
                           checkpoint=paths.checkpoint, resume=config.resume, overwrite=config.overwrite,
                           quiet=config.quiet, seed=config.seed, diverge_factor=config.diverge_factor)
    except CheckpointMismatch as error:  # (it said "model.hidden 8 (checkpoint) vs 16 (now)": --hidden 8 ...)
        raise _in_flags(error, config) from None
    if not lead:  # rank 0 evaluates, reports and writes; the others are done
        return {"steps": report.steps, "train_seconds": report.seconds}
    for row in report.history:
        record.log(**row)
    valid = corpus.split(config.valid_split)
    whole = config.eval_tokens == 0 or config.eval_tokens >= valid.numel()
    if whole and all(f"val_{k}" in report.metrics for k in ("loss", "perplexity", "bpc")):  # the fit validated on the
        # whole split, as below, and its best evaluation is of the state restored: not read again (7-8% of a short run)
        final = {k: report.metrics[f"val_{k}"] for k in ("loss", "perplexity", "bpc")}
    else:
        final = model.evaluate(valid, context=config.context, batch_size=world_size() * config.batch_size,  # (global)
                               quiet=config.quiet)  # (a bar: 4 million characters took 80 s)
    record.summary.update({f"val_{k}": v for k, v in final.items()})
    record.summary.update({
        "steps": report.steps, "best_step": report.best_step, "train_seconds": report.seconds,
        "eval_seconds": report.result.eval_seconds,  # (of train_seconds: the validation passes)
        # the training's own throughput: the validation passes' time (a third of the run at --eval-every 10) left out
        "tokens_per_second": (world_size() * config.batch_size * config.context * report.steps
                              / max(report.seconds - report.result.eval_seconds, 1e-9)),
        "val_tokens": valid.numel(), "vocab_size": corpus.vocab_size, "model": model.config_dict(),
        # as trained: the rule's defaults for the flags left out, a default warm-up cut to a short budget
        "optimizer": asdict(report.optimizer),
        "processes": world_size(), "device": str(device),
        "notes": "val_* in the summary: the best state on the whole validation split; val_* in the metrics rows: "
                 + (f"on its first {config.eval_tokens:,} tokens" if 0 < config.eval_tokens < valid.numel()
                    else "on the whole split")})
    if report.resumed is not None:
        record.summary["resumed"] = report.resumed  # the step it continued from and the settings that changed
    record.add_file("checkpoint", paths.checkpoint)
    curves = alignment_curves(report.history)
    if curves:
        record.summary["alignment"] = {point: curve[-1][1] for point, curve in curves.items()}
    if config.sample:
        prompt = corpus.vocab.decode(valid[:1])
        record.summary["sample"] = model.generate(prompt, config.sample, vocab=corpus.vocab, seed=config.seed,
                                                  temperature=0.8)

    def draw(path: Path) -> None:
        record.summary["plot"] = str(plot_alignment(curves, path, title=f"{config.model} {model.rule}"))

    saved = paths.save_record(record, config.overwrite or config.resume, draw=draw if curves else None)
    print(f"{model.rule}: val loss {final['loss']:.4f}, perplexity {final['perplexity']:.3f}, bits/token "
          f"{final['bpc']:.4f} on the whole {config.valid_split} split ({valid.numel():,} tokens), best state of "
          f"step {report.best_step} of {report.steps}")
    if describe_resume(report.resumed):
        print(describe_resume(report.resumed))
    if config.sample:  # (a result the run was asked for: printed under --quiet too, which silences progress only)
        print(record.summary["sample"])
    if "plot" in record.summary:  # (as the influence commands name theirs)
        print(f"plot: {record.summary['plot']}")
    print(f"record: {saved}\ncheckpoint: {paths.checkpoint}")
    return record.summary


def _run(args: argparse.Namespace) -> int:
    run_train(dataclass_from_args(TrainSeqConfig, args))
    return 0


train = Command(help="train a language model by a rule (bptt, tbptt:k, ft-bptt, dsf; bp, dfa, local:readout, shallow; "
                     "progress, validation, checkpoints, resume, JSON record)",
                configure=lambda parser: add_dataclass_arguments(parser, TrainSeqConfig), run=_run)
