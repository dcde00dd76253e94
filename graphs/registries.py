"""The graph package's registries of convs and link methods, listable without importing torch.

The built-in entries are ``"module:attribute"`` strings (:class:`~fwdlearn.registry.Registry`), imported on first
:meth:`~fwdlearn.registry.Registry.get`; so ``fwdlearn graph train --help`` lists the names, a registered entry
included, without loading torch. (The graph methods' registry is :data:`fwdlearn.graphs.methods.METHODS`.)

* :data:`CONV_KINDS`: conv name -> :class:`~fwdlearn.graphs.nn.convs.ConvKind` instance (``gcn``, ``sage``, ``gat``,
  ``mlp``). A new conv is one ``ConvKind`` subclass and ``CONV_KINDS.register("name", MyConv())`` (an instance: a
  class is refused, and so is a kind that says ``linear = True`` without the methods that claim is read through).
* :data:`LINK_METHODS`: link-prediction method name -> :class:`~fwdlearn.graphs.nn.linkpred.LinkMethod` (``ce``,
  ``ff``, ``bp``). A method's rule is its name's rule in :mod:`fwdlearn.rules` (``ce`` = ``local:ce``, ``ff`` =
  ``local:ff``); :func:`link_method` resolves a name or a rule. A new one is
  ``LINK_METHODS.register("name", LinkMethod(score, layerwise))``.
* :data:`GRAPH_TASKS`: ``graph train --task`` name -> :class:`~fwdlearn.graphs.tasks.GraphTask` (``node``, ``link``):
  the model, default method, method names and metric of each. A new one is
  ``GRAPH_TASKS.register("name", MyTask())`` (an instance; a ``GraphTask`` that leaves its ``default_method``,
  ``metric``, ``method_names``, ``method_name`` or ``train`` undefined is refused, naming them).
"""

from __future__ import annotations

from fwdlearn.registry import Registry, did_you_mean, instance_entry
from fwdlearn.rules import parse_rule

__all__ = ["CONV_KINDS", "LINK_METHODS", "GRAPH_TASKS", "link_method", "link_rule"]

_CONV_ENTRY = instance_entry("CONV_KINDS", "conv")


def _check_conv(name: str, kind) -> None:
    """A conv kind is an instance, and one that says it is linear after a fixed aggregation (``linear = True``) defines
    what the aggregation cache and the layered Jacobian read of it: ``weights``, ``from_aggregation`` and, when it
    aggregates, ``propagation`` (without them a layer-wise fit failed inside, calling the conv "not linear", or one
    with "attention", or listing it among the convs it said had no cached aggregation)."""
    _CONV_ENTRY(name, kind)
    from fwdlearn.graphs.nn.convs import ConvKind  # (a kind is being registered: torch is loaded already)

    if not isinstance(kind, ConvKind) or not kind.linear:
        return
    needed = ["weights", "from_aggregation"] + (["propagation"] if kind.aggregates else [])
    missing = [method for method in needed if getattr(type(kind), method) is getattr(ConvKind, method)]
    if missing:
        raise TypeError(f"the conv {name!r} says it is linear after a fixed aggregation (linear = True) but does not "
                        f"define {', '.join(missing)}, which the aggregation cache of layer-wise fits and the layered "
                        "Jacobian call: define them as fwdlearn.graphs.nn.convs.GCN does, or leave linear = False "
                        "(message passing only)")


_TASK_ENTRY = instance_entry("GRAPH_TASKS", "graph task")


def _check_task(name: str, task) -> None:
    """A graph task is an instance, and one of :class:`~fwdlearn.graphs.tasks.GraphTask` defines what ``graph train``
    asks of it: ``default_method`` and ``metric`` (non-blank strings), ``method_names``, ``method_name`` and ``train``
    (without a default method ``graph train --task`` alone was refused as "--method '' is not a ... method", a flag
    the user had not given; without ``train`` it failed once the graph was read, a bare ``NotImplementedError``)."""
    _TASK_ENTRY(name, task)
    from fwdlearn.graphs.tasks import GraphTask  # (imports no torch)

    if not isinstance(task, GraphTask):
        return
    missing = [attribute for attribute in ("default_method", "metric")
               if not isinstance(getattr(task, attribute), str) or not getattr(task, attribute).strip()]
    missing += [method for method in ("method_names", "method_name", "train")
                if getattr(type(task), method) is getattr(GraphTask, method)]
    if missing:
        raise TypeError(f"the graph task {name!r} ({type(task).__name__}) does not define {', '.join(missing)}, which "
                        "graph train asks of a task (fwdlearn.graphs.tasks.GraphTask says what each is): define "
                        f"{'it' if len(missing) == 1 else 'them'}, or subclass NodeClassification or LinkPrediction, "
                        "which define them all")


#: conv name -> :class:`~fwdlearn.graphs.nn.convs.ConvKind`
CONV_KINDS = Registry("conv", {
    "gcn": "fwdlearn.graphs.nn.convs:GCN_KIND",
    "sage": "fwdlearn.graphs.nn.convs:SAGE_KIND",
    "gat": "fwdlearn.graphs.nn.convs:GAT_KIND",
    "mlp": "fwdlearn.graphs.nn.convs:MLP_KIND",
}, lower_case=True, check=_check_conv)

#: link method name -> :class:`~fwdlearn.graphs.nn.linkpred.LinkMethod`
LINK_METHODS = Registry("link method", {
    "ce": "fwdlearn.graphs.nn.linkpred:CE",
    "ff": "fwdlearn.graphs.nn.linkpred:FF",
    "bp": "fwdlearn.graphs.nn.linkpred:BP",
}, lower_case=True)

#: ``graph train --task`` name -> :class:`~fwdlearn.graphs.tasks.GraphTask`
GRAPH_TASKS = Registry("graph task", {
    "node": "fwdlearn.graphs.tasks:NODE",
    "link": "fwdlearn.graphs.tasks:LINK",
}, lower_case=True, check=_check_task)


def link_rule(name: str) -> str:
    """The canonical rule of a link method's name (``"ce"`` -> ``"local:ce"``; a name that is no rule: itself)."""
    try:
        return str(parse_rule(name))
    except ValueError:
        return name


def link_method(method: str) -> str:
    """The registered name of the link method ``method``: a name of :data:`LINK_METHODS` or its rule
    (``"local:ce"`` -> ``"ce"``); a ``ValueError`` naming the choices otherwise. Imports no torch."""
    key = str(method).strip().lower()
    if key in LINK_METHODS:
        return key
    rule = link_rule(key)
    for name in LINK_METHODS:
        if link_rule(name) == rule:
            return name
    raise ValueError(f"unknown link method {method!r}; choose one of {', '.join(LINK_METHODS)} "
                     f"(rules {', '.join(link_rule(name) for name in LINK_METHODS)})"
                     f"{did_you_mean(method, LINK_METHODS)}")
