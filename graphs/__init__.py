"""Graph learning without end-to-end backpropagation (ForwardGNN) and hop-wise influence.

Layout: :mod:`~fwdlearn.graphs.data` (graphs, road networks, hop balls), :mod:`~fwdlearn.graphs.nn`
(GNN blocks and the models), :mod:`~fwdlearn.graphs.methods` (how each training method feeds,
scores and trains the blocks), :mod:`~fwdlearn.graphs.influence` (hop-wise Jacobian influence) and
:mod:`~fwdlearn.graphs.cli` (the ``fwdlearn graph|bench|influence`` commands).

The public names below are imported on first use, so ``import fwdlearn.graphs`` (and the CLI's
``--help``) stays fast.
"""

from importlib import import_module

_EXPORTS = {
    "load_graph": "fwdlearn.graphs.data.datasets",
    "build_city_network": "fwdlearn.graphs.data.citynet",
    "synthetic_city": "fwdlearn.graphs.data.citynet",
    "load_city": "fwdlearn.graphs.data.citynet",
    "ForwardGNN": "fwdlearn.graphs.nn.forward_gnn",
    "FitReport": "fwdlearn.graphs.nn.forward_gnn",
    "ForwardLinkPredictor": "fwdlearn.graphs.nn.linkpred",
    "train_node_classifier": "fwdlearn.graphs.methods.bp",
    "hop_influence": "fwdlearn.graphs.influence.hop_influence",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fwdlearn.graphs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
