r"""How a language model's blocks get their credit through depth: ``bp``, ``dfa`` (macro / micro),
``local:readout`` and ``shallow`` -- written once for every family built as a stack of blocks
(:class:`~fwdlearn.sequences.nn.recurrent.RecurrentLM`, :class:`~fwdlearn.sequences.nn.transformer.TransformerLM`).

The rules themselves (names, arguments, parsing) are :mod:`fwdlearn.rules`'s depth rules; this module says what
each one *does* to a stack: :data:`WIRINGS` maps a rule's name to a :class:`Wiring`, an ``nn.Module`` that holds
what the rule needs (feedback matrices, per-block heads) and runs the blocks. With :math:`h_0` the embedded input,
:math:`h_l = f_l(h_{l-1})` the blocks, :math:`z = \text{LN}(h_L)` the final hidden state and
:math:`\text{logits} = W z` the head:

- ``bp``: nothing changes; one loss, backprop through everything.
- ``dfa`` (:class:`DFAWiring`): every block output is a feedback point of one
  :class:`fwdlearn.feedback.DirectFeedback` (``dfa:micro`` adds the points a block names inside itself: after
  attention or the recurrent layer, after the MLP's hidden activation; a block with nothing between its layer
  and its output names no point inside), and :math:`z` is its output. The true
  gradient :math:`e = \partial\mathcal{L}/\partial z` per token (before the vocabulary projection, so the
  matrices are ``[width, d_l]``) replaces the gradient at every point,

  .. math::
      \delta_l = e\,B_l, \qquad B = \mathcal{U}[-1, 1)\ \text{shared, sliced to width } d_l,
      \ \text{scaled by } 1/\sqrt{d_l}

  (the default ``uniform`` kind, as in Launay et al., NeurIPS 2020; ``dfa:gaussian`` draws :math:`\mathcal{N}(0, 1)`
  entries, sliced and scaled alike, and ``dfa:orthogonal`` an independent orthogonal :math:`B_l` per point:
  :func:`fwdlearn.feedback.feedback_matrix`),

  and autograd carries :math:`\delta_l` through block :math:`l` only (a recurrent layer applies its own time rule).
  A point on a pre-LN residual stream (which the next block and the final norm read through a LayerNorm)
  receives the feedback through a parameter-free LayerNorm,
  :math:`\delta_l = (e\,B_l)\,\partial\,\text{LN}(h_l)/\partial h_l`, as the reference's post-LN blocks do:
  the projection drops the stream's shift and scale directions. The loss is blind to both at the last block;
  before it only to the shift, since the next residual sum also reads the stream un-normalised (measured: the true
  gradient's cosine with the centred stream 0.06-0.09 there, so the projection also drops that small part). It is
  a design choice that keeps the stream bounded: a feedback blind to the scale pushed it to grow without bound
  (measured: residual norm ~6,000 after 150 steps, against ~5 under BP).
- ``local:readout`` (:class:`ReadoutWiring`): block :math:`l > 1` reads a detached input, block :math:`l < L` has
  its own next-token head :math:`R_l` (LayerNorm + linear), the last block is read by the model's head:

  .. math::
      h_l = f_l(\operatorname{sg}(h_{l-1})), \qquad
      \mathcal{L} = \sum_{l<L} \operatorname{CE}(R_l(h_l), y) + \operatorname{CE}(W\,\text{LN}(h_L), y),

  so one backward of the sum is exactly the simultaneous local schedule (:mod:`fwdlearn.schedules`):
  :math:`\nabla_{\theta_l}\mathcal{L} = \nabla_{\theta_l}\mathcal{L}_l`. The embedding learns with the first block.
  Gradient clipping is per block (:meth:`ReadoutWiring.clip_groups`), so the updates stay local too.
  The value reported as the training loss is the model's own, :math:`\operatorname{CE}(W\,\text{LN}(h_L), y)`
  (:meth:`ReadoutWiring.loss`), so its curve compares with the other rules'.
- ``shallow`` (:class:`ShallowWiring`): a control -- the embeddings and the blocks keep their initial weights
  (``requires_grad`` off), only the final norm and the head learn on :math:`\operatorname{sg}(h_L)`.

:class:`StackedLM` is the base of such models: it runs the blocks through its wiring and implements the
language-model protocol's training hooks once for every depth rule.

A family declares, per block, its taps ``{where: width}`` (always ``"out"``; ``dfa:micro`` uses them all) and calls
its blocks as ``block(x, tap)`` with ``tap(h, where) -> h``. The optimizer defaults follow the rule
(:meth:`Wiring.optimizer`): DFA uses Adam with a small constant learning rate (Launay et al. 2020), the others
keep the family's backprop settings.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fwdlearn.diagnostics.alignment import feedback_alignment
from fwdlearn.feedback import FEEDBACK_SEED_OFFSET, DirectFeedback
from fwdlearn.fit import on_device, training_mode
from fwdlearn.optim import OptimizerSettings
from fwdlearn.registry import Registry
from fwdlearn.rules import DFA, BP, DepthRule, Local, Rule, Shallow

from fwdlearn.sequences.nn.language_model import LanguageModel
from fwdlearn.sequences.data.tasks import IGNORE_INDEX
from fwdlearn.sequences.training import lm_loss, scored_positions, window_loss

__all__ = ["Tap", "Block", "Wiring", "DFAWiring", "ReadoutWiring", "ShallowWiring", "WIRINGS", "PLAIN",
           "make_wiring", "check_depth_rule", "depth_rule_spellings", "DFA_OPTIMIZER", "point_name", "StackedLM",
           "identity_tap"]

#: ``tap(h, where) -> h``: marks a place inside a block (identity unless the rule puts a feedback point there)
Tap = Callable[[Tensor, str], Tensor]
#: a block as the wiring calls it: ``block(x, tap) -> x``
Block = Callable[[Tensor, Tap], Tensor]
#: DFA's optimizer: Adam with a constant learning rate and beta2 0.999, as in Launay et al. 2020 (who used 5e-5 to
#: 1e-4 for a 6-layer d=512 model on WikiText-103); 1e-3 was best of {2e-4, 5e-4, 1e-3} for macro and micro DFA on
#: tinyshakespeare (4 x 128 transformer, 300 steps), as for BP at this scale
DFA_OPTIMIZER = OptimizerSettings("adam", lr=1e-3, betas=(0.9, 0.999), schedule="constant")

#: the seed of the dropout masks (if any) of an alignment reading
ALIGN_SEED = 1234


def point_name(block: int, where: str) -> str:
    """The name of a feedback point: ``"block<i>.<where>"`` (blocks counted from 0)."""
    return f"block{block}.{where}"


def identity_tap(h: Tensor, where: str) -> Tensor:
    """The tap of a block called outside any wiring: marks nothing."""
    return h


def _normalize(h: Tensor) -> Tensor:
    """A parameter-free LayerNorm over the last dimension: how a pre-LN block's readers see its residual stream."""
    return F.layer_norm(h, h.shape[-1:])


class Wiring(nn.Module):
    r"""Backprop through depth (``bp``), and the base every depth rule overrides a few hooks of: one loss
    :math:`\mathcal{L} = \operatorname{CE}(W\,\text{LN}(h_L), y)` with :math:`h_l = f_l(h_{l-1})`, and the true
    gradient :math:`\delta_l = J_{l+1}^\top \delta_{l+1}` through every block (Rumelhart, Hinton & Williams 1986).

    Args:
        taps: per block, ``{where: width}`` of the places a rule may mark (``"out"``: the block output).
        width: the final hidden state's width (the error's width under DFA).
        out_size: the head's output width (vocabulary).
        seed: seed of any random draw (the DFA feedback matrices are drawn from
            ``seed + FEEDBACK_SEED_OFFSET``, :data:`fwdlearn.feedback.FEEDBACK_SEED_OFFSET`, so that they do not
            depend on weights drawn after ``seed_everything(seed)``).
        rule: the depth rule (default: the class's).
        normalized: per block, the taps on a pre-LN residual stream (read by the next block and the final norm
            through a LayerNorm), whose feedback enters through a weightless LayerNorm's Jacobian.
    """

    rule: ClassVar[DepthRule] = BP()
    #: how the rules this wiring implements are written (error messages list them)
    spelled: ClassVar[str] = "bp"

    def __init__(self, taps: Sequence[Mapping[str, int]] = (), width: int = 0, out_size: int = 0, seed: int = 0,
                 rule: DepthRule | None = None, normalized: Sequence[Collection[str]] = ()) -> None:
        super().__init__()
        if rule is not None:
            self.rule = rule  # type: ignore[misc]

    # ------------------------------------------------------------------ hooks
    def enter(self, block: int, x: Tensor) -> Tensor:
        """Block ``block``'s input."""
        return x

    def tap(self, block: int, h: Tensor, where: str) -> Tensor:
        """A place ``where`` inside (or, ``"out"``, at the output of) block ``block``."""
        return h

    def top(self, h: Tensor) -> Tensor:
        """The last block's output as the final norm reads it."""
        return h

    def output(self, z: Tensor) -> Tensor:
        """The final hidden state as the head reads it."""
        return z

    def attach(self, body: Sequence[nn.Module], head: Sequence[nn.Module]) -> None:
        """Called once the model is built: ``body`` (the embeddings, then the blocks' ``ModuleList`` last) and
        ``head`` (final norm, projection)."""

    def clip_groups(self) -> list[list[nn.Parameter]] | None:
        """Parameter groups whose gradient norms are clipped one by one (``None``: the whole model as one group)."""
        return None

    def optimizer(self, backprop: OptimizerSettings) -> OptimizerSettings:
        """The rule's optimizer defaults, given the family's backprop ones."""
        return backprop

    # ------------------------------------------------------------------ running
    def run(self, x: Tensor, blocks: Sequence[Block]) -> tuple[Tensor, list[Tensor]]:
        """``(input of the final norm, [h_1, ..., h_L])``: the blocks in order under this rule."""
        hiddens = []
        for i, block in enumerate(blocks):
            tap = partial(self.tap, i)
            x = tap(block(self.enter(i, x), tap), "out")
            hiddens.append(x)
        return self.top(x), hiddens

    def loss(self, logits: Tensor, hiddens: Sequence[Tensor], targets: Tensor,
             loss_fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        """The training loss of one window (``loss_fn(logits, targets)`` unless the rule adds its own terms)."""
        return loss_fn(logits, targets)


#: the wiring of evaluation passes (and of ``bp``): blocks run as they are
PLAIN = Wiring()


class DFAWiring(Wiring):
    r"""Direct feedback alignment (Nøkland, NeurIPS 2016; in transformers Launay et al., NeurIPS 2020): feedback
    points at block outputs (``macro``) or also inside blocks (``micro``), each receiving
    :math:`\delta_l = e\,B_l` (:math:`(e\,B_l)\,\partial\,\text{LN}(h_l)/\partial h_l` on a pre-LN residual stream)
    instead of its backpropagated gradient, :math:`e = \partial\mathcal{L}/\partial z` the error at the final
    hidden state; one :class:`~fwdlearn.feedback.DirectFeedback` (buffers ``feedback.B_block<i>_<where>``) does the
    work."""

    spelled = "dfa[:micro]"

    def __init__(self, taps: Sequence[Mapping[str, int]], width: int, out_size: int = 0, seed: int = 0,
                 rule: DepthRule | None = None, normalized: Sequence[Collection[str]] = ()) -> None:
        super().__init__(rule=rule if rule is not None else DFA())
        assert isinstance(self.rule, DFA)
        self.micro = self.rule.placement == "micro"
        self.where = [tuple(w for w in block if self.micro or w == "out") for block in taps]
        self.normalized = [set(n) for n in normalized] or [set() for _ in taps]
        points = {point_name(i, w): block[w] for i, block in enumerate(taps) for w in self.where[i]}
        # (drawn from ``seed`` itself, after seed_everything(seed) -- what `seq train` and `bench dfa` do -- B were the
        # very uniforms a recurrent LM's embedding is drawn from: correlated with it, -0.34)
        self.feedback = DirectFeedback(width, points, kind=self.rule.feedback,
                                       seed=(FEEDBACK_SEED_OFFSET + seed) % 2**64)

    def tap(self, block: int, h: Tensor, where: str) -> Tensor:
        if where not in self.where[block]:
            return h
        through = _normalize if where in self.normalized[block] else None
        return self.feedback.point(h, point_name(block, where), through=through)

    def output(self, z: Tensor) -> Tensor:
        return self.feedback.output(z)

    def optimizer(self, backprop: OptimizerSettings) -> OptimizerSettings:
        return DFA_OPTIMIZER


class ReadoutWiring(Wiring):
    r"""``local:readout``: detached block inputs, a next-token head :math:`R_l` (LayerNorm + linear) per block below
    the last, losses summed (local prediction losses trained at once, as in Nøkland & Eidnes, ICML 2019, and
    Belilovsky, Eickenberg & Oyallon, ICML 2020),

    .. math::
        h_l = f_l(\operatorname{sg}(h_{l-1})), \qquad
        \mathcal{L} = \sum_{l<L} \operatorname{CE}(R_l(h_l), y) + \operatorname{CE}(W\,\text{LN}(h_L), y)

    (the reported value is the model's loss alone, :meth:`loss`)."""

    spelled = "local:readout"

    def __init__(self, taps: Sequence[Mapping[str, int]], width: int, out_size: int, seed: int = 0,
                 rule: DepthRule | None = None, normalized: Sequence[Collection[str]] = ()) -> None:
        super().__init__(rule=rule if rule is not None else Local("readout"))
        widths = [block["out"] for block in taps]
        self.readouts = nn.ModuleList(nn.Sequential(nn.LayerNorm(w), nn.Linear(w, out_size)) for w in widths[:-1])
        self._parts: tuple[list[nn.Module], list[nn.Module]] = ([], [])  # (body, head), a tuple: not submodules

    def attach(self, body: Sequence[nn.Module], head: Sequence[nn.Module]) -> None:
        self._parts = (list(body), list(head))

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """One group per block: its parameters and its head's (the first block's with the embeddings, the last
        block's with the final norm and the model's head), so that clipping keeps every update local."""
        body, head = self._parts
        *embeddings, blocks = body
        groups = [list(block.parameters()) for block in blocks]
        for group, readout in zip(groups, self.readouts):
            group += readout.parameters()
        groups[0][:0] = [p for m in embeddings for p in m.parameters()]
        groups[-1] += [p for m in head for p in m.parameters()]
        return groups

    def enter(self, block: int, x: Tensor) -> Tensor:
        return x.detach() if block > 0 else x  # the embedding learns with the first block

    def loss(self, logits, hiddens, targets, loss_fn):
        r""":math:`\mathcal{L} + \sum_l (\mathcal{L}_l - \operatorname{sg}(\mathcal{L}_l))`: the gradient of the sum of
        the model's loss and every head's, the value of the model's loss alone (so its curve compares with the
        other rules'; a head's NaN or inf still makes it NaN)."""
        total = loss_fn(logits, targets)
        for readout, h in zip(self.readouts, hiddens):
            head = loss_fn(readout(h), targets)
            total = total + (head - head.detach())
        return total


class ShallowWiring(Wiring):
    r"""``shallow``: embeddings and blocks frozen; the final norm and the head learn on the detached last output,
    :math:`\mathcal{L} = \operatorname{CE}(W\,\text{LN}(\operatorname{sg}(h_L)), y)`."""

    rule = Shallow()
    spelled = "shallow"

    def top(self, h: Tensor) -> Tensor:
        return h.detach()

    def attach(self, body: Sequence[nn.Module], head: Sequence[nn.Module]) -> None:
        learned = {id(p) for m in head for p in m.parameters()}  # a tied embedding is the head's weight
        for module in body:
            for p in module.parameters():
                if id(p) not in learned:
                    p.requires_grad_(False)


#: depth rule name -> wiring class
WIRINGS = Registry("depth rule of a language model", {"bp": Wiring, "dfa": DFAWiring, "local": ReadoutWiring,
                                                      "shallow": ShallowWiring})


def make_wiring(rule: DepthRule, taps: Sequence[Mapping[str, int]], width: int, out_size: int,
                seed: int = 0, normalized: Sequence[Collection[str]] = ()) -> Wiring:
    """The wiring of depth rule ``rule`` for blocks with these ``taps`` (``normalized``: per block, the taps every
    reader sees through a LayerNorm).

    Raises:
        ValueError: a depth rule language models do not implement (e.g. ``local:ff``), naming the ones they do.
    """
    check_depth_rule(rule)
    return WIRINGS.get(rule.name)(taps, width, out_size, seed, rule=rule, normalized=normalized)


def depth_rule_spellings() -> str:
    """The depth rules the stacked language models implement, as their wirings spell them
    (``"bp, dfa[:micro], local:readout, shallow"``): what a refusal names."""
    return ", ".join(WIRINGS.get(name).spelled for name in WIRINGS)


def check_depth_rule(rule: DepthRule) -> None:
    """Refuse a depth rule the stacked language models do not implement (e.g. ``local:ff``), naming the ones they
    do (``ValueError``)."""
    if rule.name not in WIRINGS or (isinstance(rule, Local) and (rule.objective != "readout" or rule.variant)):
        raise ValueError(f"language models are trained through depth by one of {depth_rule_spellings()}; got {rule}")


class StackedLM(LanguageModel):
    """A language model built as embeddings -> blocks -> final norm -> head, trained through depth by a
    :class:`Wiring` (``self.depth``). Subclasses build ``final_norm`` and ``head``, call :meth:`_wire` once their
    modules exist, and implement :meth:`_forward`.

    It implements the protocol's training hooks for every depth rule: :meth:`training_loss`,
    :meth:`optimizer_defaults` and :meth:`feedback_alignment`.

    Example (a stack of linear blocks with a tap between their two layers; any depth rule then applies)::

        class LinearStack(StackedLM):
            def __init__(self, vocab, width, layers, training="dfa:micro"):
                super().__init__()
                self.rule = parse_rule(training)
                self.embedding = nn.Embedding(vocab, width)
                self.blocks = nn.ModuleList(nn.ModuleList([nn.Linear(width, width), nn.Linear(width, width)])
                                            for _ in range(layers))
                self.final_norm, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)
                self._wire([{"mid": width, "out": width}] * layers, width, vocab, [self.embedding, self.blocks])

            def _forward(self, tokens, state=None, exact=False):
                blocks = [lambda x, tap, b=b: b[1](tap(b[0](x), "mid")) for b in self.blocks]
                logits, hiddens = self._through(self.embedding(tokens), blocks)
                return logits, None, hiddens
    """

    NORMED: ClassVar[bool] = True  # (its blocks and final norm are LayerNorms by default)

    depth: Wiring
    final_norm: nn.Module
    head: nn.Module
    #: the family's optimizer under backprop (DFA replaces it, see :meth:`Wiring.optimizer`)
    BACKPROP: ClassVar[OptimizerSettings] = OptimizerSettings("adamw", lr=2e-3)

    @classmethod
    def check_rule(cls, rule: Rule) -> None:
        """Its depth rule is one a :class:`Wiring` implements (:func:`check_depth_rule`)."""
        check_depth_rule(rule.depth)

    def _wire(self, taps: Sequence[Mapping[str, int]], width: int, out_size: int, body: Sequence[nn.Module],
              seed: int = 0, normalized: Sequence[Collection[str]] = ()) -> None:
        """Build ``self.depth`` for ``self.rule.depth`` (call after the blocks and the head exist)."""
        self.depth = make_wiring(self.rule.depth, taps, width, out_size, seed, normalized)
        self.depth.attach(body, [self.final_norm, self.head])

    def _wiring(self) -> Wiring:
        """The rule's wiring in a training pass (``train()``, gradients on), else :data:`PLAIN`."""
        return self.depth if (self.training and torch.is_grad_enabled()) else PLAIN

    def _through(self, x: Tensor, blocks: Sequence[Block]) -> tuple[Tensor, list[Tensor]]:
        """``(logits, hiddens)``: the blocks under the active wiring, then the final norm and the head."""
        wiring = self._wiring()
        h, hiddens = wiring.run(x, blocks)
        return self.head(wiring.output(self.final_norm(h))), hiddens

    def _forward(self, tokens: Tensor, state=None, exact: bool = False) -> tuple[Tensor, object, list[Tensor]]:
        """``(logits, state, hiddens)``; ``exact``: every learning rule other than depth's is backprop (the
        reference pass of :meth:`feedback_alignment`)."""
        raise NotImplementedError

    def forward(self, tokens: Tensor, state=None):
        """``(logits [B, T, V], state)``; in ``train()`` mode with gradients on, the model's rule applies."""
        logits, state, _ = self._forward(tokens, state)
        return logits, state

    def training_loss(self, tokens: Tensor, targets: Tensor, state=None, loss_fn=None):
        logits, state, hiddens = self._forward(tokens, state)
        return self.depth.loss(logits, hiddens, targets, loss_fn or lm_loss), state

    def optimizer_defaults(self) -> OptimizerSettings:
        return self.depth.optimizer(self.BACKPROP)

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """The wiring's groups (:meth:`Wiring.clip_groups`) of trainable parameters, any parameter outside them in
        a group of its own."""
        groups = self.depth.clip_groups()
        if groups is None:
            return super().clip_groups()
        groups = [[p for p in group if p.requires_grad] for group in groups]
        covered = {id(p) for group in groups for p in group}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in covered]
        return [group for group in [*groups, rest] if group]

    @property
    def feedback_points(self) -> list[str]:
        """Names of the model's DFA feedback points (empty unless its rule is a ``dfa`` rule)."""
        feedback = getattr(self.depth, "feedback", None)
        return feedback.points if isinstance(feedback, DirectFeedback) else []

    def feedback_alignment(self, tokens: Tensor, targets: Tensor, state=None) -> dict[str, float]:
        r"""At every feedback point, the mean per-token cosine between the DFA signal :math:`e\,B_l` (at a point on a
        pre-LN residual stream, what it delivers: :math:`(e\,B_l)\,\partial\,\text{LN}(h_l)/\partial h_l`) and the true
        gradient, read in one backprop pass through the points (:meth:`fwdlearn.feedback.DirectFeedback.probing`;
        a recurrent layer is backpropagated through time there, whatever its time rule). The loss is the window's by
        its targets (:func:`~fwdlearn.sequences.training.window_loss`: MSE on float targets, a regression task's).
        Tokens whose target is ``-100`` (NaN for float targets: a task's unscored positions) are left out: the DFA
        signal there is zero, not misaligned. The window may be on any device: it is read on the model's (as
        :meth:`evaluate` reads it; CPU tokens failed in a GPU model's embedding)."""
        if not self.feedback_points:
            return super().feedback_alignment(tokens, targets, state)
        feedback = self.depth.feedback
        tokens = on_device(tokens, self.device)  # (and the forked generator is the device's that draws the masks)
        devices = [tokens.device] if tokens.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # dropout masks of its own: the training run is not perturbed,
            torch.default_generator.manual_seed(ALIGN_SEED)  # and the reading is the same at every call
            if devices:  # (only the generators fork_rng restores are seeded)
                with torch.cuda.device(tokens.device):
                    torch.cuda.manual_seed(ALIGN_SEED)
            with training_mode(True, self), torch.enable_grad(), feedback.probing() as probe:
                logits, _, _ = self._forward(tokens, state, exact=True)
                targets = targets.to(logits.device)
                # (lm_loss read a regression task's float targets as class ids: "expected target dtype to be Long")
                pairs = probe.compare(window_loss(logits, targets))
        scored = scored_positions(targets)  # (no error there, so no DFA signal: a cosine of 0 averaged in)
        if not scored.any():
            unscored = "NaN" if targets.is_floating_point() else IGNORE_INDEX
            raise ValueError(f"every target is {unscored} (not scored): there is no error whose feedback to align")
        return feedback_alignment({name: (signal[scored], true[scored]) for name, (signal, true) in pairs.items()})
