"""Training loops: no gradient crosses blocks; early stopping; checkpoints and resume; records."""

import json

import pytest
import torch
from torch import nn

from fwdlearn.fit import NonFiniteLossError, Stateful, Trainer
from fwdlearn.schedules import LocalOptimizers, layerwise_forward
from fwdlearn.records import RunRecord


def _blocks():
    torch.manual_seed(0)
    return nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.Tanh()) for _ in range(3)])


def test_block_loss_produces_no_gradient_in_lower_blocks():
    blocks = _blocks()
    outs = layerwise_forward(blocks, torch.randn(8, 4))
    outs[2].pow(2).sum().backward()
    assert all(p.grad is None for p in blocks[0].parameters())
    assert all(p.grad is None for p in blocks[1].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in blocks[2].parameters())


def test_local_optimizers_step_equals_separate_backward_per_block():
    blocks = _blocks()
    x = torch.randn(8, 4)
    opts = LocalOptimizers(blocks, lr=0.1, weight_decay=0.0, optimizer=torch.optim.SGD)
    before = [[p.detach().clone() for p in b.parameters()] for b in blocks]
    outs = layerwise_forward(blocks, x)
    losses = [o.pow(2).mean() for o in outs]
    grads = [torch.autograd.grad(l, list(b.parameters()), retain_graph=True) for l, b in zip(losses, blocks)]
    values = opts.step(losses)
    assert values == pytest.approx([l.item() for l in losses])
    for b, g, p0 in zip(blocks, grads, before):
        for p, gi, pi in zip(b.parameters(), g, p0):
            torch.testing.assert_close(p.detach(), pi - 0.1 * gi)


def test_nan_loss_raises_clear_error():
    blocks = _blocks()
    opts = LocalOptimizers(blocks)
    outs = layerwise_forward(blocks, torch.randn(2, 4))
    losses = [o.sum() for o in outs]
    losses[1] = losses[1] * float("nan")
    with pytest.raises(NonFiniteLossError, match="loss of block 1 is nan: training diverged"):
        opts.step(losses)


def test_trainer_early_stops_and_restores_best_state():
    model = nn.Linear(1, 1, bias=False)
    scores = iter([0.5, 0.7, 0.6, 0.6, 0.6, 0.9])

    def step(i):
        with torch.no_grad():
            model.weight.fill_(float(i))
        return {"loss": 1.0 / i}

    result = Trainer(steps=6, patience=3, quiet=True).run(step, lambda: {"val_accuracy": next(scores)}, model)
    assert result.stopped_early and result.steps_run == 5
    assert result.best_step == 2 and result.best["val_accuracy"] == 0.7
    assert model.weight.item() == 2.0  # the best step's weights are back


def test_checkpoint_resume_continues_steps(tmp_path):
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 2), torch.randn(16, 1)
    seen = []

    def step(i):
        seen.append(i)
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    evaluate = lambda: {"val_loss": ((model(x) - y) ** 2).mean().item()}
    ckpt = tmp_path / "run.pt"
    state = Stateful({"model": model, "opt": opt})
    Trainer(steps=3, monitor="val_loss", mode="min", quiet=True, checkpoint=ckpt).run(step, evaluate, state)
    with pytest.raises(FileExistsError, match="pass resume=True"):
        Trainer(steps=5, quiet=True, checkpoint=ckpt).run(step, evaluate, state)
    result = Trainer(steps=5, monitor="val_loss", mode="min", quiet=True, checkpoint=ckpt, resume=True).run(step, evaluate, state)
    assert seen == [1, 2, 3, 4, 5]
    assert [row["step"] for row in result.history] == [1, 2, 3, 4, 5]
    assert result.steps_run == 5


def test_missing_monitor_key_is_named():
    with pytest.raises(KeyError, match="monitored key is 'val_accuracy'"):
        Trainer(steps=1, quiet=True).run(lambda e: {}, lambda: {"acc": 1.0})


def test_run_record_json_and_no_overwrite(tmp_path):
    rec = RunRecord("demo", {"layers": 2}, seed=7)
    rec.log(epoch=1, loss=torch.tensor(0.5))
    rec.summary["acc"] = 0.9
    path = rec.save(tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert data["config"] == {"layers": 2} and data["seed"] == 7
    assert data["metrics"] == [{"epoch": 1, "loss": 0.5}] and "torch" in data["versions"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        rec.save(path)
    rec.save(path, overwrite=True)
