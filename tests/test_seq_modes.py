"""Training modes of RecurrentLM: DSF = BPTT exactly for a diagonal linear recurrence, the special cases
(ft-bptt = DSF with A = 0, tbptt:T = bptt), feedback variants, and lag_influence on a RecurrentLM."""

import pytest
import torch

from fwdlearn.rules import DFA, DSF, Rule, parse_rule
from fwdlearn.sequences import RecurrentLM, lag_influence
from fwdlearn.sequences.nn import kernels
from fwdlearn.sequences.nn.recurrent import RecurrentLayer
from fwdlearn.sequences.nn.time_rules import UNROLLED, unrolled_states
from fwdlearn.sequences.training import lm_loss


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _grads(model, x, y):
    model.train()
    model.zero_grad()
    logits, _ = model(x)
    lm_loss(logits, y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _data(vocab=7, batch=3, length=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g), torch.randint(0, vocab, (batch, length), generator=g)


def test_dsf_equals_bptt_for_a_diagonal_linear_recurrence_with_matching_feedback():
    torch.manual_seed(0)
    x, y = _data()
    model = RecurrentLM(7, cell="linear", hidden=8, layers=2, training="bptt")
    bptt = _grads(model, x, y)
    model.set_training("dsf")
    for i, block in enumerate(model.blocks):
        model.set_feedback(i, block.layer.decay)  # A = J^T: the stationary assumption holds
    dsf = _grads(model, x, y)
    for name in bptt:
        assert torch.allclose(dsf[name], bptt[name], atol=1e-6, rtol=1e-5), name
    # with the reference feedback instead, the recurrent gradients differ
    for i, block in enumerate(model.blocks):
        model.set_feedback(i, torch.linspace(0, 1, 8))
    other = _grads(model, x, y)
    assert not torch.allclose(other["blocks.0.layer.decay"], bptt["blocks.0.layer.decay"], atol=1e-4)


@pytest.mark.parametrize("cell", ["gru", "lstm", "tanh"])
def test_ft_bptt_is_dsf_with_zero_feedback(cell):
    torch.manual_seed(1)
    x, y = _data(seed=1)
    model = RecurrentLM(7, cell=cell, hidden=6, layers=2, training="ft-bptt")
    ft = _grads(model, x, y)
    model.set_training("dsf")
    for i, block in enumerate(model.blocks):
        model.set_feedback(i, torch.zeros(block.layer.state_size))
    zero = _grads(model, x, y)
    model.set_training("bptt")
    full = _grads(model, x, y)
    for name in ft:
        assert torch.allclose(ft[name], zero[name], atol=1e-6), name
    assert not torch.allclose(ft["blocks.0.layer.rnn.weight_hh_l0"], full["blocks.0.layer.rnn.weight_hh_l0"], atol=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_tbptt_over_the_whole_window_is_bptt_and_shorter_windows_differ(cell):
    torch.manual_seed(2)
    x, y = _data(length=10, seed=2)
    model = RecurrentLM(7, cell=cell, hidden=6, layers=2, training="bptt")
    full = _grads(model, x, y)
    model.set_training("tbptt:10")
    same = _grads(model, x, y)
    model.set_training("tbptt:3")
    short = _grads(model, x, y)
    for name in full:
        assert torch.allclose(full[name], same[name], atol=1e-6), name
    assert not torch.allclose(full["blocks.0.layer.rnn.weight_hh_l0"], short["blocks.0.layer.rnn.weight_hh_l0"], atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm", "tanh"])
def test_every_mode_computes_the_same_forward_values(cell):
    torch.manual_seed(3)
    x, _ = _data(seed=3)
    model = RecurrentLM(7, cell=cell, hidden=6, layers=2, training="bptt")
    model.train()
    reference, state = model(x)
    for mode in ["tbptt:4", "ft-bptt", "dsf", "dsf:gaussian", "dsf:orthogonal"]:
        model.set_training(mode)
        logits, new_state = model(x)
        assert torch.allclose(logits, reference, atol=1e-5), mode
        for a, b in zip(state, new_state):
            assert torch.allclose(a, b, atol=1e-5), mode


def test_lstm_dsf_scans_the_concatenated_h_c_state():
    model = RecurrentLM(5, cell="lstm", hidden=4, layers=1, training="dsf")
    assert model.feedback(0).shape == (8,)
    gaussian = RecurrentLM(5, cell="lstm", hidden=4, layers=1, training="dsf:gaussian")
    assert gaussian.feedback(0).shape == (8, 8)
    x, y = _data(vocab=5, seed=4)
    grads = _grads(gaussian, x, y)
    assert all(torch.isfinite(g).all() for g in grads.values())


def test_lstm_dsf_gradient_equals_a_step_by_step_reference_on_the_whole_h_c_state():
    """The reference's LSTM under DSF: the layer emits its whole state [h, c] (read by a Linear), both halves get
    local errors e_t, the scan g_t = e_t + A g_{t+1} runs over all 2H channels (A = diag(linspace(0, 1, 2H)): the
    c channels decay at 0.51-1), and each one-step cell s_t = f(u_t, s_{t-1}.detach()) receives g_t."""
    torch.manual_seed(7)
    H, vocab = 4, 6
    x, y = _data(vocab=vocab, batch=2, length=9, seed=7)
    model = RecurrentLM(vocab, cell="lstm", hidden=H, layers=1, training="dsf", norm=False).double()
    model.train()
    model.zero_grad()
    logits, _ = model(x)
    lm_loss(logits, y).backward()
    layer = model.blocks[0].layer
    w_ih, w_hh, b_ih, b_hh = (p.detach() for p in layer.weights())

    # step by step, in plain Python
    with torch.no_grad():
        emb = model.embedding(x)
        s = torch.zeros(x.shape[0], 2 * H, dtype=torch.float64)
        states, prevs = [], []
        for t in range(x.shape[1]):
            prevs.append(s)
            h, c = torch.lstm_cell(emb[:, t], (s[:, :H], s[:, H:]), w_ih, w_hh, b_ih, b_hh)
            s = torch.cat([h, c], dim=-1)
            states.append(s)
    S = torch.stack(states, dim=1).requires_grad_()
    out = model.head(emb + layer.state_proj(S))  # the layer above reads the whole state
    (e,) = torch.autograd.grad(lm_loss(out, y), S)
    assert e[..., H:].abs().sum() > 0  # the cell state gets local errors
    a = model.feedback(0)  # the reference's decays over the whole state (built in float32)
    torch.testing.assert_close(a, torch.linspace(0, 1, 2 * H, dtype=torch.float64))
    assert a[H:].min() > 0.5
    g, nxt = torch.zeros_like(e), torch.zeros_like(e[:, 0])
    for t in reversed(range(x.shape[1])):
        nxt = e[:, t] + a * nxt
        g[:, t] = nxt
    weights = [p.detach().clone().requires_grad_() for p in layer.weights()]
    total = 0
    for t in range(x.shape[1]):
        prev = prevs[t]
        h, c = torch.lstm_cell(emb[:, t], (prev[:, :H], prev[:, H:]), *weights)
        total = total + (torch.cat([h, c], dim=-1) * g[:, t]).sum()
    expected = torch.autograd.grad(total, weights)
    for name, want in zip(["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"], expected):
        torch.testing.assert_close(getattr(layer.rnn, name).grad, want, atol=1e-12, rtol=0, msg=name)


def test_time_rules_parse_and_reject_bad_values():
    assert str(parse_rule("tbptt:32")) == "tbptt:32"
    assert parse_rule("dsf:orthogonal").time.feedback == "orthogonal"
    assert str(parse_rule("FT-BPTT")) == "ft-bptt"
    with pytest.raises(ValueError, match="unknown rule 'sgd'"):
        RecurrentLM(5, training="sgd")
    with pytest.raises(ValueError, match="positive window"):
        RecurrentLM(5, training="tbptt:0")
    with pytest.raises(ValueError, match="unknown DSF feedback 'learned'"):
        RecurrentLM(5, training="dsf:learned")
    assert str(RecurrentLM(5, hidden=4, layers=1, training="dsf", feedback="gaussian").rule) == "dsf:gaussian"
    with pytest.raises(ValueError, match="unknown cell 'transformer'"):
        RecurrentLM(5, cell="transformer")
    model = RecurrentLM(5, cell="gru", hidden=4, layers=1)
    with pytest.raises(ValueError, match=r"must have shape \[4\] or \[4, 4\]"):
        model.set_feedback(0, torch.zeros(3))


def test_lag_influence_runs_on_a_recurrent_lm_and_is_causal():
    torch.manual_seed(5)
    model = RecurrentLM(9, cell="gru", hidden=8, layers=2, training="dsf", norm=True)
    tokens = torch.randint(0, 9, (2, 16))
    emb = model.embed(tokens)
    assert emb.shape == (2, 16, 8)
    assert model.forward_from_embeddings(emb).shape == (2, 16, 9)
    curve, R, per_position = lag_influence(model, tokens, max_lag=15, positions=[3, 9, 15])
    assert curve.shape == (16,) and curve[0] == pytest.approx(1.0)
    assert 0.0 < R < 15.0
    assert bool((per_position[0, 4:] == 0).all())  # position 3 of sequence 0 sees only lags 0..3
    assert model.training  # restored after the measurement


@pytest.mark.parametrize("kernels_on", [True, False], ids=["kernel", "torch-fused"])
@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_bptt_gradients_equal_the_step_by_step_graphs_in_float64(cell, kernels_on):
    """BPTT (the through-time kernel on a CPU; with the kernels off torch's fused RNN / GRU) against autograd
    through one cell call per step."""
    torch.manual_seed(8)
    x, y = _data(length=11, seed=8)
    model = RecurrentLM(7, cell=cell, hidden=5, layers=2, training="bptt", norm=True).double()
    model.train()
    with kernels.use_kernels(kernels_on):
        fused = _grads(model, x, y)
    model.zero_grad()
    lm_loss(model.forward_from_embeddings(model.embed(x), rule=UNROLLED), y).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(fused[name], p.grad, atol=1e-12, rtol=0, msg=name)


def test_kernels_switch_between_the_kernel_and_torchs_fused_gru(monkeypatch):
    calls = []
    monkeypatch.setattr(kernels.RecurrentKernel, "apply", lambda *a: calls.append(a[1]) or torch.zeros(2, 3, 4))
    layer = RecurrentLayer("gru", 4, 4)
    u, s0 = torch.randn(2, 3, 4), torch.zeros(2, 4)
    layer.states(u, s0)
    assert calls == [True]  # BPTT by the through-time kernel
    layer.scan_step(u, s0)
    assert calls == [True, False]  # FT-BPTT / DSF by the one-step kernel
    with kernels.use_kernels(False):
        assert layer.scan_step(u, s0) is None  # the reference recipe
        layer.states(u, s0)
    with torch.no_grad():
        layer.states(u, s0)  # evaluation: the fused module
    assert calls == [True, False]


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_through_time_kernel_gives_bptt_gradients_across_chunks(cell, monkeypatch):
    monkeypatch.setattr(kernels, "CHUNK", 3)
    torch.manual_seed(9)
    layer = RecurrentLayer(cell, 5, 4).double()
    u = torch.randn(3, 8, 5, dtype=torch.float64, requires_grad=True)
    s0 = torch.randn(3, layer.state_size, dtype=torch.float64)
    weights = layer.weights()
    ours = kernels.kernel_states(cell, u, s0, *weights, through_time=True)
    reference = unrolled_states(layer, u, s0, retain=False)[0]
    torch.testing.assert_close(ours, reference, atol=1e-12, rtol=0)
    e = torch.randn_like(reference)
    for a, b in zip(torch.autograd.grad((ours * e).sum(), [u, *weights]),
                    torch.autograd.grad((reference * e).sum(), [u, *weights])):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_a_layers_bptt_run_gives_its_initial_state_the_gradient_with_the_kernels_on_and_off(cell, monkeypatch):
    """``RecurrentLayer.run`` is differentiable through time, into ``s0`` too: the through-time kernel returns
    :math:`J_1^\top g_1` (across chunks) as autograd through one cell call per step does; the one-step kernel
    gives ``s0`` nothing (every previous state is held fixed)."""
    monkeypatch.setattr(kernels, "CHUNK", 3)
    torch.manual_seed(10)
    layer = RecurrentLayer(cell, 3, 4).double()
    u = torch.randn(2, 7, 3, dtype=torch.float64)
    s0 = torch.randn(2, layer.state_size, dtype=torch.float64, requires_grad=True)
    e = torch.randn(2, 7, 4, dtype=torch.float64)
    reference = torch.autograd.grad((unrolled_states(layer, u, s0, retain=False)[0][..., :4] * e).sum(), s0)[0]
    assert reference.abs().sum() > 0
    kernel = torch.autograd.grad((layer.states(u, s0)[..., :4] * e).sum(), s0)[0]
    torch.testing.assert_close(kernel, reference, atol=1e-12, rtol=0)
    if cell != "lstm":  # the fused torch.nn.RNN / GRU
        with kernels.use_kernels(False):
            fused = torch.autograd.grad((layer.run(u, s0)[0] * e).sum(), s0)[0]
        torch.testing.assert_close(fused, reference, atol=1e-12, rtol=0)
    one_step = kernels.kernel_states(cell, u, s0, *layer.weights())
    assert torch.autograd.grad((one_step * one_step).sum(), s0, allow_unused=True)[0] is None


def test_kernel_states_rejects_misshapen_inputs_and_second_derivatives():
    gru = torch.nn.GRU(3, 4, batch_first=True)
    weights = list(gru.parameters())
    u, s0 = torch.randn(2, 5, 3), torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"the gru layer's input must be \[batch, time, 3\]; got \(2, 3\)"):
        kernels.kernel_states("gru", u[:, 0], s0, *weights)
    with pytest.raises(ValueError, match=r"initial state must be \[batch, 4\] = \[2, 4\]; got \[4\]"):
        kernels.kernel_states("gru", u, s0[0], *weights)
    with pytest.raises(ValueError, match=r"initial state must be \[batch, 8\] = \[2, 8\] \(\[h, c\]\); got \[2, 4\]"):
        kernels.kernel_states("lstm", u, s0, *torch.nn.LSTM(3, 4).parameters())
    with pytest.raises(ValueError, match=r"these are not tanh weights: .* got W_ih \(12, 3\)"):
        kernels.kernel_states("tanh", u, s0, *weights)
    # (as the fused modules refuse them; the kernels cast them silently, so training ran where evaluation failed)
    with pytest.raises(ValueError, match=r"the gru layer's input must be floating point like its weights "
                                         r"\(torch.float32\); got torch.int64: convert it with .to\(torch.float32\)"):
        kernels.kernel_states("gru", u.long(), s0, *weights)
    with pytest.raises(ValueError, match=r"initial state must be floating point .* got torch.bool"):
        kernels.kernel_states("gru", u, s0.bool(), *weights)
    x = u.clone().requires_grad_()
    with pytest.raises(RuntimeError, match=r"not differentiable \(create_graph=True, second derivatives\): run the "
                                           r"model inside fwdlearn.sequences.nn.kernels.use_kernels\(False\)"):
        torch.autograd.grad(kernels.kernel_states("gru", x, s0, *weights, through_time=True).sum(), x,
                            create_graph=True)


def test_a_dsf_spec_that_names_its_feedback_kind_keeps_it():
    """``feedback=`` (and the kind a model was built with) fills in DSF's kind only where the spec names none."""
    assert RecurrentLM(7, cell="gru", hidden=4, layers=1, training="dsf", feedback="gaussian").rule == parse_rule(
        "dsf:gaussian")
    explicit = RecurrentLM(7, cell="gru", hidden=4, layers=1, training="dsf:diagonal", feedback="orthogonal")
    assert str(explicit.rule) == "dsf" and explicit.feedback(0).shape == (4,)
    model = RecurrentLM(7, cell="gru", hidden=4, layers=1, training="dsf:gaussian")
    model.set_training("dsf")
    assert str(model.rule) == "dsf:gaussian"  # "dsf" keeps the model's kind
    model.set_training("dsf:diagonal")
    assert str(model.rule) == "dsf" and model.config.feedback == "diagonal" and model.feedback(0).shape == (4,)
    # rule objects alike: DSF() leaves the kind to the model, DSF("diagonal") names it
    assert RecurrentLM(7, hidden=4, layers=1, training=DSF(), feedback="gaussian").config.feedback == "gaussian"
    named = RecurrentLM(7, hidden=4, layers=1, training=Rule(DFA(), DSF("diagonal")), feedback="gaussian")
    assert named.config.feedback == "diagonal" and named.feedback(0).shape == (4,)


def _reference_recipe(model):
    """Make every layer of ``model`` use the reference recipe (fused no-grad scan + batched one-step cell)."""
    for block in model.blocks:
        block.layer.scan_step = lambda u, s0: None
    return model


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
@pytest.mark.parametrize("mode", ["dsf", "ft-bptt", "dsf:gaussian"])
def test_one_step_kernels_give_the_reference_recipes_values_and_gradients_in_float64(cell, mode, monkeypatch):
    monkeypatch.setattr(kernels, "CHUNK", 8)  # 20 steps: chunks of 8, 8 and 4
    torch.manual_seed(6)
    x, y = _data(length=20, seed=6)
    fast = RecurrentLM(7, cell=cell, hidden=6, layers=2, training=mode, norm=True).double()
    reference = _reference_recipe(RecurrentLM(7, cell=cell, hidden=6, layers=2, training=mode, norm=True).double())
    reference.load_state_dict(fast.state_dict())
    fast.train()
    reference.train()
    state = [s.double().normal_() for s in fast.initial_state(x.shape[0])]  # a carried state, not zeros
    logits_fast, state_fast = fast(x, state)
    logits_ref, state_ref = reference(x, state)
    torch.testing.assert_close(logits_fast, logits_ref, atol=1e-12, rtol=0)
    for a, b in zip(state_fast, state_ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    g_fast, g_ref = _grads(fast, x, y), _grads(reference, x, y)
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], atol=1e-12, rtol=0, msg=name)


def test_dfa_and_dsf_draw_independent_random_feedback():
    """Under "dfa:gaussian+dsf:gaussian" DFA's B_l were the very matrix DSF's A_0 is (both drawn first from
    feedback_seed)."""
    model = RecurrentLM(11, cell="gru", hidden=16, layers=2, norm=False, training="dfa:gaussian+dsf:gaussian")
    for name in model.feedback_points:
        B = model.depth.feedback.matrix(name)
        assert B.shape == model.feedback(0).shape and not torch.allclose(B, model.feedback(0))


def test_a_model_with_replaced_feedback_saves_and_loads(tmp_path):
    """set_feedback may turn decays [S] into a matrix [S, S]; the saved model loads with it (it used to fail on the
    buffer's shape), and the feedback follows the model's dtype."""
    model = RecurrentLM(10, cell="linear", hidden=4, layers=1, training="dsf")
    model.set_feedback(0, torch.eye(4) * 0.9)
    model.save(tmp_path / "m.pt")
    loaded, _ = RecurrentLM.load(tmp_path / "m.pt")
    assert torch.equal(loaded.feedback(0), torch.eye(4) * 0.9)
    double = RecurrentLM(10, cell="gru", hidden=4, layers=1, training="dsf").double()
    double.set_training("dsf:gaussian")
    assert double.feedback(0).dtype == torch.float64


def test_the_reference_block_is_the_dsf_codes_transformer_like_block():
    """A linear map after every recurrent layer (the LSTM's state_proj is one) and N(0, 0.02) weights, the branches'
    last maps N(0, 0.02 / sqrt(2L)): the parameter count of the reference's layout, and its init."""
    H, L = 64, 3
    for cell in ("tanh", "gru", "lstm"):
        plain = RecurrentLM(100, cell=cell, hidden=H, layers=L, norm=True)
        reference = RecurrentLM(100, cell=cell, hidden=H, layers=L, norm=True, reference_block=True)
        extra = 0 if cell == "lstm" else L * (H * H + H)
        assert sum(p.numel() for p in reference.parameters()) == sum(p.numel() for p in plain.parameters()) + extra
        assert reference.embedding.weight.std().item() == pytest.approx(0.02, rel=0.1)
        last = reference.blocks[0].proj if cell != "lstm" else reference.blocks[0].layer.state_proj
        assert last.weight.std().item() == pytest.approx(0.02 / (2 * L) ** 0.5, rel=0.15)
        assert float(last.bias.detach().abs().max()) == 0.0
        loaded = RecurrentLM.from_config(reference.config_dict())
        loaded.load_state_dict(reference.state_dict())  # (the config keeps the block)
        tokens = torch.randint(0, 100, (2, 12))
        reference.eval(), loaded.eval()
        torch.testing.assert_close(loaded(tokens)[0], reference(tokens)[0])
    with pytest.raises(ValueError, match="reference_block=True is the DSF reference's pre-LayerNorm block: it needs norm=True"):
        RecurrentLM(100, norm=False, reference_block=True)


def test_a_state_whose_dsf_feedback_has_another_shape_is_warned_about_when_loaded_by_hand(tmp_path):
    """Warm-starting a dsf:gaussian model from a bptt model's weights replaced its Gaussian A by the bptt model's
    diagonal decays without a word (its rule still said gaussian); a saved file of either shape still loads quietly."""
    import warnings

    from fwdlearn.sequences.nn.language_model import load_language_model

    bptt = RecurrentLM(10, cell="gru", hidden=16, layers=1, training="bptt")
    gaussian = RecurrentLM(10, cell="gru", hidden=16, layers=1, training="dsf:gaussian")
    with pytest.warns(UserWarning, match=r"the state loaded into layer 0's DSF feedback is decays \[S\], this "
                                         r"model's gaussian feedback a matrix \[S, S\]: the model now trains with the "
                                         r"loaded one \(its rule still reads dsf:gaussian\)") as said:
        gaussian.load_state_dict(bptt.state_dict())
    assert {w.filename for w in said} == {__file__}  # (not torch's load_state_dict, which calls the hook)
    assert gaussian.feedback(0).shape == (16,)
    changed = RecurrentLM(10, cell="gru", hidden=16, layers=1, training="dsf")
    changed.set_feedback(0, torch.eye(16) * 0.5)  # a matrix where the kind draws decays: saved and read back
    changed.save(tmp_path / "m.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded, _ = load_language_model(tmp_path / "m.pt")
    assert torch.equal(loaded.feedback(0), changed.feedback(0))


class _Scan(torch.autograd.Function):
    """The reference DSF scan, written out: identity forward, g_t = e_t + A g_(t+1) (column vectors) backward."""

    @staticmethod
    def forward(ctx, states, a):
        ctx.a = a
        return states.clone()

    @staticmethod
    def backward(ctx, e):
        g, later = torch.zeros_like(e), torch.zeros_like(e[:, 0])
        for t in reversed(range(e.shape[1])):
            later = e[:, t] + (later * ctx.a if ctx.a.dim() == 1 else later @ ctx.a.t())
            g[:, t] = later
        return g, None


def _cell_step(layer, u, s):
    """One step of torch's tanh / GRU / LSTM cell written in plain tensor algebra (state [h] or [h, c])."""
    w_ih, w_hh, b_ih, b_hh = layer.weights()
    if layer.cell == "tanh":
        return torch.tanh(u @ w_ih.t() + b_ih + s @ w_hh.t() + b_hh)
    H = w_hh.shape[1]
    if layer.cell == "gru":
        gi, gh = u @ w_ih.t() + b_ih, s @ w_hh.t() + b_hh
        r, z = torch.sigmoid(gi[:, :H] + gh[:, :H]), torch.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = torch.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        return (1 - z) * n + z * s
    h, c = s[:, :H], s[:, H:]
    i, f, g, o = (u @ w_ih.t() + b_ih + h @ w_hh.t() + b_hh).split(H, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], dim=-1)


def _reference_loss(model, x, y, state):
    """The model's loss by a Python loop over time: the previous state detached every step (ft-bptt, dsf) or every
    k steps from the window's start (tbptt:k), DSF's scan on the one-step states; the carried state is detached."""
    rule, h = model.time_rule, model.embedding(x)
    for i, block in enumerate(model.blocks):
        u = block.ln1(h) if block.norm else h
        s, states = state[i], []
        for t in range(x.shape[1]):
            cut = rule.name in ("ft-bptt", "dsf") or rule.name == "tbptt" and t > 0 and t % rule.truncation == 0
            s = _cell_step(block.layer, u[:, t], s.detach() if cut else s)
            states.append(s)
        states = torch.stack(states, dim=1)
        if rule.name == "dsf":
            states = _Scan.apply(states, model.feedback(i))
        out = block.layer.output(states)
        h = h + out if not block.norm else h + out + block.mlp(block.ln2(h + out))
    return lm_loss(model.head(model.final_norm(h)), y)


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
@pytest.mark.parametrize("kernels_on", [True, False])
def test_every_time_rule_gives_the_gradients_of_a_plain_python_loop_over_time(cell, kernels_on):
    """bptt, tbptt:k (k dividing the window or not, k = 1, k >= T), ft-bptt and dsf (each feedback kind) against a
    step-by-step autograd reference in float64, 1 and 2 layers, plain and pre-LN blocks, from a carried state."""
    x, y = _data(vocab=9, batch=3, length=7)
    for rule in ("bptt", "tbptt:1", "tbptt:3", "tbptt:7", "tbptt:10", "ft-bptt", "dsf", "dsf:gaussian",
                 "dsf:orthogonal"):
        for layers, norm in ((1, False), (2, True)):
            torch.manual_seed(0)
            model = RecurrentLM(9, cell=cell, hidden=4, layers=layers, training=rule, norm=norm).double().train()
            state = [torch.randn(3, b.layer.state_size, dtype=torch.float64) for b in model.blocks]
            with kernels.use_kernels(kernels_on):
                loss, carried = model.training_loss(x, y, state)
                got = torch.autograd.grad(loss, list(model.parameters()))
            want = torch.autograd.grad(_reference_loss(model, x, y, state), list(model.parameters()))
            for (name, _), g, w in zip(model.named_parameters(), got, want):
                torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-10, msg=f"{rule} {layers} {name}")
            assert all(not s.requires_grad for s in carried)  # the carried state leaves the window detached


def test_a_tbptt_window_may_be_any_integer_type():
    """TBPTT(np.int64(8)) (a sweep over np.arange) was refused as 'needs a positive window ... got np.int64(8)'."""
    import numpy as np

    from fwdlearn.rules import TBPTT

    for k in (np.int64(8), torch.tensor(8), 8):
        rule = TBPTT(k)
        assert rule == TBPTT(8) and type(rule.truncation) is int and str(rule) == "tbptt:8"
        assert RecurrentLM(5, hidden=4, layers=1, training=rule).config.training == "tbptt:8"
    for bad in (0, -2, 8.0, True, torch.tensor([8])):
        with pytest.raises(ValueError, match=r"needs a positive window, a whole number of steps \(e\.g\. 'tbptt:32'\)"):
            TBPTT(bad)


def test_the_diagnostic_unrolled_rule_is_refused_as_a_training_rule(tmp_path):
    """RecurrentLM(training=UNROLLED) (or set_training(UNROLLED)) trained and saved a model whose rule 'unrolled' no
    spec names: the file and the run's checkpoint could not be loaded again ("unknown rule 'unrolled'")."""
    from dataclasses import dataclass
    from typing import ClassVar

    from fwdlearn.rules import TimeRule

    with pytest.raises(ValueError, match=r"time rule unrolled is not a training rule \(fwdlearn\.rules\.TIME_RULES: "
                                         r"bptt, tbptt, ft-bptt, dsf\).*forward_from_embeddings\(\.\.\., "
                                         r"rule=UNROLLED\) to read state gradients, and train by 'bptt'"):
        RecurrentLM(5, hidden=4, layers=1, training=UNROLLED)
    model = RecurrentLM(5, hidden=4, layers=1)
    with pytest.raises(ValueError, match="time rule unrolled is not a training rule"):
        model.set_training(UNROLLED)
    assert model.config.training == "bptt"

    @dataclass(frozen=True)
    class Mine(TimeRule):
        name: ClassVar[str] = "mine"

    with pytest.raises(ValueError, match=r"register its class first, fwdlearn\.rules\.register_time_rule\(Mine\)"):
        RecurrentLM(5, hidden=4, layers=1, training=Mine())
    x, y = _data(vocab=5, batch=2, length=4)  # (the diagnostics still read it)
    model.forward_from_embeddings(model.embed(x), rule=UNROLLED).sum().backward()


@pytest.mark.parametrize("cell", ["gru", "lstm", "linear"])
def test_a_carried_state_of_another_batch_or_shape_is_refused_with_the_fix(cell):
    """A state carried from a batch of another size failed in torch's RNN ('Expected hidden size (1, 3, 8), got
    [1, 2, 8]'; an LSTM's: 'Input batch size 3 doesn't match hidden0 batch size 2') outside the CPU kernels' path,
    and a linear layer broadcast a [S] state and read an integer one in silence."""
    model = RecurrentLM(7, cell=cell, hidden=8, layers=2, training="dsf")
    x = torch.randint(0, 7, (3, 5))
    S = model.blocks[0].layer.state_size
    _, good = model(x)
    hc = r" \(\[h, c\]\)" if cell == "lstm" else ""
    for state, found in (([torch.zeros(2, S)] * 2, rf"\[2, {S}\] torch.float32"),
                         ([torch.zeros(S)] * 2, rf"\[{S}\] torch.float32"),
                         ([good[0], torch.zeros(3, S, dtype=torch.long)], rf"\[3, {S}\] torch.int64"),
                         ([good[0], "zeros"], "str")):
        for grad in (True, False):
            with torch.set_grad_enabled(grad), pytest.raises(ValueError, match=(
                    rf"state\[{0 if state[0] is not good[0] else 1}\] must be layer \d's state for these 3 streams, a "
                    rf"floating-point \[batch, {S}\] = \[3, {S}\]{hc} tensor; got {found}: pass the state this model "
                    r"returned for a batch of 3 \(the same streams\), or None to start from zeros")):
                model(x, state)
    model.eval()
    with torch.no_grad():
        model(x, good)  # the state it returned goes on
