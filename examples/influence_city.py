"""How far does a GNN look on a road network? Hop-wise influence of a shallow and a deep GCN.

Run:  python examples/influence_city.py            (a generated city, offline)
      FWDLEARN_DATA_DIR=/path/to/data python examples/influence_city.py city:roads/westminster
Any other graph load_graph reads is measured too (cora, karate, sbm:N; --download lets PyG fetch a missing one).
"""

import argparse

from fwdlearn.fit import seed_everything
from fwdlearn.graphs import ForwardGNN, hop_influence, load_graph

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("data", nargs="?", default="synthetic-city:2500",
                    help="a road graph: synthetic-city:N, city:<file or folder> or citynetwork:<name>, or any other "
                         "graph load_graph reads (default: synthetic-city:2500)")
parser.add_argument("--download", action="store_true",
                    help="let PyG download a data set that is not local (needs internet)")
args = parser.parse_args()
try:  # City-Networks-style labels: 16-hop eccentricity, 10 classes; "auto": a random split where there is no public one
    data = load_graph(args.data, split="auto", quiet=False, download=args.download)
except (ValueError, FileNotFoundError) as error:  # an unknown name, data not found: one line, not a traceback
    parser.error(str(error))
print(data, getattr(data, "feature_names", [])[:5])  # (the road graphs name their features; cora or sbm do not)

for layers in (2, 8):
    seed_everything(0)
    model = ForwardGNN(data.num_features, data.num_classes, conv="gcn", hidden=64, layers=layers, method="bp")
    fit = model.fit(data, epochs=100, lr=1e-2, patience=50)
    curve, R, per_seed = hop_influence(model, data, max_hops=8, samples=300)
    print(f"GCN {layers} layers: test accuracy {fit.test_accuracy:.3f}, R = {R:.2f}, "
          f"curve = {[round(float(c), 4) for c in curve]}")
