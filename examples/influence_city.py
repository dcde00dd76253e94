"""How far does a GNN look on a road network? Hop-wise influence of a shallow and a deep GCN.

Run:  python examples/influence_city.py            (a generated city, offline)
      FWDLEARN_DATA_DIR=/path/to/data python examples/influence_city.py city:roads/westminster
"""

import sys

from fwdlearn.fit import seed_everything
from fwdlearn.graphs import ForwardGNN, hop_influence, load_city

source = sys.argv[1] if len(sys.argv) > 1 else "synthetic-city:2500"
data = load_city(source, quiet=False)  # City-Networks-style labels: 16-hop eccentricity, 10 classes
print(data, data.feature_names[:5])

for layers in (2, 8):
    seed_everything(0)
    model = ForwardGNN(data.num_features, data.num_classes, conv="gcn", hidden=64, layers=layers, method="bp")
    fit = model.fit(data, epochs=100, lr=1e-2, patience=50)
    curve, R, per_seed = hop_influence(model, data, max_hops=8, samples=300)
    print(f"GCN {layers} layers: test accuracy {fit.test_accuracy:.3f}, R = {R:.2f}, "
          f"curve = {[round(float(c), 4) for c in curve]}")
