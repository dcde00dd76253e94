"""Training schedules at their edges: what end_to_end_step measures and reports, local_step's blocks without a
gradient, frozen parameters and miscounted losses, and a layer-by-layer resume from a block in the middle
(mutation round 29)."""

import pytest
import torch
from torch import nn

from fwdlearn.errors import NonFiniteLossError, TrainingInterrupted
from fwdlearn.fit import Checkpointing
from fwdlearn.schedules import LayerJob, LocalOptimizers, end_to_end_step, greedy_layerwise, local_step


def test_a_clipped_step_reports_the_norm_before_clipping_and_measures_the_parameters_named():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    out = end_to_end_step((3 * a + 4 * b).sum(), torch.optim.SGD([a, b], lr=1.0), clip=1.0)
    assert out["grad_norm"] == pytest.approx(5.0)  # reported with clip alone, grad_norm not asked for
    assert a.item() == pytest.approx(-0.6) and b.item() == pytest.approx(-0.8)  # the clipped step
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    out = end_to_end_step((3 * a + 4 * b).sum(), torch.optim.SGD([a, b], lr=1.0), clip=1.0, parameters=[a])
    assert out["grad_norm"] == pytest.approx(3.0)  # a alone is measured and clipped; b steps unclipped
    assert a.item() == pytest.approx(-1.0) and b.item() == pytest.approx(-4.0)
    assert set(end_to_end_step((a * 0).sum(), torch.optim.SGD([a], lr=1.0))) == {"loss"}


def test_a_group_without_gradients_measures_zero():
    """A parameter the loss does not reach has no gradient: its norm is 0, not an overflow."""
    a, unused = nn.Parameter(torch.ones(1)), nn.Parameter(torch.ones(1))
    out = end_to_end_step((2 * a).sum(), torch.optim.SGD([a, unused], lr=0.5), grad_norm=True, parameters=[unused])
    assert out == {"loss": 2.0, "grad_norm": 0.0}
    assert a.item() == pytest.approx(0.0) and unused.item() == 1.0


def test_local_step_takes_a_block_loss_without_a_gradient():
    """A block's loss that no parameter reaches (a constant) is reported and steps nothing; the other block steps."""
    blocks = [nn.Linear(2, 1), nn.Linear(2, 1)]
    before = [b.weight.detach().clone() for b in blocks]
    values = local_step([torch.tensor(0.5), blocks[1](torch.ones(1, 2)).sum()], LocalOptimizers(blocks, lr=0.1))
    assert values[0] == 0.5
    assert torch.equal(blocks[0].weight, before[0]) and not torch.equal(blocks[1].weight, before[1])
    assert local_step([torch.tensor(0.25), None], LocalOptimizers(blocks, lr=0.1))[0] == 0.25  # nothing to backward


def test_local_step_counts_its_losses_and_an_overflow_leaves_no_gradient():
    blocks = [nn.Linear(2, 2), nn.Linear(2, 2)]
    optimizers = LocalOptimizers(blocks)
    with pytest.raises(ValueError, match="local_step got 1 losses for 2 blocks"):
        local_step([blocks[0](torch.ones(1, 2)).sum()], optimizers)
    with torch.no_grad():
        blocks[1].weight.zero_()
    losses = [blocks[0](torch.ones(1, 2)).sum(), blocks[1].weight.sqrt().sum()]
    with pytest.raises(NonFiniteLossError, match="the gradient norm of block 1 is inf"):
        local_step(losses, optimizers)
    assert all(p.grad is None for b in blocks for p in b.parameters())  # zeroed: a later step starts clean


def test_local_optimizers_leave_frozen_parameters_out():
    frozen = nn.Linear(2, 2).requires_grad_(False)
    half = nn.Linear(2, 2)
    half.bias.requires_grad_(False)
    optimizers = LocalOptimizers([frozen, half])
    assert optimizers.optimizers[0] is None
    assert [p is half.weight for p in optimizers.optimizers[1].param_groups[0]["params"]] == [True]


def _greedy(blocks, path, steps=3, interrupt_at=None, resume=False, modes=None):
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    calls = {"n": 0}

    def job(l, block):
        def loss():
            calls["n"] += 1
            if calls["n"] == interrupt_at:
                raise KeyboardInterrupt
            h = x
            for below in blocks[:l]:
                h = below(h).detach()
            return (block(h) - 1).pow(2).mean()

        def finish(result):
            if modes is not None:
                modes.append((l, block.training))
        return LayerJob(loss, lambda: {"val_accuracy": 0.0}, finish)

    plan = Checkpointing(path, resume=resume, overwrite=not resume)
    return greedy_layerwise(blocks, job, steps, lr=0.1, patience=None, quiet=True, checkpointing=plan)


def _fresh(seed):
    torch.manual_seed(seed)
    return nn.ModuleList(nn.Linear(3, 3) for _ in range(3))


def test_a_layer_by_layer_resume_in_a_middle_block_ends_as_an_uninterrupted_run(tmp_path):
    """Interrupted in block 2 of 3, the resumed run continues block 2 from its checkpoint and trains block 3 afresh
    (overwriting the file, not resuming it), replaying block 1's ``finish`` in ``eval()`` mode."""
    whole = _fresh(0)
    _greedy(whole, tmp_path / "whole.pt")
    with pytest.raises(TrainingInterrupted):
        _greedy(_fresh(0), tmp_path / "c.pt", interrupt_at=6)  # block 2's third step: saved at its step 2
    resumed, modes = _fresh(1), []  # blocks 1 and 2 come back from the checkpoint; block 3 starts as before
    resumed[2].load_state_dict(_fresh(0)[2].state_dict())
    results = _greedy(resumed, tmp_path / "c.pt", resume=True, modes=modes)
    assert modes == [(0, False), (1, False), (2, False)]
    assert len(results) == 3
    for a, b in zip(whole, resumed):
        torch.testing.assert_close(a.weight, b.weight)
        torch.testing.assert_close(a.bias, b.bias)


def test_an_interrupt_at_the_first_step_with_checkpoints_on_is_an_interrupt(tmp_path):
    """Block 1 interrupted before its first save: no block below is finished, and nothing was saved."""
    with pytest.raises(TrainingInterrupted) as stop:
        _greedy(_fresh(0), tmp_path / "c.pt", interrupt_at=1)
    assert stop.value.saved_step is None


def test_a_resume_in_the_first_block_may_change_the_budget(tmp_path):
    """No block is frozen yet: the new budget applies to every block (the refusal is for frozen blocks only)."""
    with pytest.raises(TrainingInterrupted):
        _greedy(_fresh(0), tmp_path / "c.pt", interrupt_at=3)
    results = _greedy(_fresh(0), tmp_path / "c.pt", steps=4, resume=True)
    assert [r.steps_run for r in results] == [4, 4, 4]
