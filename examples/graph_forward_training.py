"""Train a 4-layer GCN without backpropagation (ForwardGNN, single forward) next to end-to-end BP.

Run:  python examples/graph_forward_training.py                 (KarateClub, offline)
      FWDLEARN_DATA_DIR=/path/to/data python examples/graph_forward_training.py cora
      python examples/graph_forward_training.py cora --download   (PyG downloads Cora; needs internet)
"""

import argparse

from fwdlearn.fit import seed_everything
from fwdlearn.graphs import ForwardGNN, hop_influence, load_graph

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("data", nargs="?", default="karate", help="a graph load_graph reads (default: karate)")
parser.add_argument("--download", action="store_true",
                    help="let PyG download a data set that is not local (needs internet)")
args = parser.parse_args()
try:  # a random 64/16/20 split, as in the paper
    data = load_graph(args.data, split="random", seed=0, download=args.download)
except (ValueError, FileNotFoundError) as error:  # an unknown name, data not found: one line, not a traceback
    parser.error(str(error))
print(data)

for method in ("bp", "sf", "ff-la"):
    seed_everything(0)
    model = ForwardGNN(data.num_features, data.num_classes, conv="gcn", hidden=128, layers=4, method=method)
    # epochs per layer for the forward methods; validation every 5 epochs, patience 10 checks (as `bench graph`):
    # a patience of 20 epochs stopped FF-LA 5 points short on Cora
    report = model.fit(data, epochs=100, lr=0.01, patience=10, eval_every=5)
    curve, R, _ = hop_influence(model, data, max_hops=4, samples=min(200, data.num_nodes),
                                quiet=False)  # (a bar: FF-LA, measured one ball at a time, takes minutes on Cora)
    print(f"{method:6s} test accuracy {report.test_accuracy:.3f}  fit {report.fit_seconds:.1f} s  "
          f"saved for backward/step {report.saved_bytes_per_step / 1e6:.1f} MB  R = {R:.2f}")

# model(x, edge_index) works on any graph, with no labels: here the last model, FF-LA, makes one pass per class with
# that class appended to every node (SF would score nodes against its stored class prototypes)
scores = model(data.x, data.edge_index)
print("scores", tuple(scores.shape))
