"""The sequence models against hand computations: the transformer's forward pass written out, the DFA signal a
pre-LN residual tap receives, generation's re-read window, dropout only in training, the documented
initialisations, ``top_k=1`` as greedy also among tied logits."""

import math

import pytest
import torch
import torch.nn.functional as F

from fwdlearn.sequences import RecurrentLM
from fwdlearn.sequences.nn.conv import CausalConvLM
from fwdlearn.sequences.nn.transformer import TransformerLM

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _randomize_norms(model):
    """LayerNorm weights and biases away from (1, 0), so that one norm read in place of another shows."""
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=gen))


def test_the_transformer_computes_its_documented_forward_pass():
    """h_0 = E[w] + P_t, a_l = Attn(LN1 h), h_l = h + a + W2 GELU(W1 LN2(h + a)), logits = W_o LN(h_L), with
    causal multi-head softmax attention written out by hand (explicit mask, heads sliced and concatenated)."""
    torch.manual_seed(0)
    H, C, T = 2, 8, 6
    model = TransformerLM(11, hidden=C, layers=2, heads=H, context=T).eval()
    _randomize_norms(model)
    tokens = torch.randint(0, 11, (2, T))

    def ln(m, x):
        return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + m.eps) \
            * m.weight + m.bias

    def attention(a, x):
        q, k, v = (x @ a.qkv.weight.T + a.qkv.bias).split(C, dim=-1)
        d, heads = C // H, []
        mask = torch.ones(T, T).tril().bool()  # position t reads s <= t
        for j in range(H):
            qj, kj, vj = (t[..., j * d:(j + 1) * d] for t in (q, k, v))
            scores = (qj @ kj.transpose(-1, -2) / math.sqrt(d)).masked_fill(~mask, -math.inf)
            heads.append(scores.softmax(-1) @ vj)
        return torch.cat(heads, -1) @ a.proj.weight.T + a.proj.bias

    h = model.embedding.weight[tokens] + model.positions.weight[:T]
    for b in model.blocks:
        h = h + attention(b.attn, ln(b.ln1, h))
        h = h + F.gelu(ln(b.ln2, h) @ b.mlp.fc.weight.T + b.mlp.fc.bias) @ b.mlp.proj.weight.T + b.mlp.proj.bias
    expected = ln(model.final_norm, h) @ model.head.weight.T
    with torch.no_grad():
        torch.testing.assert_close(model(tokens)[0], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", ["transformer", "recurrent"])
def test_dfa_reaches_a_pre_ln_residual_tap_through_a_layernorm_s_jacobian(family):
    """At a tap every reader sees through a LayerNorm (the transformer's attn / out, the recurrent block's rnn /
    out), the delivered signal is (e B) dLN(h)/dh: per token, it sums to zero over the channels and is orthogonal to
    the normalised h (up to the LayerNorm's eps). At the MLP's hidden activation it is e B itself (no such
    projection)."""
    torch.manual_seed(0)
    model = (TransformerLM(13, hidden=16, layers=2, heads=2, context=8, training="dfa:micro") if family == "transformer"
             else RecurrentLM(13, cell="gru", hidden=16, layers=2, training="dfa:micro"))
    model.train()
    seen, point = {}, model.depth.tap

    def tap(block, h, where):
        if h.requires_grad:
            h.register_hook(lambda g: seen.__setitem__((block, where), (h.detach(), g)))
        return point(block, h, where)

    model.depth.tap = tap
    tokens = torch.randint(0, 13, (3, 8))
    model.training_loss(tokens, torch.randint(0, 13, (3, 8)))[0].backward()
    residual = {"attn", "out"} if family == "transformer" else {"rnn", "out"}
    assert {where for _, where in seen} == residual | {"mlp"}
    for (block, where), (h, g) in seen.items():
        assert g.abs().max() > 0, (block, where)
        shift = g.sum(-1).abs().max() / g.abs().sum(-1).max()
        scale = (g * F.layer_norm(h, h.shape[-1:])).sum(-1).abs().max() / g.abs().sum(-1).max()
        if where in residual:
            assert shift < 1e-5 and scale < 0.05, (block, where, float(shift), float(scale))
        else:
            assert shift > 1e-3, (block, where, float(shift))


@pytest.mark.parametrize("kind", ["transformer", "conv"])
def test_greedy_generation_is_the_argmax_of_the_model_read_on_the_history_it_sees(kind):
    """A transformer of ``context`` positions reads the last ``context`` tokens, a causal conv its receptive field
    (``layers * (width - 1) + 1`` tokens, the same as the whole history): greedy generation is the argmax of that,
    step after step, also once the history is longer than the window."""
    torch.manual_seed(1)
    model = (TransformerLM(9, hidden=8, layers=2, heads=2, context=4) if kind == "transformer"
             else CausalConvLM(9, hidden=8, layers=2, width=3))
    prompt = torch.tensor([3, 1, 4, 1, 5, 0, 2])  # longer than either window
    ids = prompt.tolist()
    with torch.no_grad():
        for _ in range(8):
            window = torch.tensor([ids[-4:] if kind == "transformer" else ids])
            ids.append(int(model(window)[0][0, -1].argmax()))
    assert model.generate(prompt, 8, greedy=True).tolist() == ids


def test_dropout_is_applied_to_the_embedded_input_in_training_and_nowhere_in_eval():
    """``dropout``: the embeddings (token + position, summed) are dropped in train(); in eval() the model is
    deterministic (no dropout anywhere, attention weights included)."""
    torch.manual_seed(0)
    model = TransformerLM(13, hidden=32, layers=2, heads=4, context=16, dropout=0.5)
    tokens = torch.randint(0, 13, (4, 16))
    read = []
    model.blocks[0].register_forward_pre_hook(lambda m, args: read.append(args[0].detach()))
    model.train()
    model(tokens)
    zeros = float((read[-1] == 0).float().mean())
    assert 0.35 < zeros < 0.65, zeros  # half of the summed input dropped (not the positions alone)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(tokens)[0], model(tokens)[0], rtol=0, atol=0)


def test_top_k_1_draws_as_greedy_does_also_among_tied_logits():
    """``top_k=1`` is greedy (the docstring): with every logit tied (a zero head), greedy takes the first id at every
    step, and so does top_k=1, whatever the seed and temperature."""
    torch.manual_seed(0)
    model = RecurrentLM(12, cell="gru", hidden=8, layers=1)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    prompt = torch.tensor([3, 4])
    greedy = model.generate(prompt, 10, greedy=True)
    assert greedy[2:].tolist() == [0] * 10
    for seed in range(3):
        assert torch.equal(model.generate(prompt, 10, top_k=1, seed=seed, temperature=2.0), greedy)


def test_the_residual_projections_start_scaled_by_one_over_sqrt_2l():
    """nanoGPT's initialisation: N(0, 0.02) weights, zero biases, the residual projections (attention's and the
    MLP's output maps) N(0, 0.02 / sqrt(2L)); the DSF reference block (``reference_block``) scales the last map of
    each branch alike."""
    torch.manual_seed(0)
    L = 8
    model = TransformerLM(50, hidden=64, layers=L, heads=4, context=16)
    for b in model.blocks:
        assert abs(b.attn.proj.weight.std() / (0.02 / math.sqrt(2 * L)) - 1) < 0.1
        assert abs(b.mlp.proj.weight.std() / (0.02 / math.sqrt(2 * L)) - 1) < 0.1
        assert abs(b.mlp.fc.weight.std() / 0.02 - 1) < 0.1
        assert all(float(p.detach().abs().max()) == 0 for p in (b.attn.qkv.bias, b.attn.proj.bias, b.mlp.fc.bias))
    rec = RecurrentLM(50, cell="gru", hidden=64, layers=L, reference_block=True)
    for b in rec.blocks:
        for last in (b.proj, b.mlp[-1]):
            assert abs(last.weight.std() / (0.02 / math.sqrt(2 * L)) - 1) < 0.1
        assert abs(b.mlp[0].weight.std() / 0.02 - 1) < 0.1


def test_the_causal_conv_computes_its_documented_forward_pass():
    """x^(l)_t = x^(l-1)_t + tanh(sum_k W_k x^(l-1)_{t-k} + b), W_k = weight[:, :, K-1-k], x_t = 0 for t < 0, then
    logits_t = W_o x^(L)_t + b_o, written out position by position."""
    torch.manual_seed(0)
    K, T = 3, 6
    model = CausalConvLM(7, hidden=5, layers=2, width=K).eval()
    tokens = torch.randint(0, 7, (2, T))
    x = model.embedding.weight[tokens]  # [B, T, C]
    for conv in model.convs:
        out = []
        for t in range(T):
            s = conv.bias.expand(2, -1).clone()
            for k in range(K):
                if t - k >= 0:
                    s = s + x[:, t - k] @ conv.weight[:, :, K - 1 - k].T
            out.append(x[:, t] + torch.tanh(s))
        x = torch.stack(out, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens)[0], x @ model.head.weight.T + model.head.bias, rtol=1e-5, atol=1e-6)


def test_top_k_and_temperature_draw_from_the_renormalised_softmax_of_the_k_largest_logits():
    """Fixed logits (a zero head weight, bias b): top_k=3 at temperature 2 draws ids 0..2 with frequencies
    softmax(b[:3] / 2), and never another id."""
    torch.manual_seed(0)
    model = RecurrentLM(8, cell="gru", hidden=8, layers=1)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([2.0, 1.0, 0.0, -0.5, -1.0, -1.0, -1.0, -1.0]))
    drawn = model.generate(torch.tensor([1]), 900, temperature=2.0, top_k=3, seed=0)[1:]
    counts = torch.bincount(drawn, minlength=8).float() / drawn.numel()
    assert counts[3:].sum() == 0
    torch.testing.assert_close(counts[:3], torch.softmax(torch.tensor([2.0, 1.0, 0.0]) / 2, 0), rtol=0, atol=0.05)


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm", "linear"])
@pytest.mark.parametrize("norm", [True, False], ids=["pre-ln", "plain"])
def test_the_recurrent_lm_computes_its_documented_forward_pass(cell, norm):
    """x_0 = E[w]; plain blocks x_l = x + h(x), pre-LN blocks y = x + h(LN1 x), x_l = y + W2 GELU(W1 LN2 y);
    logits = W_o LN(x_L) (no final norm when plain); h the cell's output stepped by hand from each layer's carried
    state: torch.rnn_tanh_cell / gru_cell, lstm_cell with s = [h, c] and output W_s [h; c] + b_s, the linear
    cell's lambda * s + W u + b. Each layer starts from its own carried state (and returns it)."""
    torch.manual_seed(0)
    W, T, L = 6, 5, 2
    model = RecurrentLM(11, cell=cell, hidden=W, layers=L, norm=norm).double().eval()
    _randomize_norms(model)
    tokens = torch.randint(0, 11, (2, T))
    S = 2 * W if cell == "lstm" else W
    state = [torch.randn(2, S, dtype=torch.float64) for _ in range(L)]

    def ln(m, x):
        return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + m.eps) \
            * m.weight + m.bias

    def layer(lay, u, s):
        outs = []
        for t in range(T):
            if cell == "linear":
                s = lay.decay * s + u[:, t] @ lay.input.weight.T + lay.input.bias
            elif cell == "lstm":
                s = torch.cat(torch.lstm_cell(u[:, t], (s[:, :W], s[:, W:]), *lay.weights()), -1)
            else:
                s = (torch.rnn_tanh_cell if cell == "tanh" else torch.gru_cell)(u[:, t], s, *lay.weights())
            outs.append(s @ lay.state_proj.weight.T + lay.state_proj.bias if cell == "lstm" else s)
        return torch.stack(outs, 1), s

    with torch.no_grad():
        x, carried = model.embedding.weight[tokens], []
        for b, s0 in zip(model.blocks, state):
            if norm:
                h, s = layer(b.layer, ln(b.ln1, x), s0)
                y = x + h
                x = y + F.gelu(ln(b.ln2, y) @ b.mlp[0].weight.T + b.mlp[0].bias) @ b.mlp[2].weight.T + b.mlp[2].bias
            else:
                h, s = layer(b.layer, x, s0)
                x = x + h
            carried.append(s)
        expected = (ln(model.final_norm, x) if norm else x) @ model.head.weight.T + model.head.bias
        logits, new_state = model(tokens, state)
    torch.testing.assert_close(logits, expected)
    for got, want in zip(new_state, carried):
        torch.testing.assert_close(got, want)


def test_the_linear_cell_draws_its_decays_from_u_0_5_0_95():
    """The documented lambda ~ U(0.5, 0.95): every decay inside, both ends reached (256 draws)."""
    torch.manual_seed(0)
    decay = RecurrentLM(5, cell="linear", hidden=256, layers=1).blocks[0].layer.decay.detach()
    assert 0.5 <= float(decay.min()) < 0.52 and 0.93 < float(decay.max()) <= 0.95
