r"""A causal convolutional language model: a finite receptive field, the reference point of lag influence.

.. math::
    x^{(0)}_t = E[w_t], \qquad
    x^{(l)}_t = x^{(l-1)}_t + \tanh\Big(\sum_{k=0}^{K-1} W^{(l)}_k\, x^{(l-1)}_{t-k} + b^{(l)}\Big), \qquad
    \text{logits}_t = W_o\, x^{(L)}_t + b_o,

with :math:`x_{t} = 0` for :math:`t < 0` (left padding) and :math:`W^{(l)}_k` = ``convs[l-1].weight[:, :, K-1-k]``
(``torch.nn.Conv1d`` cross-correlates: the kernel's last tap reads the current step), so output :math:`t` depends on
inputs :math:`t - L(K-1) .. t` only: lag influence beyond :math:`L(K-1)` is exactly zero. It has no state to carry
and is trained by ``bp`` (end-to-end backprop; no time rule applies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fwdlearn.errors import check_int
from fwdlearn.rules import Rule, parse_rule

from fwdlearn.sequences.nn.language_model import LanguageModel

__all__ = ["ConvConfig", "CausalConvLM"]


@dataclass
class ConvConfig:
    """Everything that builds a :class:`CausalConvLM`."""

    vocab_size: int
    hidden: int = 64
    layers: int = 2
    width: int = 4
    training: str = "bp"
    kind: str = "conv"


class CausalConvLM(LanguageModel):
    r"""Embedding -> ``layers`` residual causal convolutions of width ``width`` (tanh) -> output projection,

    .. math::
        x^{(l)}_t = x^{(l-1)}_t + \tanh\Big(\sum_{k=0}^{K-1} W^{(l)}_k\, x^{(l-1)}_{t-k} + b^{(l)}\Big), \qquad
        \text{logits}_t = W_o\, x^{(L)}_t + b_o,

    :math:`x^{(0)}_t` the embedding, :math:`x_t = 0` for :math:`t < 0`, :math:`W^{(l)}_k` =
    ``convs[l-1].weight[:, :, K-1-k]`` (the module doc).

    Args:
        vocab_size: tokens.
        hidden: channels of the embedding and of every convolution (default 64).
        layers: convolutions :math:`L` (default 2); the receptive field is ``layers * (width - 1)`` steps back.
        width: kernel width :math:`K` (default 4).
        training: ``"bp"`` (the only rule this family implements).
    """

    def __init__(self, vocab_size: int, hidden: int = 64, layers: int = 2, width: int = 4, training: str | Rule = "bp"):
        super().__init__()
        vocab_size, hidden, layers, width = (check_int(name, value, 1) for name, value in (
            ("vocab_size", vocab_size), ("hidden", hidden), ("layers", layers), ("width", width)))
        self.rule = parse_rule(training)
        self.check_rule(self.rule)
        self.config = ConvConfig(vocab_size, hidden, layers, width, str(self.rule))
        self.embedding = nn.Embedding(vocab_size, hidden)
        self.convs = nn.ModuleList(nn.Conv1d(hidden, hidden, width) for _ in range(layers))
        self.head = nn.Linear(hidden, vocab_size)

    @classmethod
    def check_rule(cls, rule: Rule) -> None:
        """``bp`` only."""
        if str(rule) != "bp":
            raise ValueError(f"CausalConvLM is trained by bp only (no state, no feedback points); got {rule}")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "CausalConvLM":
        return cls(**cls.config_arguments(config, ConvConfig))

    def feedback_alignment(self, tokens: Tensor, targets: Tensor, state: Any = None) -> dict[str, float]:
        raise ValueError("a conv model is trained by bp only: it has no feedback points, so there is no alignment to "
                         "measure (align_every / --align-every is for a recurrent or transformer model under a dfa "
                         "rule)")

    def embed(self, tokens: Tensor) -> Tensor:
        return self.embedding(self.check_tokens(tokens))

    def forward_from_embeddings(self, emb: Tensor, state: Any = None) -> Tensor:
        h = self.check_embeddings(emb, self.embedding.embedding_dim).transpose(1, 2)  # (B, C, T)
        for conv in self.convs:
            h = h + torch.tanh(conv(F.pad(h, (self.config.width - 1, 0))))
        return self.head(h.transpose(1, 2))

    def forward(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, None]:
        """``(logits [B, T, V], None)``: no state is carried between windows."""
        return self.forward_from_embeddings(self.embed(tokens)), None

    def prefill(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        return self(tokens)[0], tokens

    def next_logits(self, token: Tensor, state: Tensor, length: int) -> tuple[Tensor, Tensor]:
        """Generation re-reads the last receptive field of tokens (the state is the token history)."""
        tokens = torch.cat([state, token], dim=1)[:, -(self.config.layers * (self.config.width - 1) + 1):]
        return self(tokens)[0], tokens
