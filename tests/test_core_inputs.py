"""Inputs of the wrong type or form given to the public Python API: each is either read correctly or refused with one
error that names the argument, the problem and the fix (not a raw torch / PyG error deep inside, not a silent result).
"""

import numpy as np
import pytest
import torch
from torch_geometric.data import Data, HeteroData

from fwdlearn.errors import UsageError
from fwdlearn.fit import Trainer


def tiny_graph(n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    edge_index = torch.randint(0, n, (2, 3 * n), generator=g)
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    masks = torch.zeros(3, n, dtype=torch.bool)
    masks[torch.arange(n) % 3, torch.arange(n)] = True
    return Data(x=torch.randn(n, 4, generator=g), edge_index=edge_index, y=y, train_mask=masks[0], val_mask=masks[1],
                test_mask=masks[2], num_classes=3)


# ---------------------------------------------------------------------------- the training loop


def test_trainer_refuses_a_step_or_evaluate_that_returns_no_dict():
    """A step returning its bare loss failed with "'float' object has no attribute 'items'" (a loss tensor, a tuple
    alike), and one returning a loss of 0.0 was read as no metrics at all, in silence; an evaluate returning its bare
    accuracy failed alike, a vector or None as the monitored value in float()."""
    evaluate = lambda: {"val_accuracy": 0.5}  # noqa: E731
    for returned in (0.0, 1.0, torch.tensor(0.0), torch.tensor(2.0), (1.0, 2.0)):
        with pytest.raises(TypeError, match=r"step\(i\) must return a dict of its metrics by name, e\.g\. "
                                            r"\{'loss': loss\.item\(\)\}; got (float|Tensor|tuple)"):
            Trainer(steps=2, quiet=True).run(lambda i: returned, evaluate)
    with pytest.raises(TypeError, match=r"step\(i\) must return a dict.*got float 0\.0"):
        Trainer(steps=2, quiet=True, measure_first_step=True).run(lambda i: 0.0, evaluate)
    with pytest.raises(TypeError, match=r"evaluate\(\) must return a dict of its metrics by name, e\.g\. "
                                        r"\{'val_accuracy': value\} \(the monitored key\); got float 0\.5"):
        Trainer(steps=2, quiet=True).run(lambda i: {"loss": 1.0}, lambda: 0.5)
    with pytest.raises(UsageError, match=r"step 1: loss is a tensor of shape \(2,\), but a loss is one number: "
                                         r"reduce it \(\.mean\(\) or \.sum\(\)\)"):
        Trainer(steps=2, quiet=True).run(lambda i: {"loss": torch.tensor([1.0, 2.0])}, evaluate)
    for value, found in ((torch.tensor([0.5, 0.2]), r"a tensor of shape \(2,\)"), (None, "NoneType None")):
        with pytest.raises(TypeError, match=rf"evaluate\(\) returned val_accuracy={found}; the monitored value must "
                                            "be one number"):
            Trainer(steps=2, quiet=True).run(lambda i: {"loss": 1.0}, lambda: {"val_accuracy": value})
    # what was read before still is: None, numbers as one-element tensors and NumPy scalars
    result = Trainer(steps=2, quiet=True).run(lambda i: None if i == 1 else {"loss": torch.tensor([0.0])},
                                              lambda: {"val_accuracy": np.float32(0.5)})
    assert result.history == [{"step": 1, "val_accuracy": 0.5}, {"step": 2, "loss": 0.0, "val_accuracy": 0.5}]


def test_resume_without_a_checkpoint_is_refused():
    """resume=True without checkpoint= trained from scratch in silence (the commands refuse --resume without a run to
    continue), and resume="no" read as true."""
    from fwdlearn.graphs import ForwardGNN, ForwardLinkPredictor

    need = "resume=True continues a checkpoint, but no checkpoint= was given"
    with pytest.raises(UsageError, match=need):
        Trainer(steps=2, quiet=True, resume=True)
    data = tiny_graph()
    with pytest.raises(UsageError, match=need):
        ForwardGNN(4, 3, hidden=4, layers=1, method="bp").fit(data, epochs=1, quiet=True, resume=True)
    with pytest.raises(UsageError, match=need):
        ForwardLinkPredictor(4, hidden=4, layers=1).fit(data, epochs=1, quiet=True, resume=True)
    with pytest.raises(UsageError, match="resume must be True or False, got 'no'"):
        Trainer(steps=2, quiet=True, resume="no", checkpoint="run.pt")


# ---------------------------------------------------------------------------- graphs


def test_graph_models_name_a_heterodata_and_hop_influence_a_graph_that_is_no_data():
    """A HeteroData was told to load a graph with load_graph (ForwardGNN.fit) or, by evaluate and hop_influence, that
    it has no features and to give it torch.ones(num_nodes, 1); hop_influence said so of a tuple (x, edge_index) too."""
    from fwdlearn.graphs import ForwardGNN, ForwardLinkPredictor, hop_influence

    data = tiny_graph()
    hetero = HeteroData()
    hetero["paper"].x, hetero["paper"].y = data.x, data.y
    hetero["paper", "cites", "paper"].edge_index = data.edge_index
    model = ForwardGNN(4, 3, hidden=4, layers=1, method="bp")
    homogeneous = r"reads one homogeneous graph \(data\.x, data\.edge_index\); got a HeteroData \(node types " \
                  r"'paper'\): convert it with data\.to_homogeneous\(\)"
    for call in (lambda: model.fit(hetero, epochs=1, quiet=True), lambda: model.evaluate(hetero),
                 lambda: hop_influence(model, hetero, 1, samples=2),
                 lambda: ForwardLinkPredictor(4, hidden=4, layers=1).fit(hetero, epochs=1, quiet=True)):
        with pytest.raises(TypeError, match=homogeneous):
            call()
    with pytest.raises(TypeError, match=r"hop_influence reads one graph \(a torch_geometric\.data\.Data with x and "
                                        r"edge_index\); got tuple"):
        hop_influence(model, (data.x, data.edge_index), 1, samples=2)
    assert model.fit(data, epochs=1, quiet=True).epochs_run == 1  # a Data still trains


def test_graph_names_and_city_label_settings_name_the_argument():
    """load_graph(None) / a Path failed with "has no attribute 'strip'"; hops=1.5 was refused as max_hops (the hop
    balls' argument), after the roads were built; "4" failed in a comparison."""
    from pathlib import Path

    from fwdlearn.graphs import load_graph

    with pytest.raises(TypeError, match="the graph name must be a str, one of cora"):
        load_graph(None)
    with pytest.raises(TypeError, match="got PosixPath: a road network file is named f'city:{path}', here "
                                        "'city:roads.graphml'"):
        load_graph(Path("roads.graphml"))
    for hops in (1.5, "4", 0, True):
        with pytest.raises(ValueError, match=rf"hops must be an int >= 1 \(the hop radius of the eccentricity "
                                             rf"labels\), got {hops!r}"):
            load_graph("synthetic-city:40", hops=hops)


def test_link_split_names_fractions_that_leave_no_training_edges():
    """val=0.5, test=0.6 was blamed on the graph: "link prediction needs a larger graph"."""
    from fwdlearn.graphs.nn.linkpred import link_split

    with pytest.raises(UsageError, match=r"val=0\.5 and test=0\.6 leave no edges to train on"):
        link_split(tiny_graph(), 0, val=0.5, test=0.6)
    with pytest.raises(UsageError, match="val must be > 0, got -0.1"):
        link_split(tiny_graph(), 0, val=-0.1)


def test_meta_and_string_inputs_to_influence_are_refused_by_name():
    """Seeds or positions on the meta device failed with torch's "Cannot copy out of meta tensor"; normalize="no" was
    true (the curve came back normalised, in silence)."""
    from fwdlearn.graphs import ForwardGNN, hop_influence
    from fwdlearn.sequences import RecurrentLM, lag_influence

    data = tiny_graph()
    model = ForwardGNN(4, 3, hidden=4, layers=1, method="bp")
    with pytest.raises(ValueError, match=r"nodes= is on the meta device \(shape \[2\]\): a shape without values"):
        hop_influence(model, data, 1, nodes=torch.tensor([0, 1], device="meta"))
    with pytest.raises(UsageError, match="normalize must be True or False, got 'no'"):
        hop_influence(model, data, 1, samples=2, normalize="no")
    lm = RecurrentLM(5, cell="gru", hidden=4, layers=1)
    tokens = torch.randint(0, 5, (1, 6))
    with pytest.raises(ValueError, match=r"positions is on the meta device \(shape \[1\]\)"):
        lag_influence(lm, tokens, 2, positions=torch.tensor([3], device="meta"))
    with pytest.raises(UsageError, match="normalize must be True or False, got 'no'"):
        lag_influence(lm, tokens, 2, positions=2, normalize="no")


# ---------------------------------------------------------------------------- sequences


def test_recurrent_state_of_the_wrong_kind_is_named():
    """A state on the meta device failed with torch's copy error, a str as "one tensor per layer (2), got 1"; a
    [layers, batch, width] tensor (torch.nn.GRU's h0) is still read."""
    from fwdlearn.sequences import RecurrentLM

    model = RecurrentLM(5, cell="gru", hidden=4, layers=2)
    tokens = torch.randint(0, 5, (3, 6))
    logits, state = model(tokens)
    with pytest.raises(ValueError, match=r"state\[0\] is on the meta device \(shape \[3, 4\]\): a shape without values"):
        model(tokens, [s.to("meta") for s in state])
    with pytest.raises(TypeError, match=r"state must be the list of one tensor per layer that the model returned "
                                        r"\(logits, state = model\(tokens\)\), or None to start from zeros; got str"):
        model(tokens, "state")
    torch.testing.assert_close(model(tokens, torch.stack(state))[0], model(tokens, state)[0])


def test_vocabulary_decode_takes_one_id_and_names_meta_ids():
    from fwdlearn.sequences import Vocabulary

    vocab = Vocabulary.build("abc")
    assert vocab.decode(1) == vocab.decode(np.int64(1)) == vocab.decode(torch.tensor(1)) == "b"
    with pytest.raises(ValueError, match=r"ids is on the meta device \(shape \[2\]\): a shape without values"):
        vocab.decode(torch.tensor([1, 2], device="meta"))


def test_generate_reads_a_list_of_tokens_and_names_bytes():
    """A list of tokens (what vocab.encode takes) failed with "too many dimensions 'str'", bytes with "new(): invalid
    data type 'bytes'"."""
    from fwdlearn.sequences import RecurrentLM, Vocabulary

    vocab = Vocabulary(["<eos>", "king", "the"], level="word")
    model = RecurrentLM(3, cell="gru", hidden=4, layers=1)
    assert model.generate(["the", "king"], 2, vocab=vocab, seed=0) == model.generate("the king", 2, vocab=vocab, seed=0)
    with pytest.raises(ValueError, match=r"a text prompt \(a list of tokens\) needs vocab= to encode it"):
        model.generate(["the"], 2)
    with pytest.raises(TypeError, match=r"the prompt is bytes: give its text, prompt\.decode\('utf-8'\)"):
        model.generate(b"the", 2, vocab=vocab)


def test_stream_batcher_and_random_windows_name_their_inputs():
    """A NumPy array failed with "has no attribute 'numel'", a float size in a slice or torch.randint, and float ids
    were cut into windows."""
    from fwdlearn.sequences import StreamBatcher, random_windows

    ids = torch.arange(100) % 7
    with pytest.raises(TypeError, match=r"ids must be a tensor of integer token ids; got ndarray: convert it with "
                                        r"torch\.as_tensor"):
        StreamBatcher(ids.numpy(), 2, 5)
    with pytest.raises(TypeError, match=r"ids must hold integer token ids; got torch\.float32"):
        random_windows(ids.float(), 2, 5)
    with pytest.raises(TypeError, match="batch_size must be an int, got 2.0"):
        StreamBatcher(ids, 2.0, 5)
    with pytest.raises(TypeError, match="context must be an int, got 5.0"):
        random_windows(ids, 2, 5.0)
    assert StreamBatcher(ids, np.int64(2), np.int64(5)).next()[0].shape == (2, 5)


# ---------------------------------------------------------------------------- the rule core


def test_reverse_scan_names_a_decay_that_is_no_tensor():
    """A float decay or a NumPy array failed with "has no attribute 'shape'" (time_feedback: inside autograd's
    save_for_backward), dim=1.0 in torch's movedim."""
    from fwdlearn.feedback import DirectFeedback, reverse_scan, time_feedback

    e = torch.randn(2, 5, 3)
    with pytest.raises(TypeError, match=r"a must be a tensor, \[3\] per-channel decays or a \[3, 3\] matrix; got "
                                        r"float: for one decay c of every channel, a = torch\.full\(\(3,\), c\)"):
        reverse_scan(e, 0.5)
    with pytest.raises(TypeError, match=r"got ndarray: convert it with torch\.as_tensor\(a\)"):
        time_feedback(e.clone().requires_grad_(), np.full(3, 0.5))
    with pytest.raises(TypeError, match="dim .* must be an int, got 1.0"):
        reverse_scan(e, torch.full((3,), 0.5), dim=1.0)
    torch.testing.assert_close(reverse_scan(e, torch.full((3,), 0.5), dim=np.int64(1)),
                               reverse_scan(e, torch.full((3,), 0.5)))
    with pytest.raises(UsageError, match="shared must be True or False, got 'no'"):
        DirectFeedback(3, {"a": 4, "b": 2}, shared="no")


@pytest.mark.parametrize("dense", [False, True])
def test_reverse_scan_of_tensors_that_require_gradients(dense):
    """On a CPU the scan of an e (or a) that requires gradients failed with torch's "addcmul(): functions with out=...
    arguments don't support automatic differentiation" (on a GPU a decay's gradient read a tensor changed in place);
    it is differentiable, as the linear map it is."""
    from fwdlearn.feedback import reverse_scan

    g = torch.Generator().manual_seed(0)
    e = torch.randn(2, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    a = (torch.rand((3, 3) if dense else (3,), generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    with torch.no_grad():
        expected = reverse_scan(e, a)
    torch.testing.assert_close(reverse_scan(e, a), expected)
    assert torch.autograd.gradcheck(lambda e, a: reverse_scan(e, a, dim=1), (e, a))


# ---------------------------------------------------------------------------- configs (fwdlearn.config)
def test_every_item_of_a_list_flag_is_checked_against_its_range():
    """A list flag's range holds for each of its values, not only the first: --depths 2 0 must be refused by name."""
    from fwdlearn.graphs.cli.bench import BenchGraphConfig

    with pytest.raises(UsageError, match="--depths must be >= 1, got 0"):
        BenchGraphConfig(depths=[2, 0])
    with pytest.raises(UsageError, match="--depths must be >= 1, got -3"):
        BenchGraphConfig(depths=[1, 2, -3])


def test_a_float_field_without_bounds_is_still_finite():
    """validate_config checks every float for finiteness, also a field with no min/max/gt; a NumPy float32 or float16
    (no subclass of float) skipped the check: np.float32('nan') passed as a temperature."""
    from dataclasses import dataclass, field

    from fwdlearn.config import validate_config

    @dataclass
    class Sampling:
        temperature: float = field(default=1.0, metadata={"help": "softmax temperature"})

    for bad in (float("nan"), float("inf"), np.float32("nan"), np.float32("inf"), np.float16("-inf")):
        with pytest.raises(UsageError, match="--temperature must be a finite number"):
            validate_config(Sampling(temperature=bad))
    assert validate_config(Sampling(temperature=np.float32(0.5))).temperature == 0.5
    assert validate_config(Sampling(temperature=2)).temperature == 2  # (an int where a float goes: as Python takes it)
