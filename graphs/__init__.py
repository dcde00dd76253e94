"""Graph learning without end-to-end backpropagation (ForwardGNN) and hop-wise influence.

Layout: :mod:`~fwdlearn.graphs.data` (graphs, road networks, hop balls), :mod:`~fwdlearn.graphs.nn`
(GNN blocks and the models), :mod:`~fwdlearn.graphs.methods` (how each training method feeds,
scores and trains the blocks), :mod:`~fwdlearn.graphs.influence` (hop-wise Jacobian influence),
:mod:`~fwdlearn.graphs.registries` (the convs, link methods and ``graph train``'s tasks by name,
listable without torch; the tasks are :mod:`~fwdlearn.graphs.tasks`) and
:mod:`~fwdlearn.graphs.cli` (the ``fwdlearn graph|bench|influence`` commands).

The public names below are imported on first use, so ``import fwdlearn.graphs`` (and the CLI's
``--help``) stays fast.
"""

from fwdlearn.registry import lazy_exports

_EXPORTS = {
    "load_graph": "fwdlearn.graphs.data.datasets",
    "build_city_network": "fwdlearn.graphs.data.citynet",
    "synthetic_city": "fwdlearn.graphs.data.citynet",
    "load_city": "fwdlearn.graphs.data.citynet",
    "ForwardGNN": "fwdlearn.graphs.nn.forward_gnn",
    "FitReport": "fwdlearn.graphs.nn.forward_gnn",
    "ForwardLinkPredictor": "fwdlearn.graphs.nn.linkpred",
    "LinkReport": "fwdlearn.graphs.nn.linkpred",  # (what ForwardLinkPredictor.fit returns, as FitReport is ForwardGNN's)
    "train_node_classifier": "fwdlearn.graphs.methods.bp",
    "hop_influence": "fwdlearn.graphs.influence.hop_influence",
}
__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
