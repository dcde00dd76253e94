r"""What a training step costs: wall time, bytes saved for backward, peak memory.

* **Bytes saved for backward** are counted with
  ``torch.autograd.graph.saved_tensors_hooks``: every tensor autograd keeps for the
  backward pass is seen once when it is packed; each storage is counted once. This
  is the memory that backpropagation through depth (or time) must hold, and what
  local and feedback rules are meant to shrink. Parameters (and views of them) are
  reported apart, since they are held anyway.
* **Peak process memory** is the kernel's high-water mark of the resident set (``VmHWM`` in
  ``/proc/self/status``), restarted at the current size when the step begins (``/proc/self/clear_refs``);
  before that, glibc's ``malloc_trim(0)`` hands the memory the allocator holds free back to the system,
  so that memory kept from earlier steps does not hide what this step needs (a step of many small
  tensors would otherwise look free, a step of a few large ones not). That makes the step fault its
  memory in again, which costs time: measure time and memory in separate calls (``memory=False``).
  Where these are unavailable a background thread samples ``/proc/self/statm``; without ``/proc`` at all
  (macOS, Windows) the peak is the process's lifetime high-water mark (``resource.getrusage``; on Windows the peak
  working set, read through ``psutil``) and the step's increase is not measured (``None``).
* **CUDA peak memory** comes from ``torch.cuda.max_memory_allocated`` when on a GPU; its increase is that peak less
  what was allocated when the step began (the weights, the optimizer state, other models).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor

__all__ = ["Cost", "CostReport", "WithCost", "SavedBytes", "saved_bytes", "measure_cost"]


class SavedBytes:
    """Running totals filled in by :func:`saved_bytes`: the sum over the storages autograd saved in the block, each
    counted once while it lives (a storage freed in the block and another later placed at its address are two)."""

    def __init__(self) -> None:
        self.bytes = 0  # activations and other non-parameter tensors
        self.parameter_bytes = 0
        self._held: set[tuple[int, int]] = set()
        self._finalizers: list[weakref.finalize] = []  # (detached when the block ends: see saved_bytes)

    def add(self, t: Tensor) -> None:
        base = t._base if t._base is not None else t
        parameter = base.is_leaf and base.requires_grad
        for part in _strided_parts(t):
            storage = part.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
            if key in self._held:
                continue
            self._held.add(key)
            # held until the storage itself is freed (torch keeps one Python object per live storage): not the saved
            # tensor's, which the graph no longer holds (the pack hook hands it a detached alias), nor a view's (a
            # view freed while its base lived counted the storage again at the next view saved), nor a sparse
            # tensor's parts (fresh views, gone at once)
            self._finalizers.append(weakref.finalize(storage, self._held.discard, key))
            if parameter:
                self.parameter_bytes += storage.nbytes()
            else:
                self.bytes += storage.nbytes()


def _strided_parts(t: Tensor) -> list[Tensor]:
    """The dense tensors that hold ``t``'s data: itself, a sparse tensor's indices and values, or a jagged nested
    tensor's values and offsets."""
    if t.layout == torch.strided:
        return [t]
    if t.layout == torch.jagged:  # (was read as a compressed sparse tensor: "NotImplementedError: aten.ccol_indices")
        return [part for part in (t.values(), t.offsets(), t.lengths()) if part is not None]
    if t.layout == torch.sparse_coo:
        return [t._indices(), t._values()]
    if t.layout in (torch.sparse_csr, torch.sparse_bsr):
        return [t.crow_indices(), t.col_indices(), t.values()]
    return [t.ccol_indices(), t.row_indices(), t.values()]


@contextmanager
def saved_bytes() -> Iterator[SavedBytes]:
    """Count the bytes autograd saves for backward inside the block.

    Example::

        with saved_bytes() as box:
            loss = model(x).sum()
        print(box.bytes)
    """
    box = SavedBytes()

    def pack(t: Tensor) -> Tensor:
        box.add(t)
        # a detached alias (same storage, no copy; autograd restores the saved tensor's grad_fn when it unpacks it):
        # the tensor itself, when it is the output of the node saving it, made a cycle through torch's C++ graph
        # (output -> grad_fn -> saved variable -> output) that Python's collector cannot see, so a graph never
        # backpropagated, or backpropagated with retain_graph=True, was never freed -- with every activation and
        # parameter it saved (hop_influence(variant="full") kept its model's whole graph at every call)
        return t.detach()

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield box
    finally:  # a saved tensor that outlives the block (a parameter, the input) kept its finalizer, and this box with
        for finalizer in box._finalizers:  # it, for as long as it lived: a few hundred bytes more at every measure
            finalizer.detach()
        box._finalizers.clear()
        box._held.clear()


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _high_water_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _restart_high_water() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim_allocator() -> None:
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc
        pass


class _PeakMemory:
    """Peak resident memory while the block runs: the kernel's high-water mark, else a sampling thread."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.start: int | None = None
        self.peak = 0
        self._kernel = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = _rss_bytes()
            if rss is not None and rss > self.peak:
                self.peak = rss
            time.sleep(self.interval)

    def __enter__(self) -> "_PeakMemory":
        _trim_allocator()
        self.start = _rss_bytes()
        self.peak = self.start or 0
        self._kernel = self.start is not None and _restart_high_water() and _high_water_bytes() is not None
        if self.start is not None and not self._kernel:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        rss = _rss_bytes()
        if rss is not None:
            self.peak = max(self.peak, rss)
        if self._kernel:
            self.peak = max(self.peak, _high_water_bytes() or 0)
        if self.start is None:  # no /proc (macOS, Windows): the lifetime high-water mark is the best there is,
            self.peak = _lifetime_peak_bytes()  # and a step's increase cannot be read from it

    @property
    def increase(self) -> int | None:
        """The step's increase over the resident set it began with (``None`` where it cannot be measured)."""
        return None if self.start is None else max(0, self.peak - self.start)


def _lifetime_peak_bytes() -> int:
    """The process's peak resident set since it started (``ru_maxrss``: KiB on Linux, bytes on macOS); on Windows,
    which has no ``resource`` module, the peak working set (``psutil``'s ``peak_wset``, where psutil is installed: PyG
    requires it); 0 where neither can be read."""
    import sys

    try:
        import resource
    except ImportError:  # (Windows: every graph fit, which measures its first step, failed here)
        try:
            import psutil

            return int(psutil.Process().memory_info().peak_wset)
        except (ImportError, AttributeError, OSError):
            return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@dataclass
class Cost:
    """The cost of one call of a training step."""

    seconds: float
    saved_bytes: int
    saved_parameter_bytes: int
    peak_rss_bytes: int
    #: the step's increase of the resident set (``None`` where it cannot be measured: without ``/proc``, e.g. macOS,
    #: Windows)
    rss_increase_bytes: int | None
    cuda_peak_bytes: int | None
    cuda_increase_bytes: int | None = None


def measure_cost(fn: Callable[[], Any], device: torch.device | str | None = None, memory: bool = True) -> Cost:
    """Run ``fn()`` once (a full training step: forward, backward, update) and measure it.

    Args:
        fn: the step; nothing it returns is kept.
        device: the device it runs on; on CUDA the peak allocated memory is reported and the
            timing is synchronised.
        memory: also measure memory (default). Counting saved tensors runs a Python hook per tensor
            and the exact peak makes the step take its memory back from the system, both of which cost
            time: to time a step as it runs in a training loop, call with ``memory=False`` (the saved-tensor
            and RSS fields are then 0; on CUDA the peak allocated memory is still read, from torch's own
            counters, which cost no time).
    """
    cuda = device is not None and torch.device(device).type == "cuda"
    cuda_start = None
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        cuda_start = torch.cuda.memory_allocated(device)
    with ExitStack() as stack:
        peak = stack.enter_context(_PeakMemory()) if memory else None
        box = stack.enter_context(saved_bytes()) if memory else SavedBytes()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
    return Cost(
        seconds=seconds,
        saved_bytes=box.bytes,
        saved_parameter_bytes=box.parameter_bytes,
        peak_rss_bytes=peak.peak if peak is not None else 0,
        rss_increase_bytes=peak.increase if peak is not None else 0,
        cuda_peak_bytes=torch.cuda.max_memory_allocated(device) if cuda else None,
        cuda_increase_bytes=torch.cuda.max_memory_allocated(device) - cuda_start if cuda else None,
    )


@dataclass
class CostReport:
    """The memory a fit needed, in the form every fit report carries.

    Attributes:
        saved_bytes_per_step: bytes autograd saved for backward in the largest measured step (for
            layer-by-layer training the largest layer, since one layer trains at a time).
        peak_memory_bytes: CUDA peak allocated on a GPU, else the process's peak RSS, during the measured step(s).
        step_memory_bytes: the largest increase during a measured step: of CUDA's allocated memory on a GPU, else of
            the RSS (0 where that cannot be measured: without ``/proc``). Unlike the peak, it does not carry what the
            process held before the step (earlier models).
    """

    saved_bytes_per_step: int = 0
    peak_memory_bytes: int = 0
    step_memory_bytes: int = 0

    @classmethod
    def from_costs(cls, costs: "list[Cost | None]") -> "CostReport":
        """Summarise measured steps (zeros when none was measured)."""
        costs = [c for c in costs if c is not None]
        if not costs:
            return cls()

        def memory(c: Cost) -> tuple[int, int]:
            if c.cuda_peak_bytes is not None:
                return int(c.cuda_peak_bytes), int(c.cuda_increase_bytes or 0)
            return int(c.peak_rss_bytes), int(c.rss_increase_bytes or 0)

        measured = [memory(c) for c in costs]  # (each the largest of its own: they may come from different steps)
        return cls(int(max(c.saved_bytes for c in costs)), max(m[0] for m in measured), max(m[1] for m in measured))


class WithCost:
    """Mixin of the fit reports (dataclasses with a ``cost: CostReport`` field): the memory figures as
    attributes, and ``as_dict()`` with them flattened in."""

    cost: CostReport

    @property
    def saved_bytes_per_step(self) -> int:
        """``cost.saved_bytes_per_step``: bytes autograd saved for backward in one training step."""
        return self.cost.saved_bytes_per_step

    @property
    def peak_memory_bytes(self) -> int:
        """``cost.peak_memory_bytes``: the peak memory during the measured step."""
        return self.cost.peak_memory_bytes

    @property
    def step_memory_bytes(self) -> int:
        """``cost.step_memory_bytes``: the measured step's increase of memory."""
        return self.cost.step_memory_bytes

    def as_dict(self) -> dict[str, Any]:
        """The report's fields as a dict (:func:`dataclasses.asdict`), the ``cost`` figures flattened in."""
        from dataclasses import asdict

        out = asdict(self)  # type: ignore[call-overload]
        out.update(out.pop("cost"))
        return out
