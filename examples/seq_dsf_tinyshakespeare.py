"""Train a character-level GRU on tinyshakespeare with DSF and with BPTT, same budget, and compare.

Run:  FWDLEARN_DATA_DIR=/path/to/data python examples/seq_dsf_tinyshakespeare.py
"""

import argparse

import torch

from fwdlearn.sequences import RecurrentLM, lag_influence, load_text

# --help shows the docstring above (without a parser the script ignored it, and any other argument, and trained)
argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
torch.set_num_threads(1)
try:
    corpus = load_text("tinyshakespeare", level="char")  # 90/10 train/validation, vocabulary of 65 characters
except FileNotFoundError as error:  # FWDLEARN_DATA_DIR unset or without the corpus: one line, not a traceback
    raise SystemExit(f"seq_dsf_tinyshakespeare.py: error: {error}")
for training in ("bptt", "dsf"):
    torch.manual_seed(0)
    lm = RecurrentLM(corpus.vocab_size, cell="gru", hidden=128, layers=2, training=training)
    report = lm.fit(corpus, context=128, steps=200, batch_size=16, eval_every=100, eval_tokens=20_000)
    val = lm.evaluate(corpus.validation, context=128, max_tokens=50_000)
    curve, R, _ = lag_influence(lm, corpus.validation[:256].view(2, 128), max_lag=64, positions=8)
    print(f"{training}: {val['bpc']:.3f} bits/char in {report.seconds:.0f}s; influence range R = {R:.1f} characters")
    print(lm.generate("ROMEO:", 80, vocab=corpus.vocab, seed=0, temperature=0.8))
