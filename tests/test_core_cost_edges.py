"""A step's cost at its edges: exact saved-for-backward bytes of every sparse layout and of a whole step, the /proc
readers' fields and units, the peak's two ways (the kernel's high-water mark, else a sampling thread) and its
fallbacks without them, the CUDA figures, and the fit report's arithmetic."""

import io
import os
import sys
import threading
import types
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from fwdlearn.diagnostics import cost
from fwdlearn.diagnostics.cost import Cost, CostReport, SavedBytes, WithCost, measure_cost

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LINUX_PROC = os.path.exists("/proc/self/clear_refs")


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("make, block", [
    (torch.sparse_csr_tensor, ()), (torch.sparse_csc_tensor, ()),
    (torch.sparse_bsr_tensor, (2, 2)), (torch.sparse_bsc_tensor, (2, 2)),
])
def test_a_compressed_sparse_tensor_is_counted_by_its_two_index_storages_and_its_values(make, block):
    """Every compressed layout holds its data in three storages: 4 compressed indices (32 bytes), 3 plain indices
    (24 bytes) and 3 values or 3 blocks of 2 x 2 values (float32: 12 or 48 bytes)."""
    t = make(torch.arange(4), torch.tensor([2, 0, 1]), torch.ones(3, *block), check_invariants=True)
    box = SavedBytes()
    box.add(t)
    assert (box.bytes, box.parameter_bytes) == (32 + 24 + 3 * 4 * (4 if block else 1), 0)


def test_an_uncoalesced_sparse_tensor_is_counted_by_its_indices_and_values():
    """(the indices of a tensor not coalesced, as a graph's edge list with repeated edges builds, are readable only as
    ``_indices()``): 3 entries, two at one place: 2 x 3 int64 indices and 3 float32 values."""
    t = torch.sparse_coo_tensor(torch.tensor([[0, 0, 1], [1, 1, 0]]), torch.ones(3), (2, 2), check_invariants=True)
    assert not t.is_coalesced()
    box = SavedBytes()
    box.add(t)
    assert box.bytes == 2 * 3 * 8 + 3 * 4


def test_a_step_saves_its_activations_apart_from_its_parameters_and_nothing_when_only_timed():
    """Linear(16, 8) saves its input (4 x 16 float32); the tanh output (4 x 8) serves Tanh's and the second
    Linear's backward; the second Linear saves its weight (8 x 4, a view of the parameter): a parameter's bytes."""
    model = nn.Sequential(nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 4))
    x = torch.randn(4, 16)
    measured = measure_cost(lambda: model(x).sum().backward())
    assert (measured.saved_bytes, measured.saved_parameter_bytes) == (4 * 16 * 4 + 4 * 8 * 4, 8 * 4 * 4)
    timed = measure_cost(lambda: model(x).sum().backward(), memory=False)
    assert (timed.saved_bytes, timed.saved_parameter_bytes, timed.peak_rss_bytes, timed.rss_increase_bytes) == \
        (0, 0, 0, 0)
    assert timed.cuda_peak_bytes is None and timed.cuda_increase_bytes is None


def _read_as(monkeypatch, text):
    """Serve ``text`` to the module's every ``open`` (as /proc/self/statm or /proc/self/status would read)."""
    monkeypatch.setattr(cost, "open", lambda *args, **kwargs: io.StringIO(text), raising=False)


@pytest.mark.skipif(not hasattr(os, "sysconf"), reason="statm's pages: POSIX's page size")
def test_the_resident_set_is_statm_s_second_field_in_pages(monkeypatch):
    _read_as(monkeypatch, "1000 25 7 1 0 9 0\n")  # (size, resident, shared, ...: pages)
    assert cost._rss_bytes() == 25 * os.sysconf("SC_PAGE_SIZE")
    for unreadable in ("", "1000 many 7\n"):
        _read_as(monkeypatch, unreadable)
        assert cost._rss_bytes() is None


def test_the_high_water_mark_is_status_vmhwm_in_kib(monkeypatch):
    _read_as(monkeypatch, "Name:\tpython\nVmPeak:\t 9000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n")
    assert cost._high_water_bytes() == 2048 * 1024
    for unreadable in ("Name:\tpython\nVmRSS:\t    1024 kB\n", "VmHWM:\n", "VmHWM:\t lots kB\n"):
        _read_as(monkeypatch, unreadable)
        assert cost._high_water_bytes() is None


def _fake_rss(monkeypatch, start, sampled, end):
    """``_rss_bytes`` reading ``start`` at the step's beginning, ``end`` at its end (both in this thread), and
    ``sampled`` in any other thread (the sampler); returns an event set once the sampler has read."""
    caller, calls, read = threading.current_thread(), [], threading.Event()

    def rss():
        if threading.current_thread() is not caller:
            read.set()
            return sampled
        calls.append(1)
        return start if len(calls) == 1 else end

    monkeypatch.setattr(cost, "_rss_bytes", rss)
    return read


@pytest.mark.parametrize("missing", ["clear_refs", "VmHWM"])
@pytest.mark.parametrize("start, sampled, end, peak", [
    (1000, 5000, 2000, 5000),  # the step's peak, between its start and its end, is the sampler's
    (1000, 2000, 7000, 7000),  # the end's resident set above every sample
    (3000, 2000, 1000, 3000),  # the step gave memory back: the peak is where it began, its increase 0
])
def test_without_the_kernels_high_water_mark_a_thread_samples_the_resident_set(monkeypatch, missing, start,
                                                                               sampled, end, peak):
    if missing == "clear_refs":
        monkeypatch.setattr(cost, "_restart_high_water", lambda: False)
    else:
        monkeypatch.setattr(cost, "_high_water_bytes", lambda: None)
    read = _fake_rss(monkeypatch, start, sampled, end)

    def step():
        if not read.wait(10):
            raise AssertionError("the resident set was not sampled during the step")

    measured = measure_cost(step)
    assert (measured.peak_rss_bytes, measured.rss_increase_bytes) == (peak, peak - start)


def test_with_the_kernels_high_water_mark_the_peak_is_it_and_no_thread_samples(monkeypatch):
    read = _fake_rss(monkeypatch, 1000, 99_000, 2000)
    restarted = []
    monkeypatch.setattr(cost, "_restart_high_water", lambda: restarted.append(1) or True)
    monkeypatch.setattr(cost, "_high_water_bytes", lambda: 9000)
    measured = measure_cost(lambda: None)
    assert (measured.peak_rss_bytes, measured.rss_increase_bytes) == (9000, 8000)
    assert restarted == [1] and not read.is_set()


@pytest.mark.skipif(not LINUX_PROC, reason="needs Linux's /proc")
def test_a_peak_before_the_step_is_not_the_steps_and_the_kernel_is_read_without_a_thread():
    """The high-water mark restarts at the step's beginning: 256 MB held and freed before it are not its increase."""
    big = torch.ones(64 * 1024 * 1024)  # (256 MB: mapped apart from the heap, given back to the system when freed)
    del big
    assert measure_cost(lambda: None).rss_increase_bytes < 64 * 1024 * 1024
    with cost._PeakMemory() as peak:
        assert peak._kernel and not peak._thread.is_alive()


def test_the_lifetime_peak_is_in_kib_on_linux_and_in_bytes_on_macos(monkeypatch):
    usage = {0: types.SimpleNamespace(ru_maxrss=5000), -1: types.SimpleNamespace(ru_maxrss=70_000)}  # (self, children)
    resource = types.SimpleNamespace(RUSAGE_SELF=0, RUSAGE_CHILDREN=-1, getrusage=usage.__getitem__)
    monkeypatch.setitem(sys.modules, "resource", resource)
    monkeypatch.setattr(sys, "platform", "linux")
    assert cost._lifetime_peak_bytes() == 5000 * 1024
    monkeypatch.setattr(sys, "platform", "darwin")
    assert cost._lifetime_peak_bytes() == 5000


def test_without_resource_a_psutil_without_peak_wset_gives_0(monkeypatch):
    """psutil's ``peak_wset`` is Windows's alone: read elsewhere (no ``resource``: a stripped Python) it is 0."""
    monkeypatch.setitem(sys.modules, "resource", None)
    memory = types.SimpleNamespace(rss=123)
    monkeypatch.setitem(sys.modules, "psutil",
                        types.SimpleNamespace(Process=lambda: types.SimpleNamespace(memory_info=lambda: memory)))
    assert cost._lifetime_peak_bytes() == 0


@pytest.mark.parametrize("cdll", ["no library", "no malloc_trim", "no name"])
def test_the_allocator_is_left_alone_off_glibc(monkeypatch, cdll):
    """macOS's libc has no malloc_trim; Windows's ctypes refuses a library named None (find_library found none)."""
    def load(name):
        if cdll == "no library":
            raise OSError(f"{name}: cannot open shared object file")
        if cdll == "no name":
            raise TypeError("expected str, bytes or os.PathLike object, not NoneType")
        return types.SimpleNamespace()

    monkeypatch.setattr(cost.ctypes, "CDLL", load)
    assert cost._trim_allocator() is None
    assert measure_cost(lambda: None).peak_rss_bytes > 0


def test_on_cuda_the_peak_is_the_allocators_and_the_increase_is_over_what_was_allocated_at_the_start(monkeypatch):
    """Read from torch's own counters, also when only timed; the timing waits for the device before and after."""
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append(("synchronize", device)))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: events.append(("reset", device)))
    monkeypatch.setattr(torch.cuda, "memory_allocated",
                        lambda device=None: events.append(("allocated", device)) or 1000)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 5000)
    for memory in (False, True):
        events.clear()
        measured = measure_cost(lambda: events.append(("step", None)), device="cuda:1", memory=memory)
        assert events == [("synchronize", "cuda:1"), ("reset", "cuda:1"), ("allocated", "cuda:1"), ("step", None),
                          ("synchronize", "cuda:1")]
        assert (measured.cuda_peak_bytes, measured.cuda_increase_bytes) == (5000, 4000)
        report = CostReport.from_costs([measured])
        assert (report.peak_memory_bytes, report.step_memory_bytes) == (5000, 4000)


def test_a_cost_report_of_no_measured_step_is_zeros_and_leaves_the_parameters_out():
    assert CostReport.from_costs([]) == CostReport.from_costs([None, None]) == CostReport() == CostReport(0, 0, 0)
    steps = [None, Cost(1.0, 10, 5000, 1000, 100, None), None, Cost(1.0, 20, 0, 900, 200, None)]
    report = CostReport.from_costs(steps)
    assert (report.saved_bytes_per_step, report.peak_memory_bytes, report.step_memory_bytes) == (20, 1000, 200)


def test_a_fit_reports_memory_figures_are_its_cost_reports_and_flatten_into_its_dict():
    @dataclass
    class Report(WithCost):
        accuracy: float
        cost: CostReport

    report = Report(0.5, CostReport(1, 2, 3))
    assert (report.saved_bytes_per_step, report.peak_memory_bytes, report.step_memory_bytes) == (1, 2, 3)
    assert report.as_dict() == {"accuracy": 0.5, "saved_bytes_per_step": 1, "peak_memory_bytes": 2,
                                "step_memory_bytes": 3}


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage")
def test_a_jagged_nested_tensor_is_counted_by_its_values_and_offsets():
    """A jagged nested tensor saved for backward was read as a compressed sparse one ("NotImplementedError:
    aten.ccol_indices.default"). x @ w saves x (5 x 4 float32 values, 3 int64 offsets) and w (a parameter); sin saves
    its input, whose values are new and whose offsets are x's (counted once)."""
    x = torch.nested.nested_tensor([torch.randn(2, 4), torch.randn(3, 4)], layout=torch.jagged)
    w = torch.randn(4, 4, requires_grad=True)
    with cost.saved_bytes() as box:
        (x @ w).sin()
    assert (box.bytes, box.parameter_bytes) == (5 * 4 * 4 + 3 * 8 + 5 * 4 * 4, 4 * 4 * 4)
