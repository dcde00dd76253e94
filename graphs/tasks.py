"""The tasks ``fwdlearn graph train --task`` chooses: node classification and link prediction.

A task (:class:`GraphTask`) is what differs between them: the model it trains, the method it trains by default and
the names its methods go by, the score it reports, and what it reads of a graph. ``graph train`` looks its task up
in :data:`~fwdlearn.graphs.registries.GRAPH_TASKS` and asks it, rather than comparing ``--task`` with names. A new
task is one :class:`GraphTask` subclass and ``GRAPH_TASKS.register("name", MyTask())`` (its ``default_method``,
``metric``, ``method_names``, ``method_name`` and ``train`` defined: one that leaves any undefined is refused, naming
them).

========  =========================  ==============  =================  ================================
task      model                      default method  metric             reads of the graph
========  =========================  ==============  =================  ================================
``node``  ``ForwardGNN``             ``sf``          ``test_accuracy``  x, edge_index, y and the split
``link``  ``ForwardLinkPredictor``   ``ce``          ``test_auc``       x and edge_index
========  =========================  ==============  =================  ================================

This module imports no torch: ``--help`` lists the tasks' methods and defaults from it.
"""

from __future__ import annotations

__all__ = ["GraphTask", "NodeClassification", "LinkPrediction", "NODE", "LINK"]


class GraphTask:
    """One task of ``fwdlearn graph train``.

    Attributes:
        default_method: the method ``--method`` means when not given.
        metric: the key of the held-out score in a split's row of metrics (``test_accuracy``).
        labels: whether the task reads node labels and the graph's node split (a saved graph's masks); a task that
            does not (link prediction) trains on a graph without ``y``, and ``--split`` is refused for it.
        own_split: how a task that reads no node split splits the graph itself, in words that follow "it" (link
            prediction: ``splits the edges itself (drawn from --seed)``); ``""``: said of no split.
        methods_also: what ``--help`` adds after the method names (the other spellings taken).
    """

    default_method: str = ""
    metric: str = ""
    labels: bool = True
    own_split: str = ""
    methods_also: str = ""

    @property
    def graph_words(self) -> str:
        """What a checkpoint's fingerprint of the graph covers, in words: the graph, and its split where the task
        reads one."""
        return "graph and split" if self.labels else "graph"

    @property
    def graph_holds(self) -> str:
        """The parts of a graph the task reads, in words (``features or edges``)."""
        return "features, edges, labels or split" if self.labels else "features or edges"

    def method_names(self) -> list[str]:
        """One name per method the task trains by, as ``--help`` lists them."""
        raise NotImplementedError

    def method_name(self, method: str) -> str:
        """The name :meth:`method_names` lists for ``method`` (a name or a rule); a ``ValueError`` naming the choices
        for a method the task does not train by."""
        raise NotImplementedError

    def train(self, data, *, method: str, conv: str, hidden: int, layers: int, seed: int, **fit):
        """A model of the task built on ``data`` (``method``, ``conv``, ``hidden``, ``layers``, seeded by ``seed``)
        and fitted on it with the keyword arguments ``fit`` of its ``fit``; the fit's report, whose ``as_dict()``
        holds :attr:`metric` (else ``graph train`` refuses the task, naming the keys it holds).

        ``graph train`` reads nothing else of the report where it is missing: its table shows ``method``, ``conv``,
        ``layers``, ``fit_seconds``, ``saved_bytes_per_step`` and ``peak_memory_bytes`` of ``as_dict()`` when there
        (an empty cell otherwise), and a ``resumed`` attribute, where the report has one, says what a resumed fit
        continued from (as :class:`~fwdlearn.graphs.nn.forward_gnn.FitReport`'s)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(default_method={self.default_method!r}, metric={self.metric!r})"


class NodeClassification(GraphTask):
    """A label per node, learnt from the training nodes of the graph's split: :class:`~fwdlearn.graphs.ForwardGNN`,
    scored by accuracy on the test nodes."""

    default_method = "sf"
    metric = "test_accuracy"
    labels = True
    methods_also = "(or any rule of fwdlearn.rules a graph method is registered for)"

    def method_names(self) -> list[str]:
        from fwdlearn.graphs.methods import method_names

        return method_names()

    def method_name(self, method: str) -> str:
        from fwdlearn.graphs.methods import method_name

        return method_name(method)

    def train(self, data, *, method: str, conv: str, hidden: int, layers: int, seed: int, **fit):
        from fwdlearn.graphs.nn.forward_gnn import ForwardGNN

        model = ForwardGNN(data.num_features, data.num_classes, conv=conv, hidden=hidden, layers=layers,
                           method=method, seed=seed)
        return model.fit(data, **fit)


class LinkPrediction(GraphTask):
    """Whether an edge joins two nodes, learnt from 64 % of the graph's edges (the rest split for validation and
    test, drawn from the seed): :class:`~fwdlearn.graphs.ForwardLinkPredictor`, scored by test AUC."""

    default_method = "ce"
    metric = "test_auc"
    labels = False
    own_split = "splits the edges itself (drawn from --seed)"
    methods_also = "(or their rules)"

    def method_names(self) -> list[str]:
        from fwdlearn.graphs.registries import LINK_METHODS

        return LINK_METHODS.names()

    def method_name(self, method: str) -> str:
        from fwdlearn.graphs.registries import link_method

        return link_method(method)

    def train(self, data, *, method: str, conv: str, hidden: int, layers: int, seed: int, **fit):
        from fwdlearn.graphs.nn.linkpred import ForwardLinkPredictor

        model = ForwardLinkPredictor(data.num_features, conv=conv, hidden=hidden, layers=layers, method=method)
        return model.fit(data, seed=seed, **fit)


#: the built-in tasks: the entries ``node`` and ``link`` of :data:`~fwdlearn.graphs.registries.GRAPH_TASKS`
NODE = NodeClassification()
LINK = LinkPrediction()
