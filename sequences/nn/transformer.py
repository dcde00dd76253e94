r"""A causal decoder-only transformer language model (pre-LayerNorm, learned positions), trainable by
``bp``, ``dfa`` / ``dfa:micro``, ``local:readout`` or ``shallow``.

.. math::
    h_0 = E[w_t] + P_t, \qquad
    a_l = \operatorname{Attn}_l(\text{LN}(h_{l-1})), \quad
    m_l = \operatorname{GELU}(W^{(1)}_l\,\text{LN}(h_{l-1} + a_l)), \quad
    h_l = h_{l-1} + a_l + W^{(2)}_l m_l,

    z = \text{LN}(h_L), \qquad \text{logits}_t = W_o\,z_t \quad (W_o = E \text{ when tied}),

with causal multi-head attention (``torch.nn.functional.scaled_dot_product_attention``, ``is_causal=True``),
:math:`H` heads of width :math:`d_h = d/H` (Vaswani et al., NeurIPS 2017),

.. math::
    \operatorname{Attn}(x)_t = W_O \big[\,\textstyle\sum_{s \le t} \operatorname{softmax}_{s \le t}\big(
    q^{(j)}_t \cdot k^{(j)}_s / \sqrt{d_h}\big)\, v^{(j)}_s\,\big]_{j=1}^{H} + b_O, \qquad
    [q_t; k_t; v_t] = W_{QKV}\, x_t + b_{QKV},

(:math:`q^{(j)}_t` the :math:`j`-th head's slice of :math:`q_t`, heads concatenated), so position :math:`t` reads
positions :math:`\le t` only; every map written :math:`W` above has a bias except the head :math:`W_o`. There is no
state: windows are independent and positions restart at 0 in each; generation re-reads up to ``context`` tokens. The
taps of a block are ``attn`` (the stream after attention, :math:`h_{l-1} + a_l`), ``mlp`` (:math:`m_l`) and ``out``
(:math:`h_l`); how the depth rule uses them is :mod:`fwdlearn.sequences.nn.depth_rules` (``dfa`` marks ``out``,
``dfa:micro`` all three).

The layout follows nanoGPT's ``model.py``: a dataclass config, ``CausalSelfAttention``, ``MLP``, ``Block``,
initialisation :math:`\mathcal{N}(0, 0.02)` with the residual projections scaled by :math:`1/\sqrt{2L}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fwdlearn.errors import check_bool, check_int, check_range, check_seed
from fwdlearn.optim import OptimizerSettings
from fwdlearn.rules import Rule, parse_rule

from fwdlearn.sequences.nn.depth_rules import StackedLM, Tap, depth_rule_spellings, identity_tap

__all__ = ["TransformerConfig", "CausalSelfAttention", "MLP", "Block", "TransformerLM", "check_heads"]


@dataclass
class TransformerConfig:
    """Everything that builds a :class:`TransformerLM` (what checkpoints store)."""

    vocab_size: int
    hidden: int = 256  # d_model
    layers: int = 4
    heads: int = 4
    context: int = 128  # learned positions: the longest window
    mlp_ratio: int = 4
    dropout: float = 0.0
    tie: bool = False
    training: str = "bp"
    feedback_seed: int = 0
    kind: str = "transformer"


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: ``(B, T, C) -> (B, T, C)``."""

    def __init__(self, hidden: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.proj(y)


class MLP(nn.Module):
    """``Linear(C, rC) -> GELU -> tap "mlp" -> Linear(rC, C)``."""

    def __init__(self, hidden: int, ratio: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden, ratio * hidden)
        self.proj = nn.Linear(ratio * hidden, hidden)

    def forward(self, x: Tensor, tap: Tap = identity_tap) -> Tensor:
        return self.proj(tap(F.gelu(self.fc(x)), "mlp"))


class Block(nn.Module):
    """Pre-LayerNorm block: ``tap(x + attn(LN x), "attn")``, then ``+ MLP(LN .)``; ``(B, T, C) -> (B, T, C)``."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attn = CausalSelfAttention(hidden, heads, dropout)
        self.mlp = MLP(hidden, mlp_ratio)
        self.drop = nn.Dropout(dropout)
        #: the places a depth rule may mark, and those on the residual stream, which the next block's and the final
        #: LayerNorm read (their DFA feedback enters through a weightless LayerNorm's Jacobian)
        self.taps = {"attn": hidden, "mlp": mlp_ratio * hidden, "out": hidden}
        self.normalized_taps = frozenset({"attn", "out"})

    def forward(self, x: Tensor, tap: Tap = identity_tap) -> Tensor:
        x = tap(x + self.drop(self.attn(self.ln1(x))), "attn")  # (B, T, C), the stream after attention
        return x + self.drop(self.mlp(self.ln2(x), tap))


def check_heads(hidden: int, heads: int, names: tuple[str, str | None] = ("hidden", "heads")) -> None:
    """Refuse a width that ``heads`` attention heads cannot split evenly (``names``: how the message calls the two,
    e.g. the CLI's flags; a second name ``None``: the caller cannot change the heads, so the message offers widths
    only).

    Raises:
        ValueError: ``hidden`` is not a multiple of ``heads``; the message names one that is.
    """
    if hidden % heads:
        below = hidden // heads * heads
        near = below if below and hidden - below < below + heads - hidden else below + heads
        if names[1] is None:  # (influence seq's untrained transformer: "or heads dividing 6" named no flag it has)
            raise ValueError(f"{names[0]} ({hidden}) must be divisible by the transformer's {heads} attention heads "
                             f"(each reads {names[0]} / {heads} channels); choose {names[0]} a multiple of {heads} "
                             f"(e.g. {near})")
        raise ValueError(f"{names[0]} ({hidden}) must be divisible by {names[1]} ({heads}): each head reads "
                         f"{names[0]} / {names[1]} channels; choose {names[0]} a multiple of {heads} (e.g. {near}) "
                         f"or {names[1]} dividing {hidden}")


class TransformerLM(StackedLM):
    r"""Token + position embeddings -> ``layers`` pre-LayerNorm blocks -> LayerNorm -> head (nanoGPT's layout),

    .. math::
        h_0 = E[w_t] + P_t, \quad a_l = \operatorname{Attn}_l(\text{LN}(h_{l-1})), \quad
        h_l = h_{l-1} + a_l + \text{MLP}_l(\text{LN}(h_{l-1} + a_l)), \quad
        \text{logits}_t = W_o\,\text{LN}(h_L)_t

    (causal attention; the module doc writes every map out). Trainable by backprop or by DFA (Launay et al.,
    NeurIPS 2020, arXiv:2006.12878), local heads or not at all (:mod:`~fwdlearn.sequences.nn.depth_rules`).

    Args:
        vocab_size: tokens.
        hidden: :math:`d_\text{model}` (divisible by ``heads``; default 256; at least 2: a LayerNorm over one channel
            is constant).
        layers: blocks :math:`L` (default 4).
        heads: attention heads :math:`H` (default 4).
        context: learned positions, the longest window it reads (default 128).
        mlp_ratio: MLP width / ``hidden`` (default 4).
        dropout: on the embeddings, the attention weights and each branch's output (attention, MLP) before its
            residual sum, as in nanoGPT (0 by default; a probability in ``[0, 1)``).
        tie: the head's weight is the token embedding (off by default, as in the DFA reference: under DFA a tied
            embedding would also receive the first block's feedback signal through the residual stream; refused under
            ``local:readout`` and ``shallow``, whose embeddings learn with the first block only / not at all).
        training: depth rule: ``"bp"`` (default), ``"dfa"`` (= ``dfa:macro``), ``"dfa:micro"`` (``:gaussian`` /
            ``:orthogonal`` feedback), ``"local:readout"`` or ``"shallow"``.
        feedback_seed: seed of the DFA feedback matrices (default 0; drawn from ``feedback_seed + 0xDFA``, so that
            they do not depend on the weights drawn after ``seed_everything(feedback_seed)``).

    Example::

        lm = TransformerLM(corpus.vocab_size, hidden=256, layers=4, heads=4, context=128, training="dfa")
        lm.fit(corpus, context=128, steps=2000, align_every=200)   # Adam, constant lr: DFA's defaults
        print(lm.evaluate(corpus.validation)["bpc"], lm.generate("ROMEO:", 100, vocab=corpus.vocab))
    """

    #: nanoGPT's character-level settings: AdamW 1e-3, beta2 0.99, warm-up then cosine decay to 1e-4
    BACKPROP: ClassVar[OptimizerSettings] = OptimizerSettings("adamw", lr=1e-3, betas=(0.9, 0.99), schedule="cosine",
                                                              warmup=100)

    @classmethod
    def check_width(cls, flag: str, width: int) -> None:
        """As :meth:`LanguageModel.check_width`, and the default heads (:class:`TransformerConfig`) must split the
        width: the command that asks has no flag for them, so the refusal offers widths only."""
        super().check_width(flag, width)
        from fwdlearn.errors import UsageError

        try:
            check_heads(width, TransformerConfig.heads, (flag, None))
        except ValueError as error:
            raise UsageError(str(error)) from None

    def __init__(self, vocab_size: int, hidden: int = 256, layers: int = 4, heads: int = 4, context: int = 128,
                 mlp_ratio: int = 4, dropout: float = 0.0, tie: bool = False, training: str | Rule = "bp",
                 feedback_seed: int = 0) -> None:
        super().__init__()
        vocab_size, hidden, layers, heads, context, mlp_ratio = (check_int(name, value, 1) for name, value in (
            ("vocab_size", vocab_size), ("hidden", hidden), ("layers", layers), ("heads", heads), ("context", context),
            ("mlp_ratio", mlp_ratio)))
        feedback_seed = check_seed(check_int("feedback_seed", feedback_seed, None), "feedback_seed")
        tie = check_bool("tie", tie)
        # (True dropped every activation, all-zero logits in train(); NaN failed at the first training step)
        check_range("dropout", dropout, min=0)
        if dropout >= 1:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout}: 1 zeroes every embedding and "
                             "branch in training")
        check_heads(hidden, heads)
        if hidden < 2:  # (such a model trained and was evaluated, its logits the same for every input)
            raise ValueError(f"hidden={hidden}: a LayerNorm over one channel gives its bias whatever it reads "
                             "(x - mean(x) = 0), and every block and the head read the stream through one, so the "
                             "model could not see its input; give hidden=2 or more")
        self.rule = parse_rule(training)
        self.check_rule(self.rule)  # (before the tie check: tie=True with local:ff was told to build it with
        # tie=False, which was then refused for its rule)
        self.config = TransformerConfig(vocab_size, hidden, layers, heads, context, mlp_ratio, dropout, tie,
                                        str(self.rule), feedback_seed)
        self.embedding = nn.Embedding(vocab_size, hidden)
        self.positions = nn.Embedding(context, hidden)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden, heads, mlp_ratio, dropout) for _ in range(layers))
        self.final_norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, vocab_size, bias=False)
        if tie:
            why = {"local": "the tied embedding would learn from the last block's loss too (through the head)",
                   "shallow": "the tied embedding is the head's weight, so it would learn, though shallow freezes "
                              "the embeddings"}.get(self.rule.depth.name)
            if why:
                raise ValueError(f"tie=True cannot train by {self.rule.depth}: {why}; build it with tie=False")
            self.head.weight = self.embedding.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # residual projections (GPT-2)
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * layers))
        self._wire([b.taps for b in self.blocks], hidden, vocab_size, [self.embedding, self.positions, self.blocks],
                   feedback_seed, [b.normalized_taps for b in self.blocks])

    @classmethod
    def check_rule(cls, rule: Rule) -> None:
        """A depth rule alone (no time rule: no recurrence), one the stacked language models implement."""
        if rule.time is not None:  # (it named "local", which holds local:ff, refused next)
            raise ValueError(f"a transformer has no recurrence: give a depth rule only (one of "
                             f"{depth_rule_spellings()}); got {rule}")
        super().check_rule(rule)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "TransformerLM":
        return cls(**cls.config_arguments(config, TransformerConfig))

    @property
    def max_context(self) -> int:
        """The longest window the model reads at once: ``context``, the learned positions' count."""
        return self.config.context

    # ------------------------------------------------------------------ forward
    def embed(self, tokens: Tensor) -> Tensor:
        """Token embeddings ``(B, T) -> (B, T, C)`` (positions are added by :meth:`forward_from_embeddings`)."""
        return self.embedding(self.check_tokens(tokens))

    def _check_window(self, T: int) -> None:
        if T > self.config.context:
            raise ValueError(f"this transformer reads at most {self.config.context} positions (context) but got a "
                             f"window of {T}; use windows of <= {self.config.context} tokens or build it with "
                             f"context >= {T}")

    def _blocks(self, emb: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(logits, hiddens)`` from token embeddings ``(B, T, C)``."""
        T = emb.shape[1]
        self._check_window(T)
        x = self.drop(emb + self.positions(torch.arange(T, device=emb.device)))  # (B, T, C)
        return self._through(x, self.blocks)

    def forward_from_embeddings(self, emb: Tensor, state: Any = None) -> Tensor:
        """Logits ``(B, T, V)`` from token embeddings ``(B, T, C)`` (causal, differentiable w.r.t. ``emb``). In
        ``train()`` mode with gradients on, the model's rule applies (under DFA the gradient w.r.t. ``emb`` is not the
        Jacobian's): read Jacobians in ``eval()`` mode, as the influence diagnostics do."""
        return self._blocks(self.check_embeddings(emb, self.embedding.embedding_dim))[0]

    def _forward(self, tokens: Tensor, state: Any = None, exact: bool = False) -> tuple[Tensor, None, list[Tensor]]:
        logits, hiddens = self._blocks(self.embed(tokens))
        return logits, None, hiddens

    # ------------------------------------------------------------------ generation
    def prefill(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        tokens = tokens[:, -self.config.context:]
        return self(tokens)[0], tokens

    def next_logits(self, token: Tensor, state: Tensor, length: int) -> tuple[Tensor, Tensor]:
        """Generation re-reads the last ``context`` tokens (the state is the token history)."""
        tokens = torch.cat([state, token], dim=1)[:, -self.config.context:]
        return self(tokens)[0], tokens
