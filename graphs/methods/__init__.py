"""Graph training methods, looked up by rule.

A method (:class:`~fwdlearn.graphs.methods.base.GraphMethod`) says what it feeds the GNN blocks
(virtual nodes, appended labels, top-down context), its layer loss, its scores and which schedule
trains it. ``ForwardGNN(method=...)`` takes a rule or alias from :mod:`fwdlearn.rules` (``"sf"`` =
``"local:prototype"``) or the name a method was registered under. Adding a method is one module
and one line here (or ``METHODS.register("name", MyMethod)`` from any file). A model file names its method by
the class's ``rule``, so a method is registered under a name its ``rule`` finds again (its rule itself, as
``"my-readout"`` for ``rule = "my-readout"``); one whose rule names another method is refused.

================================  ============  ===========================  ===================
rule                              alias         class                        schedule
================================  ============  ===========================  ===================
``local:prototype``               ``sf``        SingleForward                greedy layer-wise
``local:prototype:top2input``     sf-top2input  TopToInput                   simultaneous local
``local:prototype:top2loss``      sf-top2loss   TopToLoss                    simultaneous local
``local:ff:la``                   ff-la         LabelAppendingFF             greedy layer-wise
``local:ff:vn``                   ff-vn         VirtualNodeFF                greedy layer-wise
``local:symba:la``                ff-symba      LabelAppendingSymBa          greedy layer-wise
``bp``                                          Backprop                     end-to-end
``dfa[:gaussian|:orthogonal]``                  DirectFeedbackGNN            end-to-end
================================  ============  ===========================  ===================

``dfa`` (direct feedback alignment, :mod:`~fwdlearn.graphs.methods.dfa`) trains BP's backbone end to end
but replaces the gradient reaching every block's output by a fixed random projection of the
classifier's error, spread over the graph; the feedback kind is part of the rule (one class serves
``dfa``, ``dfa:gaussian`` and ``dfa:orthogonal``). ``dfa:micro`` is not registered: a GNN block has one
weight layer, so there is nothing inside it to place more feedback points at.
"""

from fwdlearn.registry import Registry, did_you_mean
from fwdlearn.rules import ALIASES as RULE_ALIASES
from fwdlearn.rules import DFA_FEEDBACKS, parse_rule

__all__ = ["METHODS", "method_class", "method_name", "method_names", "trains_layer_by_layer"]

def _key(method: str) -> str:
    """The entry of :data:`METHODS` a spelling is looked up by: a registered name as it is, else its rule's canonical
    spelling (``"sf"`` -> ``"local:prototype"``), else itself."""
    name = str(method).strip().lower()
    if name in METHODS:
        return name
    try:
        return str(parse_rule(name))
    except ValueError:
        return name


def _check_method(name: str, cls) -> None:
    """A method is registered as its class, under a name its ``rule`` finds again: ``ForwardGNN`` saves a method by
    its rule, so a class whose rule names another method (a subclass of ``Backprop`` keeping ``rule = "bp"``) was
    trained as itself and loaded back as that other method, in silence."""
    if isinstance(cls, str):  # (a lazy "module:Class" target: not imported to check it)
        return
    if not isinstance(cls, type):
        raise TypeError(f"a graph method is registered as its class, not an instance: METHODS.register({name!r}, "
                        f"{type(cls).__name__})")
    rule = getattr(cls, "rule", "")
    # (what method_class(rule) finds once it is registered: this entry when the rule spells its name, as "sf" does
    # a class registered under "sf", although "sf" is an alias of another method's rule before it)
    key = (name if rule.strip().lower() == name else _key(rule)) if isinstance(rule, str) and rule else None
    if key == name or (key is not None and key in METHODS and METHODS.get(key) is cls):
        return
    found, fix = ((f"which names the method {METHODS.get(key).__name__}", "") if key in METHODS else
                  ("which names no registered method", f", or register it under {rule!r}"))
    raise ValueError(f"the graph method {cls.__name__} registered as {name!r} has the rule {rule!r}, {found}: a model "
                     f"saves its method by its rule, so ForwardGNN.load would not build {cls.__name__} again; give the "
                     f"class rule = {name!r}{fix}")


METHODS = Registry("graph method", {
    "local:prototype": "fwdlearn.graphs.methods.sf:SingleForward",
    "local:prototype:top2input": "fwdlearn.graphs.methods.topdown:TopToInput",
    "local:prototype:top2loss": "fwdlearn.graphs.methods.topdown:TopToLoss",
    "local:ff:la": "fwdlearn.graphs.methods.ff:LabelAppendingFF",
    "local:ff:vn": "fwdlearn.graphs.methods.ff:VirtualNodeFF",
    "local:symba:la": "fwdlearn.graphs.methods.ff:LabelAppendingSymBa",
    "bp": "fwdlearn.graphs.methods.bp:Backprop",
    # one class for every DFA feedback kind (a kind added to fwdlearn.rules.FEEDBACK_KINDS is a method here too)
    **{str(parse_rule(f"dfa:{kind}")): "fwdlearn.graphs.methods.dfa:DirectFeedbackGNN" for kind in DFA_FEEDBACKS},
}, lower_case=True, check=_check_method)

#: the short names users know: the aliases (:data:`fwdlearn.rules.ALIASES`) of registered methods that are shorter
#: than the rule they stand for (``sf``, not ``backprop``), in the order help texts list them (then the other methods)
ALIASES = tuple(alias for alias, spec in RULE_ALIASES.items() if spec in METHODS and len(alias) < len(spec))


def method_class(method: str):
    """The method class registered for ``method`` (a registered name, a rule or an alias)."""
    key = _key(method)
    if key not in METHODS:
        raise ValueError(f"unknown graph method {method!r}; choose one of {', '.join(method_names())}"
                         f"{did_you_mean(method, [*method_names(), *METHODS])}")
    return METHODS.get(key)


def trains_layer_by_layer(method: str) -> bool:
    """Whether ``method`` trains its blocks one after another (:class:`~fwdlearn.graphs.methods.base.LayerwiseMethod`:
    its epoch budget is per layer), not all at once (BP, DFA, the top-down methods: the budget in total)."""
    from fwdlearn.graphs.methods.base import LayerwiseMethod

    return issubclass(method_class(method), LayerwiseMethod)


def method_name(method: str) -> str:
    """The one name :func:`method_names` lists for ``method`` (any spelling :func:`method_class` takes):
    ``"local:prototype"`` and ``"SF"`` are ``"sf"``, ``"dfa:macro"`` is ``"dfa"``.

    Raises:
        ValueError: ``method`` names no registered method.
    """
    name = str(method).strip().lower()
    method_class(name)  # refuses an unknown method
    key = name if name in METHODS else str(parse_rule(name))
    return next((alias for alias in ALIASES if str(parse_rule(alias)) == key), key)


def method_names() -> list[str]:
    """One name per registered method: its alias when it has one, else its registered name."""
    aliased = {str(parse_rule(a)) for a in ALIASES}
    return list(ALIASES) + [n for n in METHODS.names() if n not in aliased and n not in ALIASES]
