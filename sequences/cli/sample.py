"""``fwdlearn seq sample``: text drawn from a saved language model.

::

    fwdlearn seq sample --model runs/dsf.pt --prompt "ROMEO:" --length 200 --temperature 0.8 --top-k 20
    fwdlearn seq sample --model lm.pt --greedy                     # the most likely token at every step

``--model`` is a file ``model.save(path, vocab=corpus.vocab)`` wrote or a ``fwdlearn seq train`` checkpoint (its
best state), read by :func:`~fwdlearn.sequences.nn.language_model.load_language_model`; the text is drawn by
:meth:`~fwdlearn.sequences.nn.language_model.LanguageModel.generate` and printed on stdout (the prompt included),
the same text for the same model, flags and ``--seed``. ``--greedy`` and ``--top-k 1`` take the most likely token
at every step, the same text for every seed: a ``--seed`` or ``--temperature`` with either is refused (it would
change nothing). Without ``--prompt`` the model starts after ``<eos>`` (a word-level vocabulary) or the vocabulary's
first token (a line end, for most character vocabularies), and only what it drew is printed. The command writes no
file.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.runs import DEBUG_HELP, MAX_THREADS, RUN_OPTIONS

__all__ = ["SampleSeqConfig", "sample", "run_sample"]


def _run_option(default, help: str, **meta):
    return field(default=default, metadata={"help": help, "group": RUN_OPTIONS, **meta})


@dataclass
class SampleSeqConfig:
    model: str = field(default="", metadata={"help": "the language model to sample: a file model.save(path, "
                                                     "vocab=corpus.vocab) wrote, or a seq train checkpoint "
                                                     "(runs/<name>.pt)"})
    prompt: str = field(default="", metadata={"help": "text the sample continues, printed before it (default: start "
                                                      "after <eos>, or the vocabulary's first token)"})
    length: int = field(default=200, metadata={"help": "tokens to generate after the prompt", "min": 1,
                                               "max": 1_000_000})
    temperature: float | None = field(default=None, metadata={"help": "divide the logits by this before sampling "
                                                                      "(below 1: surer, above 1: more varied; "
                                                                      "default: 1)", "gt": 0})
    top_k: int | None = field(default=None, metadata={"help": "sample among the K most likely tokens only (1: as "
                                                              "--greedy, and so takes no --temperature or --seed; "
                                                              "default: every token)", "min": 1})
    greedy: bool = field(default=False, metadata={"help": "the most likely token at every step instead of a sample"})
    seed: int | None = field(default=None, metadata={"help": "seed of the sampling generator: the same model, flags "
                                                             "and seed print the same text (default: 0)",
                                                     "group": RUN_OPTIONS, "min": 0, "max": 2**31 - 1})
    device: str = _run_option("auto", "cpu, cuda, cuda:N, mps, or auto (cuda when available, else cpu)")
    threads: int = _run_option(0, "torch CPU threads (0: torch's default)", min=0, max=MAX_THREADS)
    quiet: bool = _run_option(False, "print the text alone (no line on stderr saying what was sampled)")
    debug: bool | None = _run_option(None, DEBUG_HELP)

    def __post_init__(self) -> None:
        from fwdlearn.config import validate_config

        validate_config(self)


def run_sample(config: SampleSeqConfig) -> str:
    """Draw the text ``config`` asks for and print it on stdout; returns it."""
    import torch

    from fwdlearn.errors import UsageError
    from fwdlearn.runs import refuse_torchrun, start_run
    from fwdlearn.sequences.data.text import EOS
    from fwdlearn.sequences.nn.language_model import load_language_model

    if not config.model:
        raise UsageError("fwdlearn seq sample needs --model PATH: a file model.save(path, vocab=corpus.vocab) wrote, "
                         "or a seq train checkpoint (runs/<name>.pt)")
    # (greedy either way: generate leaves them unused, the same text for every --seed; a flag that changes nothing is
    # refused, as --top-k 1 with a seed was accepted in silence)
    greedy, fix = (("--greedy", "leave out --greedy to sample") if config.greedy else
                   ("--top-k 1", "give --top-k 2 or more to sample") if config.top_k == 1 else (None, ""))
    if greedy is not None:
        unused = [flag for flag, value in (("--temperature", config.temperature),
                                           ("--top-k", config.top_k if config.greedy else None),
                                           ("--seed", config.seed)) if value is not None]
        if unused:
            how = "takes" if config.greedy else "keeps only"
            also = "" if config.greedy else " (as --greedy)"
            raise UsageError(f"{greedy} {how} the most likely token at every step{also}, so {', '.join(unused)} "
                             f"would change nothing: leave {'it' if len(unused) == 1 else 'them'} out, or {fix}")
    refuse_torchrun("seq-sample")
    device = start_run(config)  # --device checked, --threads applied
    model, vocab = load_language_model(config.model, map_location=device)
    if vocab is None:
        raise UsageError(f"{config.model} holds no vocabulary (its model was saved without vocab=), so its token ids "
                         "cannot be read or written as text: save it again with model.save(path, "
                         "vocab=corpus.vocab) (a seq train checkpoint holds it), or draw ids in Python with "
                         "model.generate(ids, steps)")
    temperature = 1.0 if config.temperature is None else config.temperature
    seed = 0 if config.seed is None else config.seed
    options = dict(temperature=temperature, seed=seed, greedy=config.greedy, top_k=config.top_k)
    if config.prompt:
        text = model.generate(config.prompt, config.length, vocab=vocab, **options)
    else:  # after a line's end: the text the model was trained on starts lines so (only what it drew printed)
        start = vocab.index[EOS] if EOS in vocab.index else 0
        # (with vocab=, as a prompt's draw: a model of a larger vocab_size than its vocabulary, which save allows, drew
        # ids the vocabulary could not decode, "ids [11, 15, ...] are outside this vocabulary's [0, 2]")
        text = model.generate(torch.tensor([start]), config.length, vocab=vocab, **options)
        # the start token's text left out: "\n" for <eos>; a word (a vocabulary without <eos>) and the space after it
        text = text[len(vocab.decode([start])) + (vocab.level == "word" and vocab.tokens[start] != EOS):]
    if not config.quiet:  # (after the draw: a prompt it refuses leaves the error line alone)
        how = ("greedy" if config.greedy else "greedy (top-k 1)" if config.top_k == 1 else
               f"temperature {temperature:g}" + (f", top-k {config.top_k}" if config.top_k else "") + f", seed {seed}")
        print(f"fwdlearn seq sample: {config.model} ({type(model).__name__}, {model.rule}, {len(vocab)} "
              f"{vocab.level} tokens): {config.length} tokens, {how}", file=sys.stderr)
    print(text)
    return text


def _run(args: argparse.Namespace) -> int:
    run_sample(dataclass_from_args(SampleSeqConfig, args))
    return 0


sample = Command(help="sample text from a saved language model or a seq train checkpoint (temperature, top-k, "
                      "greedy, seed)",
                 configure=lambda parser: add_dataclass_arguments(parser, SampleSeqConfig), run=_run)
