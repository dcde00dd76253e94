"""Graph learning without backpropagation (ForwardGNN) and hop-wise influence."""
from .influence import hop_influence
from .citynet import build_city_network, synthetic_city, load_city
from .datasets import load_graph
from .forward_gnn import ForwardGNN, FitReport
from .node_bp import train_node_classifier
from .linkpred import ForwardLinkPredictor
