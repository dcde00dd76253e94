"""Every figure of docs/benchmarks.md's tables is the generated file's number, rounded to the digits it shows.

The README's Results table is that page's Headline table (tests/test_core_readme.py), so checking the headline checks
the README too. A figure quoted in a table must be its file's value rounded to the digits shown (``0.485`` is quoted
``0.48``, not ``0.49``); a ratio quoted beside two figures is the ratio of the files' values; a "range over runs"
contains the run whose file is here. Figures of runs whose files were not kept (a second run, an earlier host) are
prose, not checked here.
"""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "docs" / "benchmarks"
PAGE = (ROOT / "docs" / "benchmarks.md").read_text()

# a figure: not the digit of a name such as GCN-8 or 2x256 (no word character or point before it, no letter and
# hyphen); each end of a range such as 331-548 is one
NUMBER = re.compile(r"(?<![\w.])(?<![A-Za-z][-−])[+−-]?\d[\d,]*(?:\.\d+)?(?:e[−-]?\d+)?")


def _load(name: str) -> dict:
    return json.loads((BENCH / f"{name}.json").read_text())


def _numbers(cell: str) -> list[str]:
    """The figures a table cell quotes, as written."""
    return NUMBER.findall(cell.replace("**", ""))


def _quotes(text: str, value: float) -> bool:
    """Whether ``text`` (``87.20``, ``-20.7``, ``1,289``, ``3.0e-7``) is ``value`` rounded to the digits it shows."""
    text = text.replace(",", "").replace("−", "-")
    mantissa, _, exponent = text.partition("e")
    decimals = len(mantissa.partition(".")[2])
    half = 0.5 * 10.0 ** ((int(exponent) if exponent else 0) - decimals)
    return abs(value - float(text)) <= half * (1 + 1e-9)


def _assert_quotes(cell: str, values: list[float], where: str) -> None:
    shown = _numbers(cell)
    assert len(shown) == len(values), f"{where}: {cell!r} quotes {shown}, the files give {len(values)} figures"
    wrong = [(s, round(v, 6)) for s, v in zip(shown, values) if not _quotes(s, v)]
    assert not wrong, f"{where}: {cell!r}: (quoted, file's value) {wrong}"


def _ranges(cell: str) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in re.findall(r"(\d+\.\d+)-(\d+\.\d+)", cell)]


def _assert_in_range(cell: str, index: int, value: float, where: str) -> None:
    low, high = _ranges(cell)[index]
    assert low <= round(value, 2) <= high, f"{where}: {cell!r}: {low}-{high} leaves out this run's {value:.3f}"


def _table_after(marker: str) -> list[list[str]]:
    """The first markdown table after the line that starts with ``marker``: its body rows, as lists of cells."""
    start = PAGE.index("\n" + marker) + 1
    lines = PAGE[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        table.append(line)
    assert re.fullmatch(r"\|(?:-+\|)+", table[1]), table[:2]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]


def _row(rows: list[list[str]], *words: str) -> list[str]:
    found = [row for row in rows if all(word in " | ".join(row) for word in words)]
    assert len(found) == 1, f"{len(found)} rows with {words}"
    return found[0]


def _graph_rows(name: str) -> dict:
    return {(r["task"].split(",")[0], r["method"], r["layers"]): r for r in _load(name)["rows"]}


def _accuracy(row: dict) -> list[float]:
    return [100 * row["accuracy_mean"], 100 * row["accuracy_std"]]


def test_the_headline_graph_rows_are_the_graph_files():
    rows = _table_after("## Headline")
    graph, dfa = _graph_rows("graph-results"), _graph_rows("graph-dfa")
    for layers in (4, 8):
        row = _row(rows, f"Cora, {layers}-layer GCN", "test accuracy")
        sf, bp = graph["node", "sf", layers], graph["node", "bp", layers]
        _assert_quotes(row[3], _accuracy(sf), f"SF at {layers} layers")
        _assert_quotes(row[4], _accuracy(bp), f"BP at {layers} layers")
        _assert_quotes(row[5], [sf["acc_minus_bp"]], f"SF - BP at {layers} layers")

    row = _row(rows, "8 vs 2 layers")
    _assert_quotes(row[3], [graph["node", "sf", 8]["saved_vs_2_layers"]], "SF saved 8 / 2 layers")
    _assert_quotes(row[4], [graph["node", "bp", 8]["saved_vs_2_layers"]], "BP saved 8 / 2 layers")

    row = _row(rows, "same epoch budget", "fit time")
    for i, layers in enumerate((4, 8)):
        _assert_in_range(row[5], i, graph["node", "sf", layers]["time_vs_bp"], f"sf / BP time at {layers} layers")

    row = _row(rows, "2 / 8-layer GCN", "DFA")
    _assert_quotes(row[3], _accuracy(dfa["node", "dfa", 2]) + _accuracy(dfa["node", "dfa", 8]), "DFA")
    _assert_quotes(row[4], _accuracy(dfa["node", "bp", 2]) + _accuracy(dfa["node", "bp", 8]), "BP beside DFA")
    _assert_quotes(row[5], [dfa["node", "dfa", d]["acc_minus_bp"] for d in (2, 8)], "DFA - BP")
    hosts = [json.loads((BENCH / f"{name}-record.json").read_text())["host"] for name in ("graph-dfa", "graph-results")]
    assert ("another host" in row[1]) == (hosts[0] != hosts[1]), (
        f"{row[1]!r}: graph-dfa's record names the host {hosts[0]}, graph-results' {hosts[1]}")

    row = _row(rows, "1 / 2 / 4 / 8-layer GCN", "FF-LA")
    depths = (1, 2, 4, 8)
    _assert_quotes(row[3], [100 * graph["node", "ff-la", d]["accuracy_mean"] for d in depths], "FF-LA")
    _assert_quotes(row[4], [100 * graph["node", "bp", d]["accuracy_mean"] for d in depths], "BP beside FF-LA")
    _assert_quotes(row[5], [graph["node", "ff-la", d]["acc_minus_bp"] for d in depths], "FF-LA - BP")

    row = _row(rows, "edge split", "link ROC-AUC")
    _assert_quotes(row[3], [graph["link", "ce", 4]["accuracy_mean"]], "link CE")
    _assert_quotes(row[4], [graph["link", "bp", 4]["accuracy_mean"]], "link BP")


def _seq_costs(name: str, metric: str) -> dict:
    """``{(cell, T, mode): value}`` of a seq bench's cost rows."""
    return {(r["setting"].split()[0], int(r["experiment"].split("=")[1]), r["mode"]): r["value"]
            for r in _load(name)["rows"] if r["experiment"].startswith("cost") and r["metric"] == metric}


def _quality(name: str, metric: str) -> dict:
    """``{mode or rule: value}`` of a bench's rows of one metric (seq benches say mode, dfa benches rule)."""
    return {r.get("mode", r.get("rule")): r["value"] for r in _load(name)["rows"] if r["metric"] == metric}


def test_the_headline_sequence_rows_are_the_seq_files():
    rows = _table_after("## Headline")
    seconds, memory = _seq_costs("seq-results", "seconds/step"), _seq_costs("seq-results", "peak RSS increase MB")
    contexts = (128, 512, 2048)
    torch_gru = [seconds["GRU", t, "dsf"] / seconds["GRU", t, "bptt (torch fused)"] for t in contexts]
    _assert_quotes(_row(rows, "GRU 2x256, batch 16", "DSF", "BPTT through `torch.nn.GRU`")[5], torch_gru, "GRU / torch")
    kernel = [seconds["GRU", t, "dsf"] / seconds["GRU", t, "bptt"] for t in contexts]
    _assert_quotes(_row(rows, "GRU 2x256, batch 16", "DSF", "the default")[5], kernel, "GRU / kernel")
    faster = [seconds["GRU", t, "bptt (torch fused)"] / seconds["GRU", t, "bptt"] for t in contexts]
    _assert_quotes(_row(rows, "BPTT through fwdlearn's kernel | BPTT through")[5], faster, "kernel against torch")
    lstm = [seconds["LSTM", t, "dsf"] / seconds["LSTM", t, "bptt"] for t in contexts]
    _assert_quotes(_row(rows, "LSTM 2x256")[5], lstm, "LSTM")

    row = _row(rows, "peak memory increase per step")
    dsf, bptt, fused = (memory["GRU", 2048, mode] for mode in ("dsf", "bptt", "bptt (torch fused)"))
    _assert_quotes(row[3], [dsf], "DSF memory")
    _assert_quotes(row[4], [bptt, fused], "BPTT memory")
    _assert_quotes(row[5], [dsf / bptt, dsf / fused], "memory ratios")

    for corpus, name, metric in (("tinyshakespeare", "seq-results", "val bits/char"),
                                 ("wikitext-2", "seq-quality-wikitext2-preln", "val bits/word")):
        row, q = _row(rows, f"{corpus}, GRU 2x128 pre-LN"), _quality(name, metric)
        _assert_quotes(row[3], [q["dsf"], q["ft-bptt"]], f"{corpus} DSF, FT-BPTT")
        _assert_quotes(row[4], [q["bptt"]], f"{corpus} BPTT")
        _assert_quotes(row[5], [q["dsf"] / q["bptt"]], f"{corpus} DSF / BPTT")


def test_the_headline_language_model_rows_are_the_dfa_files():
    rows = _table_after("## Headline")
    t = _quality("dfa-transformer", "val bits/char")
    rules = ("dfa", "dfa:micro", "local:readout", "shallow")
    row = _row(rows, "transformer 4x256, 1000 steps")
    _assert_quotes(row[3], [t[rule] for rule in rules], "transformer rules")
    _assert_quotes(row[4], [t["bp"]], "transformer BP")
    _assert_quotes(row[5], [t[rule] / t["bp"] for rule in rules], "transformer ratios")

    r = _quality("dfa-recurrent", "val bits/char")
    row = _row(rows, "GRU 2x256 pre-LN, 1000 steps")
    _assert_quotes(row[3], [r["dfa+dsf"]], "dfa+dsf")
    _assert_quotes(row[4], [r["bptt"]], "BPTT")
    _assert_quotes(row[5], [r["dfa+dsf"] / r["bptt"]], "dfa+dsf / BPTT")

    cost = _quality("dfa-cost", "seconds/step")
    row = _row(rows, "transformer 4x256, batch 16 x 128")
    _assert_quotes(row[5].split("(")[0], [cost["dfa"] / cost["bp"]], "DFA step / BP")
    _assert_in_range(row[5], 0, cost["dfa"] / cost["bp"], "DFA step / BP over runs")


def _influence() -> dict:
    """``{(graph, layers): row}`` of the influence bench, graphs named as the docs do."""
    names = {"city:roads/california": "California", "city:roads/minnesota": "Minnesota",
             "city:roads/westminster": "Westminster", "synthetic-city:20000": "city 20k",
             "synthetic-city:100000": "city 100k"}
    return {(names[r["graph"]], r["layers"]): r for r in _load("influence-results")["rows"]}


EIGHT = ("California", "Minnesota", "Westminster", "city 20k", "city 100k")  # by mean 8-hop ball, as the docs


def test_the_headline_influence_rows_are_the_influence_files():
    rows, runs = _table_after("## Headline"), _influence()
    bound = float(_numbers(_row(rows, "agreement with PyG")[3])[0])
    assert all(r["max rel. diff"] < bound for r in runs.values()), bound

    row = _row(rows, "GCN-8, mean 8-hop ball")
    _assert_quotes(row[1], [8] + [runs[g, 8]["mean ball"] for g in EIGHT], "8-hop balls")
    _assert_quotes(row[5], [runs[g, 8]["speed-up"] for g in EIGHT], "layered speed-ups")
    _assert_quotes(_row(rows, "GCN-8, same balls")[5], [runs[g, 8]["autograd speed-up"] for g in EIGHT], "autograd")

    row = _row(rows, "GCN-16, mean 16-hop ball")
    others = [runs[g, 16] for g in EIGHT[1:]]
    balls = [r["mean ball"] for r in others]
    _assert_quotes(row[1], [16, runs["California", 16]["mean ball"], min(balls), max(balls)], "16-hop balls")
    layered, autograd = [r["speed-up"] for r in others], [r["autograd speed-up"] for r in others]
    _assert_quotes(row[5], [runs["California", 16]["speed-up"], min(layered), max(layered),
                            runs["California", 16]["autograd speed-up"], min(autograd), max(autograd)], "16 layers")

    ranges = {(r["model"], r["metric"]): r for r in _load("influence-ranges")["other"]}
    row = _row(rows, "California roads, trained by BP")
    _assert_quotes(row[3], [v for model in ("mlp-2", "gcn-2", "gcn-8")
                            for v in (100 * ranges[model, "test accuracy"]["value"],
                                      ranges[model, "R (max_hops=8)"]["value"])], "ranges of BP models")
    row = _row(rows, "California roads, GCN-8 (R over")
    sf_acc, sf_r = ranges["gcn-8", "test accuracy (sf)"], ranges["gcn-8", "R (sf)"]
    _assert_quotes(row[3], [100 * sf_acc["value"], sf_r["value"]], "SF")
    _assert_quotes(row[4], [100 * sf_acc["baseline"], sf_r["baseline"]], "BP beside SF")
    _assert_quotes(row[5], [sf_r["ratio"]], "R SF / BP")


def test_the_graph_table_is_the_generated_file():
    generated = (BENCH / "graph-results.md").read_text()
    section = PAGE.split("\n## Graphs: ForwardGNN vs BP\n")[1].split("\n## ")[0]
    page = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    assert page and page in generated, "docs/benchmarks.md's ForwardGNN table is not graph-results.md's"


def test_the_graph_dfa_table_is_the_dfa_files():
    rows = _table_after("| layers | BP | SF | DFA |")
    short, long = _graph_rows("graph-dfa"), _graph_rows("graph-dfa-300")
    for row, runs, layers in ((rows[0], short, 2), (rows[1], short, 8), (rows[2], long, 8)):
        methods = ("bp", "sf", "dfa") if runs is short else ("bp", "dfa")
        cells = [row[1], row[2], row[3]] if runs is short else [row[1], row[3]]
        for cell, method in zip(cells, methods):
            _assert_quotes(cell, _accuracy(runs["node", method, layers]), f"{row[0]} {method}")
        _assert_in_range(row[4], 0, runs["node", "dfa", layers]["time_vs_bp"], f"{row[0]} DFA time / BP")


def test_the_sequence_cost_table_is_the_seq_file():
    seconds, memory = _seq_costs("seq-results", "seconds/step"), _seq_costs("seq-results", "peak RSS increase MB")
    rows = _table_after("| cell | DSF / BPTT at T = 128 |")
    assert len(rows) == 3
    for row in rows:
        cell = row[0].split(",")[0]
        baseline = "bptt (torch fused)" if "torch.nn.GRU" in row[0] else "bptt"
        ratios = [seconds[cell, t, "dsf"] / seconds[cell, t, baseline] for t in (128, 512, 2048)]
        _assert_quotes(" ".join(row[1:4]), ratios, row[0])
        dsf, base = memory[cell, 2048, "dsf"], memory[cell, 2048, baseline]
        _assert_quotes(row[4], [dsf / base, dsf, base], f"{row[0]} memory")


def test_the_sequence_quality_tables_are_the_seq_files():
    rows = _table_after("| corpus | blocks | BPTT |")
    assert len(rows) == 6
    for row in rows:
        name = re.search(r"\(benchmarks/([\w-]+)\.md\)", row[-1]).group(1)
        metric = "val bits/word" if row[0] == "wikitext-2" else "val bits/char"
        q = _quality(name, metric)
        _assert_quotes(" ".join(row[2:5]), [q["bptt"], q["ft-bptt"], q["dsf"]], name)
        _assert_quotes(row[5], [q["dsf"] / q["bptt"]], f"{name} DSF / BPTT")
        _assert_quotes(row[6], [q["dsf"] - q["ft-bptt"]], f"{name} DSF - FT-BPTT")

    rows = _table_after("| settings | blocks | BPTT |")
    for row in rows:
        pattern = re.search(r"`docs/benchmarks/([\w-]+)-<rule>\.json`", row[-1]).group(1)
        bpc = {rule: json.loads((BENCH / f"{pattern}-{rule}.json").read_text())["summary"]["val_bpc"]
               for rule in ("bptt", "ft-bptt", "dsf")}
        _assert_quotes(" ".join(row[2:5]), [bpc["bptt"], bpc["ft-bptt"], bpc["dsf"]], pattern)
        _assert_quotes(row[5], [bpc["dsf"] - bpc["ft-bptt"]], f"{pattern} DSF - FT-BPTT")


def _alignment(name: str, rule: str) -> list[float]:
    return [r["value"] for r in _load(name)["rows"]
            if r["rule"] == rule and r["metric"].startswith("alignment") and ".out" in r["metric"]]


def test_the_language_model_tables_are_the_dfa_files():
    bits, perplexity = _quality("dfa-transformer", "val bits/char"), _quality("dfa-transformer", "val perplexity/char")
    seconds = _quality("dfa-transformer", "train seconds")
    for row in _table_after("| rule | bits/char | / BP |"):
        rule = row[0].split("`")[1]
        _assert_quotes(row[1], [bits[rule]], rule)
        _assert_quotes(row[2], [bits[rule] / bits["bp"]], f"{rule} / BP")
        _assert_quotes(row[3], [perplexity[rule] / perplexity["bp"]], f"{rule} perplexity / BP")
        if rule.startswith("dfa"):
            _assert_quotes(row[4], _alignment("dfa-transformer", rule), f"{rule} alignment")
        _assert_quotes(_numbers(row[5])[0], [seconds[rule] / seconds["bp"]], f"{rule} train time / BP")

    bits, seconds = _quality("dfa-recurrent", "val bits/char"), _quality("dfa-recurrent", "train seconds")
    for row in _table_after("| rule | through depth |"):
        rule = row[0].strip("`")
        _assert_quotes(row[3], [bits[rule]], rule)
        _assert_quotes(row[4], [bits[rule] / bits["bptt"]], f"{rule} / BPTT")
        if rule.startswith("dfa"):
            _assert_quotes(row[5], _alignment("dfa-recurrent", rule), f"{rule} alignment")
        _assert_quotes(_numbers(row[6])[0], [seconds[rule] / seconds["bptt"]], f"{rule} train time / BPTT")


def test_the_influence_table_is_the_influence_file():
    runs = _influence()
    groups = [[("California", 8)], [("Minnesota", 8)], [("Westminster", 8)], [("city 20k", 8)], [("city 100k", 8)],
              [("California", 16)], [("Minnesota", 16), ("Westminster", 16)], [("city 20k", 16), ("city 100k", 16)]]
    rows = _table_after("| graph | nodes | layers | mean hop ball")
    assert len(rows) == len(groups)
    for row, group in zip(rows, groups):
        where = f"{row[0]} at {row[2]} layers"
        picked = [runs[key] for key in group]
        if row[1]:
            _assert_quotes(row[1], [r["nodes"] for r in picked], f"{where} nodes")
        for column, key in ((3, "mean ball"), (4, "fwdlearn s"), (5, "autograd s"), (6, "PyG s"), (7, "speed-up"),
                            (8, "autograd speed-up")):
            _assert_quotes(row[column], [r[key] for r in picked], f"{where} {key}")
        _assert_quotes(row[9], [max(r["max rel. diff"] for r in picked)], f"{where} max rel. diff")
