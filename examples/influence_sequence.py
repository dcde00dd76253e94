"""Lag-wise influence of a GRU language model and a causal convolution on random tokens.

Run:  python examples/influence_sequence.py
"""

import argparse

import torch

from fwdlearn.fit import seed_everything
from fwdlearn.sequences import CausalConvLM, RecurrentLM, lag_influence

# --help shows the docstring above (without a parser the script ignored it, and any other argument, and trained)
argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
seed_everything(0)
tokens = torch.randint(0, 16, (4, 64))  # [batch, time]
models = {"gru": RecurrentLM(16, cell="gru", hidden=32, layers=2), "conv": CausalConvLM(16, hidden=32, layers=2)}
for name, model in models.items():
    curve, R, per_position = lag_influence(model, tokens, max_lag=32, positions=16)
    print(f"{name}: R = {R:.2f} lags; influence at lag 0, 4, 16: "
          f"{float(curve[0]):.3f} {float(curve[4]):.2e} {float(curve[16]):.2e}")
