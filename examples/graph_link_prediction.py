"""Link prediction without backpropagation: ForwardGNN-CE (per-layer BCE on dot-product scores) vs BP.

Run:  python examples/graph_link_prediction.py                  (KarateClub, offline)
      FWDLEARN_DATA_DIR=/path/to/data python examples/graph_link_prediction.py cora
      python examples/graph_link_prediction.py cora --download   (PyG downloads Cora; needs internet)
      python examples/graph_link_prediction.py file:my_graph.pt  (a saved PyG Data: x and edge_index, no labels needed)
"""

import argparse

from fwdlearn.fit import seed_everything
from fwdlearn.graphs import ForwardLinkPredictor, load_graph

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("data", nargs="?", default="karate",
                    help="a graph load_graph reads, or file:<path> (default: karate)")
parser.add_argument("--download", action="store_true",
                    help="let PyG download a data set that is not local (needs internet)")
args = parser.parse_args()
try:  # no node label nor split is read (fit splits the edges): labels=False loads a saved graph without labels
    data = load_graph(args.data, split="auto", download=args.download, labels=False)
except (ValueError, FileNotFoundError) as error:  # an unknown name, data not found: one line, not a traceback
    parser.error(str(error))
for method in ("bp", "ce", "ff"):
    seed_everything(0)  # the weights are drawn from torch's global generator
    model = ForwardLinkPredictor(data.num_features, conv="gcn", hidden=64, layers=2, method=method)
    report = model.fit(data, epochs=100, lr=0.01, patience=20, seed=0)  # 64/16/20 edge split, 1:1 negatives
    print(f"{method:3s} test ROC-AUC {report.test_auc:.3f}  fit {report.fit_seconds:.1f} s")
