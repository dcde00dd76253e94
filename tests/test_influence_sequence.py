"""lag_influence: exact kernel mass for a causal convolution, causality of a GRU."""

import re
import warnings

import pytest
import torch

from fwdlearn.errors import UsageError
from fwdlearn.sequences import lag_influence
from fwdlearn.sequences.influence import lag_masses


class CausalConv(torch.nn.Module):
    """y_t = sum_k W_k x_{t-k} (left-padded Conv1d), linear so its Jacobian is the kernel."""

    def __init__(self, features: int, channels: int, width: int) -> None:
        super().__init__()
        self.width = width
        self.conv = torch.nn.Conv1d(features, channels, width, bias=False)

    def forward(self, x):
        h = torch.nn.functional.pad(x.transpose(1, 2), (self.width - 1, 0))
        return self.conv(h).transpose(1, 2)


class TinyGRU(torch.nn.Module):
    def __init__(self, vocab: int = 7, features: int = 4, hidden: int = 6) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, features)
        self.gru = torch.nn.GRU(features, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, vocab)

    def embed(self, tokens):
        return self.embedding(tokens)

    def forward_from_embeddings(self, emb):
        return self.head(self.gru(emb)[0])


def test_causal_convolution_mass_per_lag_is_the_kernel_mass():
    torch.manual_seed(0)
    model = CausalConv(features=3, channels=2, width=4)
    x = torch.randn(2, 12, 3)
    positions = [5, 8, 11]  # every lag 0..3 is inside the sequence
    curve, R, per_position = lag_influence(model, x, max_lag=6, positions=positions, normalize=False, chunk=2)
    kernel = model.conv.weight.detach().abs().sum(dim=(0, 1))  # [width], index w multiplies x_{t-(width-1-w)}
    expected = torch.zeros(7)
    expected[:4] = kernel.flip(0)
    assert per_position.shape == (6, 7)
    assert torch.allclose(per_position, expected.expand(6, 7), atol=1e-6)
    assert torch.allclose(curve, expected, atol=1e-6)
    assert R == pytest.approx(float((expected * torch.arange(7)).sum() / expected.sum()), rel=1e-6)


def test_gru_has_no_influence_from_the_future_and_embeds_tokens():
    torch.manual_seed(1)
    model = TinyGRU()
    tokens = torch.randint(0, 7, (3, 10))
    mass, lag = lag_masses(model, tokens)
    assert mass.shape == (30, 10)
    assert float(mass[lag < 0].abs().max()) == 0.0
    assert bool((mass[lag >= 0] > 0).all())
    curve, R, _ = lag_influence(model, tokens, max_lag=9, positions=4, seed=2)
    assert curve[0] == 1.0 and 0 < R < 9
    assert model.training


def test_bad_inputs_fail_with_clear_messages():
    model = CausalConv(3, 2, 2)
    with pytest.raises(TypeError, match="integer token inputs need a model with embed"):
        lag_influence(model, torch.zeros(2, 5, dtype=torch.long), 3)
    with pytest.raises(ValueError, match=r"positions must lie in \[0, 4\] \(5 positions\)"):
        lag_influence(model, torch.zeros(2, 5, 3), 3, positions=[5])
    with pytest.raises(TypeError, match="positions must hold integer position ids or be a boolean mask; got torch.float32"):
        lag_influence(model, torch.zeros(2, 5, 3), 3, positions=[2.7])
    with pytest.raises(ValueError, match=r"a boolean positions mask must have one entry per position, shape \[5\]"):
        lag_influence(model, torch.zeros(2, 5, 3), 3, positions=[True, False])
    with pytest.raises(ValueError, match="inputs must be \\[batch >= 1, time >= 1, features\\]"):
        lag_influence(model, torch.zeros(5, 3), 3)
    with pytest.raises(ValueError, match=r"inputs must be .* got shape \(0, 5, 3\)"):
        lag_influence(model, torch.zeros(0, 5, 3), 3)  # (the message was about "totals")
    nan = torch.zeros(2, 5, 3)
    nan[0, 2, 1] = float("nan")
    with pytest.raises(UsageError, match="the input tensor holds 1 NaN or infinite entries"):
        lag_influence(model, nan, 3)  # ("every seed has zero total influence" before)
    with pytest.raises(ValueError, match=r"chunk must be an int >= 1 \(positions measured together\), got 2.5"):
        lag_influence(model, torch.zeros(2, 5, 3), 3, chunk=2.5)
    with pytest.raises(ValueError, match="positions must be a 1-D list of position ids"):
        lag_influence(model, torch.zeros(2, 5, 3), 3, positions=[[1, 2]])  # was flattened


def test_positions_by_mask_or_count_and_lag_masses_measures_the_plain_forward():
    import numpy as np

    from fwdlearn.sequences.nn.transformer import TransformerLM

    torch.manual_seed(0)
    tokens = torch.randint(0, 11, (1, 6))
    model = TransformerLM(11, hidden=8, layers=2, heads=2, context=8, training="dfa")  # built in train mode
    mask = torch.tensor([True, False, True, False, False, True])
    by_mask, lag = lag_masses(model, tokens, positions=mask)
    by_ids, _ = lag_masses(model, tokens, positions=[0, 2, 5])
    assert torch.equal(by_mask, by_ids) and lag[:, 0].tolist() == [0, 2, 5]
    for count in (np.int64(3), torch.tensor(3), 3):  # an integer scalar is a count, whatever its type
        assert lag_masses(model, tokens, positions=count, seed=1)[0].shape == (3, 6)
    assert model.training  # restored
    model.eval()
    torch.testing.assert_close(lag_masses(model, tokens, positions=[5])[0], by_ids[2:])  # eval() == what it measured
    model.train()
    model.blocks[0].eval()  # a submodule's own mode comes back as it was
    lag_influence(model, tokens, 3)
    assert model.training and not model.blocks[0].training


def test_lag_influence_names_bad_lags_and_empty_positions():
    from fwdlearn.sequences import RecurrentLM, lag_influence

    model = RecurrentLM(5, cell="gru", hidden=4, layers=1)
    tokens = torch.randint(0, 5, (1, 6))
    with pytest.raises(ValueError, match="max_lag must be an int >= 0, got 2.5"):
        lag_influence(model, tokens, max_lag=2.5)
    with pytest.raises(ValueError, match="positions is empty; give at least one position"):
        lag_influence(model, tokens, max_lag=2, positions=[])


def test_a_bfloat16_model_s_influence_is_summed_in_float32():
    """The Jacobian masses were summed over the channels in bfloat16, which stalls once the total dwarfs each term: a
    conv LM of 2000 tokens read a lag-0 mass of 512 for 1989 and R 0.50 for 0.41."""
    from fwdlearn.sequences import CausalConvLM

    torch.manual_seed(0)
    model = CausalConvLM(2000, hidden=4, layers=1, width=3).double()
    tokens = torch.randint(0, 2000, (1, 4))
    _, exact_R, exact = lag_influence(model, tokens, max_lag=3, positions=[3])
    _, R, low = lag_influence(model.to(torch.bfloat16), tokens, max_lag=3, positions=[3])
    assert low.dtype == torch.float32
    torch.testing.assert_close(low.double(), exact, rtol=0.01, atol=1e-3)  # (bfloat16's Jacobians: ~0.4 % each)
    assert R == pytest.approx(exact_R, rel=0.01)


def test_a_model_that_mixes_the_sequences_of_a_batch_is_refused():
    """Every position is measured on its own copy of the sequence, one batch row each: PyTorch's nn.GRU without
    batch_first=True read the copies as time steps, and gave R 0.35 for 1.09 with mass at future lags, in silence."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(4, 6)  # PyTorch's default layout: [time, batch, features]
    x = torch.randn(2, 12, 4)
    with pytest.raises(ValueError, match=r"the model mixes the sequences of a batch .* batch_first=True"):
        lag_influence(gru, x, max_lag=6, positions=[3, 7, 11])
    gru.batch_first = True  # the same weights reading [batch, time, features]: measured, and causal
    mass, lag = lag_masses(gru, x, positions=[3, 7, 11])
    assert float(mass[lag < 0].abs().max()) == 0.0 and bool((mass[lag >= 0] > 0).all())


def test_a_chaotic_but_batch_first_model_is_measured_not_refused():
    """The batch-mixing check compared a batch of one with a batch of two: their kernels round differently, and a
    tanh RNN of recurrent gain 4 (batch_first, its sequences apart) grew that rounding to 2.0 over 128 steps, past
    the 1 % tolerance: a legitimate model was refused as one that mixes its sequences."""
    torch.manual_seed(1)
    rnn = torch.nn.RNN(16, 64, batch_first=True)
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(4)
    model = lambda emb: rnn(emb)[0]  # noqa: E731
    x = torch.randn(2, 128, 16)
    mass, lag = lag_masses(model, x, positions=[40, 127])
    assert float(mass[lag < 0].abs().max()) == 0.0 and bool((mass[lag == 0] > 0).all())


def test_a_random_model_is_refused_not_named_one_that_mixes_its_sequences():
    """F.dropout(x, p) keeps training=True in eval mode: a batch_first GRU behind it was refused as a model that mixes
    the sequences of a batch (built without batch_first=True), the wrong problem and the wrong fix."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(4, 6, batch_first=True)
    model = lambda emb: torch.nn.functional.dropout(gru(emb)[0], 0.3)  # noqa: E731
    with pytest.raises(ValueError, match=r"the model gave other outputs when called again on the same input: it is "
                                         r"random .* training=self.training"):
        lag_influence(model, torch.randn(2, 8, 4), max_lag=4)


def test_a_random_or_sequence_mixing_model_with_small_outputs_is_refused_too():
    """Both checks allowed 1 % of (1 + the outputs' scale), at least 0.01: a GRU of outputs scaled to 1e-3 behind
    F.dropout, or read without batch_first=True, was measured in silence. The tolerance is 1 % of the outputs' own
    scale."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(4, 6, batch_first=True)
    random_model = lambda emb: 1e-3 * torch.nn.functional.dropout(gru(emb)[0], 0.3)  # noqa: E731
    with pytest.raises(ValueError, match=r"the model gave other outputs when called again on the same input"):
        lag_influence(random_model, torch.randn(2, 8, 4), max_lag=4)
    mixing = torch.nn.GRU(4, 6)  # [time, batch, features]: the copies read as time steps
    with pytest.raises(ValueError, match=r"the model mixes the sequences of a batch"):
        lag_influence(lambda emb: 1e-3 * mixing(emb)[0], torch.randn(2, 12, 4), max_lag=6, positions=[3, 7, 11])
    small = lambda emb: 1e-3 * gru(emb)[0]  # noqa: E731  (deterministic, sequences apart: measured)
    torch.testing.assert_close(lag_influence(small, torch.randn(2, 8, 4, generator=torch.Generator().manual_seed(1)),
                                             max_lag=4)[0],
                               lag_influence(lambda emb: gru(emb)[0],
                                             torch.randn(2, 8, 4, generator=torch.Generator().manual_seed(1)),
                                             max_lag=4)[0])


class TinyTransformer(torch.nn.Module):
    def __init__(self, causal: bool, features: int = 8, length: int = 10) -> None:
        super().__init__()
        self.causal = causal
        self.position = torch.nn.Parameter(torch.randn(length, features))
        layer = torch.nn.TransformerEncoderLayer(features, 2, 16, dropout=0.1, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = torch.nn.Linear(features, 5)

    def forward(self, x):
        T = x.shape[1]
        mask = torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=x.dtype) if self.causal else None
        return self.head(self.encoder(x + self.position[:T], mask=mask, is_causal=self.causal))


def test_a_model_that_reads_the_future_is_named_and_causal_ones_are_measured_exactly():
    """A transformer without its causal mask had a sixth of its Jacobian mass at future inputs (negative lags), which
    lag_influence leaves out: R 0.43 read as a one-sided range, in silence. The causal one equals autograd's Jacobian
    per lag (float64), and is not warned about."""
    torch.manual_seed(0)
    x = torch.randn(2, 10, 8, dtype=torch.float64)
    for causal in (True, False):
        model = TinyTransformer(causal).double()
        reference = []
        for b in range(2):
            jac = torch.autograd.functional.jacobian(lambda e: model.eval()(e[None])[0], x[b])  # [T, C, T, E]
            per_pair = jac.abs().sum(dim=(1, 3))  # [t, tau]
            reference += [torch.stack([per_pair[t, t - k] if k <= t else per_pair.new_zeros(()) for k in range(5)])
                          for t in range(10)]
        model.train()
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            _, R, totals = lag_influence(model, x, max_lag=4)
        torch.testing.assert_close(totals, torch.stack(reference), rtol=1e-6, atol=0)
        future = [str(w.message) for w in said if "not causal" in str(w.message)]
        if causal:
            assert not future and model.training
        else:
            assert len(future) == 1 and re.search(r"the model is not causal: \d+\.\d% of the Jacobian mass is at "
                                                   r"negative lags .* fwdlearn\.sequences\.influence\.lag_masses",
                                                   future[0])


def test_the_future_mass_warning_names_lag_masses_where_it_can_be_imported():
    """The warning's fix was "lag_masses(model, inputs) returns every lag", a name fwdlearn.sequences does not export
    (``from fwdlearn.sequences import lag_masses`` fails): it now gives the module it is imported from."""
    import importlib

    torch.manual_seed(0)
    gru = torch.nn.GRU(4, 4, batch_first=True, bidirectional=True)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        lag_influence(lambda emb: gru(emb)[0], torch.randn(1, 6, 4), max_lag=2)
    future = [str(w.message) for w in said if "not causal" in str(w.message)]
    assert len(future) == 1
    named = re.search(r"(fwdlearn(?:\.\w+)+)\.lag_masses\(model, inputs\) returns every lag", future[0])
    assert named, future[0]
    assert getattr(importlib.import_module(named.group(1)), "lag_masses") is lag_masses


class _CountBackward(torch.autograd.Function):
    """Identity whose backward counts its calls (one per vector-Jacobian product through the model)."""

    calls = 0

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        _CountBackward.calls += 1
        return grad


class WideHeadGRU(TinyGRU):
    """A language model whose head reads 6 features into 500 tokens, and which counts its backward passes."""

    def __init__(self) -> None:
        super().__init__(vocab=500, features=4, hidden=6)

    def forward_from_embeddings(self, emb):
        return self.head(self.gru(_CountBackward.apply(emb))[0])


def test_a_head_over_a_large_vocabulary_is_read_out_from_its_inputs_jacobian():
    """Every token of the vocabulary took its own backward pass: a word-level GRU of 6,207 words measured 530 s a
    model (its bar at 0/1) where its head's 64 inputs take 64 passes; the masses are the same to float rounding."""
    from fwdlearn.diagnostics.influence import jacobian_l1

    torch.manual_seed(0)
    model = WideHeadGRU()
    tokens = torch.randint(0, 500, (2, 9))
    _CountBackward.calls = 0
    mass, lag = lag_masses(model, tokens, positions=[2, 5, 8])
    assert _CountBackward.calls <= 6  # (one per head input, not one per token of the vocabulary)
    x = model.embed(tokens).detach().repeat_interleave(3, dim=0)
    rows, times = torch.arange(6), torch.tensor([2, 5, 8]).repeat(2)
    with torch.no_grad():
        plain = jacobian_l1(lambda e: model.forward_from_embeddings(e)[rows, times], x)  # one pass per token
    torch.testing.assert_close(mass, plain, rtol=1e-5, atol=1e-7)
    assert float(mass[lag < 0].abs().max()) == 0.0


def test_the_head_s_jacobian_is_held_for_few_positions_at_once_or_not_at_all(monkeypatch):
    """The head path holds the head inputs' Jacobian (6 x 2 sequences x 9 steps x 4 features a position): a budget of
    one position measures one at a time; a smaller one measures one token of the vocabulary at a time, as before."""
    import fwdlearn.sequences.influence as influence

    torch.manual_seed(0)
    model, tokens = WideHeadGRU(), torch.randint(0, 500, (2, 9))
    expected, _ = lag_masses(model, tokens, positions=[2, 5, 8])
    for budget, passes in ((6 * 2 * 9 * 4, 3 * 6), (6 * 2 * 9 * 4 - 1, 500)):
        monkeypatch.setattr(influence, "HEAD_JACOBIAN_ELEMENTS", budget)
        _CountBackward.calls = 0
        mass, _ = lag_masses(model, tokens, positions=[2, 5, 8])
        assert _CountBackward.calls == passes
        torch.testing.assert_close(mass, expected, rtol=1e-5, atol=1e-7)


class _SoftCappedHead(torch.nn.Linear):
    """A head with logit soft-capping, ``c * tanh(y / c)``: an ``nn.Linear`` whose output is not ``W`` times its
    input."""

    def forward(self, x):
        return 2.0 * torch.tanh(super().forward(x) / 2.0)


@pytest.mark.parametrize("change", ["subclass", "hook", "in-place"])
def test_a_head_whose_output_is_not_its_linear_map_is_measured_token_by_token(change):
    """The head path read every ``nn.Linear`` head as ``W`` times its input's Jacobian: a soft-capped head (an
    ``nn.Linear`` subclass), a forward hook doubling its output or an in-place edit of the logits after it were
    measured 9-67 % off, in silence. Each is now measured one token at a time: the plain masses."""
    from fwdlearn.diagnostics.influence import jacobian_l1

    torch.manual_seed(0)
    model = WideHeadGRU()
    if change == "subclass":
        capped = _SoftCappedHead(6, 500)
        capped.load_state_dict(model.head.state_dict())
        model.head = capped
    elif change == "hook":
        model.head.register_forward_hook(lambda module, args, output: output * 2)
    else:
        forward = model.forward_from_embeddings

        def masked(emb):
            logits = forward(emb)
            logits[..., 0] = -1e9  # (a token never predicted, masked in place)
            return logits
        model.forward_from_embeddings = masked
    tokens = torch.randint(0, 500, (2, 9))
    mass, _ = lag_masses(model, tokens, positions=[8])
    x = model.embed(tokens).detach().clone()
    rows, times = torch.arange(2), torch.tensor([8, 8])
    with torch.no_grad():
        plain = jacobian_l1(lambda e: model.forward_from_embeddings(e)[rows, times], x)  # one pass per token
    torch.testing.assert_close(mass, plain, rtol=1e-5, atol=1e-7)


def test_jacobian_l1_s_readout_is_the_mass_of_the_read_out_outputs():
    from fwdlearn.diagnostics.influence import jacobian_l1

    torch.manual_seed(0)
    inner, weight = torch.nn.Linear(3, 5), torch.randn(40, 5)
    x = torch.randn(4, 7, 3)
    f = lambda v: inner(v).tanh().sum(dim=1)  # noqa: E731 - [4, 5] features, row s reads x[s] only
    torch.testing.assert_close(jacobian_l1(f, x, readout=weight), jacobian_l1(lambda v: f(v) @ weight.T, x))
    with pytest.raises(ValueError, match=r"readout must be a weight \[outputs, 5\]"):
        jacobian_l1(f, x, readout=torch.randn(40, 4))


def test_the_influence_bar_counts_the_positions(capsys):
    """The bar counted the chunks of positions (1/1 for 64 positions at chunk 64): it counts the positions now."""
    torch.manual_seed(0)
    lag_influence(CausalConv(features=3, channels=2, width=4), torch.randn(2, 12, 3), max_lag=3, positions=7, chunk=2,
                  quiet=False)
    last = capsys.readouterr().err.rstrip("\n").split("\r")[-1]  # (stderr is no terminal: the bar's last state stays)
    assert "100%" in last and " 7/7 [" in last and "position/s" in last, last


class _PaddedGRU(TinyGRU):
    """A language model without biases whose padding token (0) embeds as zeros: an all-padding sequence gives its head
    zero inputs, so zero logits, where a soft cap is the identity."""

    def __init__(self, head: torch.nn.Linear) -> None:
        super().__init__(vocab=500, features=4, hidden=6)
        self.embedding = torch.nn.Embedding(500, 4, padding_idx=0)
        self.gru = torch.nn.GRU(4, 6, batch_first=True, bias=False)
        self.head = head


def test_the_head_check_reads_every_sequence_and_a_half_precision_head_bit_for_bit():
    """The head was checked on the first sequence alone: one all padding (zero logits, where a soft cap is the
    identity) let a soft-capped head through, the other sequences' masses 17 % off; and bfloat16's margin (16 of its
    eps, 12 % of the largest logit) let one through too, 3 % off. A plain head in half precision keeps the head
    path (its output is F.linear's bit for bit)."""
    from fwdlearn.diagnostics.influence import jacobian_l1
    from fwdlearn.sequences.influence import _embedding_function, _linear_head

    class Capped(torch.nn.Linear):
        def forward(self, x):
            return 2.0 * torch.tanh(super().forward(x) / 2.0)

    for dtype, scale, first in ((torch.float32, 5.0, 0), (torch.bfloat16, 2.0, None)):
        torch.manual_seed(0)
        model = _PaddedGRU(Capped(6, 500, bias=False))
        with torch.no_grad():
            model.head.weight.mul_(scale)  # (logits up to ~1-2: the cap bends them)
        model = model.to(dtype)
        tokens = torch.randint(1, 500, (3, 9))
        if first is not None:
            tokens[0] = first  # all padding
        mass, _ = lag_masses(model, tokens, positions=[8])
        x = model.embed(tokens).detach()
        rows, times = torch.arange(3), torch.tensor([8, 8, 8])
        with torch.no_grad():
            plain = jacobian_l1(lambda e: model.forward_from_embeddings(e)[rows, times], x)  # one pass per token
        torch.testing.assert_close(mass.float(), plain.float(), rtol=1e-5, atol=1e-7)
    for dtype in (torch.bfloat16, torch.float16, torch.float32):  # a plain head keeps the head path
        torch.manual_seed(0)
        model = _PaddedGRU(torch.nn.Linear(6, 500)).to(dtype)
        forward, x = _embedding_function(model, torch.randint(0, 500, (3, 9)))
        assert _linear_head(model, forward, x) is model.head


def test_drawn_positions_come_back_in_position_order():
    """A count of positions is drawn with ``seed`` and measured in increasing position order (the rows of
    ``lag_masses`` / ``per_position`` follow it within each sequence), as a list of ids keeps its own order."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    x = torch.randn(2, 30, 3)
    mass, lag = lag_masses(model, x, positions=6, seed=1, chunk=4)
    position = lag[:, 0]  # lag at input 0 is the position itself
    assert mass.shape == (12, 30)
    assert torch.equal(position[:6], position[6:]) and bool((position[1:6] > position[:5]).all())
    assert lag_masses(model, x, positions=[9, 2])[1][:, 0].tolist() == [9, 2, 9, 2]


def test_outputs_other_than_batch_time_channels_are_refused_with_the_wrapper_that_measures_them():
    # (a dict of outputs failed with "'dict' object has no attribute 'dim'"; outputs [batch, time] were named by the
    # batch of copies' shape, (12, 6) for 2 sequences, without a fix)
    class Outputs(torch.nn.Module):
        def __init__(self, kind: str) -> None:
            super().__init__()
            self.kind, self.conv = kind, CausalConv(3, 2, 2)

        def forward(self, x):
            y = self.conv(x)
            return {"logits": y, "state": y[:, -1]} if self.kind == "dict" else y[..., 0]

    x = torch.randn(2, 6, 3)
    with pytest.raises(ValueError, match=r"returned a dict with keys \['logits', 'state'\].*model\(x\)\['logits'\]"):
        lag_influence(Outputs("dict"), x, 2)
    with pytest.raises(ValueError, match=r"on 12 sequences of 6 positions .* returned \(12, 6\).*unsqueeze\(-1\)"):
        lag_influence(Outputs("2-D"), x, 2)
    model = Outputs("dict").eval()  # the wrapper the message names measures it
    _, _, totals = lag_influence(lambda e: model(e)["logits"], x, 2)
    assert torch.allclose(totals, lag_influence(model.conv, x, 2)[2])
