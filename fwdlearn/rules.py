r"""Credit-assignment rules: how the training signal reaches each parameter.

Every model in fwdlearn is trained by a *rule* with up to two axes.

**Through depth** (across layers or blocks), a :class:`DepthRule`:

- ``bp`` -- backpropagation: :math:`\delta_l = J_{l+1}^\top \delta_{l+1}`, the baseline;
- ``dfa[:macro|:micro][:uniform|:gaussian|:orthogonal]`` -- direct feedback alignment: every
  feedback point gets :math:`\delta_l = e\,B_l`, a fixed random projection of the output error
  :math:`e` (:class:`fwdlearn.feedback.DirectFeedback`); ``macro`` puts one point per block
  output, ``micro`` several inside each block;
- ``local:<objective>[:<variant>]`` -- every block is trained by its own loss on its own output
  and sees a detached copy of the block below (:mod:`fwdlearn.local`):
  :math:`\nabla_{\theta_l}\mathcal{L} = \nabla_{\theta_l}\mathcal{L}_l(f_l(\operatorname{sg}(h_{l-1})))`.
  Objectives: ``prototype`` (ForwardGNN's SF loss), ``ff`` (Forward-Forward goodness), ``symba``,
  ``readout`` (a small head per block trained on the task loss) and ``ce`` (binary cross-entropy of
  a parameter-free score, e.g. a dot product of two node embeddings). The variant names how a
  model family feeds the objective (``la`` appended labels, ``vn`` virtual nodes, ``top2input`` /
  ``top2loss`` top-down signals);
- ``shallow`` -- a control: only the output layer learns, the blocks keep their initial weights.

**Through time** (recurrent models only), a :class:`TimeRule`; with :math:`e_t` the local error
of state :math:`s_t` and :math:`g_t` the state gradient pushed into :math:`\partial s_t/\partial\theta`:

- ``bptt`` -- :math:`g_t = e_t + J_t^\top g_{t+1}`;
- ``tbptt:<k>`` -- the same inside chunks of :math:`k` steps;
- ``ft-bptt`` -- fully truncated, :math:`g_t = e_t`;
- ``dsf[:diagonal|:gaussian|:orthogonal]`` -- stationary state feedback, :math:`g_t = e_t + A\,g_{t+1}`
  with a fixed :math:`A` (:func:`fwdlearn.feedback.time_feedback`).

A training spec joins them with ``+``: ``"dfa+dsf"`` (DFA through depth, DSF through time),
``"local:readout+ft-bptt"``. One axis alone leaves the other at its default: ``"dsf"`` means
``bp`` through depth, ``"dfa"`` on a recurrent model means ``bptt`` through time. The words used
before rules were one concept stay valid aliases (``sf``, ``ff-la``, ``sf-top2input``, ...).

Every spec is parsed once, here, into frozen dataclasses, and ``str()`` gives the canonical
spelling back: ``parse_rule(str(rule)) == rule`` (but for ``DSF("diagonal")``, spelled ``"dsf"`` like ``DSF()``).

Example::

    >>> rule = parse_rule("dfa:micro+dsf")
    >>> rule.depth, rule.time
    (DFA(placement='micro', feedback='uniform'), DSF(feedback=None))
    >>> str(parse_rule("sf")), str(parse_rule("bp+dsf"))
    ('local:prototype', 'dsf')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from fwdlearn.errors import is_integer
from fwdlearn.registry import did_you_mean, unknown

__all__ = [
    "RulePart", "DepthRule", "BP", "DFA", "Local", "Shallow",
    "TimeRule", "BPTT", "TBPTT", "FTBPTT", "DSF",
    "Rule", "parse_rule", "register_depth_rule", "register_time_rule", "register_alias",
    "DEPTH_RULES", "TIME_RULES", "ALIASES", "DFA_PLACEMENTS", "FEEDBACK_KINDS", "DFA_FEEDBACKS", "DSF_FEEDBACKS",
    "LOCAL_OBJECTIVES", "vocabulary",
]

DFA_PLACEMENTS = ("macro", "micro")
#: every fixed feedback kind -> the rules that take it (how each is drawn: :data:`fwdlearn.feedback.FEEDBACK_MAKERS`)
FEEDBACK_KINDS: dict[str, tuple[str, ...]] = {
    "diagonal": ("dsf",),  # DSF's reference A = diag(linspace(0, 1, d))
    "uniform": ("dfa",),
    "gaussian": ("dfa", "dsf"),
    "orthogonal": ("dfa", "dsf"),
}
DFA_FEEDBACKS = tuple(kind for kind, rules in FEEDBACK_KINDS.items() if "dfa" in rules)
DSF_FEEDBACKS = tuple(kind for kind, rules in FEEDBACK_KINDS.items() if "dsf" in rules)
LOCAL_OBJECTIVES = ("prototype", "ff", "symba", "readout", "ce")


def _options(choices: tuple[str, ...]) -> str:
    """``"[:a|:b]"``: one optional argument out of ``choices``, as :func:`vocabulary` writes it."""
    return "[" + "|".join(":" + c for c in choices) + "]"


def _no_arguments(name: str, args: list[str]) -> None:
    if args:
        raise ValueError(f"rule {name!r} takes no arguments; got {name}:{':'.join(args)}")


# --------------------------------------------------------------------------- depth


@dataclass(frozen=True)
class RulePart:
    """One axis of a rule. Subclasses set ``name``; ones that take arguments override ``parse`` and ``__str__``."""

    name: ClassVar[str] = ""

    @classmethod
    def parse(cls, args: list[str]) -> "RulePart":
        _no_arguments(cls.name, args)
        return cls()

    @classmethod
    def usage(cls) -> str:
        """How the rule is spelled with its options, for :func:`vocabulary` (``"tbptt:<k>"``)."""
        return cls.name

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class DepthRule(RulePart):
    """How credit crosses layers."""


@dataclass(frozen=True)
class BP(DepthRule):
    r"""Backpropagation through depth (Rumelhart, Hinton & Williams, Nature 1986): the true gradient,
    :math:`\delta_l = J_{l+1}^\top \delta_{l+1}` with :math:`\delta_l = \partial\mathcal{L}/\partial h_l` and
    :math:`J_{l+1} = \partial h_{l+1}/\partial h_l` the Jacobian of block :math:`l+1`."""

    name: ClassVar[str] = "bp"


@dataclass(frozen=True)
class DFA(DepthRule):
    r"""Direct feedback alignment: :math:`\delta_l = e\,B_l` at every feedback point :math:`l`, with
    :math:`e = \partial\mathcal{L}/\partial y` the output error (a row per example) and :math:`B_l` a fixed random
    ``[error width, point width]`` matrix, instead of the backpropagated :math:`\partial\mathcal{L}/\partial h_l`
    (Nøkland, NeurIPS 2016, arXiv:1609.01596; in transformers, "macro" and "micro" placement: Launay et al.,
    NeurIPS 2020, arXiv:2006.12878).

    Attributes:
        placement: ``"macro"`` (one point per block output) or ``"micro"`` (several per block).
        feedback: the kind of the fixed matrices :math:`B_l` (see :func:`fwdlearn.feedback.feedback_matrix`).
    """

    name: ClassVar[str] = "dfa"
    placement: str = "macro"
    feedback: str = "uniform"

    def __post_init__(self) -> None:
        if self.placement not in DFA_PLACEMENTS:
            raise ValueError(unknown("DFA placement", self.placement, DFA_PLACEMENTS))
        if self.feedback not in DFA_FEEDBACKS:
            raise ValueError(unknown("DFA feedback", self.feedback, DFA_FEEDBACKS))

    @classmethod
    def parse(cls, args: list[str]) -> "DFA":
        placement, feedback = "macro", "uniform"
        for what, choices in (("placement", DFA_PLACEMENTS), ("feedback kind", DFA_FEEDBACKS)):
            if sum(arg in choices for arg in args) > 1:
                raise ValueError(f"'dfa:{':'.join(args)}' names the {what} more than once; give one of "
                                 f"{', '.join(choices)}")
        for arg in args:
            if arg in DFA_PLACEMENTS:
                placement = arg
            elif arg in DFA_FEEDBACKS:
                feedback = arg
            else:
                raise ValueError(f"unknown DFA option {arg!r} in 'dfa:{':'.join(args)}'; options: "
                                 f"{', '.join(DFA_PLACEMENTS + DFA_FEEDBACKS)} (e.g. 'dfa:micro', 'dfa:gaussian')")
        return cls(placement, feedback)

    @classmethod
    def usage(cls) -> str:
        return "dfa" + _options(DFA_PLACEMENTS) + _options(DFA_FEEDBACKS)

    def __str__(self) -> str:
        parts = ["dfa"] + (["micro"] if self.placement != "macro" else []) + (
            [self.feedback] if self.feedback != "uniform" else [])
        return ":".join(parts)


@dataclass(frozen=True)
class Local(DepthRule):
    r"""Layer-local learning: each block minimises its own objective on a detached input,

    .. math::
        h_l = f_l(\operatorname{sg}(h_{l-1})), \qquad
        \nabla_{\theta_l}\mathcal{L} = \nabla_{\theta_l}\mathcal{L}_l(h_l),

    with :math:`\operatorname{sg}` the stop-gradient (``detach``), so no gradient crosses blocks. The objectives
    :math:`\mathcal{L}_l` are :mod:`fwdlearn.local`'s: ``prototype`` (ForwardGNN's SF, Park et al., ICLR 2024,
    arXiv:2403.11004), ``ff`` (Forward-Forward goodness, Hinton 2022, arXiv:2212.13345), ``symba`` (Lee & Song 2023,
    arXiv:2303.08418), ``readout`` (a next-token head per block) and ``ce`` (binary cross-entropy of a pair score).

    Attributes:
        objective: one of :data:`LOCAL_OBJECTIVES`.
        variant: how a model family feeds the objective (``la``, ``vn``, ``top2input``, ...), or ``None``.
    """

    name: ClassVar[str] = "local"
    objective: str = "readout"
    variant: str | None = None

    def __post_init__(self) -> None:
        if self.objective not in LOCAL_OBJECTIVES:
            raise ValueError(unknown("local objective", self.objective, LOCAL_OBJECTIVES) + " (e.g. 'local:readout')")
        if self.variant is not None and (not isinstance(self.variant, str) or not self.variant
                                         or self.variant != self.variant.strip().lower()
                                         or re.search(r"[:+\s]", self.variant)):
            raise ValueError(f"a local variant is a lower-case word such as 'la' or 'top2input' (or None); got "
                             f"{self.variant!r}")  # (str(rule) must parse back to the same rule)

    @classmethod
    def parse(cls, args: list[str]) -> "Local":
        if not args:
            raise ValueError(f"'local' needs an objective: local:<objective>, one of {', '.join(LOCAL_OBJECTIVES)}")
        if len(args) > 2:
            raise ValueError(f"'local' takes an objective and at most one variant; got local:{':'.join(args)}")
        return cls(args[0], args[1] if len(args) == 2 else None)

    @classmethod
    def usage(cls) -> str:
        return f"local:<{'|'.join(LOCAL_OBJECTIVES)}>[:<variant>]"

    def __str__(self) -> str:
        return ":".join(["local", self.objective] + ([self.variant] if self.variant else []))


@dataclass(frozen=True)
class Shallow(DepthRule):
    r"""A control: only the output layer learns; every block keeps its initial weights,
    :math:`\nabla_{\theta_l}\mathcal{L} = 0` for every block :math:`l` (the head reads
    :math:`\operatorname{sg}(h_L)`)."""

    name: ClassVar[str] = "shallow"


# --------------------------------------------------------------------------- time


@dataclass(frozen=True)
class TimeRule(RulePart):
    """How credit crosses time steps in a recurrent model."""


@dataclass(frozen=True)
class BPTT(TimeRule):
    r"""Backpropagation through time (Werbos, Proc. IEEE 1990): :math:`g_t = e_t + J_t^\top g_{t+1}`, with
    :math:`e_t = \partial\mathcal{L}/\partial s_t` the local error of state :math:`s_t` (from the layer above, same
    step), :math:`J_t = \partial s_{t+1}/\partial s_t` and :math:`g_t` the state gradient pushed into
    :math:`\partial s_t/\partial\theta` (:math:`g_{T+1} = 0`)."""

    name: ClassVar[str] = "bptt"


@dataclass(frozen=True)
class TBPTT(TimeRule):
    r"""Truncated BPTT (Williams & Peng, Neural Computation 1990): BPTT inside chunks of :math:`k` = ``truncation``
    steps, the state detached between chunks,

    .. math::
        g_t = e_t + [\,t \bmod k \ne 0\,]\; J_t^\top g_{t+1} \qquad (t = 1, \ldots, T),

    so gradients flow back at most ``truncation - 1`` steps."""

    name: ClassVar[str] = "tbptt"
    truncation: int = 32

    def __post_init__(self) -> None:
        # (a NumPy or 0-d tensor integer, e.g. from a sweep over np.arange, was refused as "not a positive window")
        if not is_integer(self.truncation) or int(self.truncation) < 1:
            raise ValueError(f"truncated BPTT needs a positive window, a whole number of steps (e.g. 'tbptt:32'); got "
                             f"{self.truncation!r}")
        object.__setattr__(self, "truncation", int(self.truncation))  # (a plain int: equal rules, str() 'tbptt:8')

    @classmethod
    def parse(cls, args: list[str]) -> "TBPTT":
        if len(args) != 1:
            raise ValueError("truncated BPTT needs one positive window, e.g. 'tbptt:32'")
        try:
            k = int(args[0])
        except ValueError:
            raise ValueError(f"truncated BPTT needs a positive integer window, e.g. 'tbptt:32'; got "
                             f"'tbptt:{args[0]}'") from None
        return cls(k)

    @classmethod
    def usage(cls) -> str:
        return "tbptt:<k>"

    def __str__(self) -> str:
        return f"tbptt:{self.truncation}"


@dataclass(frozen=True)
class FTBPTT(TimeRule):
    r"""Fully truncated BPTT: :math:`g_t = e_t`, each state trained by its local error alone with
    :math:`s_{t-1}` held fixed (the baseline of DSF, Caillon, Fagnou & Allauzen 2025, arXiv:2503.23104)."""

    name: ClassVar[str] = "ft-bptt"


@dataclass(frozen=True)
class DSF(TimeRule):
    r"""Stationary state feedback: BPTT's state Jacobian replaced by a fixed matrix :math:`A`,

    .. math::
        g_t = e_t + A\,g_{t+1} = \sum_{k \ge t} A^{k-t} e_k

    (column vectors; :func:`fwdlearn.feedback.time_feedback`), Caillon, Fagnou & Allauzen 2025, arXiv:2503.23104.

    Attributes:
        feedback: ``"diagonal"`` (the reference :math:`\operatorname{diag}(\operatorname{linspace}(0,1,d))`),
            ``"gaussian"`` or ``"orthogonal"``; ``None`` (``"dsf"``, ``DSF()``): the model's own kind
            (``RecurrentLM(feedback=...)``, diagonal unless set), which the model fills in. ``str()`` leaves the
            diagonal kind unnamed as well (``"dsf"``): a model's rule and its feedback kind are saved together.
    """

    name: ClassVar[str] = "dsf"
    feedback: str | None = None

    def __post_init__(self) -> None:
        if self.feedback is not None and self.feedback not in DSF_FEEDBACKS:
            raise ValueError(unknown("DSF feedback", self.feedback, DSF_FEEDBACKS) + " (e.g. 'dsf:gaussian')")

    @classmethod
    def parse(cls, args: list[str]) -> "DSF":
        if len(args) > 1:
            raise ValueError(f"'dsf' takes at most one feedback kind; got dsf:{':'.join(args)}")
        return cls(args[0]) if args else cls()

    @classmethod
    def usage(cls) -> str:
        return "dsf" + _options(DSF_FEEDBACKS)

    def __str__(self) -> str:
        return "dsf" if self.feedback in (None, "diagonal") else f"dsf:{self.feedback}"


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class Rule:
    """A training spec: a depth rule and, for recurrent models, a time rule (``None``: the model's default).

    ``str()`` is the canonical spelling: a time rule alone when the depth rule is ``bp`` (``"dsf"``),
    ``"<depth>+<time>"`` otherwise.
    """

    depth: DepthRule = field(default_factory=BP)
    time: TimeRule | None = None

    def __post_init__(self) -> None:  # (a string here failed later, inside the model)
        if not isinstance(self.depth, DepthRule):
            raise TypeError(f"Rule(depth=...) takes a depth rule object (BP(), DFA(), Local(...), Shallow()), got "
                            f"{self.depth!r}: for a spelling use parse_rule({str(self.depth)!r})")
        if self.time is not None and not isinstance(self.time, TimeRule):
            raise TypeError(f"Rule(time=...) takes a time rule object (BPTT(), TBPTT(k), FTBPTT(), DSF()) or None, got "
                            f"{self.time!r}: for a spelling use parse_rule({str(self.time)!r})")

    def __str__(self) -> str:
        if self.time is None:
            return str(self.depth)
        if isinstance(self.depth, BP):
            return str(self.time)
        return f"{self.depth}+{self.time}"

    def time_or(self, default: TimeRule) -> TimeRule:
        """The time rule, or ``default`` when the spec names none."""
        return self.time if self.time is not None else default

    def with_time(self, time: TimeRule | None) -> "Rule":
        return Rule(self.depth, time)


DEPTH_RULES: dict[str, type[DepthRule]] = {"bp": BP, "dfa": DFA, "local": Local, "shallow": Shallow}
TIME_RULES: dict[str, type[TimeRule]] = {"bptt": BPTT, "tbptt": TBPTT, "ft-bptt": FTBPTT, "dsf": DSF}
#: Earlier spellings, still accepted: alias -> canonical spec.
ALIASES: dict[str, str] = {
    "backprop": "bp",
    "sf": "local:prototype",
    "sf-top2input": "local:prototype:top2input",
    "sf-top2loss": "local:prototype:top2loss",
    "ff-la": "local:ff:la",
    "ff-vn": "local:ff:vn",
    "ff-symba": "local:symba:la",
    "ff": "local:ff",
    "ce": "local:ce",
    "ftbptt": "ft-bptt",
}
_BUILT_IN_ALIASES = frozenset(ALIASES)  # (register_alias does not redefine these)


def _check_new_name(kind: str, name: str, registry: dict, other: dict) -> None:
    """A rule name a spec can reach: one lower-case word without ':' or '+', not an alias's and not a rule's of the
    other axis (either would win over it); a name of the same axis is replaced (a new version of that rule)."""
    if not isinstance(name, str) or not name or ":" in name or "+" in name or name != name.strip().lower():
        raise ValueError(f"a {kind} rule needs a lower-case name without ':' or '+' (specs are read lower-cased); "
                         f"got {name!r}")
    if name in ALIASES or name in other:
        taken = "an alias" if name in ALIASES else f"a {'time' if kind == 'depth' else 'depth'} rule"
        raise ValueError(f"the {kind} rule name {name!r} is already {taken}'s, which would win over it; choose "
                         "another name")


def register_depth_rule(cls: type[DepthRule]) -> type[DepthRule]:
    """Add a depth rule class (its ``name``, ``parse`` and ``__str__``) to the vocabulary; usable as a decorator."""
    if not (isinstance(cls, type) and issubclass(cls, DepthRule)):  # (a TimeRule was listed as a depth rule)
        raise TypeError(f"register_depth_rule takes a DepthRule subclass, got {cls!r}")
    _check_new_name("depth", cls.name, DEPTH_RULES, TIME_RULES)
    DEPTH_RULES[cls.name] = cls
    return cls


def register_time_rule(cls: type[TimeRule]) -> type[TimeRule]:
    """Add a time rule class to the vocabulary; usable as a decorator."""
    if not (isinstance(cls, type) and issubclass(cls, TimeRule)):
        raise TypeError(f"register_time_rule takes a TimeRule subclass, got {cls!r}")
    _check_new_name("time", cls.name, TIME_RULES, DEPTH_RULES)
    TIME_RULES[cls.name] = cls
    return cls


def register_alias(alias: str, spec: str) -> None:
    """Accept ``alias`` wherever ``spec`` is accepted, also as one side of a ``+`` rule (``spec`` must parse, and is
    stored as its canonical spelling, so an alias of an alias or of ``"dfa+dsf"`` works anywhere; a DSF kind it names
    stays named, ``"dsf:diagonal"`` included, which ``str()`` spells ``"dsf"``; ``alias`` must be one word that is not
    already a rule's name or a built-in alias, which it would silently replace)."""
    if not isinstance(alias, str):
        raise TypeError(f"an alias is a string (one word); got {alias!r}")
    rule = parse_rule(spec)
    canonical = str(rule)
    if isinstance(rule.time, DSF) and rule.time.feedback == "diagonal":  # (str() spells it "dsf", the model's own
        time = "dsf:diagonal"  # kind: an alias of "dsf:diagonal" trained a RecurrentLM(feedback="gaussian") with its
        canonical = time if isinstance(rule.depth, BP) else f"{rule.depth}+{time}"  # Gaussian feedback)
    key = alias.strip().lower()
    if not key or "+" in key or len(key.split()) > 1 or key.split(":")[0] in DEPTH_RULES \
            or key.split(":")[0] in TIME_RULES or key in _BUILT_IN_ALIASES:
        raise ValueError(f"cannot register the alias {alias!r}: an alias is one word (no spaces, no '+') that is not "
                         f"a rule's own name ({', '.join([*DEPTH_RULES, *TIME_RULES])}) nor a built-in alias; choose "
                         "another word")
    ALIASES[key] = canonical


def vocabulary() -> str:
    """One line naming every accepted rule, for help texts and error messages."""
    return ("depth rules: " + ", ".join(rule.usage() for rule in DEPTH_RULES.values())
            + "; time rules: " + ", ".join(rule.usage() for rule in TIME_RULES.values())
            + "; joined as <depth>+<time> (e.g. dfa+dsf); aliases: " + ", ".join(ALIASES))


def _parse_part(part: str, spec: str) -> DepthRule | TimeRule:
    part = ALIASES.get(part, part)
    head, *args = (piece.strip() for piece in part.split(":"))  # (around ':' as around '+': 'dsf: gaussian')
    if "" in args:
        raise ValueError(f"empty option in {part!r} (in {spec!r}): remove the stray ':'")
    if head in DEPTH_RULES:
        return DEPTH_RULES[head].parse(args)
    if head in TIME_RULES:
        return TIME_RULES[head].parse(args)
    close = did_you_mean(head, [*DEPTH_RULES, *TIME_RULES, *ALIASES])
    raise ValueError(f"unknown rule {part!r} in {spec!r}{close}. Valid: {vocabulary()}")


def parse_rule(spec: "str | Rule | DepthRule | TimeRule") -> Rule:
    """Parse a training spec (``"dsf"``, ``"dfa:micro+dsf"``, ``"sf"``, ...) into a :class:`Rule`.

    Rules and rule parts pass through (a depth or time rule alone becomes a :class:`Rule`).

    Raises:
        ValueError: an unknown name (the message lists the valid ones), bad arguments, two rules of one axis.
    """
    if isinstance(spec, Rule):
        return spec
    if isinstance(spec, DepthRule):
        return Rule(spec, None)
    if isinstance(spec, TimeRule):
        return Rule(BP(), spec)
    if not isinstance(spec, str):
        raise TypeError(f"a rule is a string such as 'bp', 'dsf' or 'dfa+dsf'; got {type(spec).__name__}")
    text = spec.strip().lower()
    if not text:
        raise ValueError(f"empty rule; {vocabulary()}")
    parts = [ALIASES.get(p.strip(), p.strip()) for p in text.split("+")]  # an alias may stand for "a+b"
    parts = [q.strip() for p in parts for q in p.split("+")]
    if len(parts) > 2 or not all(parts):
        raise ValueError(f"a rule joins at most one depth rule and one time rule with '+'; got {spec!r}")
    depth: DepthRule | None = None
    time: TimeRule | None = None
    for part in parts:
        rule = _parse_part(part, spec)
        if isinstance(rule, DepthRule):
            if depth is not None:
                raise ValueError(f"{spec!r} names two depth rules ({depth} and {rule}); join one depth rule and one "
                                 "time rule, e.g. 'dfa+dsf'")
            depth = rule
        else:
            if time is not None:
                raise ValueError(f"{spec!r} names two time rules ({time} and {rule}); join one depth rule and one "
                                 "time rule, e.g. 'dfa+dsf'")
            time = rule
    return Rule(depth if depth is not None else BP(), time)
