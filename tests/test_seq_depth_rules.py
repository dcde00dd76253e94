"""Depth rules of stacked language models: DFA equals BP with the true backward maps, the rules change what they
should, local:readout needs no backprop through depth, and every rule learns."""

import pytest
import torch
from torch import nn

from fwdlearn.optim import make_optimizer
from fwdlearn.sequences import DelayedRecall, RecurrentLM, load_text
from fwdlearn.sequences.nn.depth_rules import StackedLM, point_name
from fwdlearn.sequences.nn.transformer import TransformerLM
from fwdlearn.sequences.training import lm_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RULES = ["bp", "dfa", "dfa:micro", "local:readout", "shallow"]


class LinearStack(StackedLM):
    """Embeddings -> linear blocks ``x -> W2 (W1 x)`` (a tap ``"mid"`` between) -> head; no final norm."""

    def __init__(self, vocab: int, widths: list[int], training: str) -> None:
        super().__init__()
        from fwdlearn.rules import parse_rule

        self.rule = parse_rule(training)
        self.embedding = nn.Embedding(vocab, widths[0])
        self.firsts = nn.ModuleList(nn.Linear(a, 2 * b, bias=False) for a, b in zip(widths[:-1], widths[1:]))
        self.seconds = nn.ModuleList(nn.Linear(2 * b, b, bias=False) for b in widths[1:])
        self.final_norm = nn.Identity()
        self.head = nn.Linear(widths[-1], vocab, bias=False)
        taps = [{"mid": 2 * b, "out": b} for b in widths[1:]]
        self._wire(taps, widths[-1], vocab, [self.embedding, self.firsts, self.seconds])

    def _forward(self, tokens, state=None, exact=False):
        blocks = [lambda x, tap, f=f, s=s: s(tap(f(x), "mid")) for f, s in zip(self.firsts, self.seconds)]
        logits, hiddens = self._through(self.embedding(tokens), blocks)
        return logits, None, hiddens


def _gradients(model, tokens, targets):
    model.zero_grad(set_to_none=True)
    model.train()
    model.training_loss(tokens, targets)[0].backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("placement", ["dfa", "dfa:micro"])
def test_dfa_with_the_true_backward_maps_is_backprop(placement):
    """Linear blocks: the map from point to the final hidden state z is a product of weights M, so B = M makes
    e B the true gradient at every point, and DFA's parameter gradients equal BP's."""
    torch.manual_seed(0)
    widths = [5, 4, 6, 3]
    dfa = LinearStack(7, widths, placement).double()
    bp = LinearStack(7, widths, "bp").double()
    bp.load_state_dict(dfa.state_dict(), strict=False)
    L = len(widths) - 1
    for l in range(L):
        to_z = torch.eye(widths[-1], dtype=torch.float64)  # d z / d (output of block l), as [d_z, d_l]
        for k in range(L - 1, l, -1):
            to_z = to_z @ dfa.seconds[k].weight @ dfa.firsts[k].weight
        if placement == "dfa:micro":
            dfa.depth.feedback.set_matrix(point_name(l, "mid"), to_z @ dfa.seconds[l].weight)
        dfa.depth.feedback.set_matrix(point_name(l, "out"), to_z)
    tokens, targets = torch.randint(0, 7, (3, 9)), torch.randint(0, 7, (3, 9))
    g_dfa, g_bp = _gradients(dfa, tokens, targets), _gradients(bp, tokens, targets)
    assert set(g_dfa) == set(g_bp)
    for name in g_bp:
        torch.testing.assert_close(g_dfa[name], g_bp[name])
    # with the random matrices back, the blocks' gradients differ but the head's stays the true one
    fresh = LinearStack(7, widths, placement).double()
    fresh.load_state_dict({k: v for k, v in dfa.state_dict().items() if not k.startswith("depth.")}, strict=False)
    g_rand = _gradients(fresh, tokens, targets)
    torch.testing.assert_close(g_rand["head.weight"], g_bp["head.weight"])
    assert not torch.allclose(g_rand["firsts.0.weight"], g_bp["firsts.0.weight"])


def _models(rule: str):
    torch.manual_seed(0)
    yield TransformerLM(11, hidden=16, layers=3, heads=2, context=12, training=rule)
    torch.manual_seed(0)
    yield RecurrentLM(11, cell="gru", hidden=16, layers=3, norm=True, training=rule)


def _blocks_after_one_step(model):
    before = [{n: p.detach().clone() for n, p in b.named_parameters()} for b in model.blocks]
    tokens, targets = torch.randint(0, 11, (4, 12)), torch.randint(0, 11, (4, 12))
    optimizer = make_optimizer(model.parameters(), model.optimizer_defaults())
    model.train()
    loss, _ = model.training_loss(tokens, targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return [all(torch.equal(p, before[i][n]) for n, p in b.named_parameters()) for i, b in enumerate(model.blocks)]


@pytest.mark.parametrize("family", [0, 1], ids=["transformer", "recurrent"])
def test_shallow_keeps_the_blocks_dfa_changes_every_block_bp_has_no_point(family):
    shallow = list(_models("shallow"))[family]
    head = shallow.head.weight.detach().clone()
    assert _blocks_after_one_step(shallow) == [True] * 3
    assert not torch.equal(shallow.head.weight, head)  # the head learned
    dfa = list(_models("dfa"))[family]
    assert dfa.feedback_points == [point_name(i, "out") for i in range(3)]
    assert _blocks_after_one_step(dfa) == [False] * 3
    micro = list(_models("dfa:micro"))[family]
    assert len(micro.feedback_points) == 9 and _blocks_after_one_step(micro) == [False] * 3
    bp = list(_models("bp"))[family]
    assert bp.feedback_points == [] and not any(k.startswith("depth.") for k in bp.state_dict())
    with pytest.raises(ValueError, match="no feedback points"):
        bp.feedback_alignment(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))


@pytest.mark.parametrize("build", [
    lambda rule: TransformerLM(11, hidden=8, layers=2, heads=2, context=6, training=rule),
    lambda rule: RecurrentLM(11, cell="gru", hidden=8, layers=2, norm=True, training=rule),
    lambda rule: RecurrentLM(11, cell="lstm", hidden=8, layers=2, norm=False, training=rule),
], ids=["transformer", "recurrent-pre-ln", "recurrent-plain"])
@pytest.mark.parametrize("rule", ["dfa", "dfa:micro"])
def test_every_dfa_feedback_point_reaches_a_parameter(build, rule):
    """A point whose signal every other point overwrites is dead weight (and its alignment a meaningless reading):
    zeroing each point's B alone changes some parameter gradient."""
    torch.manual_seed(0)
    model = build(rule)
    tokens, targets = torch.randint(0, 11, (2, 6)), torch.randint(0, 11, (2, 6))
    before = _gradients(model, tokens, targets)
    for point in model.feedback_points:
        B = model.depth.feedback.matrix(point)
        saved = B.clone()
        B.zero_()
        after = _gradients(model, tokens, targets)
        B.copy_(saved)
        assert any(not torch.equal(before[n], after.get(n, torch.zeros_like(g))) for n, g in before.items()), point


def _readout_gradients(family: int, block: int):
    """A local:readout model of ``family`` (0: transformer, 1: recurrent), its training gradients on a random batch
    (and the batch's tokens and targets), and, left in its parameters' ``.grad``, the gradients of block ``block``'s
    own readout loss alone."""
    model = list(_models("local:readout"))[family]
    tokens, targets = torch.randint(0, 11, (2, 12)), torch.randint(0, 11, (2, 12))
    grads = _gradients(model, tokens, targets)
    model.zero_grad(set_to_none=True)
    _, _, hiddens = model._forward(tokens)
    lm_loss(model.depth.readouts[block](hiddens[block]), targets).backward()
    return model, grads, tokens, targets


@pytest.mark.parametrize("family", [0, 1], ids=["transformer", "recurrent"])
def test_local_readout_gives_each_block_the_gradient_of_its_own_loss(family):
    model, grads, tokens, targets = _readout_gradients(family, 1)  # block 1's own loss alone
    for name, p in model.blocks[1].named_parameters():
        torch.testing.assert_close(grads[f"blocks.1.{name}"], p.grad)
    assert all(p.grad is None for p in model.blocks[0].parameters())  # nothing reaches block 0 from above
    assert len(model.depth.readouts) == 2  # the last block is read by the model's head
    # the reported value is the model's own loss (it was the sum over heads, 3x the other rules' curves)
    loss, _ = model.training_loss(tokens, targets)
    torch.testing.assert_close(loss, lm_loss(model._forward(tokens)[0], targets))


def test_recurrent_dfa_keeps_the_time_rule_inside_each_layer():
    torch.manual_seed(1)
    tokens, targets = torch.randint(0, 11, (2, 10)), torch.randint(0, 11, (2, 10))
    grads = {}
    for rule in ("dfa+bptt", "dfa+dsf", "dfa+ft-bptt"):
        torch.manual_seed(0)
        model = RecurrentLM(11, cell="gru", hidden=8, layers=2, training=rule)
        assert str(model.rule) == rule
        grads[rule] = _gradients(model, tokens, targets)
    for rule in ("dfa+dsf", "dfa+ft-bptt"):  # the same feedback through depth, another rule through time
        torch.testing.assert_close(grads[rule]["head.weight"], grads["dfa+bptt"]["head.weight"])
        assert not torch.allclose(grads[rule]["blocks.1.layer.rnn.weight_hh_l0"],
                                  grads["dfa+bptt"]["blocks.1.layer.rnn.weight_hh_l0"])
    with pytest.raises(ValueError, match="depth rule dfa is built into the model"):
        model.set_training("bptt")
    model.set_training("dfa+dsf")  # another time rule: fine
    with pytest.raises(ValueError, match=r"by one of bp, dfa\[:micro\], local:readout, shallow; got local:ff"):
        RecurrentLM(11, training="local:ff")


def test_rule_optimizer_defaults():
    dfa, bp = TransformerLM(5, hidden=8, layers=1, heads=2, training="dfa"), TransformerLM(5, hidden=8, layers=1, heads=2)
    assert (dfa.optimizer_defaults().optimizer, dfa.optimizer_defaults().schedule) == ("adam", "constant")
    assert (bp.optimizer_defaults().optimizer, bp.optimizer_defaults().schedule) == ("adamw", "cosine")
    rnn = RecurrentLM(5, hidden=8, layers=1, training="dsf")
    assert rnn.optimizer_defaults().schedule == "constant" and rnn.optimizer_defaults().lr == 2e-3
    assert RecurrentLM(5, hidden=8, layers=1, training="dfa+dsf").optimizer_defaults() == dfa.optimizer_defaults()


@pytest.mark.parametrize("family", [0, 1], ids=["transformer", "recurrent"])
def test_local_readout_updates_stay_local_under_gradient_clipping(family, pangrams):
    """A larger head changes only the last block's loss: under local:readout the first block (and the embedding)
    must take the same steps, clipped or not (a clip over the whole model coupled them through its factor)."""
    firsts = []
    for scale in (1.0, 50.0):
        torch.manual_seed(0)
        model = (TransformerLM(pangrams.vocab_size, hidden=16, layers=3, heads=2, context=12, training="local:readout")
                 if family == 0 else
                 RecurrentLM(pangrams.vocab_size, cell="gru", hidden=16, layers=3, training="local:readout"))
        with torch.no_grad():
            model.head.weight.mul_(scale)
        start = [p.detach().clone() for p in model.blocks[0].parameters()]
        model.fit(pangrams, context=12, steps=3, batch_size=4, clip=0.01, eval_every=100, eval_tokens=64,
                  quiet=True)
        assert len(model.clip_groups()) == 3
        firsts.append([p.detach().clone() for p in [*model.embedding.parameters(), *model.blocks[0].parameters()]])
        assert not all(torch.equal(a, p) for a, p in zip(start, model.blocks[0].parameters()))  # (it learned)
    assert all(torch.equal(a, b) for a, b in zip(*firsts))


def test_a_tied_transformer_refuses_local_and_shallow_rules():
    for rule in ("local:readout", "shallow"):
        with pytest.raises(ValueError, match=f"tie=True cannot train by {rule}: .*build it with tie=False"):
            TransformerLM(11, hidden=8, layers=2, heads=2, context=6, tie=True, training=rule)
    assert TransformerLM(11, hidden=8, layers=2, heads=2, context=6, tie=True, training="bp").head.weight is not None


@pytest.fixture(scope="module")
def pangrams(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "pangrams.txt"
    path.write_text(("the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs. " * 30))
    return load_text(str(path))


@pytest.mark.parametrize("rule", RULES + ["dfa+dsf", "dfa:micro+bptt", "local:readout+dsf", "shallow+ft-bptt"])
def test_every_rule_lowers_the_loss_on_a_synthetic_text(rule, pangrams):
    torch.manual_seed(0)
    if "+" in rule:
        model = RecurrentLM(pangrams.vocab_size, cell="gru", hidden=32, layers=2, norm=True, training=rule)
    else:
        model = TransformerLM(pangrams.vocab_size, hidden=32, layers=2, heads=2, context=16, training=rule)
    before = model.evaluate(pangrams.validation, context=16, batch_size=4)
    model.fit(pangrams, context=16, steps=60, batch_size=8, lr=3e-3, schedule="constant", eval_every=30, quiet=True)
    after = model.evaluate(pangrams.validation, context=16, batch_size=4)
    assert after["bpc"] < before["bpc"] - 0.5, (before, after)
    # a model that reads no context ends near the characters' frequencies (4.44 bits), which a recurrent model's
    # first bound above (4.47) let pass; every rule reaches 0.5 to 2.8 bits
    counts = torch.bincount(pangrams.train, minlength=pangrams.vocab_size).double() + 1  # (+1: no character at 0)
    unigram = float(-(counts / counts.sum())[pangrams.validation].log2().mean())
    assert after["bpc"] < unigram - 1.0, (after, unigram)


@pytest.mark.parametrize("rule", ["dfa", "local:readout"])
def test_dfa_and_local_transformers_learn_delayed_recall(rule):
    task = DelayedRecall(lag=2, symbols=4, length=16)
    torch.manual_seed(0)
    model = TransformerLM(task.vocab_size, hidden=32, layers=2, heads=2, context=16, training=rule)
    model.fit(task, steps=80, batch_size=32, lr=3e-3, schedule="constant", eval_every=40, quiet=True)
    assert model.evaluate(task)["accuracy"] > task.chance + 0.3


def test_a_plain_micro_model_saved_with_its_dead_points_still_loads():
    """Plain blocks named a point inside ("rnn") before; a model saved then holds B_block<i>_rnn, which reached no
    parameter the block output's point did not reach: dropped on load, the rest loads strictly."""
    model = RecurrentLM(7, cell="gru", hidden=8, layers=2, norm=False, training="dfa:micro")
    old = {**model.state_dict(), **{f"depth.feedback.B_block{i}_rnn": torch.randn(8, 8) for i in range(2)}}
    again = RecurrentLM(7, cell="gru", hidden=8, layers=2, norm=False, training="dfa:micro")
    again.load_state_dict(old)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    with pytest.raises(RuntimeError, match="B_block0_rnn"):  # a pre-LN block's own points are still required
        RecurrentLM(7, cell="gru", hidden=8, layers=2, norm=True, training="dfa:micro").load_state_dict(
            {k: v for k, v in RecurrentLM(7, cell="gru", hidden=8, layers=2, norm=True,
                                          training="dfa:micro").state_dict().items() if "B_block0_rnn" not in k})


@pytest.mark.parametrize("seed", [0, 1])
def test_dfa_feedback_does_not_depend_on_weights_seeded_alike(seed):
    """`seq train` and `bench dfa` call seed_everything(seed) and build with feedback_seed=seed: B was then drawn from
    the very uniforms the recurrent LM's embedding was drawn from (correlation -0.34 with it; 400 steps of a GRU
    2 x 64 on tinyshakespeare reached 0.02-0.03 lower bits/char than with independent B, in 3 seeds out of 3)."""
    from fwdlearn.fit import seed_everything

    for make in (lambda: RecurrentLM(65, cell="gru", hidden=64, layers=2, training="dfa", feedback_seed=seed),
                 lambda: TransformerLM(65, hidden=64, layers=2, heads=4, context=8, training="dfa",
                                       feedback_seed=seed)):
        seed_everything(seed)
        model = make()
        B = model.depth.feedback.matrix("block0.out").flatten()
        for name, p in model.named_parameters():
            n = min(B.numel(), p.numel())
            if n >= 1000:  # (noise of the correlation: about 1/sqrt(n))
                corr = torch.corrcoef(torch.stack([B[:n], p.detach().flatten()[:n]]))[0, 1]
                assert abs(float(corr)) < 0.1, f"{type(model).__name__}: B correlates with {name} ({float(corr):.2f})"


def test_feedback_seeds_outside_what_torch_takes_are_refused_by_name():
    """feedback_seed=2**64 failed in torch's manual_seed as "Overflow when unpacking long long", naming nothing."""
    for make in (lambda s: TransformerLM(5, hidden=8, layers=1, heads=2, context=4, training="dfa", feedback_seed=s),
                 lambda s: RecurrentLM(5, cell="gru", hidden=8, layers=1, training="dfa", feedback_seed=s)):
        for bad in (2**64, -2**63 - 1):
            with pytest.raises(ValueError, match=r"feedback_seed must be an int in \[-2\*\*63, 2\*\*64\)"):
                make(bad)
        assert make(2**64 - 1).feedback_points  # the largest seed torch takes still builds


@pytest.mark.parametrize("make", [
    lambda: TransformerLM(11, hidden=16, layers=2, heads=2, context=8, training="dfa:micro"),
    lambda: RecurrentLM(11, "gru", hidden=16, layers=2, training="dfa+dsf"),
])
def test_feedback_alignment_leaves_out_unscored_tokens(make):
    """A causal model's tokens after the last scored one change nothing before it: the alignment with the second half's
    targets -100 is that of the first half alone (they were averaged in as cosine 0, halving it)."""
    torch.manual_seed(0)
    model = make().double()
    x, y = torch.randint(0, 11, (3, 8)), torch.randint(0, 11, (3, 8))
    masked = y.clone()
    masked[:, 4:] = -100
    half = model.feedback_alignment(x[:, :4], y[:, :4])
    got = model.feedback_alignment(x, masked)
    assert got.keys() == half.keys() and all(abs(got[k] - half[k]) < 1e-9 for k in half), (got, half)
    with pytest.raises(ValueError, match="every target is -100"):
        model.feedback_alignment(x, torch.full_like(y, -100))


def test_a_transformer_refuses_a_time_rule_naming_the_depth_rules_it_takes():
    """The refusal named "bp, dfa, local, shallow": local:ff is a local rule, which it refuses next."""
    with pytest.raises(ValueError, match=r"^a transformer has no recurrence: give a depth rule only \(one of bp, "
                                         r"dfa\[:micro\], local:readout, shallow\); got local:readout\+dsf$"):
        TransformerLM(5, hidden=8, heads=2, training="local:readout+dsf")


@pytest.mark.parametrize("family", [0, 1], ids=["transformer", "recurrent"])
def test_local_readout_trains_the_embedding_with_the_first_block(family):
    """The embedding learns with the first block: its gradient (and block 0's) is that of block 0's own head's loss
    alone (an input detached at block 0 too left the embedding at its initial weights, unnoticed)."""
    model, grads, _, _ = _readout_gradients(family, 0)  # block 0's own loss alone
    own = {n: p.grad for n, p in model.named_parameters() if p.grad is not None and not n.startswith("depth.")}
    assert "embedding.weight" in own and float(own["embedding.weight"].abs().sum()) > 0
    assert {n.split(".")[0] for n in own} <= {"embedding", "positions", "blocks"}
    for name, g in own.items():
        torch.testing.assert_close(grads[name], g)


def test_local_readout_heads_take_each_blocks_own_width():
    """Blocks of different widths (a family may declare any per block): head R_l reads block l's output width, and each
    block's gradient is its own head's loss's (heads built for the next block's widths failed on the first step)."""
    torch.manual_seed(0)
    widths = [5, 4, 6, 3]
    model = LinearStack(7, widths, "local:readout")
    assert [r[1].in_features for r in model.depth.readouts] == widths[1:-1]
    tokens, targets = torch.randint(0, 7, (3, 9)), torch.randint(0, 7, (3, 9))
    grads = _gradients(model, tokens, targets)
    for l in range(len(widths) - 2):
        model.zero_grad(set_to_none=True)
        _, _, hiddens = model._forward(tokens)
        lm_loss(model.depth.readouts[l](hiddens[l]), targets).backward()
        torch.testing.assert_close(grads[f"seconds.{l}.weight"], model.seconds[l].weight.grad)


def test_outside_train_mode_every_rule_gives_backprop_gradients():
    """An influence Jacobian is read in eval() mode with gradients on: the model is then the plain stack, so a
    dfa / local:readout / shallow model's input gradient is backprop's (the rule's wiring applies only in train())."""
    tokens, targets = torch.randint(0, 11, (2, 8)), torch.randint(0, 11, (2, 8))
    for rule in ("dfa:micro", "local:readout", "shallow"):
        grads = []
        for training in (rule, "bp"):
            torch.manual_seed(0)
            model = RecurrentLM(11, cell="gru", hidden=8, layers=2, training=training).double().eval()
            emb = model.embed(tokens).detach().requires_grad_()
            lm_loss(model.forward_from_embeddings(emb), targets).backward()
            grads.append(emb.grad)
        torch.testing.assert_close(grads[0], grads[1], msg=rule)


@pytest.mark.parametrize("family", [TransformerLM, RecurrentLM])
def test_a_local_readout_variant_is_refused_naming_the_rules_taken(family):
    """local:readout:<variant> names a way of feeding the objective no language model implements: refused, not read as
    local:readout (str(model.rule) would then name a rule it does not train by)."""
    with pytest.raises(ValueError, match=r"by one of bp, dfa\[:micro\], local:readout, shallow; got local:readout:la"):
        family(11, hidden=8, layers=1, training="local:readout:la")
