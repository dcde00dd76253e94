r"""Recurrent language models; through time they are trained by ``bptt``, ``tbptt:k``, ``ft-bptt`` or ``dsf``,
through depth by ``bp``, ``dfa``, ``local:readout`` or ``shallow``.

.. math::
    x^{(0)}_t = E[w_t], \qquad
    x^{(l)}_t = x^{(l-1)}_t + h^{(l)}_t, \quad s^{(l)}_t = f^{(l)}_\theta\big(u^{(l)}_t, s^{(l)}_{t-1}\big),
    \qquad \text{logits}_t = W_o\,\text{LN}(x^{(L)}_t) + b_o

with :math:`h^{(l)}_t` the layer output read from the state :math:`s^{(l)}_t` (below), :math:`s^{(l)}_0 = 0` at the
start (on a corpus, the last state carried, detached, from window to window), and either :math:`u^{(l)} = x^{(l-1)}`
(plain residual blocks, ``norm=False``, where the final :math:`\text{LN}` is the identity) or
:math:`u^{(l)} = \text{LN}(x^{(l-1)})` followed by :math:`x \leftarrow x + \text{MLP}(\text{LN}(x))`, with
:math:`\text{MLP}(v) = W_2\,\operatorname{GELU}(W_1 v + b_1) + b_2` (pre-LayerNorm blocks, ``norm=True``, the
default; ``reference_block`` also maps :math:`h^{(l)} \leftarrow W_p h^{(l)} + b_p`).
The cell :math:`f` (:mod:`~fwdlearn.sequences.nn.cells`) is a tanh RNN, a GRU, an LSTM (state
:math:`s = [h, c]`; its layer output is :math:`h_t = W_s [h^{\text{cell}}_t; c_t] + b_s`, the whole state, as in
the reference implementation of DSF, so that the cell state gets errors from the layer above too) or a diagonal
linear recurrence :math:`h_t = \lambda \odot h_{t-1} + W u_t + b` (``"linear"``, where DSF with
:math:`A = \operatorname{diag}(\lambda)` is exactly BPTT for the current :math:`\lambda`: ``set_feedback(l,
blocks[l].layer.decay)``, as :math:`A` is fixed while :math:`\lambda` trains). How the states get their gradient is
the time rule (:mod:`fwdlearn.rules`, implemented in :mod:`fwdlearn.sequences.nn.time_rules`); how the
blocks get theirs is the depth rule (:mod:`fwdlearn.sequences.nn.depth_rules`): under ``"dfa+dsf"`` every
layer's output sequence :math:`x^{(l)}` receives :math:`e\,B_l` and the layer passes it back through time by DSF,
so neither depth nor time is backpropagated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fwdlearn.errors import check_bool, check_int, check_not_meta, check_seed, warn
from fwdlearn.feedback import make_feedback
from fwdlearn.rules import BPTT, DSF, TIME_RULES, Rule, TimeRule, parse_rule

from fwdlearn.sequences.nn.depth_rules import StackedLM, Tap, identity_tap
from fwdlearn.sequences.nn.cells import RECURRENT_CELLS, RecurrentCell, TorchCell
from fwdlearn.sequences.nn.kernels import kernel_states, kernels_apply
from fwdlearn.sequences.nn.time_rules import RUNS, UNROLLED, missing_run, run_layer

__all__ = ["RecurrentConfig", "RecurrentLayer", "RecurrentBlock", "RecurrentLM"]


class RecurrentLayer(nn.Module):
    r"""One recurrent layer with a flat state ``[..., state_size]``; what it computes is its cell's
    (:mod:`~fwdlearn.sequences.nn.cells`): sequence calls differentiable through time, a one-step call on the
    same weights, the output read from the states (:math:`h`, or for an LSTM :math:`W_s [h; c] + b_s`) and, on the
    CPU, the one-step kernel of :mod:`~fwdlearn.sequences.nn.kernels`."""

    def __init__(self, cell: str, input_size: int, hidden: int) -> None:
        super().__init__()
        self.kind: RecurrentCell = RECURRENT_CELLS.get(cell)
        self.cell, self.hidden = cell, hidden
        self.state_size = self.kind.state_width * hidden
        self.kind.build(self, input_size, hidden)

    def initial_state(self, batch: int, like: Tensor) -> Tensor:
        return like.new_zeros(batch, self.state_size)

    def weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(W_ih, W_hh, b_ih, b_hh)`` of a ``tanh`` / ``gru`` / ``lstm`` layer (``torch.nn.RNN/GRU/LSTM``'s)."""
        if not isinstance(self.kind, TorchCell):
            raise TypeError(f"a {self.cell!r} layer has no torch.nn.RNN/GRU/LSTM weights")
        return TorchCell.weights(self)

    def states(self, u: Tensor, s0: Tensor) -> Tensor:
        """Every state ``[B, T, S]``, differentiable through time (BPTT)."""
        return self.kind.states(self, u, s0)

    def run(self, u: Tensor, s0: Tensor) -> tuple[Tensor, Tensor]:
        """Sequence call, differentiable through time: ``(output [B, T, H], s_T [B, S])``."""
        states = self.states(u, s0)
        return self.output(states), states[:, -1]

    @torch.no_grad()
    def scan(self, u: Tensor, s0: Tensor) -> Tensor:
        """Every state ``[B, T, S]``, no graph."""
        return self.states(u, s0)

    def scan_step(self, u: Tensor, s0: Tensor) -> Tensor | None:
        """FT-BPTT / DSF one-step states ``[B, T, S]`` from the cell's kernel (each projection computed once, a
        backward of a few large matrix products) on the CPU; ``None`` for a cell without one and on a GPU, where
        the fused call plus a batched recompute is used instead."""
        kernel = self.kind.kernel
        if kernel is not None and kernels_apply(u):
            return kernel_states(kernel, u, s0, *self.weights())
        return None

    def step(self, u: Tensor, s: Tensor) -> Tensor:
        """One step for a batch of positions: ``u [N, I]``, ``s [N, S]`` -> ``[N, S]``."""
        return self.kind.step(self, u, s)

    def output(self, states: Tensor) -> Tensor:
        """The layer's output ``[..., H]`` from states ``[..., S]``: :math:`h`, or for an LSTM
        :math:`W_s [h; c] + b_s`."""
        return self.kind.output(self, states)


class RecurrentBlock(nn.Module):
    """Residual block: ``x + h(u)`` with ``u = x`` or, when ``norm``, ``u = LN(x)`` then ``+ MLP(LN(.))``."""

    def __init__(self, cell: str, width: int, norm: bool = False, mlp_ratio: int = 4, projection: bool = False) -> None:
        super().__init__()
        self.layer = RecurrentLayer(cell, width, width)
        self.norm = norm
        #: the DSF reference's linear map after the recurrent layer (an LSTM's ``state_proj`` is already one)
        self.proj = nn.Linear(width, width) if projection and not hasattr(self.layer, "state_proj") else None
        #: the places a depth rule may mark (:mod:`~fwdlearn.sequences.nn.depth_rules`): the stream after the layer,
        #: the MLP's hidden activation, the block output. A plain block has the block output only: its layer output
        #: gets the block output's gradient unchanged, so a point there would be ``macro``'s point again, and a point
        #: at the block output above it would reach no parameter (``dfa:micro`` is ``dfa`` there, as for a GCN).
        self.taps = {"out": width}
        self.normalized_taps: frozenset[str] = frozenset()
        if norm:  # the stream after the layer and the block output are read through LayerNorms only
            self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(),
                                     nn.Linear(mlp_ratio * width, width))
            self.taps = {"rnn": width, "mlp": mlp_ratio * width, "out": width}
            self.normalized_taps = frozenset({"rnn", "out"})

    def forward(self, x: Tensor, s0: Tensor, rule: TimeRule | None, feedback: Tensor | None = None,
                probe: list | None = None, tap: Tap = identity_tap) -> tuple[Tensor, Tensor]:
        """``(x_out [B, T, W], s_T [B, S])``. ``rule=None`` is the plain fused (evaluation) path; the tensors
        whose gradient is the rule's state gradient are appended to ``probe`` when it is given; ``tap`` marks the
        layer output (``"rnn"``: the stream after it, with ``norm``) and the MLP's hidden activation (``"mlp"``) for the
        depth rule."""
        u = self.ln1(x) if self.norm else x
        h, sT = run_layer(self.layer, u, s0, rule, feedback, probe)
        if self.proj is not None:
            h = self.proj(h)
        if not self.norm:
            return x + h, sT.detach()
        y = tap(x + h, "rnn")  # the stream after the recurrent layer
        fc, act, proj = self.mlp
        return y + proj(tap(act(fc(self.ln2(y))), "mlp")), sT.detach()


@dataclass
class RecurrentConfig:
    """Everything that builds a :class:`RecurrentLM` (what checkpoints store)."""

    vocab_size: int
    cell: str = "gru"
    hidden: int = 256
    layers: int = 2
    training: str = "bptt"
    feedback: str = "diagonal"
    norm: bool = True
    out_size: int | None = None
    feedback_seed: int = 0
    reference_block: bool = False
    kind: str = "recurrent"


class RecurrentLM(StackedLM):
    r"""Embedding -> ``layers`` residual recurrent blocks -> final LayerNorm (with ``norm``) -> output projection,

    .. math::
        x^{(0)}_t = E[w_t], \qquad
        x^{(l)}_t = x^{(l-1)}_t + h^{(l)}_t\big(s^{(l)}_t\big), \quad
        s^{(l)}_t = f\big(u^{(l)}_t, s^{(l)}_{t-1}\big), \qquad
        \text{logits}_t = W_o\,\text{LN}(x^{(L)}_t) + b_o,

    :math:`f` the cell (:mod:`~fwdlearn.sequences.nn.cells`) and, with ``norm``, :math:`u^{(l)} =
    \text{LN}(x^{(l-1)})` and :math:`x \leftarrow x + \text{MLP}(\text{LN}(x))` after each layer (the module doc
    writes it out). Trained through time by BPTT or DSF (Caillon, Fagnou & Allauzen 2025, arXiv:2503.23104),
    through depth by backprop, DFA, local heads or not at all.

    Args:
        vocab_size: input tokens (and output classes unless ``out_size``).
        cell: ``"tanh"``, ``"gru"`` (default), ``"lstm"`` or ``"linear"``, or a cell registered in
            :data:`~fwdlearn.sequences.registries.RECURRENT_CELLS`.
        hidden: width of the embedding, the states and the residual stream (default 256; at least 2 with ``norm``:
            a LayerNorm over one channel is constant).
        layers: recurrent blocks (default 2).
        training: the rule (:mod:`fwdlearn.rules`; default ``"bptt"``). Through time: ``"bptt"``, ``"tbptt:k"``,
            ``"ft-bptt"`` or ``"dsf"`` (``"dsf:gaussian"``, ``"dsf:orthogonal"``), see
            :mod:`~fwdlearn.sequences.nn.time_rules`;
            through depth ``bp``, ``dfa`` (each layer's output sequence a feedback point; ``dfa:micro`` also the
            stream after the layer and the MLP's hidden activation of a pre-LN block; a plain block has one point,
            so there micro is macro), ``local:readout`` or ``shallow``
            (:mod:`~fwdlearn.sequences.nn.depth_rules`). Joined: ``"dfa+dsf"``, ``"local:readout+ft-bptt"``.
        feedback: DSF's feedback kind when ``training="dsf"`` names none (default ``diagonal``); a spec that
            names one (``"dsf:diagonal"``) keeps its own.
        norm: pre-LayerNorm blocks with an MLP and a final LayerNorm (the default: the DSF paper's block layout,
            and the one where DSF beats FT-BPTT on text); ``False``: plain residual blocks ``x + h(x)``, where DSF only
            matches FT-BPTT (docs/benchmarks.md). Two differences from the paper's code: a tanh, GRU or linear
            layer's output enters the residual stream as it is (the reference adds a linear map after every RNN;
            the LSTM's ``state_proj`` is that map), and the weights keep PyTorch's default initialisation (the
            reference's: N(0, 0.02)); ``reference_block`` removes both.
        out_size: output width (default ``vocab_size``; 1 for a regression task).
        feedback_seed: seed of the random feedback matrices (default 0): DFA's :math:`B_l` are drawn from
            ``feedback_seed + 0xDFA`` (:data:`fwdlearn.feedback.FEEDBACK_SEED_OFFSET`; from ``feedback_seed`` itself
            they were the uniforms ``seed_everything(feedback_seed)`` then drew the embedding from), DSF's
            :math:`A^{(l)}` from ``feedback_seed + 1`` (independent of both).
        reference_block: the DSF reference code's "transformer-like" block exactly (needs ``norm``): a linear map
            after every recurrent layer, and its initialisation -- every linear map and the embedding
            :math:`\mathcal N(0, 0.02)` with zero biases, the last map of each branch (the post-layer map, the MLP's
            output) :math:`\mathcal N(0, 0.02 / \sqrt{2L})` as in GPT-2; the tanh, GRU and LSTM cells' own weights
            keep PyTorch's initialisation there too (the linear cell's input map is a linear map). Default ``False``.

    The feedback :math:`A^{(l)}` of every layer is a buffer ``feedback_<l>`` (``[S]`` or ``[S, S]``),
    saved with the model; :meth:`set_feedback` replaces it.

    Example::

        lm = RecurrentLM(corpus.vocab_size, cell="gru", hidden=256, layers=2, training="dsf")
        report = lm.fit(corpus, context=128, steps=500)
        print(lm.evaluate(corpus.validation)["bpc"], lm.generate("ROMEO:", 100, vocab=corpus.vocab))
    """

    def __init__(self, vocab_size: int, cell: str = "gru", hidden: int = 256, layers: int = 2,
                 training: str | Rule = "bptt", feedback: str = "diagonal", norm: bool = True,
                 out_size: int | None = None, feedback_seed: int = 0, reference_block: bool = False) -> None:
        super().__init__()
        vocab_size, hidden, layers = (check_int(name, value, 1) for name, value in (
            ("vocab_size", vocab_size), ("hidden", hidden), ("layers", layers)))
        out_size = None if out_size is None else check_int("out_size", out_size, 1)
        feedback_seed = check_seed(check_int("feedback_seed", feedback_seed, None), "feedback_seed")
        norm, reference_block = check_bool("norm", norm), check_bool("reference_block", reference_block)
        if reference_block and not norm:
            raise ValueError("reference_block=True is the DSF reference's pre-LayerNorm block: it needs norm=True")
        if norm and hidden < 2:  # (such a model trained and was evaluated, its logits the same for every input)
            raise ValueError(f"hidden={hidden} with norm=True: a LayerNorm over one channel gives its bias whatever it "
                             "reads (x - mean(x) = 0), so the model could not see its input; give hidden=2 or more, or "
                             "norm=False (plain residual blocks, no LayerNorm)")
        self.rule = self._check_rule(training, feedback)
        self.config = RecurrentConfig(vocab_size, cell, hidden, layers, str(self.rule), self._dsf_feedback(feedback),
                                      norm, out_size, feedback_seed, bool(reference_block))
        self.embedding = nn.Embedding(vocab_size, hidden)
        self.blocks = nn.ModuleList(RecurrentBlock(cell, hidden, norm, projection=reference_block)
                                    for _ in range(layers))
        self.final_norm = nn.LayerNorm(hidden) if norm else nn.Identity()
        self.head = nn.Linear(hidden, out_size or vocab_size)
        if reference_block:
            self._reference_init()
        gen = self._dsf_generator()
        for i, block in enumerate(self.blocks):
            self.register_buffer(f"feedback_{i}", make_feedback(self.config.feedback, block.layer.state_size, gen))
        self._wire([b.taps for b in self.blocks], hidden, out_size or vocab_size, [self.embedding, self.blocks],
                   feedback_seed, [b.normalized_taps for b in self.blocks])

    def _reference_init(self, std: float = 0.02) -> None:
        """The DSF reference's initialisation (see ``reference_block``); the residual branches count as ``2L``."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        branches = 2 * len(self.blocks)
        for block in self.blocks:
            last = block.proj if block.proj is not None else block.layer.state_proj
            for module in (last, block.mlp[-1]):
                nn.init.normal_(module.weight, mean=0.0, std=std / branches ** 0.5)

    #: ``reuse``: a speed option of the DSF kernels, removed (files written before hold it)
    RETIRED_SETTINGS = frozenset({"reuse"})

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "RecurrentLM":
        return cls(**cls.config_arguments(config, RecurrentConfig))

    def _dsf_generator(self) -> torch.Generator:
        """Where DSF's random feedback is drawn: seed ``feedback_seed + 1``, so that it is independent of DFA's
        matrices (seed ``feedback_seed + 0xDFA``) under ``"dfa:gaussian+dsf:gaussian"``."""
        return torch.Generator().manual_seed((self.config.feedback_seed + 1) % 2**64)  # (torch reads seeds mod 2**64)

    def _check_rule(self, training: str | Rule, feedback: str) -> Rule:
        """The rule of ``training``; a DSF spec that names no feedback kind (``"dsf"``, ``DSF()``) gets ``feedback``,
        one that names it (``"dsf:diagonal"``, ``DSF("diagonal")``) keeps its own. A time rule without a run function
        in :data:`~fwdlearn.sequences.nn.time_rules.RUNS` (one registered in :mod:`fwdlearn.rules` alone) is refused,
        naming how to add one; so is one outside :mod:`fwdlearn.rules`' vocabulary (the diagnostic
        :data:`~fwdlearn.sequences.nn.time_rules.UNROLLED`, a class never registered), which a saved model could not
        name."""
        rule = parse_rule(training)
        if rule.time is not None and rule.time.name not in TIME_RULES:  # (a model trained by UNROLLED was saved as
            # 'unrolled', a rule no spec names: the file, and the run's checkpoint, could not be loaded again)
            raise ValueError(f"time rule {rule.time} is not a training rule (fwdlearn.rules.TIME_RULES: "
                             f"{', '.join(TIME_RULES)}), and a model saves its rule by name: "
                             + ("UNROLLED is the diagnostics' BPTT, one graph node per step; pass it as "
                                "forward_from_embeddings(..., rule=UNROLLED) to read state gradients, and train by "
                                "'bptt' (the same gradients)" if rule.time.name == UNROLLED.name else
                                "register its class first, fwdlearn.rules.register_time_rule("
                                f"{type(rule.time).__name__})"))
        self.check_rule(rule)
        if isinstance(rule.time, DSF) and rule.time.feedback is None:
            rule = rule.with_time(DSF(feedback))
        return rule

    @classmethod
    def check_rule(cls, rule: Rule) -> None:
        """Its depth rule is one a :class:`~fwdlearn.sequences.nn.depth_rules.Wiring` implements, its time rule (if
        any) one with a run function in :data:`~fwdlearn.sequences.nn.time_rules.RUNS`."""
        super().check_rule(rule)
        if rule.time is not None and rule.time.name not in RUNS:  # (it was refused in the first training step)
            raise ValueError(missing_run(rule.time))

    def _dsf_feedback(self, default: str) -> str:
        return self.rule.time.feedback if isinstance(self.rule.time, DSF) else default

    @property
    def time_rule(self) -> TimeRule:
        """The rule through time (``bptt`` when the spec names none)."""
        return self.rule.time_or(BPTT())

    # ------------------------------------------------------------------ structure
    def feedback(self, layer: int) -> Tensor:
        """DSF's feedback :math:`A^{(l)}` of ``layer``."""
        return getattr(self, f"feedback_{layer}")

    def set_feedback(self, layer: int, value: Tensor) -> None:
        r"""Replace layer ``layer``'s feedback by ``value`` (``[S]`` decays or ``[S, S]``). A matrix acts on column
        vectors, :math:`g_t = e_t + A\,g_{t+1}`: one taken from code that writes row vectors (``g @ A``) goes in
        transposed."""
        S = self.blocks[layer].layer.state_size
        if value.shape not in ((S,), (S, S)):
            raise ValueError(f"feedback of layer {layer} must have shape [{S}] or [{S}, {S}]; got {tuple(value.shape)}")
        weight = self.head.weight
        setattr(self, f"feedback_{layer}", value.detach().clone().to(device=weight.device, dtype=weight.dtype))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Loads feedback of either shape (:meth:`set_feedback` may have replaced decays by a matrix or back), and
        ``dfa:micro`` models of plain blocks saved before those named no point inside (their ``B_block<i>_rnn``
        reached no parameter the block output's point did not: dropped). A state of the other shape loaded by hand
        (warm-starting a ``dsf:gaussian`` model from a ``bptt`` model's weights, whose feedback is diagonal) is
        warned about: the model then trains with the loaded feedback, not its rule's draw (a model file is shaped
        first, :meth:`prepare_for_state`, and loads quietly)."""
        for i, block in enumerate(self.blocks):
            if not block.norm:
                state_dict.pop(f"{prefix}depth.feedback.B_block{i}_rnn", None)
        shape = lambda t: "decays [S]" if t.dim() == 1 else "a matrix [S, S]"  # noqa: E731
        for i, stored in self._other_feedback_shapes(state_dict, prefix):
            warn(f"the state loaded into layer {i}'s DSF feedback is {shape(stored)}, this model's "
                 f"{self.config.feedback} feedback {shape(self.feedback(i))}: the model now trains with the loaded one "
                 f"(its rule still reads {self.rule}); to keep its own, leave '{prefix}feedback_{i}' out of the state "
                 "dict")
            setattr(self, f"feedback_{i}", self.feedback(i).new_empty(stored.shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _other_feedback_shapes(self, state: dict[str, Any], prefix: str = "") -> list[tuple[int, Tensor]]:
        """``(layer, stored feedback)`` of the layers whose ``state`` holds feedback of the other shape
        (``[S]`` for ``[S, S]`` or back)."""
        out = []
        for i, block in enumerate(self.blocks):
            stored, S = state.get(f"{prefix}feedback_{i}"), block.layer.state_size
            if isinstance(stored, Tensor) and stored.shape in ((S,), (S, S)) and stored.shape != self.feedback(i).shape:
                out.append((i, stored))
        return out

    def prepare_for_state(self, state: dict[str, Any]) -> None:
        """Shape each layer's feedback buffer as ``state`` holds it (a file saved after :meth:`set_feedback`
        replaced decays by a matrix or back), so that loading it is quiet."""
        for i, stored in self._other_feedback_shapes(state):
            setattr(self, f"feedback_{i}", self.feedback(i).new_empty(stored.shape))

    def set_training(self, training: str | Rule) -> None:
        """Switch the rule (same weights); a DSF feedback kind other than the built one rebuilds the feedback."""
        rule = self._check_rule(training, self.config.feedback)
        if rule.depth != self.rule.depth:
            raise ValueError(f"set_training changes the rule through time; the depth rule {self.rule.depth} is built "
                             f"into the model (its feedback matrices or heads): build a new model for {rule.depth}")
        if isinstance(rule.time, DSF) and rule.time.feedback != self.config.feedback:
            gen = self._dsf_generator()
            for i, block in enumerate(self.blocks):
                self.set_feedback(i, make_feedback(rule.time.feedback, block.layer.state_size, gen))
            self.config.feedback = rule.time.feedback
        self.rule = rule
        self.config.training = str(rule)

    def initial_state(self, batch: int) -> list[Tensor]:
        """The zero state of ``batch`` sequences, one ``[batch, S]`` tensor per layer (what ``state=None`` means)."""
        return [b.layer.initial_state(batch, self.head.weight) for b in self.blocks]

    # ------------------------------------------------------------------ forward
    def embed(self, tokens: Tensor) -> Tensor:
        """Token embeddings ``[B, T] -> [B, T, hidden]``."""
        return self.embedding(self.check_tokens(tokens))

    def forward_from_embeddings(self, emb: Tensor, state: list[Tensor] | None = None,
                                rule: TimeRule | None = None, probe: list | None = None,
                                return_state: bool = False):
        """Logits ``[B, T, out]`` from embeddings ``[B, T, hidden]`` (a causal map, differentiable
        w.r.t. ``emb``). ``rule`` ``None`` is the plain fused path (BPTT gradients); a time rule (or
        :data:`~fwdlearn.sequences.nn.time_rules.UNROLLED`) decides the state gradients."""
        logits, new_state, _ = self._run(emb, state, rule, probe)
        return (logits, new_state) if return_state else logits

    def _run(self, emb: Tensor, state: list[Tensor] | None, rule: TimeRule | None,
             probe: list | None) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """``(logits, state, block outputs)``: each layer under time rule ``rule``, the stack under the depth rule."""
        self.check_embeddings(emb, self.config.hidden)
        if state is None:
            state = self.initial_state(emb.shape[0])
        if isinstance(state, Tensor) and state.dim() == 3:  # [layers, batch, width], as torch.nn.GRU's h0 (it was read
            state = list(state)                                # so, by iterating it; kept)
        if not isinstance(state, (list, tuple)):  # (each layer's entry: _check_state)
            raise TypeError(f"state must be the list of one tensor per layer that the model returned (logits, state = "
                            f"model(tokens)), or None to start from zeros; got {type(state).__name__}")
        if len(state) != len(self.blocks):
            raise ValueError(f"state must hold one tensor per layer ({len(self.blocks)}), got {len(state)}")
        for i, s in enumerate(state):  # (torch's "Cannot copy out of meta tensor" named nothing)
            check_not_meta(f"state[{i}]", s, "the model carries the values on", "pass the state the model returned "
                           "on the CPU or a GPU, or None to start from zeros")
        self._check_state(state, emb.shape[0])
        new_state: list[Tensor] = []

        def layer(i: int) -> Callable[[Tensor, Tap], Tensor]:
            def run(x: Tensor, tap: Tap) -> Tensor:
                y, sT = self.blocks[i](x, state[i].detach(), rule, self.feedback(i), probe, tap)
                new_state.append(sT)
                return y
            return run

        logits, hiddens = self._through(emb, [layer(i) for i in range(len(self.blocks))])
        return logits, new_state, hiddens

    def _check_state(self, state: list[Tensor], batch: int) -> None:
        """Refuse a carried state that is not one floating-point ``[batch, state_size]`` tensor per layer (one of
        another batch size failed in torch's RNN naming a hidden size, or only on the CPU kernels' path with the fix;
        a linear layer broadcast a ``[state_size]`` state and took an integer one in silence)."""
        for i, (s, block) in enumerate(zip(state, self.blocks)):
            S = block.layer.state_size
            if isinstance(s, Tensor) and s.shape == (batch, S) and s.is_floating_point():
                continue
            found = f"{list(s.shape)} {s.dtype}" if isinstance(s, Tensor) else type(s).__name__
            hc = " ([h, c])" if block.layer.cell == "lstm" else ""
            raise ValueError(f"state[{i}] must be layer {i}'s state for these {batch} streams, a floating-point "
                             f"[batch, {S}] = [{batch}, {S}]{hc} tensor; got {found}: pass the state this model "
                             f"returned for a batch of {batch} (the same streams), or None to start from zeros")

    def _forward(self, tokens: Tensor, state: list[Tensor] | None = None,
                 exact: bool = False) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """In ``train()`` mode with gradients on, the states get their gradient by this model's time rule (BPTT
        when ``exact``); otherwise the plain fused path is used."""
        training = self.training and torch.is_grad_enabled() and not exact
        return self._run(self.embed(tokens), state, self.time_rule if training else None, None)
