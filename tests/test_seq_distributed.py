"""Data-parallel RecurrentLM / TransformerLM (DFA) training under torch.distributed (gloo): replicas stay identical."""

import os

import pytest
import torch
import torch.distributed as dist

from fwdlearn.sequences import RecurrentLM, load_language_model, load_text
from fwdlearn.sequences.nn.transformer import TransformerLM

#: 1341 training characters: not a multiple of the 2 x 3 streams (the processes read other streams than one process
#: did when they split the tokens before cutting streams; 1512 did divide)
TEXT = ("to be or not to be, that is the question; whether tis nobler in the mind to suffer.\n" * 20)[:1490]


def _initial_model(vocab_size: int, seed: int, kind: str = "recurrent"):
    if kind == "transformer":
        model = TransformerLM(vocab_size, hidden=12, layers=2, heads=2, context=12, training="dfa")
    else:
        model = RecurrentLM(vocab_size, cell="gru", hidden=12, layers=2, training="dsf")
    torch.manual_seed(seed)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return model


def _align_every(kind: str) -> int:
    return 1 if kind == "transformer" else 0  # (the DSF-only model has no DFA feedback point to align)


def _alignment(report) -> list[tuple[int, str, float]]:
    return [(row["step"], k, v) for row in report.history for k, v in row.items() if k.startswith("align/")]


def _worker(rank: int, port: int, folder: str, kind: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    corpus = load_text(f"{folder}/text.txt")
    model = _initial_model(corpus.vocab_size, 100 + rank, kind)  # different replicas: DDP must start all from rank 0's
    report = model.fit(corpus, context=12, steps=3, batch_size=3, eval_every=3, checkpoint=f"{folder}/ckpt.pt",
                       quiet=True, align_every=_align_every(kind))
    torch.save({n: p.detach().clone() for n, p in model.named_parameters()}, f"{folder}/rank{rank}.pt")
    torch.save([row["val_loss"] for row in report.history if "val_loss" in row], f"{folder}/val{rank}.pt")
    torch.save(_alignment(report), f"{folder}/align{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.parametrize("kind", ["recurrent", "transformer"])
def test_two_process_data_parallel_replicas_stay_identical(tmp_path, kind, two_processes):
    (tmp_path / "text.txt").write_text(TEXT)
    two_processes(_worker, str(tmp_path), kind)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert set(a) == set(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    start = dict(_initial_model(load_text(str(tmp_path / "text.txt")).vocab_size, 100, kind).named_parameters())
    assert not torch.allclose(a["head.weight"], start["head.weight"])  # they trained, together
    assert (tmp_path / "ckpt.pt").exists() and (tmp_path / "ckpt.pt.rank1").exists()
    loaded, vocab = load_language_model(tmp_path / "ckpt.pt")  # (either kind)
    assert vocab is not None and loaded.config.hidden == 12 and loaded.config.kind == kind
    # one process on the global batch (2 x 3 streams): the same weights and the same validation (it read 3 streams
    # per process before, another loss than one process's)
    alone = _initial_model(load_text(str(tmp_path / "text.txt")).vocab_size, 100, kind)
    report = alone.fit(load_text(str(tmp_path / "text.txt")), context=12, steps=3, batch_size=6, eval_every=3,
                       quiet=True, align_every=_align_every(kind))
    for name, p in alone.named_parameters():
        torch.testing.assert_close(p.detach(), a[name], rtol=1e-4, atol=1e-5)  # (float rounding, through Adam)
    assert torch.load(tmp_path / "val0.pt") == pytest.approx([r["val_loss"] for r in report.history if "val_loss" in r],
                                                             rel=1e-5)
    # the alignment is read on the global batch's validation windows too (each process read its own B before)
    aligned = torch.load(tmp_path / "align0.pt")
    assert bool(aligned) == (kind == "transformer")
    assert [(s, k) for s, k, _ in aligned] == [(s, k) for s, k, _ in _alignment(report)]
    assert [v for _, _, v in aligned] == pytest.approx([v for _, _, v in _alignment(report)], rel=1e-4, abs=1e-5)


def _resume_worker(rank: int, port: int, folder: str) -> None:
    """Interrupts between the two processes' saves, made by putting process 1's earlier files back."""
    import shutil

    from fwdlearn.errors import UsageError

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    corpus = load_text(f"{folder}/text.txt")
    model = _initial_model(corpus.vocab_size, 100)
    ckpt = f"{folder}/ckpt.pt"
    mine = ckpt if rank == 0 else f"{ckpt}.rank1"

    def fit(steps, every, **kwargs):
        return model.fit(corpus, context=12, steps=steps, batch_size=3, eval_every=every, checkpoint=ckpt, quiet=True,
                         **kwargs)

    def as_if_process_1_stopped_before_its_save(file):
        dist.barrier()
        if rank == 1:
            shutil.copy(file, mine)
        dist.barrier()

    results = {"losses": [row["loss"] for row in fit(2, 1).history]}  # saves 1 and 2 (and keeps 1 as the previous)
    if rank == 1:
        shutil.copy(f"{mine}.prev", f"{folder}/step1.rank1")
        shutil.copy(mine, f"{folder}/step2.rank1")
    as_if_process_1_stopped_before_its_save(f"{folder}/step1.rank1")  # one save apart: 2 and 1
    report = fit(3, 3, resume=True)
    results["one apart"] = (report.resumed["from_step"], [(r["step"], r["loss"]) for r in report.history])
    as_if_process_1_stopped_before_its_save(f"{folder}/step1.rank1")  # again, after a resume from the previous save
    results["again"] = fit(4, 4, resume=True).resumed["from_step"]
    as_if_process_1_stopped_before_its_save(f"{folder}/step2.rank1")  # two saves apart: 4 (previous 1) and 2
    try:
        fit(5, 5, resume=True)
        results["two apart"] = "resumed"
    except UsageError as error:
        results["two apart"] = str(error)
    fit(1, 1, overwrite=True)  # an overwriting run keeps no earlier run's file as its previous save
    results["previous after overwrite"] = os.path.exists(f"{mine}.prev")
    torch.save(results, f"{folder}/results{rank}.pt")
    dist.destroy_process_group()


def test_two_processes_log_the_global_loss_and_resume_from_a_step_they_all_hold(tmp_path, two_processes):
    """Each process logged its own shard's loss (rank 0's went into the record); a resume from checkpoint files of
    different steps trained on, pairing different steps in each update, until one process crashed; then it was
    refused, and an interrupt between two processes' saves (Ctrl-C on torchrun, 2 in 5 tries at --eval-every 1) left
    a run that could only start over."""
    (tmp_path / "text.txt").write_text(TEXT)
    two_processes(_resume_worker, str(tmp_path))
    first, second = (torch.load(tmp_path / f"results{r}.pt") for r in (0, 1))
    assert first["losses"] == second["losses"]
    assert first["one apart"] == second["one apart"] and first["one apart"][0] == 1
    assert [step for step, _ in first["one apart"][1]] == [1, 2, 3]
    assert first["again"] == second["again"] == 1  # (the save ahead had become the previous one: refused)
    for r in (first, second):
        assert ("the processes' checkpoints hold different steps (2 to 4" in r["two apart"]
                and "no process ahead kept a save of the others' step" in r["two apart"])
        assert not r["previous after overwrite"]


def _one_process_checkpoint_worker(rank: int, port: int, folder: str) -> None:
    from fwdlearn.errors import found_by_every_process

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    corpus = load_text(f"{folder}/text.txt")
    try:
        _initial_model(corpus.vocab_size, 100).fit(corpus, context=12, steps=2, batch_size=3, eval_every=1,
                                                   checkpoint=f"{folder}/ckpt.pt", resume=True, quiet=True)
        found = None
    except ValueError as error:
        found = (found_by_every_process(error), str(error))
    torch.save(found, f"{folder}/found{rank}.pt")
    dist.barrier()  # (neither leaves while the other still talks to it: a process whose peer had gone aborted, 1 in 20
    dist.destroy_process_group()  # runs on a loaded machine, "terminate called without an active exception")


def test_a_one_process_checkpoint_resumed_by_two_is_refused_once_for_its_process_count(tmp_path, two_processes):
    """Process 1 said its part was missing (a run of one process has none) while rank 0 said the checkpoint was made
    by another number of processes: two lines for one problem. Now rank 0's refusal alone is said."""
    (tmp_path / "text.txt").write_text(TEXT)
    corpus = load_text(str(tmp_path / "text.txt"))
    _initial_model(corpus.vocab_size, 100).fit(corpus, context=12, steps=1, batch_size=3, eval_every=1,
                                               checkpoint=tmp_path / "ckpt.pt", quiet=True)
    two_processes(_one_process_checkpoint_worker, str(tmp_path))
    lead, other = (torch.load(tmp_path / f"found{r}.pt") for r in (0, 1))
    assert lead[0] and other[0]  # both marked as every process's: the CLI prints rank 0's alone
    assert "was made by a different run: processes 1 (checkpoint) vs 2 (now)" in lead[1]
    assert "part of the checkpoint, is missing" not in other[1]


def test_a_fit_under_torchrun_without_a_process_group_is_refused_naming_init_from_env(tmp_path, monkeypatch):
    """A user script under torchrun that forgot init_from_env() ran as N independent fits, each on the whole batch,
    all writing one checkpoint (a reviewer's 2-process run); the fit now names the call it needs, in words true of any
    launcher that sets WORLD_SIZE (it said "torchrun started 2 processes" for all of them)."""
    from fwdlearn.errors import UsageError

    (tmp_path / "text.txt").write_text(TEXT)
    corpus = load_text(str(tmp_path / "text.txt"))
    model = _initial_model(corpus.vocab_size, 0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UsageError, match=r"^this process was started as one of 2 \(WORLD_SIZE=2, as torchrun sets "
                                         r"it\) but joined no process group, so fit_lm would run as 2 independent "
                                         r"fits.*call fwdlearn\.distributed\.init_from_env\(\) first \(or run the "
                                         r"script as one process, WORLD_SIZE unset or 1\)$"):
        model.fit(corpus, context=12, steps=1, batch_size=3, checkpoint=str(tmp_path / "c.pt"), quiet=True)
    assert not (tmp_path / "c.pt").exists()
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: trains as before
    model.fit(corpus, context=12, steps=1, batch_size=3, eval_every=1, quiet=True)


def test_a_task_fit_with_a_checkpoint_under_torchrun_without_a_process_group_is_refused(tmp_path, monkeypatch):
    """fit_task refused torchrun only inside a process group: without one (no init_from_env), each of the N processes
    trained the whole model and wrote the one checkpoint at once, as the graph fits did before they were refused."""
    from fwdlearn.errors import UsageError
    from fwdlearn.sequences import DelayedRecall

    task = DelayedRecall(lag=2, symbols=4, length=10)
    model = RecurrentLM(task.vocab_size, cell="gru", hidden=8, layers=1, out_size=task.out_size)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UsageError, match=r"^fit_task trains in one process, and run with several processes "
                                         r"\(WORLD_SIZE=2, as torchrun sets it\) each of the 2 would train the whole "
                                         r"model and write the checkpoint .*c\.pt"):
        model.fit(task, steps=1, eval_every=1, quiet=True, checkpoint=tmp_path / "c.pt")
    assert not (tmp_path / "c.pt").exists()
    model.fit(task, steps=1, eval_every=1, quiet=True)  # without a checkpoint: trained, as the graph fits are
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: a checkpoint as before
    model.fit(task, steps=1, eval_every=1, quiet=True, checkpoint=tmp_path / "c.pt")
    assert (tmp_path / "c.pt").exists()


def _dropout_model(vocab_size: int):
    torch.manual_seed(0)
    model = TransformerLM(vocab_size, hidden=12, layers=1, heads=2, context=12, dropout=0.5)
    masks: list[torch.Tensor] = []  # the embedding dropout's mask at each training step (input kept, output zeroed)
    model.drop.register_forward_hook(lambda m, i, o: masks.append((o == 0) & (i[0] != 0)) if m.training else None)
    return model, masks


def _dropout_worker(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    corpus = load_text(f"{folder}/text.txt")
    model, masks = _dropout_model(corpus.vocab_size)
    model.fit(corpus, context=12, steps=4, batch_size=3, eval_every=2, quiet=True)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    whole = list(masks)
    model, masks = _dropout_model(corpus.vocab_size)  # the same run, stopped after step 2 and resumed
    model.fit(corpus, context=12, steps=2, batch_size=3, eval_every=2, quiet=True, checkpoint=f"{folder}/ckpt.pt")
    masks.clear()
    model.fit(corpus, context=12, steps=4, batch_size=3, eval_every=2, quiet=True, checkpoint=f"{folder}/ckpt.pt",
              resume=True)
    torch.save({"masks": whole, "resumed": list(masks), "weights": weights}, f"{folder}/dropout{rank}.pt")
    dist.destroy_process_group()


def test_each_process_draws_its_own_dropout_masks_and_the_replicas_stay_identical(tmp_path, two_processes):
    """Every process was seeded alike, so a TransformerLM(dropout > 0) trained by 2 processes gave process 1's rows the
    very masks process 0's rows got (one process with the global batch draws a mask per row). Process r > 0 now draws
    from a seed of its own; rank 0 draws as one process does, the weights stay identical and a resume goes on
    exactly."""
    (tmp_path / "text.txt").write_text(TEXT)
    two_processes(_dropout_worker, str(tmp_path))
    first, second = (torch.load(tmp_path / f"dropout{r}.pt") for r in (0, 1))
    assert len(first["masks"]) == len(second["masks"]) == 4
    for a, b in zip(first["masks"], second["masks"]):
        assert a.shape == b.shape == (3, 12, 12) and 0.3 < float(a.float().mean()) < 0.7
        assert not torch.equal(a, b)  # (each step's masks were equal)
    for name in first["weights"]:
        torch.testing.assert_close(first["weights"][name], second["weights"][name], rtol=0, atol=0)
    for run in (first, second):  # each process's generators are in its own checkpoint part
        assert len(run["resumed"]) == 2
        assert all(torch.equal(a, b) for a, b in zip(run["resumed"], run["masks"][2:]))
    corpus = load_text(str(tmp_path / "text.txt"))
    alone, masks = _dropout_model(corpus.vocab_size)  # one process of the same batch shape: rank 0's masks
    alone.fit(corpus, context=12, steps=4, batch_size=3, eval_every=2, quiet=True)
    assert all(torch.equal(a, b) for a, b in zip(masks, first["masks"]))


def _shared_generators_worker(rank: int, port: int, folder: str) -> None:
    import warnings

    from fwdlearn.errors import FwdlearnWarning

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    corpus = load_text(f"{folder}/text.txt")
    ckpt = f"{folder}/ckpt.pt"
    model, masks = _dropout_model(corpus.vocab_size)
    model.fit(corpus, context=12, steps=2, batch_size=3, eval_every=2, quiet=True, checkpoint=ckpt)
    dist.barrier()
    if rank == 1:  # as written before processes seeded apart: process 1's part holds rank 0's generators
        part = torch.load(f"{ckpt}.rank1", weights_only=False)
        part["rng"] = torch.load(ckpt, weights_only=False)["rng"]
        torch.save(part, f"{ckpt}.rank1")
    dist.barrier()
    model, masks = _dropout_model(corpus.vocab_size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(corpus, context=12, steps=4, batch_size=3, eval_every=2, quiet=True, checkpoint=ckpt, resume=True)
    warned = [str(w.message) for w in caught if issubclass(w.category, FwdlearnWarning)]
    torch.save({"masks": list(masks), "warned": warned}, f"{folder}/shared{rank}.pt")
    dist.destroy_process_group()


def test_a_checkpoint_whose_parts_share_rank_0s_generators_resumes_with_masks_of_each_processs_own(
        tmp_path, two_processes):
    """A checkpoint written under torchrun before process r > 0 drew from a seed of its own holds rank 0's generator
    states in every part: resumed, process 1 went on drawing rank 0's very dropout masks, in silence. The processes
    that share rank 0's state now reseed from (seed, r), and rank 0 warns once."""
    (tmp_path / "text.txt").write_text(TEXT)
    two_processes(_shared_generators_worker, str(tmp_path))
    lead, other = (torch.load(tmp_path / f"shared{r}.pt") for r in (0, 1))
    assert len(lead["masks"]) == len(other["masks"]) == 2  # (steps 3 and 4)
    for a, b in zip(lead["masks"], other["masks"]):
        assert a.shape == b.shape == (3, 12, 12)
        assert not torch.equal(a, b)  # (each resumed step's masks were equal)
    assert len(lead["warned"]) == 1 and other["warned"] == []
    assert lead["warned"][0].startswith("the checkpoint's parts of process 1 hold rank 0's random-number generator "
                                        "state")
    assert "it now draws from a seed of its own" in lead["warned"][0]
