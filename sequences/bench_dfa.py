r"""The ``fwdlearn bench dfa`` run (flags: :mod:`fwdlearn.sequences.cli.bench_dfa`): direct feedback alignment
against backprop, every figure next to its baseline from the same run.

1. **Transformer** (``--hidden`` x ``--layers``, ``--heads`` heads, context ``--context``) on a character corpus:
   every depth rule of ``--rules`` (``bp``, ``dfa`` = macro, ``dfa:micro``, ``local:readout``, ``shallow``) trained
   for the same ``--steps`` from the same initialisation, each with its own optimizer defaults
   (:meth:`~fwdlearn.sequences.nn.language_model.LanguageModel.optimizer_defaults`). Validation bits per character
   on the whole validation split and the per-character perplexity :math:`2^{\text{bpc}}`, as ratios to BP (the
   published WikiText-103 pattern is a perplexity ratio of 1.74 for macro and 3.13 for micro). For DFA rules, the
   alignment per feedback point every ``--align-every`` steps and at the end
   (:func:`fwdlearn.diagnostics.alignment.feedback_alignment`: mean per-token cosine between :math:`e\,B_l` and the
   true gradient).
2. **Cost**: one full training step (forward, backward, update) of each rule's transformer, ``--cost-repeats``
   interleaved repeats, median seconds and bytes autograd saves for backward, as ratios to BP.
3. **Recurrent stack** (``--cell`` ``--rnn-layers`` x ``--rnn-hidden``): ``--rnn-rules`` (``bptt``, ``dsf``,
   ``dfa+bptt``, ``dfa+dsf``) at the same budget, bits per character as ratios to BPTT, alignment at the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from fwdlearn.bench import ROUNDING, apart, at_least, below, check_rules_build, run_parts, shown
from fwdlearn.errors import UsageError
from fwdlearn.fit import seed_everything
from fwdlearn.optim import make_optimizer
from fwdlearn.reporting import ratio_row
from fwdlearn.rules import DFA, parse_rule
from fwdlearn.schedules import end_to_end_step

from fwdlearn.sequences.bench import canonical_rules, interleaved_costs
from fwdlearn.sequences.data.text import Corpus, check_splits, corpus_files, read_corpus
from fwdlearn.sequences.nn.language_model import LanguageModel, check_norm_width
from fwdlearn.sequences.nn.recurrent import RecurrentLM
from fwdlearn.sequences.nn.transformer import TransformerLM, check_heads
from fwdlearn.sequences.training import alignment_curves, alignment_window

__all__ = ["run_bench_dfa", "PUBLISHED_PERPLEXITY"]

COLUMNS = ["experiment", "setting", "rule", "metric", "value", "baseline", "ratio"]
#: WikiText-103 test perplexity of a transformer (Launay et al. 2020)
PUBLISHED_PERPLEXITY = {"bp": 29.8, "dfa": 52.0, "dfa:micro": 93.3}
#: ``_row(experiment, setting, rule, metric, value, baseline=None)``: a row of :data:`COLUMNS`, the ratio computed
_row = partial(ratio_row, COLUMNS)


def _transformer(config, vocab_size: int, rule: str) -> TransformerLM:
    return TransformerLM(vocab_size, hidden=config.hidden, layers=config.layers, heads=config.heads,
                         context=config.context, training=rule, feedback_seed=config.seed)


def _recurrent(config, vocab_size: int, rule: str) -> RecurrentLM:
    return RecurrentLM(vocab_size, cell=config.cell, hidden=config.rnn_hidden, layers=config.rnn_layers,
                       norm=config.rnn_norm, training=rule, feedback_seed=config.seed)


def _train(config, corpus: Corpus, make: Callable[[str], LanguageModel], rule: str, steps: int) -> dict[str, Any]:
    """Train one rule from the seed's initialisation; final validation metrics and alignment."""
    seed_everything(config.seed)
    model = make(rule).to(config.device)
    dfa = bool(model.feedback_points)
    report = model.fit(corpus, context=config.context, steps=steps, batch_size=config.batch_size,
                       eval_every=config.eval_every, eval_tokens=config.eval_tokens,
                       align_every=config.align_every if dfa else None, quiet=config.quiet, seed=config.seed,
                       train_split=config.train_split, valid_split=config.valid_split)
    final = model.evaluate(corpus.split(config.valid_split), context=config.context, batch_size=config.batch_size)
    out = {"val_bpc": final["bpc"], "val_loss": final["loss"], "perplexity": final["perplexity"],
           "train_seconds": report.seconds, "best_step": report.result.best_step,
           "optimizer": str(report.optimizer),  # (as trained: a default warm-up cut to a short budget)
           "curve": [(r["step"], r["val_bpc"]) for r in report.history if "val_bpc" in r]}
    if dfa:  # (only a rule with feedback points needs the windows: a short split still trains the others)
        x, y = alignment_window(corpus.split(config.valid_split), config.batch_size, config.context)
        out["alignment"] = model.feedback_alignment(x.to(config.device), y.to(config.device))
        out["alignment_curve"] = alignment_curves(report.history)
    if not config.quiet:
        print(f"{rule}: val bits/char {final['bpc']:.4f} in {report.seconds:.0f}s"
              + (f"; alignment {_fmt(out['alignment'])}" if dfa else ""))
    return out


def _fmt(alignment: dict[str, float]) -> str:
    """Each point's cosine, signed, to 3 decimals or as many more as keep it off 0 (:func:`~fwdlearn.bench.shown`),
    so that 'alignment positive' follows from the figures: 0.0004 and 0.0 were both +0.000, beside 'yes' and 'NO'."""
    return ", ".join(f"{k} {'+' if v > ROUNDING else ''}{shown(v, 0.0, 3)}" for k, v in alignment.items())


def _quality_part(experiment: str, setting: str, config, corpus: Corpus, make: Callable[[str], LanguageModel],
                  rules: list[str], baseline: str, steps: int, rows: list, extra: dict, piece: Callable) -> None:
    results = {rule: piece(f"{experiment}/{rule}", partial(_train, config, corpus, make, rule, steps))
               for rule in rules}
    extra[experiment] = results
    base = results.get(baseline)
    for key, metric in (("val_bpc", "val bits/char"), ("perplexity", "val perplexity/char"),
                        ("train_seconds", "train seconds")):
        for rule, r in results.items():
            rows.append(_row(experiment, setting, rule, metric, float(r[key]), float(base[key]) if base else None))
    for rule, r in results.items():
        for point, value in r.get("alignment", {}).items():
            rows.append(_row(experiment, setting, rule, f"alignment {point} (end)", value))


def _cost_part(config, vocab_size: int, rows: list, extra: dict, piece: Callable) -> None:
    costs = piece("cost", partial(_costs, config, vocab_size))  # (one piece: every rule timed interleaved)
    extra["cost"] = costs
    setting = (f"transformer {config.layers}x{config.hidden}, batch {config.batch_size} x {config.context}, "
               f"{config.device}, {extra['threads']} thread(s)")
    base = costs.get("bp")
    for key, metric in (("seconds", "seconds/step"), ("saved_mb", "saved for backward MiB")):
        for rule, c in costs.items():
            rows.append(_row("cost", setting, rule, metric, float(c[key]), float(base[key]) if base else None))


def _costs(config, vocab_size: int) -> dict[str, dict[str, Any]]:
    """Every ``--rules`` rule's training step on the transformer, timed interleaved."""
    device = torch.device(config.device)
    gen = torch.Generator().manual_seed(config.seed)
    x = torch.randint(0, vocab_size, (config.batch_size, config.context), generator=gen, device="cpu").to(device)
    y = torch.randint(0, vocab_size, (config.batch_size, config.context), generator=gen, device="cpu").to(device)
    steps = {}
    for rule in config.rules:
        seed_everything(config.seed)
        model = _transformer(config, vocab_size, rule).to(device).train()
        optimizer = make_optimizer(model.parameters(), model.optimizer_defaults())

        def step(model=model, optimizer=optimizer) -> None:
            end_to_end_step(model.training_loss(x, y)[0], optimizer)

        step()  # warm-up (allocator, kernels)
        steps[rule] = step
    return interleaved_costs(steps, config.cost_repeats, device, "cost", config.quiet)


def _plot(config, results: dict[str, dict]) -> Path:
    """Alignment against steps at every block output, one line per DFA rule and block."""
    from fwdlearn.diagnostics.plots import plot_alignment

    curves = {f"{rule} {point}": curve for rule, r in results.items()
              for point, curve in r.get("alignment_curve", {}).items() if point.endswith(".out")}
    return plot_alignment(curves, f"{config.out}-alignment.png",
                          title=f"transformer {config.layers}x{config.hidden}: alignment at block outputs")


def _verdicts(extra: dict) -> list[str]:
    lines = []
    t = extra.get("transformer", {})
    if {"dfa", "shallow"} <= set(t):
        gap = t["shallow"]["val_bpc"] - t["dfa"]["val_bpc"]
        lines.append(f"- DFA beats the shallow control by >= 0.1 bits/char: {'yes' if at_least(gap, 0.1) else 'NO'} "
                     f"({t['dfa']['val_bpc']:.3f} vs {t['shallow']['val_bpc']:.3f}, "
                     f"{'+' if gap >= 0 else ''}{shown(gap, 0.1, 3)})")
    if {"bp", "dfa", "dfa:micro"} <= set(t):
        ratios = {r: t[r]["perplexity"] / t["bp"]["perplexity"] for r in ("dfa", "dfa:micro")}
        published = {r: PUBLISHED_PERPLEXITY[r] / PUBLISHED_PERPLEXITY["bp"] for r in ratios}
        closer = below(ratios["dfa"], ratios["dfa:micro"])
        macro, micro = apart(ratios["dfa"], ratios["dfa:micro"], 3)
        lines.append(f"- macro closer to BP than micro (published pattern): {'yes' if closer else 'NO'} (perplexity "
                     f"ratio to BP: macro {macro}, micro {micro}; published on "
                     f"WikiText-103: macro {published['dfa']:.2f}, micro {published['dfa:micro']:.2f})")
    for part in ("transformer", "recurrent"):
        for rule, r in extra.get(part, {}).items():
            if "alignment" in r:
                positive = all(v > ROUNDING for v in r["alignment"].values())  # (as _fmt shows them)
                lines.append(f"- {part} {rule}: alignment positive at every feedback point at the end: "
                             f"{'yes' if positive else 'NO'} ({_fmt(r['alignment'])})")
    c = extra.get("cost", {})
    for rule in ("dfa", "dfa:micro"):
        if {"bp", rule} <= set(c):
            lines.append(f"- {rule} step time / BP: {c[rule]['seconds'] / c['bp']['seconds']:.3f}; saved for backward "
                         f"/ BP: {c[rule]['saved_mb'] / c['bp']['saved_mb']:.3f}")
    rec = extra.get("recurrent", {})
    for dfa, base in (("dfa+bptt", "bptt"), ("dfa+dsf", "dsf")):
        if {dfa, base} <= set(rec):
            lines.append(f"- recurrent {dfa} vs {base}: {rec[dfa]['val_bpc']:.3f} vs {rec[base]['val_bpc']:.3f} "
                         f"bits/char (ratio {rec[dfa]['val_bpc'] / rec[base]['val_bpc']:.3f})")
    return lines


def _splits(config) -> str:
    return "" if (config.train_split, config.valid_split) == ("train", "validation") else \
        f" (trained on {config.train_split}, evaluated on {config.valid_split})"


def _check_rules(config) -> None:
    """Spell every rule canonically (``dfa:macro`` is ``dfa``, ``backprop`` is ``bp``: results, baselines and
    verdicts are keyed by it), refuse a rule named twice, and refuse a rule a part cannot train before any part runs:
    each model family builds a one-token model under every rule of its part (the models' own checks say why)."""
    given = {name: list(getattr(config, name)) for name in ("rules", "rnn_rules")}  # (as typed: said in an error)
    for flag, name in (("--rules", "rules"), ("--rnn-rules", "rnn_rules")):
        setattr(config, name, canonical_rules(flag, getattr(config, name), recurrent=name == "rnn_rules"))
    if {"transformer", "cost"} - set(config.skip):
        try:
            check_heads(config.hidden, config.heads, ("--hidden", "--heads"))
        except ValueError as error:
            raise UsageError(str(error)) from None
        check_norm_width("--hidden", config.hidden)  # (the transformer's refusal came when the part reached it)
        check_rules_build("--rules", given["rules"], config.rules,  # (2 channels a head: LayerNorm of 1 is constant)
                          lambda rule: _transformer(dataclasses.replace(config, hidden=2 * config.heads, layers=1), 1,
                                                    rule))
    if "recurrent" not in config.skip:
        if config.rnn_norm:
            check_norm_width("--rnn-hidden", config.rnn_hidden, "--no-rnn-norm")
        check_rules_build("--rnn-rules", given["rnn_rules"], config.rnn_rules,
                      lambda rule: _recurrent(dataclasses.replace(config, rnn_hidden=2, rnn_layers=1), 1, rule))


def run_bench_dfa(config) -> tuple[Path, Path]:
    """Run the selected parts and write ``<out>.json`` / ``<out>.md``, the record ``<out>-record.json`` and, when
    ``--plot`` and the transformer part runs a DFA rule of ``--rules``, the transformer's alignment plot
    ``<out>-alignment.png`` (no plot otherwise: the recurrent part's alignment is in the tables alone)."""
    _check_rules(config)

    def parts(config, rows: list, extra: dict, piece: Callable) -> None:
        corpus = read_corpus(config.data, level="char")
        if {"transformer", "recurrent"} - set(config.skip):  # checked before the parts: not after minutes of work
            check_splits(corpus, config.train_split, config.valid_split, ("--train-split", "--valid-split"))
        if "transformer" not in config.skip:
            setting = (f"{config.data}{_splits(config)}, transformer {config.layers}x{config.hidden}, "
                       f"{config.heads} heads, "
                       f"T={config.context}, B={config.batch_size}, {config.steps} steps")
            _quality_part("transformer", setting, config, corpus, partial(_transformer, config, corpus.vocab_size),
                          config.rules, "bp", config.steps, rows, extra, piece)
        if "cost" not in config.skip:
            _cost_part(config, corpus.vocab_size, rows, extra, piece)
        if "recurrent" not in config.skip:
            steps = config.rnn_steps or config.steps
            block = " pre-LN + MLP blocks" if config.rnn_norm else " plain blocks"
            setting = (f"{config.data}{_splits(config)}, {config.cell.upper()} "
                       f"{config.rnn_layers}x{config.rnn_hidden}{block}, "
                       f"T={config.context}, B={config.batch_size}, {steps} steps")
            _quality_part("recurrent", setting, config, corpus, partial(_recurrent, config, corpus.vocab_size),
                          config.rnn_rules, "bptt", steps, rows, extra, piece)
        if plot:  # last: a part that fails leaves no plot behind to refuse the next run
            extra["plot"] = str(_plot(config, extra["transformer"]))

    ran = {"transformer", "cost", "recurrent"} - set(config.skip)
    trains = bool({"transformer", "recurrent"} & ran)

    def has_dfa(rules) -> bool:
        return any(isinstance(parse_rule(rule).depth, DFA) for rule in rules)

    dfa = has_dfa(config.rules)  # no alignment curve to draw without
    aligned = ("transformer" in ran and dfa) or ("recurrent" in ran and has_dfa(config.rnn_rules))
    notes = [  # (a part's paragraph only when the part runs: a cost-only run's notes described alignment, published
        # perplexities and train seconds it did not measure)
        "`baseline` is bp (transformer, cost) or bptt (recurrent), measured in the same run; `ratio` = value / "
        "baseline." + (" Every rule starts from the same initialisation and trains with its own optimizer defaults "
                       "(DFA: Adam, constant learning rate; BP: the family's)." if trains else ""),
        *(["Alignment: mean over validation tokens of cos(delta_l, dL/dh_l) at each feedback point, delta_l = e B_l "
           "(on a pre-LN residual stream through a weightless LayerNorm's Jacobian), the signal training delivers "
           "(block<i>.out; micro also .attn and .mlp), on the restored best weights; > 0 means the feedback descends "
           "the loss there."] if aligned else []),
        *([f"Published (Launay et al. 2020, WikiText-103 test perplexity): BP {PUBLISHED_PERPLEXITY['bp']}, DFA macro "
           f"{PUBLISHED_PERPLEXITY['dfa']}, micro {PUBLISHED_PERPLEXITY['dfa:micro']}."]
          if "transformer" in ran else []),
        *(["Cost: median of interleaved repeats of one full step; `saved for backward` counts tensors autograd keeps "
           "(parameters excluded)."] if "cost" in ran else []),
        *(["`train seconds` is each fit's wall time with its validation passes (the same passes for every rule), so "
           "its ratio understates what a rule saves per training step; the cost rows time training steps alone."]
          if trains else []),
    ]
    plot = config.plot and dfa and "transformer" not in config.skip
    # (the plot's path is checked, and an earlier run's removed, whether or not this run draws it)
    return run_parts(config, "bench-dfa", parts, _verdicts, COLUMNS,
                     "DFA vs BP: transformer and recurrent language models", notes, more=["-alignment.png"],
                     inputs=[("--data", f) for f in corpus_files(config.data, missing_ok=True)])
