"""Lag-wise influence of a GRU and a causal convolution on random embeddings.

Run:  python examples/influence_sequence.py
"""

import torch

from fwdlearn.fit import seed_everything
from fwdlearn.sequences import lag_influence
from fwdlearn.sequences.influence_commands import make_sequence_model

seed_everything(0)
inputs = torch.randn(4, 64, 16)  # [batch, time, embedding]
for kind in ("gru", "conv"):
    model = make_sequence_model(kind, features=16, hidden=32, layers=2, out=8)
    curve, R, per_position = lag_influence(model, inputs, max_lag=32, positions=16)
    print(f"{kind}: R = {R:.2f} lags; influence at lag 0, 4, 16: "
          f"{float(curve[0]):.3f} {float(curve[4]):.2e} {float(curve[16]):.2e}")
