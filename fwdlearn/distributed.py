r"""Scale-out helpers on ``torch.distributed``: split independent work across processes, gather the rows.

Measurements such as :func:`fwdlearn.graphs.hop_influence` are independent per seed
(per node, per position). Under ``torchrun`` each process takes a contiguous shard of
the items and the per-item rows are gathered back in the original order, so the result
is the same as on one process:

.. math::
    \text{shard}_r = \text{items}[\lceil rS/W \rceil : \lceil (r+1)S/W \rceil],
    \qquad r = 0, \dots, W-1.

Use::

    torchrun --nproc_per_node=4 -m fwdlearn influence graph --data city:roads/california ...

``init_from_env(device=...)`` starts the process group from torchrun's environment variables
(``nccl`` for a CUDA run, ``gloo`` for a CPU one); without them everything runs in one process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor

from fwdlearn.runs import launched_processes  # (torch-free: the commands read it before importing torch)

__all__ = ["init_from_env", "launched_processes", "check_group_started", "process_device", "is_distributed", "rank",
           "world_size", "shard_bounds", "gather_rows", "min_max", "mean", "raise_together", "checksum",
           "same_on_every_process", "take_rank_0s"]


def is_distributed() -> bool:
    """Whether a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_from_env(backend: str | None = None, device: "torch.device | str | None" = None) -> bool:
    """Join the process group described by torchrun's ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` variables.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; by default ``nccl`` when the run's ``device`` is a CUDA device (without a
            ``device``: when CUDA is present), else ``gloo``.
        device: the device the run computes on (a CPU run on a GPU host still needs ``gloo``).

    Returns ``True`` when more than one process takes part. Does nothing (returns ``False``)
    when the variables are absent or ``WORLD_SIZE`` is 1 (or not a number: :func:`launched_processes`); idempotent.
    """
    if launched_processes() <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    if not dist.is_initialized():
        if backend is None:
            on_cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
            backend = "nccl" if on_cuda else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(_own_gpu(device))
        dist.init_process_group(backend=backend)
    return is_distributed()


def check_group_started(what: str) -> None:
    """Raise :class:`~fwdlearn.errors.UsageError` when a launcher started several processes (``WORLD_SIZE`` > 1, as
    ``torchrun`` sets it) but this one joined no process group (:func:`init_from_env` not called): ``what``, a
    data-parallel fit, would then run as that many independent fits, each on the whole batch, all writing one
    checkpoint."""
    from fwdlearn.errors import UsageError

    launched = launched_processes()
    if launched > 1 and not is_distributed():
        raise UsageError(f"this process was started as one of {launched} (WORLD_SIZE={launched}, as torchrun sets it) "
                         f"but joined no process group, so {what} would run as {launched} independent fits, each on "
                         "the whole batch and all writing one checkpoint: call fwdlearn.distributed.init_from_env() "
                         "first (or run the script as one process, WORLD_SIZE unset or 1)")


def _own_gpu(device: "torch.device | str | None") -> int:
    """This process's GPU under ``nccl``: ``LOCAL_RANK`` (or the GPU ``device`` pins, when the process is its
    machine's only one), checked against the GPUs this machine has and against a
    ``device`` that pins one GPU for every process (NCCL fails on either, with no word of the fix). Every process of
    the machine refuses alike, its first included (``LOCAL_WORLD_SIZE``, not only the processes past the GPUs): an
    error before connecting is said by rank 0 alone, and a refusal of the processes past the GPUs alone was said by
    none (rank 0 waited to connect until torchrun stopped it)."""
    from fwdlearn.errors import UsageError

    local, here = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    gpus = torch.cuda.device_count()
    if max(here, local + 1) > gpus:
        raise UsageError(f"torchrun started {max(here, local + 1)} processes on this machine but it has {gpus} "
                         f"GPU{'' if gpus == 1 else 's'}: one process per GPU (--nproc_per_node {gpus}), or "
                         "--device cpu")
    pinned = torch.device(device).index if device is not None else None
    if pinned is not None and here > 1:
        raise UsageError(f"--device {device} puts every process of this machine on one GPU; give --device cuda "
                         "(each process its own GPU, cuda:<LOCAL_RANK>)")
    # (one process on the machine with --device cuda:1: its collectives on GPU 1 with its model, not on LOCAL_RANK's 0)
    return local if pinned is None else pinned


def process_device(device: "torch.device | str") -> torch.device:
    """The device this process computes on: under torchrun a plain ``cuda`` means this process's own GPU
    (``cuda:<LOCAL_RANK>``); any other device is kept."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched_processes() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def min_max(value: float) -> tuple[float, float]:
    """The smallest and largest of every process's ``value`` (``(value, value)`` on one process)."""
    if not is_distributed():
        return value, value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    both = torch.tensor([value, -value], dtype=torch.float64, device=device)
    dist.all_reduce(both, op=dist.ReduceOp.MIN)
    return float(both[0]), -float(both[1])


def mean(value: Tensor) -> Tensor:
    """The mean of every process's (scalar) ``value``, detached; ``value`` itself on one process."""
    value = value.detach()
    if not is_distributed():
        return value
    total = value.clone()
    dist.all_reduce(total)  # SUM: gloo has no AVG
    return total / dist.get_world_size()


def shard_bounds(count: int, shards: int | None = None, index: int | None = None) -> tuple[int, int]:
    """``(start, stop)`` of shard ``index`` of ``shards`` near-equal contiguous parts of ``range(count)``."""
    shards = world_size() if shards is None else shards
    index = rank() if index is None else index
    if not 0 <= index < shards:
        raise ValueError(f"shard index {index} outside [0, {shards})")
    return (count * index + shards - 1) // shards, (count * (index + 1) + shards - 1) // shards


#: every dtype torch has, in one order on every process: a process's dtype is sent as its index
_DTYPES = sorted({v for v in vars(torch).values() if isinstance(v, torch.dtype)}, key=str)


def gather_rows(rows: Tensor) -> Tensor:
    """Concatenate every process's ``rows`` (first dims may differ) in rank order; identity on one process.

    Every process's rows must have one dtype and one shape past the first dim; an empty share (no rows: more processes
    than items) may have any, and is taken as the others'. Rows that differ are refused by every process alike with a
    ``ValueError`` naming the processes and what each gave (``all_gather`` read float32 rows as int32 ones in silence,
    and rows of different sizes in bytes -- an empty ``torch.zeros(0, k)`` share beside float64 rows -- aborted a
    process inside gloo).
    """
    if not is_distributed():
        return rows
    from fwdlearn.errors import alike_on_every_process

    device = rows.device
    if dist.get_backend() == "nccl" and device.type != "cuda":
        rows = rows.cuda()
    # (each process's row count, dtype and number of dims, then the sizes past the first: checked alike by all)
    meta = torch.tensor([rows.shape[0] if rows.dim() else -1, _DTYPES.index(rows.dtype), rows.dim()],
                        device=rows.device)
    metas = [torch.zeros_like(meta) for _ in range(dist.get_world_size())]
    dist.all_gather(metas, meta)
    counts, dims = [int(m[0]) for m in metas], max(int(m[2]) for m in metas)
    shape = torch.full((max(dims - 1, 1),), -1, dtype=torch.int64, device=rows.device)  # (never empty)
    shape[: max(rows.dim() - 1, 0)] = torch.tensor(rows.shape[1:], dtype=torch.int64)
    shapes = [torch.zeros_like(shape) for _ in metas]
    dist.all_gather(shapes, shape)
    given = [(_DTYPES[int(m[1])], tuple(int(d) for d in s[: max(int(m[2]) - 1, 0)])) for m, s in zip(metas, shapes)]
    with alike_on_every_process():
        scalar = [r for r, n in enumerate(counts) if n < 0]
        if scalar:
            raise ValueError(f"gather_rows concatenates rows (a tensor of one or more dims); process"
                             f"{'es' if len(scalar) > 1 else ''} {', '.join(map(str, scalar))} gave a 0-dim tensor: "
                             "give each process's values as rows, e.g. value.reshape(1)")
        filled = [r for r, n in enumerate(counts) if n > 0] or [0]  # (empty shares take the others' dtype and sizes)
        dtype, sizes = given[filled[0]]
        other = [r for r in filled if given[r] != (dtype, sizes)]
        if other:
            said = "; ".join(f"process {r}: {_rows(*given[r])}" for r in (filled[0], *other))
            raise ValueError(f"gather_rows needs every process's rows in one dtype and one shape past the first dim "
                             f"({said}): give every process rows of one dtype and width (an empty share may be of "
                             "any)")
    if rows.shape[0] == 0:
        rows = rows.new_zeros((0, *sizes), dtype=dtype)
    longest = max(counts)
    padded = torch.zeros((longest, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    padded[: rows.shape[0]] = rows
    parts = [torch.zeros_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, counts)]).to(device)


def checksum(tensor: Tensor) -> int:
    """An integer summary of ``tensor``'s shape and bits, equal for equal tensors on any device (integer arithmetic,
    wrapping alike everywhere): what :func:`same_on_every_process` compares without sending the tensor."""
    flat = tensor.detach().contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    if flat.dtype.is_floating_point or flat.dtype.is_complex:
        flat = flat.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64, 16: torch.int64}[
            flat.element_size()])
    weights = torch.arange(flat.numel(), device=flat.device) % 65521 + 1  # (the order counts: a permutation differs)
    return int((flat.long() * weights).sum()) ^ hash(tuple(tensor.shape))


def _fold(checksums: Iterable[int]) -> int:
    """One 63-bit number of a list's checksums in their order (a sum took two lists swapped between processes for
    the same)."""
    folded = 0
    for value in checksums:
        folded = (folded * 1_000_003 + value) & 0x7FFFFFFFFFFFFFFF
    return folded


def same_on_every_process(what: str, fix: str, sizes: dict[str, int],
                          contents: dict[str, Tensor | list[Tensor]]) -> None:
    """Refuse, on every process alike (:func:`~fwdlearn.errors.alike_on_every_process`), inputs that differ between
    processes: ``sizes`` (said with each process's value) and ``contents``, tensors (or lists of them, in order)
    compared by their :func:`checksum` and said by name, with a ``ValueError`` naming each that differs and ``fix``;
    nothing on one process (no checksum is taken). ``what`` is the work the processes share out: given different
    inputs, its gathered result would mix them, in silence."""
    if not is_distributed():
        return
    from fwdlearn.errors import alike_on_every_process

    names = [*sizes, *contents]
    sums = [_fold(checksum(t) for t in (v if isinstance(v, (list, tuple)) else [v])) for v in contents.values()]
    mine = torch.tensor([[*map(int, sizes.values()), *sums]])  # (sizes as given, to be said: a -1 stays -1)
    every = gather_rows(mine)  # (on the CPU, as given: gather_rows takes it to the GPU under nccl and back)
    differ = [(i, n) for i, n in enumerate(names) if bool((every[:, i] != every[0, i]).any())]
    if differ:
        said = "; ".join(n if n in contents else f"{n}: " + ", ".join(
            f"{int(v)} (process {r})" for r, v in enumerate(every[:, i].tolist())) for i, n in differ)
        with alike_on_every_process():
            raise ValueError(f"{what} shares its work out over the {world_size()} processes of the group, but they "
                             f"were given different inputs ({said}), so the gathered result would mix them: {fix}")


def take_rank_0s(module: torch.nn.Module) -> None:
    """Set ``module``'s parameters and buffers, in place, to rank 0's (a no-op on one process): models each process
    trained alike may still differ in their last bits (a GPU's scatter-adds sum in no fixed order), and work shared
    out over the processes must measure one model (:func:`same_on_every_process`)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in (*module.parameters(), *module.buffers()):
            dist.broadcast(tensor.data, src=0)


def _rows(dtype: torch.dtype, sizes: tuple[int, ...]) -> str:
    """``"float32 rows of shape (n, 3)"``."""
    shape = ", ".join(("n", *map(str, sizes))) + ("," if not sizes else "")
    return f"{str(dtype).removeprefix('torch.')} rows of shape ({shape})"


def raise_together(error: BaseException | None, what: str) -> None:
    """Stop every process together after a check each makes on its own file (its part of a checkpoint): every process
    calls it at the same point, with the error it met or ``None``; it returns when none met one, and raises ``error``
    on one process.

    When rank 0 met one, every process raises, marked as met by every process
    (:func:`fwdlearn.errors.alike_on_every_process`), so the ``fwdlearn`` command prints rank 0's error once: a
    checkpoint made with other settings, another number of processes or a larger step budget is refused by every part
    alike (each process printed it, with its rank). When only other processes met one, each raises its own (printed
    with its rank) and the rest a :class:`~fwdlearn.errors.UsageError` saying which processes ``what`` (printed by
    rank 0).
    """
    from fwdlearn.errors import UsageError, alike_on_every_process

    if not is_distributed():
        if error is not None:
            raise error
        return
    failed = [r for r, flag in enumerate(gather_rows(torch.tensor([int(error is not None)])).tolist()) if flag]
    if not failed:
        return
    if error is None:
        many = len(failed) > 1
        error = UsageError(f"process{'es' if many else ''} {', '.join(map(str, failed))} of this torchrun job {what} "
                           f"({'each' if many else 'its'} own message says why)")
    if 0 in failed or rank() not in failed:
        with alike_on_every_process():  # (rank 0 alone says it)
            raise error
    raise error  # this process's own, said with its rank
