"""Delayed recall: which training rule can carry credit 20 steps back in time?

Run:  python examples/seq_delayed_recall.py
"""

import argparse

import torch

from fwdlearn.sequences import DelayedRecall, RecurrentLM

# --help shows the docstring above (without a parser the script ignored it, and any other argument, and trained)
argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
torch.set_num_threads(1)
task = DelayedRecall(lag=20, symbols=8)  # output the token seen 20 steps ago; chance = 1/8
for training in ("bptt", "tbptt:8", "ft-bptt", "dsf"):
    torch.manual_seed(0)
    model = RecurrentLM(task.vocab_size, cell="gru", hidden=64, layers=1, training=training, out_size=task.out_size)
    model.fit(task, steps=300, batch_size=32, lr=3e-3, eval_every=100, quiet=True)
    print(f"{training:8s} accuracy {model.evaluate(task)['accuracy']:.3f} (chance {task.chance:.3f})")
