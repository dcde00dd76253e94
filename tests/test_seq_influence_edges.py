"""lag_masses / lag_influence against autograd's Jacobian, and the edges of their checks (mutation round 24)."""

import pytest
import torch

from fwdlearn.sequences import lag_influence
from fwdlearn.sequences.influence import lag_masses
from test_influence_sequence import _CountBackward  # (counts the backward passes through a model)


class _GRULM(torch.nn.Module):
    """A batch_first GRU with a linear head of ``vocab`` outputs (``vocab > hidden``: the head path)."""

    def __init__(self, features: int = 3, hidden: int = 4, vocab: int = 9) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(features, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, x):
        return self.head(self.gru(x)[0])


def _brute_force(f, x):
    """``per[b, t, tau] = sum_{c, e} |d y[b, t, c] / d x[b, tau, e]|`` from autograd's whole Jacobian."""
    jac = torch.autograd.functional.jacobian(f, x)  # [B, T, C, B, T, E]
    batch = x.shape[0]
    cross = [jac[b, :, :, a].abs().sum() for b in range(batch) for a in range(batch) if a != b]
    assert all(float(c) == 0 for c in cross)  # (the sequences are apart)
    return torch.stack([jac[b, :, :, b].abs().sum(dim=(1, 3)) for b in range(batch)])  # [B, T, T]


@pytest.mark.parametrize("path", ["head", "plain"])
def test_lag_masses_are_autograd_s_jacobian_row_by_row_in_every_chunk(path):
    """Rows are sequence-major (``b * P + j`` for position ``positions[j]``), ``lag = t - tau``, chunks of 2 + 2 + 1
    positions give the Jacobian's masses, and ``R`` is the rows' mean lag weighted by them; on the head path (``head``
    over more outputs than inputs) and without it."""
    from fwdlearn.sequences.influence import _linear_head

    torch.manual_seed(0)
    model = _GRULM().double().eval()
    f = model if path == "head" else (lambda e: model(e))  # (a lambda has no head: one pass per output)
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    assert _linear_head(f, f, x) is (model.head if path == "head" else None)
    positions = [5, 0, 3, 4, 2]
    per = _brute_force(lambda e: model(e), x)
    mass, lag = lag_masses(f, x, positions=positions, chunk=2)
    expected = torch.stack([per[b, t] for b in range(3) for t in positions])
    torch.testing.assert_close(mass, expected, rtol=1e-10, atol=1e-12)
    assert torch.equal(lag, torch.tensor([[t - tau for tau in range(6)] for _ in range(3) for t in positions]))
    _, R, totals = lag_influence(f, x, max_lag=2, positions=positions, normalize=False, chunk=2)
    binned = torch.stack([torch.stack([per[b, t, t - k] if k <= t else per.new_zeros(()) for k in range(3)])
                          for b in range(3) for t in positions])
    torch.testing.assert_close(totals, binned, rtol=1e-10, atol=1e-12)
    assert R == pytest.approx(float(((binned * torch.arange(3)).sum(1) / binned.sum(1)).mean()), rel=1e-10)


def test_inputs_without_positions_and_counts_below_one_or_bools_are_refused_by_name():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"inputs must be \[batch >= 1, time >= 1, features\] .* "
                                         r"got shape \(2, 0, 3\)"):
        lag_influence(model, torch.zeros(2, 0, 3), 2)
    x = torch.randn(2, 5, 3)
    for count in (0, -2, torch.tensor(0)):
        with pytest.raises(ValueError, match=rf"positions must be >= 1 when given as a count, got {int(count)}$"):
            lag_masses(model, x, positions=count)
    for flag in (True, False):  # (a bool is an int to Python: not a count of one)
        with pytest.raises(TypeError, match=r"positions must be None, a count, position ids or a boolean mask; "
                                            r"got a bool"):
            lag_masses(model, x, positions=flag)
    assert lag_masses(model, x, positions=1)[0].shape == (2, 5)


@pytest.mark.parametrize("change", ["4-D", "shorter"])
def test_outputs_of_another_rank_or_length_are_refused_not_measured(change):
    """Outputs ``[batch, time, channels, k]`` (not read as channels) and outputs one position short (not read at the
    wrong positions) are refused, naming the shape the model returned."""
    conv = torch.nn.Conv1d(3, 2, 1)
    model = (lambda e: conv(e.transpose(1, 2)).transpose(1, 2)[..., None]) if change == "4-D" else \
        (lambda e: conv(e.transpose(1, 2)).transpose(1, 2)[:, 1:])
    shape = r"\(4, 6, 2, 1\)" if change == "4-D" else r"\(4, 5, 2\)"
    with pytest.raises(ValueError, match=rf"called on 4 sequences of 6 positions .* it returned {shape}"):
        lag_masses(model, torch.randn(2, 6, 3), positions=[1, 3])


def test_a_model_mixing_its_sequences_through_the_batch_maximum_is_refused_at_any_input_scale():
    """The other sequence put before the first is drawn at the inputs' scale (1 + their mean magnitude): a standard
    normal one would never reach the batch maximum of inputs near 50, and a model adding it would pass."""
    x = 50 + torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(0))
    model = lambda e: e + e.amax(dim=0, keepdim=True)  # noqa: E731  (every sequence reads the others)
    with pytest.raises(ValueError, match=r"the model mixes the sequences of a batch"):
        lag_influence(model, x, 2)
    _, _, totals = lag_influence(lambda e: 2 * e, x, 2)  # (the same shapes, its sequences apart: measured)
    assert torch.equal(totals, torch.tensor([[6.0, 0.0, 0.0]]).expand(12, 3))


def test_a_count_draws_seed_s_positions_and_a_0_d_bool_tensor_is_a_mask_not_a_count():
    """A count ``k`` measures ``randperm(T)[:k]`` of a CPU generator seeded with ``seed``, sorted, at most ``T`` of
    them; a 0-d boolean tensor is a (mis-shaped) mask, not the count 1 that ``int(tensor(True))`` gives."""
    model = torch.nn.Linear(3, 2)
    x = torch.randn(2, 9, 3)
    for seed in (0, 1, 5):
        drawn = torch.randperm(9, generator=torch.Generator().manual_seed(seed))[:4].sort().values
        _, lag = lag_masses(model, x, positions=4, seed=seed)
        assert lag[:, 0].tolist() == drawn.tolist() * 2
    assert lag_masses(model, x, positions=40)[1][:, 0].tolist() == list(range(9)) * 2  # (at most T)
    with pytest.raises(ValueError, match=r"a boolean positions mask must have one entry per position, shape \[9\]"):
        lag_masses(model, x, positions=torch.tensor(True))


def test_a_count_on_the_meta_device_is_named_as_ids_on_it_are():
    """A 0-d count tensor on the meta device failed in torch's ``int()``: "Tensor.item() cannot be called on meta
    tensors", where ids on it are refused naming the positions."""
    model, x = torch.nn.Linear(3, 2), torch.randn(2, 9, 3)
    for given, shape in ((torch.tensor(3, device="meta"), ""), (torch.tensor([1, 2], device="meta"), "2")):
        with pytest.raises(ValueError, match=rf"positions is on the meta device \(shape \[{shape}\]\): a shape without "
                                             r"values, and its values choose the positions"):
            lag_masses(model, x, positions=given)


def test_a_compiled_model_is_measured_through_the_module_it_wraps_without_compiling():
    """``torch.compile``'s module refuses the retained graph of the measure's backward passes: the module it wraps is
    measured instead (the same function), and nothing is compiled (the backend here would fail if it were called)."""
    def refuse(graph, example_inputs):
        raise AssertionError("compiled")

    class Conv(torch.nn.Module):  # (y_t reads x_t and x_{t-1}; traced whole by torch.compile)
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv1d(3, 4, 2)

        def forward(self, x):
            return torch.tanh(self.conv(torch.nn.functional.pad(x.transpose(1, 2), (1, 0)))).transpose(1, 2)

    torch.manual_seed(0)
    model = Conv()
    x = torch.randn(2, 5, 3)
    mass, lag = lag_masses(torch.compile(model, backend=refuse), x, positions=[1, 4])
    expected, expected_lag = lag_masses(model, x, positions=[1, 4])
    assert torch.equal(mass, expected) and torch.equal(lag, expected_lag)


class _WideHead(_GRULM):
    """A GRU of 6 features read by a head of 200 outputs, counting its backward passes."""

    def __init__(self) -> None:
        super().__init__(features=3, hidden=6, vocab=200)

    def forward(self, x):
        return self.head(self.gru(_CountBackward.apply(x))[0])


def test_the_head_path_keeps_the_chunk_it_is_given():
    """``chunk`` bounds the positions measured together on the head path too (one backward pass per head input and
    chunk): the head's budget only lowers it."""
    torch.manual_seed(0)
    model, x = _WideHead(), torch.randn(2, 9, 3)
    expected, _ = lag_masses(model, x, positions=[2, 5, 8])
    for chunk, passes in ((1, 3 * 6), (2, 2 * 6), (64, 6)):
        _CountBackward.calls = 0
        mass, _ = lag_masses(model, x, positions=[2, 5, 8], chunk=chunk)
        assert _CountBackward.calls == passes, chunk
        torch.testing.assert_close(mass, expected, rtol=1e-5, atol=1e-7)


def test_a_head_output_scaled_by_one_part_in_ten_thousand_is_measured_token_by_token():
    """The head path is taken when the output is ``F.linear`` of the head's input to 16 float32 epsilons of the
    largest output: a forward hook scaling the logits by ``1 + 1e-4`` (far above that, far below 1 %) is measured
    one token at a time, its masses ``1 + 1e-4`` times the plain head's."""
    from fwdlearn.diagnostics.influence import jacobian_l1

    torch.manual_seed(0)
    model, x = _WideHead(), torch.randn(2, 9, 3)
    plain, _ = lag_masses(model, x, positions=[8])
    model.head.register_forward_hook(lambda module, args, output: output * (1 + 1e-4))
    _CountBackward.calls = 0
    mass, _ = lag_masses(model, x, positions=[8])
    assert _CountBackward.calls == 200  # (one per output: not the head path's 6)
    rows, times = torch.arange(2), torch.tensor([8, 8])
    with torch.no_grad():
        exact = jacobian_l1(lambda e: model(e)[rows, times], x.clone())
    torch.testing.assert_close(mass, exact, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(mass, plain * (1 + 1e-4), rtol=1e-6, atol=1e-9)


def test_inference_mode_is_refused_by_name_before_the_model_is_called_and_no_grad_is_measured():
    """Refused before any call of the model (a custom autograd Function in it failed first, naming itself)."""
    torch.manual_seed(0)
    model, x = _WideHead(), torch.randn(2, 5, 3)
    expected, _ = lag_masses(model, x, positions=[4])
    calls = []
    model.register_forward_hook(lambda module, args, output: calls.append(1))
    with torch.inference_mode():
        with pytest.raises(ValueError, match=r"influence takes input gradients, which torch.inference_mode\(\) does "
                                             r"not allow: measure it outside that block"):
            lag_masses(model, x, positions=[4])
    assert calls == []
    with torch.no_grad():
        assert torch.equal(lag_masses(model, x, positions=[4])[0], expected)


def test_tokens_need_both_embed_and_forward_from_embeddings():
    """A model with ``embed`` but no ``forward_from_embeddings`` is refused tokens (its ``forward`` is not known to
    take embeddings), naming both methods; its embeddings are measured."""
    class TokensOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding, self.conv = torch.nn.Embedding(7, 3), torch.nn.Conv1d(3, 2, 1)

        def embed(self, tokens):
            return self.embedding(tokens)

        def forward(self, x):  # (tokens, or the embeddings it is given: the same outputs either way)
            emb = self.embed(x) if not x.is_floating_point() else x
            return self.conv(emb.transpose(1, 2)).transpose(1, 2)

    model = TokensOnly()
    tokens = torch.randint(0, 7, (2, 5))
    with pytest.raises(TypeError, match=r"integer token inputs need a model with embed\(tokens\) and "
                                        r"forward_from_embeddings\(emb\); otherwise pass float embeddings"):
        lag_masses(model, tokens)
    assert lag_masses(model, model.embed(tokens).detach())[0].shape == (10, 5)


@pytest.mark.parametrize("share, warned", [(1e-6, False), (1e-4, True)])
def test_future_mass_below_64_float_epsilons_of_the_whole_is_rounding_not_warned(share, warned):
    """Mass at negative lags warns when above 64 float epsilons of the total (``DEAD_SEED``): ``y_t = x_t + c x_{t+1}``
    in float32 reads a future share of about ``c`` (1e-6 is below 64 * 1.2e-7, 1e-4 above)."""
    import warnings

    def model(e):
        return e + share * torch.nn.functional.pad(e[:, 1:], (0, 0, 0, 1))

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        lag_influence(model, torch.randn(1, 8, 3), 2)
    future = [str(w.message) for w in said if "the model is not causal" in str(w.message)]
    assert len(future) == int(warned)


def test_lag_influence_draws_with_seed_0_by_default_and_checks_normalize_before_measuring():
    calls = []

    def model(e):
        calls.append(e.shape[0])
        return torch.cumsum(e, dim=1)  # (position t reads every input up to t: its row shows t)

    x = torch.randn(1, 30, 2)
    drawn = lag_influence(model, x, 29, positions=3)[2]
    assert torch.equal(drawn, lag_influence(model, x, 29, positions=3, seed=0)[2])
    assert not torch.equal(drawn, lag_influence(model, x, 29, positions=3, seed=1)[2])
    calls.clear()
    with pytest.raises(ValueError, match=r"normalize must be True or False, got 'no'"):
        lag_influence(model, x, 29, normalize="no")
    assert calls == []  # (refused before the model's first call, not after measuring every position)


def test_a_model_that_is_not_callable_is_refused_by_name():
    with pytest.raises(TypeError, match=r"model must be callable on embeddings \[B, T, E\]; got dict"):
        lag_masses({"weights": torch.ones(2)}, torch.randn(1, 4, 2))
