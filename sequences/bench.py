r"""The ``fwdlearn bench seq`` run (flags: :mod:`fwdlearn.sequences.cli.bench`): DSF against BPTT, every figure
next to its baseline from the same run.

1. **Cost per training step** (forward, backward, AdamW update) of a recurrent LM ``--cost-layers`` x
   ``--cost-hidden`` for each cell in ``--cost-cells``, batch ``--cost-batch``, for each context :math:`T`
   in ``--cost-contexts``: median wall time over ``--cost-repeats`` interleaved repeats, then one more step
   per mode for the bytes autograd saves for backward and the exact peak process-memory increase (CUDA's peak
   allocated-memory increase on a GPU), as ratios DSF / BPTT. BPTT of tanh / GRU layers is timed twice on a CPU:
   through the library's through-time kernel (the default, ``bptt``) and through torch's fused module
   (``bptt (torch fused)``, what plain PyTorch and the DSF reference run;
   :func:`~fwdlearn.sequences.nn.kernels.use_kernels`).
2. **Quality** on tinyshakespeare (char level): every mode in ``--quality-modes`` trained for the same
   ``--steps`` from the same initialisation; validation bits per character on the full validation split
   (best checkpoint by the running validation), ratio to BPTT.
3. **Alignment**: cosine between the trained DSF model's state gradient :math:`g_t` (and FT-BPTT's,
   :math:`g_t = e_t`) and BPTT's true :math:`\partial\mathcal{L}/\partial s_t` on validation windows, by
   distance from the window's end (:mod:`fwdlearn.sequences.alignment`).
4. **Long range**: delayed recall at lag ``--recall-lag`` -- accuracy of each of ``--recall-modes`` after
   the same budget, next to chance.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from fwdlearn.bench import apart, at_most, below, check_rules_build, distinct_names, run_parts, shown
from fwdlearn.diagnostics.cost import measure_cost
from fwdlearn.fit import progress, seed_everything
from fwdlearn.reporting import ratio_row
from fwdlearn.errors import UsageError
from fwdlearn.schedules import end_to_end_step

from fwdlearn.sequences.data.text import check_splits, corpus_files, read_corpus
from fwdlearn.sequences.data.tasks import DelayedRecall
from fwdlearn.sequences.alignment import bucket_by_distance, state_alignment
from fwdlearn.sequences.training import TEST_SEED, VALIDATION_SEED, lm_loss
from fwdlearn.sequences.nn.cells import RECURRENT_CELLS
from fwdlearn.sequences.nn.kernels import use_kernels
from fwdlearn.sequences.nn.language_model import check_norm_width
from fwdlearn.sequences.nn.recurrent import RecurrentLM

__all__ = ["run_bench", "step_costs", "interleaved_costs", "canonical_rules"]

COLUMNS = ["experiment", "setting", "mode", "metric", "value", "bptt", "ratio"]
#: ``_row(experiment, setting, mode, metric, value, bptt=None)``: a row of :data:`COLUMNS`, the ratio computed
_row = partial(ratio_row, COLUMNS)
#: the cost part's name for BPTT through torch's fused module (kernels off), timed for cells that have one
TORCH_BPTT = "bptt (torch fused)"
MIB = 1024 * 1024  # bytes per MiB


def canonical_rules(flag: str, given: Sequence[str], recurrent: bool) -> list[str]:
    """``given`` rule names spelled canonically (``dfa:macro`` is ``dfa``, ``BPTT`` is ``bptt``; for a recurrent
    model a rule without a time part is trained by BPTT, so ``bp`` is ``bptt``): results, baselines and verdicts are
    keyed by that spelling. An unknown rule, or one named twice, is refused naming ``flag``
    (:func:`~fwdlearn.bench.distinct_names`)."""
    from fwdlearn.rules import BPTT, parse_rule

    def canonical(spec: str) -> str:
        rule = parse_rule(spec)
        return str(rule.with_time(BPTT()) if recurrent and rule.time is None else rule)

    return distinct_names(flag, given, canonical, "rule")


def _check_rules(config) -> None:
    """Spell every rule canonically (:func:`canonical_rules`) and refuse, before any part runs, a rule its part's
    recurrent model cannot train (``sf`` parses, but no LM trains by it; it was found when the part came to it,
    after the parts before had run): a two-unit model is built under each (the model's own check says why)."""
    given = {}  # (as typed: an error names the rule so, 'sf' rather than its canonical 'local:prototype+bptt')
    for name in ("cost_modes", "quality_modes", "recall_modes"):
        given[name] = list(getattr(config, name))
        setattr(config, name, canonical_rules("--" + name.replace("_", "-"), getattr(config, name), recurrent=True))
    parts = (("cost", "cost_modes", config.cost_cells, False),
             ("quality", "quality_modes", [config.model], config.norm),
             ("recall", "recall_modes", [config.model], config.norm))
    if config.norm:  # (else the quality or recall model refused a width of 1 when its part came, after the others)
        for part, flag, width in (("quality", "--hidden", config.hidden), ("alignment", "--hidden", config.hidden),
                                  ("recall", "--recall-hidden", config.recall_hidden)):
            if part not in config.skip:
                check_norm_width(flag, width, "--no-norm")
    for part, name, cells, norm in parts:
        if part in config.skip:
            continue
        check_rules_build("--" + name.replace("_", "-"), given[name], getattr(config, name),
                          lambda rule: [RecurrentLM(2, cell=cell, hidden=2, layers=1, training=rule, norm=norm)
                                        for cell in cells])


def interleaved_costs(steps: dict[str, Callable[[], None]], repeats: int, device: torch.device | str = "cpu",
                      desc: str = "cost", quiet: bool = True) -> dict[str, dict[str, Any]]:
    """Cost of each named training step: timed ``repeats`` times interleaved (A B C A B C ..., as in a training loop:
    memory reused from the step before), then one more call each for its exact memory:
    ``{name: {"seconds" (median), "saved_mb", "peak_mb", "all_seconds"}}``. Warm up the steps first."""
    samples: dict[str, list] = {name: [] for name in steps}
    for _ in progress(range(repeats), desc=desc, quiet=quiet):
        for name, step in steps.items():
            samples[name].append(measure_cost(step, device=device, memory=False))
    memory = {name: measure_cost(step, device=device) for name, step in steps.items()}  # exact peaks
    out = {}
    for name, costs in samples.items():
        m = memory[name]
        out[name] = {
            "seconds": statistics.median(c.seconds for c in costs),
            "saved_mb": m.saved_bytes / MIB,
            "peak_mb": _increase_mb(m),
            "all_seconds": [c.seconds for c in costs],
        }
    return out


def _increase_mb(cost) -> float:
    """The step's peak memory increase in MiB: CUDA's allocated memory on a GPU, else the resident set (NaN where it
    cannot be measured)."""
    increase = cost.cuda_increase_bytes if cost.cuda_increase_bytes is not None else cost.rss_increase_bytes
    return float("nan") if increase is None else increase / MIB


def step_costs(config, context: int, quiet: bool = True, cell: str = "gru") -> dict[str, dict[str, float]]:
    """Median cost of one full training step of a ``cell`` LM for every mode of ``config.cost_modes`` at ``context``."""
    device = torch.device(config.device)
    vocab = 65
    gen = torch.Generator().manual_seed(config.seed)
    x = torch.randint(0, vocab, (config.cost_batch, context), generator=gen, device="cpu").to(device)
    y = torch.randint(0, vocab, (config.cost_batch, context), generator=gen, device="cpu").to(device)
    modes = {mode: mode for mode in config.cost_modes}  # timed name -> rule
    if "bptt" in modes and RECURRENT_CELLS.get(cell).torch_bptt and device.type == "cpu":
        modes[TORCH_BPTT] = "bptt"  # the baseline plain PyTorch (and the DSF reference) runs
    models, opts = {}, {}
    for name, mode in modes.items():
        seed_everything(config.seed)
        models[name] = RecurrentLM(vocab, cell=cell, hidden=config.cost_hidden, layers=config.cost_layers,
                                   training=mode, norm=False).to(device)  # plain blocks: the recurrence's cost
        opts[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-3)

    def step(name: str, xs=x, ys=y) -> None:
        with use_kernels(name != TORCH_BPTT):
            logits, _ = models[name](xs)
            end_to_end_step(lm_loss(logits, ys), opts[name])

    for name in modes:  # warm-up on a short window (allocator, kernels)
        step(name, x[:, : min(context, 32)], y[:, : min(context, 32)])
    return interleaved_costs({name: partial(step, name) for name in modes}, config.cost_repeats, device,
                             f"cost {cell} T={context}", quiet)


def _cost_part(config, rows: list, extra: dict, piece: Callable) -> None:
    peak_name = "CUDA peak increase MiB" if config.device.startswith("cuda") else "peak RSS increase MiB"
    extra["cost"] = {}
    for cell in config.cost_cells:
        setting = (f"{cell.upper()} {config.cost_layers}x{config.cost_hidden} plain blocks, batch {config.cost_batch}, "
                   f"{config.device}")
        extra["cost"][cell] = {}
        for T in config.cost_contexts:  # (a piece each: every mode timed interleaved, the baseline among them)
            costs = piece(f"cost/{cell}/T={T}", partial(step_costs, config, T, config.quiet, cell))
            extra["cost"][cell][T] = costs
            base = costs.get("bptt")
            for mode, c in costs.items():
                for key, metric in (("seconds", "seconds/step"), ("saved_mb", "saved for backward MiB"),
                                    ("peak_mb", peak_name)):
                    rows.append(_row(f"cost T={T}", setting, mode, metric, float(c[key]),
                                     float(base[key]) if base is not None else None))
            if not config.quiet:
                print(f"cost {cell} T={T}: " + ", ".join(f"{m} {c['seconds']:.3f}s" for m, c in costs.items()))


def _quality_model(config, corpus, mode: str) -> RecurrentLM:
    """A quality model of ``mode`` from the seed's initialisation."""
    seed_everything(config.seed)
    return RecurrentLM(corpus.vocab_size, cell=config.model, hidden=config.hidden, layers=config.layers,
                       training=mode, norm=config.norm, reference_block=config.reference_block).to(config.device)


def _quality_part(config, corpus, rows: list, extra: dict, piece: Callable) -> dict[str, RecurrentLM]:
    block = _block(config)
    splits = "" if (config.train_split, config.valid_split) == ("train", "validation") else \
        f" (trained on {config.train_split}, evaluated on {config.valid_split})"
    setting = (f"{config.data}{splits}, {config.model.upper()} {config.layers}x{config.hidden}{block}, "
               f"T={config.context}, B={config.batch_size}, {config.steps} steps")
    results, models = {}, {}
    aligned = "alignment" not in config.skip  # (the alignment part reads the trained DSF model: its piece keeps it)
    for mode in config.quality_modes:
        def train(mode: str = mode) -> dict[str, Any]:
            model = models[mode] = _quality_model(config, corpus, mode)
            report = model.fit(corpus, context=config.context, steps=config.steps, batch_size=config.batch_size,
                               lr=config.lr, eval_every=config.eval_every, eval_tokens=config.eval_tokens,
                               train_split=config.train_split, valid_split=config.valid_split, quiet=config.quiet,
                               seed=config.seed)
            final = model.evaluate(corpus.split(config.valid_split), context=config.context,
                                   batch_size=config.batch_size)
            if not config.quiet:
                print(f"quality {mode}: val bpc {final['bpc']:.4f} in {report.seconds:.0f}s")
            kept = ({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                    if aligned and mode == "dsf" else None)
            return {"val_bpc": final["bpc"], "val_loss": final["loss"], "train_seconds": report.seconds,
                    "best_step": report.result.best_step, "state": kept,
                    "curve": [(r["step"], r.get("val_bpc")) for r in report.history if "val_bpc" in r]}

        done = piece(f"quality/{mode}", train)
        results[mode] = {k: v for k, v in done.items() if k != "state"}
        if mode not in models and done["state"] is not None:  # (read from an interrupted run: rebuilt)
            models[mode] = _quality_model(config, corpus, mode)
            models[mode].load_state_dict(done["state"])
    base = results.get("bptt")
    for mode, r in results.items():
        rows.append(_row("quality", setting, mode, f"val bits/{config.level}", r["val_bpc"],
                         base["val_bpc"] if base else None))
    for mode, r in results.items():
        rows.append(_row("quality", setting, mode, "train seconds", r["train_seconds"],
                         base["train_seconds"] if base else None))
    extra["quality"] = results
    return models


def _alignment_part(config, corpus, rows: list, extra: dict, models: dict[str, RecurrentLM]) -> None:
    ids = corpus.split(config.valid_split)
    starts = torch.linspace(0, ids.numel() - config.align_context - 2, config.align_batch).long()
    window = torch.stack([ids[s: s + config.align_context + 1] for s in starts.tolist()])
    x, y = window[:, :-1].to(config.device), window[:, 1:].to(config.device)
    if "dsf" in models:
        model, which = models["dsf"], "trained dsf model"
    else:
        model, which = _quality_model(config, corpus, "dsf"), "untrained model"
    extra["alignment"] = {"model": which}
    setting = f"{which}, {config.align_batch} validation windows of T={config.align_context}"
    for mode in ("dsf", "ft-bptt"):
        result = state_alignment(model, x, y, mode)
        extra["alignment"][mode] = {"by_distance": [c.tolist() for c in result.by_distance], "overall": result.overall,
                                    "parameter_cosine": result.parameters.cosine}
        for layer, curve in enumerate(result.by_distance):
            for label, value in bucket_by_distance(curve):
                rows.append(_row("alignment", setting, mode, f"layer {layer + 1} cos(g, dL/ds), d={label}", value))
        rows.append(_row("alignment", setting, mode, "parameter-gradient cosine", result.parameters.cosine))


def _block(config) -> str:
    """The recurrent blocks of the quality, alignment and recall models, as the settings column names them."""
    if not config.norm:
        return ""
    return ", the DSF reference's block" if config.reference_block else ", pre-LN + MLP blocks"


#: the held-out recall samples a model is scored on: batches x samples
RECALL_BATCHES, RECALL_BATCH_SIZE = 8, 64


def _recall_part(config, rows: list, extra: dict, piece: Callable) -> None:
    task = DelayedRecall(config.recall_lag, symbols=config.recall_symbols)
    block = _block(config)
    setting = (f"lag {config.recall_lag}, {config.recall_symbols} symbols (chance {task.chance:.3f}), "
               f"{config.model.upper()} {config.recall_layers}x{config.recall_hidden}{block}, "
               f"{config.recall_steps} steps")
    results = {}
    for mode in config.recall_modes:
        def train(mode: str = mode) -> dict[str, float]:
            seed_everything(config.seed)
            model = RecurrentLM(task.vocab_size, cell=config.model, hidden=config.recall_hidden,
                                layers=config.recall_layers, training=mode, out_size=task.out_size, norm=config.norm,
                                reference_block=config.reference_block).to(config.device)
            report = model.fit(task, steps=config.recall_steps, batch_size=config.recall_batch, lr=config.recall_lr,
                               eval_every=max(1, config.recall_steps // 6), quiet=config.quiet, seed=config.seed)
            final = model.evaluate(task, batches=RECALL_BATCHES, batch_size=RECALL_BATCH_SIZE)
            if not config.quiet:
                print(f"recall {mode}: accuracy {final['accuracy']:.3f} (chance {task.chance:.3f})")
            return {"accuracy": final["accuracy"], "seconds": report.seconds}

        results[mode] = piece(f"recall/{mode}", train)
    base = results.get("bptt")
    for mode, r in results.items():
        rows.append(_row("delayed recall", setting, mode, "accuracy", r["accuracy"],
                         base["accuracy"] if base else None))
    extra["recall"] = {"chance": task.chance, "scored": RECALL_BATCHES * RECALL_BATCH_SIZE * (task.length - task.lag),
                       **results}


#: the step-time target of DSF against BPTT (docs/benchmarks.md, "What did not go well")
DSF_TARGET = 0.7


def _verdicts(extra: dict) -> list[str]:
    lines = []
    for cell, cost in extra.get("cost", {}).items():
        T = max(cost)
        for base, label in (("bptt", "BPTT"), (TORCH_BPTT, "BPTT through torch's fused module")):
            if base in cost[T] and "dsf" in cost[T]:
                ratios = {t: c["dsf"]["seconds"] / c[base]["seconds"] for t, c in sorted(cost.items())
                          if "dsf" in c and base in c}
                r, worst = ratios[T], max(ratios.values())
                by_t = ", ".join(f"{t}: {shown(ratio, DSF_TARGET, 3)}" for t, ratio in ratios.items())
                lines.append(f"- {cell.upper()}: DSF faster than {label} at T={T}: {'yes' if below(r, 1) else 'NO'} "
                             f"(time ratio {shown(r, 1, 3)}; by T: {by_t})")
                lines.append(f"- {cell.upper()}: DSF step <= {DSF_TARGET} x {label} at every T (the step-cost target): "
                             f"{'yes' if at_most(worst, DSF_TARGET) else 'NO'} "
                             f"(worst {shown(worst, DSF_TARGET, 3)})")
    q = extra.get("quality", {})
    if {"bptt", "dsf"} <= set(q):
        r = q["dsf"]["val_bpc"] / q["bptt"]["val_bpc"]
        lines.append(f"- DSF bits/token within 5% of BPTT: {'yes' if at_most(r, 1.05) else 'NO'} "
                     f"({q['dsf']['val_bpc']:.4f} vs {q['bptt']['val_bpc']:.4f}, ratio {shown(r, 1.05, 3)})")
    if {"ft-bptt", "dsf"} <= set(q):
        better = below(q["dsf"]["val_bpc"], q["ft-bptt"]["val_bpc"])
        dsf, ft = apart(q["dsf"]["val_bpc"], q["ft-bptt"]["val_bpc"], 4)
        lines.append(f"- DSF better than FT-BPTT: {'yes' if better else 'NO'} ({dsf} vs {ft} bits/token)")
    lines += _recall_verdicts(extra.get("recall", {}))
    return lines


def _recall_verdicts(recall: dict) -> list[str]:
    r"""Delayed recall: a rule carries credit back ``lag`` steps when its accuracy is above chance by more than
    three standard errors of an accuracy at chance over the :math:`n` scored positions, :math:`3\sqrt{p(1-p)/n}`;
    DSF is above FT-BPTT when their difference is more than three standard errors of a difference of two
    accuracies, :math:`3\sqrt{(a_1(1-a_1) + a_2(1-a_2))/n}`. Each line prints the two figures its verdict compares
    (the accuracy and chance + 3 standard errors; the difference and its 3 standard errors) to as many decimals as
    tell them apart (:func:`~fwdlearn.bench.apart`; 0.136 stood beside both 'yes' and 'NO' against 0.125 + 0.011)."""
    if not recall:
        return []
    chance, n = recall["chance"], recall["scored"]
    margin = 3 * math.sqrt(chance * (1 - chance) / n)
    lines = []
    for mode in ("dsf", "ft-bptt"):
        if mode in recall:
            acc = recall[mode]["accuracy"]
            shown_acc, shown_limit = apart(acc, chance + margin, 3)
            lines.append(f"- delayed recall: {mode.upper()} above chance: "
                         f"{'yes' if below(chance + margin, acc) else 'NO'} ({shown_acc} vs chance {chance:.3f} + 3 "
                         f"standard errors {margin:.3f} = {shown_limit})")
    if {"dsf", "ft-bptt"} <= set(recall):
        dsf, ft = recall["dsf"]["accuracy"], recall["ft-bptt"]["accuracy"]
        errors = 3 * math.sqrt((dsf * (1 - dsf) + ft * (1 - ft)) / n)
        shown_by, shown_errors = apart(dsf - ft, errors, 3)
        lines.append(f"- delayed recall: DSF above FT-BPTT: {'yes' if below(errors, dsf - ft) else 'NO'} "
                     f"({dsf:.3f} vs {ft:.3f}: difference {shown_by}, 3 standard errors of the difference "
                     f"{shown_errors})")
    return lines


def run_bench(config) -> tuple[Path, Path]:
    """Run the selected parts and write ``<out>.json`` / ``<out>.md`` and the run record ``<out>-record.json``."""
    if config.reference_block and not config.norm:  # (before the cost part's minutes)
        raise UsageError("--reference-block is the DSF reference's pre-LayerNorm block: it needs --norm, not --no-norm")
    _check_rules(config)
    held_out = {VALIDATION_SEED: "validation", TEST_SEED: "test"}
    if "recall" not in config.skip and config.seed in held_out:  # (fit_task refuses it, after the other parts' work)
        raise UsageError(f"--seed {config.seed} draws the recall task's {held_out[config.seed]} samples: give another "
                         "--seed, or --skip recall")

    def parts(config, rows: list, extra: dict, piece: Callable) -> None:
        # one corpus (one vocabulary) for the models and the alignment windows they read; read (and its splits
        # checked) before the cost part, so a wrong --data or split fails in seconds, not after minutes of timing
        corpus = read_corpus(config.data, level=config.level) if {"quality", "alignment"} - set(config.skip) else None
        if corpus is not None:
            if "quality" not in config.skip:  # two different splits: selecting on the training text is refused
                check_splits(corpus, config.train_split, config.valid_split, ("--train-split", "--valid-split"))
            valid = corpus.split(config.valid_split)
            if "alignment" not in config.skip and valid.numel() < config.align_context + 2:
                raise UsageError(f"--align-context {config.align_context} needs a validation split of at least "
                                 f"{config.align_context + 2} tokens; {config.valid_split} has {valid.numel()}")
        if "cost" not in config.skip:
            _cost_part(config, rows, extra, piece)
        models: dict = {}
        if "quality" not in config.skip:
            models = _quality_part(config, corpus, rows, extra, piece)
        if "alignment" not in config.skip:
            _alignment_part(config, corpus, rows, extra, models)
        if "recall" not in config.skip:
            _recall_part(config, rows, extra, piece)

    notes = [  # (a part's paragraph only when the part runs)
        "`bptt` is the baseline measured in the same run; `ratio` = value / bptt.",
        *(["Cost: median of interleaved repeats of one full step (forward, backward, AdamW); then one more step per "
        "mode for memory: `saved for backward` counts tensors autograd keeps (parameters excluded); `peak RSS "
        "increase` is the kernel's high-water mark over that step above its start, after the allocator returned "
        "its free memory (on a GPU, `CUDA peak increase`: torch's peak allocated memory over the step above what "
        "was allocated when it began; fwdlearn.diagnostics.cost)."] if "cost" not in config.skip else []),
        *(["Quality: `train seconds` is each fit's wall time with its validation passes (every --eval-every steps, "
           "the same passes for every mode), so its ratio understates what a mode saves per training step; the cost "
           "rows time training steps alone."] if "quality" not in config.skip else []),
        *(["Alignment: d = distance from the end of the window; g is the state gradient the mode pushes into the "
           "one-step cells, dL/ds BPTT's total derivative (from a step-by-step unrolled graph)."]
          if "alignment" not in config.skip else []),
    ]
    read = [("--data", f) for f in corpus_files(config.data, missing_ok=True)]  # (no output replaces them)
    return run_parts(config, "bench-seq", parts, _verdicts, COLUMNS, "Sequences: DSF vs BPTT", notes, inputs=read)
