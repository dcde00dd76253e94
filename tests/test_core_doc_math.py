r"""Every registered choice (rule, graph method, conv, cell, model kind, depth wiring) states its math in its own
docstring, as PyG's classes do, and cites its paper; and the formulas written there are what the code computes
(the causal convolution's taps were :math:`W_k x_{t-k}` with :math:`W_k` unnamed, which read as ``weight[..., k]`` is
the kernel reversed; the recurrent LM's logits were written without the final LayerNorm they read)."""

import inspect
import math
import re

import pytest
import torch
import torch.nn.functional as F

from fwdlearn.graphs.methods import METHODS
from fwdlearn.graphs.registries import CONV_KINDS
from fwdlearn.rules import DEPTH_RULES, TIME_RULES
from fwdlearn.sequences.nn.depth_rules import WIRINGS
from fwdlearn.sequences.registries import LM_KINDS, RECURRENT_CELLS

#: the built-in choices, by registry
REGISTRIES = {
    "DEPTH_RULES": dict(DEPTH_RULES), "TIME_RULES": dict(TIME_RULES),
    **{name: {key: reg.get(key) for key in reg} for name, reg in (
        ("CONV_KINDS", CONV_KINDS), ("METHODS", METHODS), ("RECURRENT_CELLS", RECURRENT_CELLS),
        ("LM_KINDS", LM_KINDS), ("WIRINGS", WIRINGS))},
}
#: controls of the project's own, with no paper to cite
UNCITED = {("DEPTH_RULES", "shallow"), ("WIRINGS", "shallow"), ("CONV_KINDS", "mlp"), ("RECURRENT_CELLS", "linear"),
           ("LM_KINDS", "conv")}
CHOICES = [(registry, key) for registry, entries in REGISTRIES.items() for key in entries]


def _doc(registry: str, key: str) -> str:
    obj = REGISTRIES[registry][key]
    return inspect.getdoc(obj if inspect.isclass(obj) else type(obj)) or ""


def _formulas(doc: str) -> list[str]:
    """The math of a docstring: inline ``:math:`...``` spans and ``.. math::`` blocks."""
    inline = re.findall(r":math:`([^`]*)`", doc)
    blocks = re.findall(r"\.\. math::\n((?:\n|[ \t]+.*\n?)+)", doc)
    return inline + blocks


@pytest.mark.parametrize("registry,key", CHOICES)
def test_every_registered_choice_writes_its_math_and_cites_its_paper(registry, key):
    doc = _doc(registry, key)
    assert any("=" in formula for formula in _formulas(doc)), f"{registry}[{key!r}]'s docstring states no formula"
    if (registry, key) not in UNCITED:
        assert re.search(r"\b(19|20)\d\d\b", doc), f"{registry}[{key!r}]'s docstring cites no paper"


def test_the_causal_conv_lm_is_the_formula_its_doc_writes():
    from fwdlearn.sequences.nn import conv as conv_module
    from fwdlearn.sequences.nn.conv import CausalConvLM

    assert "W^{(l)}_k` = ``convs[l-1].weight[:, :, K-1-k]``" in conv_module.__doc__
    torch.manual_seed(0)
    K, T = 3, 6
    model = CausalConvLM(5, hidden=3, layers=1, width=K).double().eval()
    tokens = torch.randint(0, 5, (1, T))
    x = model.embedding(tokens)[0]
    weight, bias = model.convs[0].weight, model.convs[0].bias
    taps = lambda t: x[t] if t >= 0 else torch.zeros_like(x[0])  # noqa: E731  (left padding)
    out = torch.stack([x[t] + torch.tanh(sum(weight[:, :, K - 1 - k] @ taps(t - k) for k in range(K)) + bias)
                       for t in range(T)])
    torch.testing.assert_close(model.head(out), model(tokens)[0][0])


def test_the_recurrent_lm_logits_read_the_final_layernorm_as_its_doc_writes():
    from fwdlearn.sequences.nn import recurrent as recurrent_module
    from fwdlearn.sequences.nn.recurrent import RecurrentLM

    assert r"\text{logits}_t = W_o\,\text{LN}(x^{(L)}_t) + b_o" in recurrent_module.__doc__
    torch.manual_seed(0)
    model = RecurrentLM(7, cell="gru", hidden=4, layers=1, norm=True).double().eval()
    tokens = torch.randint(0, 7, (2, 6))
    x, block = model.embedding(tokens), model.blocks[0]
    h, _ = block.layer.run(block.ln1(x), torch.zeros(2, 4, dtype=torch.float64))
    x = x + h
    x = x + block.mlp(block.ln2(x))
    torch.testing.assert_close(model.head(model.final_norm(x)), model(tokens)[0])


def test_gru_and_gat_compute_the_formulas_their_docs_write():
    from fwdlearn.graphs.nn.convs import GAT_KIND
    from fwdlearn.sequences.nn.recurrent import RecurrentLayer

    assert r"h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}" in RECURRENT_CELLS.get("gru").__doc__
    assert r"\operatorname{LeakyReLU}_{0.2}" in GAT_KIND.__doc__
    torch.manual_seed(0)
    dt = torch.float64
    # GRU: r, z = sigma(...), n = tanh(W_in u + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h
    layer = RecurrentLayer("gru", 3, 4).double()
    w_ih, w_hh, b_ih, b_hh = layer.weights()
    u, h = torch.randn(5, 3, dtype=dt), torch.randn(5, 4, dtype=dt)
    (ir, iz, i_n), (hr, hz, hn) = (u @ w_ih.T + b_ih).chunk(3, -1), (h @ w_hh.T + b_hh).chunk(3, -1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    n = torch.tanh(i_n + r * hn)
    torch.testing.assert_close(layer.step(u, h), (1 - z) * n + z * h)
    # GAT: 4 heads concatenated, alpha = softmax_j LeakyReLU_0.2(a_dst . W h_i + a_src . W h_j) over N(i) and i
    conv = GAT_KIND.make(3, 8).double()
    edges, nodes, heads, width = torch.tensor([[0, 1, 1, 2, 3, 0], [1, 0, 2, 1, 0, 3]]), 4, 4, 2
    x = torch.randn(nodes, 3, dtype=dt)
    wx = conv.lin(x).view(nodes, heads, width)
    dst, src = (wx * conv.att_dst).sum(-1), (wx * conv.att_src).sum(-1)
    linked = torch.eye(nodes, dtype=torch.bool)
    linked[edges[1], edges[0]] = True
    out = []
    for i in range(nodes):
        js = linked[i].nonzero().flatten()
        alpha = F.leaky_relu(dst[i] + src[js], 0.2).softmax(0)  # [|N(i)| + 1, heads]
        out.append((alpha.unsqueeze(-1) * wx[js]).sum(0).flatten())
    torch.testing.assert_close(conv(x, edges), torch.stack(out) + conv.bias)
    assert math.isclose(conv.negative_slope, 0.2)
