r"""Synthetic feedback: the true backward signal at chosen points is replaced by a
fixed projection of an error.

Two instances of one idea:

* **Across depth -- direct feedback alignment (DFA).** The output error
  :math:`e = \partial \mathcal{L} / \partial y` is sent straight to every feedback
  point :math:`l` through a fixed random matrix :math:`B_l`:

  .. math::
      \delta_l = e\,B_l \qquad (\text{instead of } \partial \mathcal{L}/\partial h_l),

  and autograd turns :math:`\delta_l` into parameter gradients inside the block
  below the point (so :math:`\delta_l \odot f'(a_l)` falls out of the chain rule).
  See :class:`DirectFeedback` (Nøkland, NeurIPS 2016, arXiv:1609.01596; Launay et al.,
  NeurIPS 2020, arXiv:2006.12878).

* **Across time -- stationary state feedback (DSF).** Backpropagation through time
  computes :math:`g_t = e_t + J_t^\top g_{t+1}` with the state Jacobian :math:`J_t`.
  DSF replaces :math:`J_t^\top` by a fixed matrix :math:`A` (diagonal in the reference):

  .. math::
      g_t = e_t + A\,g_{t+1} = \sum_{k \ge t} A^{k-t} e_k,

  an anti-causal linear filter computed by :func:`reverse_scan`; see :func:`time_feedback`
  (Caillon, Fagnou & Allauzen 2025, arXiv:2503.23104).

Both are ``torch.autograd.Function``\ s: models stay ordinary ``nn.Module``\ s and
``loss.backward()`` still drives training.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .errors import check_bool, check_int, check_seed, is_integer
from .fit import generator_device
from .registry import unknown
from .rules import DSF_FEEDBACKS, FEEDBACK_KINDS

__all__ = [
    "FEEDBACK_MAKERS",
    "FEEDBACK_SEED_OFFSET",
    "FeedbackMaker",
    "feedback_matrix",
    "diagonal_feedback",
    "make_feedback",
    "spectral_radius",
    "DirectFeedback",
    "FeedbackProbe",
    "reverse_scan",
    "time_feedback",
]

#: what a model adds to its seed for its DFA matrices' seed: :class:`DirectFeedback` with ``seed=s`` draws the uniforms
#: ``torch.manual_seed(s)`` draws, so after ``seed_everything(s)`` the first weights built from torch's generator
#: would be functions of :math:`B` (a GNN's classifier equal to it; a recurrent LM's embedding correlated with it)
FEEDBACK_SEED_OFFSET = 0xDFA


def diagonal_feedback(d: int) -> Tensor:
    r"""DSF's reference feedback: the diagonal :math:`A = \operatorname{diag}(\operatorname{linspace}(0, 1, d))`,
    returned as the decay vector ``a`` of shape ``[d]``: channel :math:`i` of :math:`g_t = e_t + a \odot g_{t+1}`
    keeps the fraction :math:`a_i` of the later errors per step (:math:`a_i = 0`: FT-BPTT's :math:`g_t = e_t`;
    :math:`a_i = 1`: their plain sum)."""
    if not is_integer(d) or d < 1:  # (2.5 failed inside torch.linspace)
        raise ValueError(f"diagonal_feedback needs an int d >= 1, got {d!r}")
    return torch.linspace(0.0, 1.0, int(d))


def _diagonal(rows: int, cols: int, generator: torch.Generator | None) -> Tensor:
    if rows != cols:
        raise ValueError(f"the diagonal feedback is square; got rows={rows}, cols={cols}")
    return diagonal_feedback(rows)


def _uniform(rows: int, cols: int, generator: torch.Generator | None) -> Tensor:
    return (torch.rand(rows, cols, generator=generator, device=generator_device(generator)) * 2 - 1) / math.sqrt(cols)


def _gaussian(rows: int, cols: int, generator: torch.Generator | None) -> Tensor:
    return torch.randn(rows, cols, generator=generator, device=generator_device(generator)) / math.sqrt(cols)


def _orthogonal(rows: int, cols: int, generator: torch.Generator | None) -> Tensor:
    m = torch.randn(max(rows, cols), min(rows, cols), generator=generator, device=generator_device(generator))
    q, r = torch.linalg.qr(m)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # unique, uniformly distributed
    return q if rows >= cols else q.t()


@dataclass(frozen=True)
class FeedbackMaker:
    """How one feedback kind is drawn: ``draw(rows, cols, generator)``; ``matrix``: a ``[rows, cols]`` matrix, else
    (square only) the ``[d]`` diagonal of one."""

    draw: Callable[[int, int, "torch.Generator | None"], Tensor]
    matrix: bool = True


#: how each kind of :data:`fwdlearn.rules.FEEDBACK_KINDS` is drawn (a new kind: a line there and one here)
FEEDBACK_MAKERS: dict[str, FeedbackMaker] = {
    "diagonal": FeedbackMaker(_diagonal, matrix=False),
    "uniform": FeedbackMaker(_uniform),
    "gaussian": FeedbackMaker(_gaussian),
    "orthogonal": FeedbackMaker(_orthogonal),
}
if set(FEEDBACK_MAKERS) != set(FEEDBACK_KINDS):  # (a kind named in one table only)
    raise ImportError(f"fwdlearn.feedback draws {sorted(FEEDBACK_MAKERS)} but fwdlearn.rules names "
                      f"{sorted(FEEDBACK_KINDS)}")


def feedback_matrix(
    rows: int, cols: int, kind: str = "uniform", generator: torch.Generator | None = None
) -> Tensor:
    r"""A fixed random feedback matrix of shape ``[rows, cols]``.

    * ``uniform``: :math:`B_{ij} \sim \mathcal{U}[-1, 1) / \sqrt{\text{cols}}`
      (the DFA-for-transformers recipe: uniform entries scaled by the feedback width);
    * ``gaussian``: :math:`B_{ij} \sim \mathcal{N}(0, 1) / \sqrt{\text{cols}}`
      (for a square matrix, DSF's Gaussian variant ``randn(d, d) / sqrt(d)``);
    * ``orthogonal``: a (semi-)orthogonal matrix, :math:`B B^\top = I` or :math:`B^\top B = I`.

    Drawn on ``generator``'s device (the same numbers wherever the model goes) and returned on the default device
    (:func:`torch.get_default_device`: the CPU, or the device of a ``with torch.device("cuda"):`` block a model is
    built in).
    """
    if not (is_integer(rows) and is_integer(cols) and rows >= 1 and cols >= 1):
        raise ValueError(f"feedback_matrix needs positive int sizes, got rows={rows!r}, cols={cols!r}")
    rows, cols = int(rows), int(cols)
    maker = FEEDBACK_MAKERS.get(kind)
    if maker is None or not maker.matrix:
        kinds = [k for k, m in FEEDBACK_MAKERS.items() if m.matrix]
        raise ValueError(unknown("feedback kind", kind, kinds))
    return maker.draw(rows, cols, generator).to(torch.get_default_device())


def make_feedback(kind: str, d: int, generator: torch.Generator | None = None) -> Tensor:
    r"""DSF's fixed feedback :math:`A` for a state of width ``d``: ``[d]`` decays or a ``[d, d]`` matrix.

    ``diagonal``: :math:`\operatorname{linspace}(0, 1, d)` (:func:`diagonal_feedback`);
    ``gaussian``: :math:`\mathcal{N}(0,1)/\sqrt{d}`; ``orthogonal``: a random orthogonal matrix
    (:func:`feedback_matrix`).

    The Gaussian matrix is the DSF reference's ``randn(d, d) / sqrt(d)``; its spectral radius is near 1 and, at the
    widths used here, above it (in 20 draws each: 1.00-1.20 at d = 64, 1.01-1.09 at d = 256), so its scan can grow
    like :math:`\rho^{T-1}` over a window (:func:`spectral_radius`; ``fit`` warns). The diagonal decays are in
    ``[0, 1]`` and the orthogonal matrix has radius 1. Drawn and placed as :func:`feedback_matrix`'s.
    """
    if kind not in DSF_FEEDBACKS:
        raise ValueError(unknown("DSF feedback", kind, DSF_FEEDBACKS))
    d = check_int("d", d, 1, " (the state width)")
    return FEEDBACK_MAKERS[kind].draw(d, d, generator).to(torch.get_default_device())


def spectral_radius(a: Tensor) -> float:
    r""":math:`\rho(A) = \max_i |\lambda_i(A)|` of DSF's feedback: ``[d]`` decays (a diagonal :math:`A`) or a
    ``[d, d]`` matrix. The reverse scan :math:`g_t = \sum_k A^k e_{t+k}` (:func:`reverse_scan`) can grow like
    :math:`\rho^{T-1}` over a window of :math:`T` steps when :math:`\rho > 1`."""
    if not isinstance(a, Tensor) or a.numel() == 0 or not (a.dim() == 1 or a.dim() == 2 and a.shape[0] == a.shape[1]):
        shape = tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__
        raise ValueError(f"spectral_radius takes DSF's feedback: [d] decays or a square [d, d] matrix, got {shape}")
    a = a.detach().to(torch.float64).cpu()
    return float(a.abs().max() if a.dim() == 1 else torch.linalg.eigvals(a).abs().max())


# --------------------------------------------------------------------------- DFA


class _Tape:
    """Carries the output error of one forward pass to the feedback points of that pass."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: Tensor | None = None


class _FeedbackOutput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y: Tensor, tape: _Tape) -> Tensor:  # type: ignore[override]
        ctx.tape = tape
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        ctx.tape.error = grad.detach()
        return grad, None


class _FeedbackPoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, matrix: Tensor, tape: _Tape, name: str,  # type: ignore[override]
                spread: Callable[[Tensor], Tensor] | None) -> Tensor:
        ctx.tape, ctx.name, ctx.shape, ctx.spread = tape, name, h.shape, spread
        # B is a fixed buffer of DirectFeedback, held anyway: kept on ctx, not saved for backward, so that a step's
        # saved-for-backward bytes (fwdlearn.diagnostics.cost) count activations alone (B was a third of what DFA
        # saved beyond BP in a 2 x 64 transformer, and 59 % for dfa:micro)
        ctx.matrix = matrix
        return h.view_as(h)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        matrix = ctx.matrix
        e = ctx.tape.error
        if e is None:
            raise RuntimeError(
                f"feedback point {ctx.name!r} was reached in the backward pass before any output "
                "error was recorded: wrap the model's output with dfa.output(y) and make sure the "
                "loss depends on the points only through that output"
            )
        return _signal(e, matrix, ctx.shape, ctx.name, ctx.spread).to(grad.dtype), None, None, None, None


def _signal(e: Tensor, matrix: Tensor, shape: torch.Size, name: str,
            spread: Callable[[Tensor], Tensor] | None) -> Tensor:
    r"""The DFA signal :math:`S(e)\,B` of point ``name`` of shape ``shape``, its error's shape checked."""
    if spread is not None:
        e = spread(e)
        if e.shape[-1] != matrix.shape[0]:
            raise RuntimeError(f"the spread of feedback point {name!r} changed the error width to "
                               f"{e.shape[-1]}; it must mix examples only and keep the {matrix.shape[0]} channels")
    if e.shape[:-1] != shape[:-1]:
        raise RuntimeError(
            f"feedback point {name!r} has batch shape {tuple(shape[:-1])} but the output "
            f"error{' after its spread' if spread is not None else ''} has batch shape "
            f"{tuple(e.shape[:-1])}; DFA projects the error per example, "
            "so every point needs the output's leading dimensions"
        )
    return _project(e, matrix, shape)


def _project(e: Tensor, matrix: Tensor, shape: torch.Size) -> Tensor:
    r"""The DFA signal :math:`e\,B` of a point of shape ``shape`` (``e``: ``[..., error_dim]``)."""
    return (e.reshape(-1, e.shape[-1]).to(matrix.dtype) @ matrix).reshape(shape)


class FeedbackProbe:
    r"""The feedback points of forward passes run under :meth:`DirectFeedback.probing`: plain backprop,
    so that the DFA signal and the true gradient can be compared at every point.

    :meth:`compare` takes the loss of those passes and returns, per point, the pair
    :math:`(e\,B_l,\ \partial\mathcal{L}/\partial h_l)`, both shaped like the point: :math:`e` is
    the true gradient at the output the point belongs to (:meth:`DirectFeedback.output`) and
    :math:`\partial\mathcal{L}/\partial h_l` the true backprop gradient at the point. A point marked
    ``through`` :math:`g` pairs the signal it delivers into :math:`h`, :math:`(e\,B_l)\,\partial g/\partial h`,
    with :math:`\partial\mathcal{L}/\partial h`. Parameter gradients are left alone (``torch.autograd.grad``
    w.r.t. the points and outputs only).
    """

    def __init__(self, feedback: "DirectFeedback") -> None:
        self.feedback = feedback
        #: name -> (tensor, output index, spread, through)
        self.points: dict[str, tuple[Tensor, int, Callable[[Tensor], Tensor] | None,
                                     Callable[[Tensor], Tensor] | None]] = {}
        self.outputs: list[Tensor] = []

    def compare(self, loss: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """``{point: (dfa_signal, true_gradient)}`` for every point marked inside the ``probing()`` block."""
        if not self.points:
            raise RuntimeError("no feedback point was marked inside probing(): run the model's forward pass "
                               "(training mode, gradients on) inside the with-block")
        names = list(self.points)
        tensors = [self.points[n][0] for n in names]
        grads = torch.autograd.grad(loss, tensors + self.outputs, allow_unused=True)
        errors = grads[len(names):]
        pairs = {}
        for name, h, g in zip(names, tensors, grads):
            _, index, spread, through = self.points[name]
            e = errors[index] if index < len(errors) else None
            if e is None or g is None:
                raise RuntimeError(f"the loss does not reach feedback point {name!r} through its wrapped output "
                                   "(dfa.output(y) after the point); the DFA signal there is undefined")
            signal = _signal(e, self.feedback.matrix(name), h.shape, name, spread)
            if through is not None:  # what the point delivers into h: through g's Jacobian
                with torch.enable_grad():
                    at = h.detach().requires_grad_()
                    (signal,) = torch.autograd.grad(through(at), at, signal.to(h.dtype))
            pairs[name] = (signal.detach(), g.detach())
        return pairs


class DirectFeedback(nn.Module):
    r"""Direct feedback alignment through marked feedback points.

    In the forward pass :meth:`point` and :meth:`output` return their input unchanged.
    In the backward pass the output wrapper records the true gradient
    :math:`e = \partial\mathcal{L}/\partial y` (and lets it flow on, so the output layer
    itself is trained by its true gradient); every feedback point :math:`l` then
    *discards* the gradient arriving from above and sends

    .. math::
        \delta_l = e\,B_l, \qquad B_l \in \mathbb{R}^{d_\text{error} \times d_l}

    into the layers below it. Placement is the caller's choice: one point per block
    output ("macro" DFA in a transformer) or several inside each block ("micro").
    Works for any batch dimensions (per token, per node), as long as each point shares
    the output's leading dimensions. When examples interact in the forward pass (the
    nodes of a graph), a point may take a ``spread`` :math:`S_l`, a linear map across
    examples applied to the error first: :math:`\delta_l = S_l(e)\,B_l`.

    Args:
        error_dim: width :math:`d_\text{error}` of the output whose error is broadcast.
        point_dims: ``{name: width}`` of every feedback point.
        kind: ``"uniform"``, ``"gaussian"`` or ``"orthogonal"`` (see :func:`feedback_matrix`).
        shared: if ``True`` (default), one random matrix of width ``max(widths)`` is drawn
            and each point uses its first :math:`d_l` columns, rescaled to its own width;
            otherwise (and always for ``orthogonal``) every point gets an independent draw.
        seed: seed of the random draw (the matrices are fixed buffers, saved in ``state_dict``).

    Example::

        dfa = DirectFeedback(vocab, {f"block{i}": d for i in range(L)})
        for i, block in enumerate(blocks):
            h = dfa.point(block(h), f"block{i}")
        logits = dfa.output(head(h))
        F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
    """

    def __init__(
        self,
        error_dim: int,
        point_dims: Mapping[str, int],
        kind: str = "uniform",
        shared: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(point_dims, Mapping) or not point_dims:
            raise ValueError("DirectFeedback needs at least one feedback point in point_dims, a dict {name: width}; "
                             f"got {point_dims!r}")
        error_dim = check_int("error_dim", error_dim, 1, " (the width of the output whose error is sent)")
        point_dims = {name: check_int(f"the width of feedback point {name!r}", width, 1, " (its last dimension)")
                      for name, width in point_dims.items()}  # (a negative one failed as "math domain error")
        seed = check_seed(seed)
        shared = check_bool("shared", shared)  # (shared="no" is true: one draw sliced, in silence)
        self.error_dim = error_dim
        self.kind = kind
        self._names = list(point_dims)
        buffers: dict[str, str] = {}
        for name in self._names:
            other = buffers.setdefault(self._buffer(name), name)
            if other != name:
                raise ValueError(f"feedback points {other!r} and {name!r} would share the buffer "
                                 f"{self._buffer(name)!r} ('.' is stored as '_'); rename one of them")
        gen = torch.Generator().manual_seed(seed)
        slice_shared = shared and kind != "orthogonal"  # slices of an orthogonal matrix are not
        base = feedback_matrix(error_dim, max(point_dims.values()), kind, gen) if slice_shared else None
        for name, width in point_dims.items():
            if base is not None:  # columns carry 1/sqrt(max width); rescale to 1/sqrt(width)
                m = base[:, :width] * math.sqrt(base.shape[1] / width)
            else:
                m = feedback_matrix(error_dim, width, kind, gen)
            self.register_buffer(self._buffer(name), m)
        self._tape = _Tape()
        self._probe: FeedbackProbe | None = None

    @staticmethod
    def _buffer(name: str) -> str:
        return "B_" + name.replace(".", "_")

    @property
    def points(self) -> list[str]:
        """Names of the feedback points, in declaration order."""
        return list(self._names)

    def extra_repr(self) -> str:  # (its matrices are buffers: the module tree showed "DirectFeedback()")
        shown = [f"{name}: {self.matrix(name).shape[1]}" for name in self._names[:8]]
        more = f", ... {len(self._names)} in all" if len(self._names) > 8 else ""
        return f"error_dim={self.error_dim}, kind={self.kind}, points={{{', '.join(shown)}{more}}}"

    def matrix(self, name: str) -> Tensor:
        """The feedback matrix :math:`B_\\text{name}` of shape ``[error_dim, width]``."""
        if name not in self._names:
            raise KeyError(f"unknown feedback point {name!r}; declared points: {', '.join(self._names)}")
        return getattr(self, self._buffer(name))

    def set_matrix(self, name: str, value: Tensor) -> None:
        """Replace a point's feedback matrix ``[error_dim, width]``. With the weight :math:`W` ``[error_dim, width]`` of
        the linear read-out that maps the point to the output (``torch.nn.Linear.weight``, :math:`y = h W^\\top`),
        :math:`e\\,B = e\\,W` is the true gradient: DFA becomes backprop (:math:`W`, not :math:`W^\\top`)."""
        old = self.matrix(name)
        if value.shape != old.shape:
            raise ValueError(f"matrix for {name!r} must have shape {tuple(old.shape)}, got {tuple(value.shape)}")
        old.copy_(value.detach())

    def point(self, h: Tensor, name: str, spread: Callable[[Tensor], Tensor] | None = None,
              through: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        r"""Mark ``h`` as a feedback point; returns ``h`` (identity in the forward pass).

        Args:
            h: the point's activations ``[..., width]``.
            name: a declared point.
            spread: an optional linear map :math:`S` applied to the error before the projection,
                :math:`\delta = S(e)\,B`, that mixes examples and keeps the channels (``[..., error_dim]``
                in and out): when examples interact in the forward pass -- the nodes of a graph --
                the true backward map mixes them too (a GNN layer's :math:`\hat A^\top`), and a
                spread carries the error to examples that have none of their own. Called once per
                backward pass.
            through: an optional fixed differentiable map :math:`g` (same width) the point sees ``h`` by, e.g. a
                parameter-free LayerNorm for a pre-LN residual stream: the feedback then enters through
                :math:`g`'s Jacobian, :math:`\delta = (e\,B)\,\partial g/\partial h` (the part of :math:`e\,B`
                that :math:`g` ignores -- for a LayerNorm, the mean and the component along :math:`h` -- is dropped),
                and the returned tensor still equals ``h``.
        """
        m = self.matrix(name)
        if h.shape[-1] != m.shape[1]:
            raise ValueError(
                f"feedback point {name!r} was declared with width {m.shape[1]} but got a tensor "
                f"with last dimension {h.shape[-1]}"
            )
        if self._probe is not None:  # plain backprop; the probe keeps the tensor to read its true gradient
            if name in self._probe.points:
                raise RuntimeError(f"feedback point {name!r} was marked twice inside one probing() block; run one "
                                   "forward pass per block (compare() pairs one tensor per point)")
            h = h.view_as(h)
            self._probe.points[name] = (h, len(self._probe.outputs), spread, through)
            return h
        if through is not None:
            seen = self.point(through(h), name, spread)
            return h.detach() + (seen - seen.detach())  # value h; backward: only the point's signal, through g
        return _FeedbackPoint.apply(h, m, self._tape, name, spread)

    def output(self, y: Tensor) -> Tensor:
        """Wrap the output whose true gradient is broadcast to every point of this forward pass.

        Points marked after this call belong to the next forward pass.
        """
        if y.shape[-1] != self.error_dim:
            raise ValueError(f"output has last dimension {y.shape[-1]} but error_dim is {self.error_dim}")
        tape, self._tape = self._tape, _Tape()
        if self._probe is not None:
            y = y.view_as(y)
            self._probe.outputs.append(y)
            return y
        return _FeedbackOutput.apply(y, tape)

    @contextmanager
    def probing(self) -> Iterator[FeedbackProbe]:
        r"""Run forward passes as plain backprop and compare, at every point, the DFA signal with the true gradient.

        Inside the block :meth:`point` and :meth:`output` leave the backward pass alone and remember
        their tensors; the probe's :meth:`~FeedbackProbe.compare` then returns
        ``{point: (e @ B_point, dL/dh_point)}`` (the alignment diagnostic of
        :func:`fwdlearn.diagnostics.alignment.feedback_alignment`).

        Example::

            with dfa.probing() as probe:
                loss = loss_fn(model(x))          # a forward pass that marks points and wraps the output
                pairs = probe.compare(loss)
        """
        if self._probe is not None:
            raise RuntimeError("probing() blocks of one DirectFeedback cannot be nested")
        self._probe = FeedbackProbe(self)
        try:
            yield self._probe
        finally:
            self._probe = None


# --------------------------------------------------------------------------- DSF


def reverse_scan(e: Tensor, a: Tensor, dim: int = -2) -> Tensor:
    r"""Anti-causal linear scan: :math:`g_t = e_t + A\,g_{t+1}`, with :math:`g_{T} = 0`.

    Equivalently :math:`g_t = \sum_{k=0}^{T-1-t} A^k e_{t+k}`. On a CPU the recurrence is run
    step by step (:math:`T` small operations, :math:`O(T d)` work for a diagonal :math:`A`); on other
    devices in :math:`\lceil\log_2 T\rceil` vectorised steps (Hillis--Steele: after step :math:`s`,
    :math:`g^{(s)}_t = \sum_{k < 2^s} A^k e_{t+k}`, and
    :math:`g^{(s+1)}_t = g^{(s)}_t + A^{2^s} g^{(s)}_{t+2^s}`), which does :math:`\log_2 T` times
    the work in few kernel launches. (On one CPU thread the step-by-step loop is 2-3x faster for a
    diagonal :math:`A` and 5-6x for a dense one at :math:`T = 128 \ldots 2048`, :math:`d = 256`.)

    Args:
        e: ``[..., T, d]`` local errors, time along ``dim`` and channels last.
        a: ``[d]`` per-channel decays (a diagonal :math:`A`, as in DSF) or a ``[d, d]`` matrix.
        dim: the time dimension of ``e`` (default ``-2``); must not be the last one.

    Returns:
        Tensor shaped like ``e`` (in its dtype; a half-precision scan is computed in float32). Stable for decays in
        ``[0, 1]``; ``a = 0`` gives ``e`` back and ``a = 1`` the reverse cumulative sum. Differentiable: with gradients
        on and an ``e`` or ``a`` that requires them, the step-by-step scan runs without writing in place (slower).
    """
    dim = _check_scan(e, a, dim)
    dtype = e.dtype
    # (in at least float32: a bfloat16 running sum stalls once its ulp passes the terms added, and the step-by-step
    # scan of a decay-1 channel over 1024 steps read 9.75 for 18.5)
    wide = torch.promote_types(dtype, torch.float32)
    e = e.movedim(dim, -2).to(wide)
    a = a.to(device=e.device, dtype=wide)
    if torch.is_grad_enabled() and (e.requires_grad or a.requires_grad):
        g = _scan_differentiable(e, a)  # (the loops below write in place: on a CPU torch refused an `out=` with a
        # gradient, on a GPU a decay's gradient read a tensor changed in place)
    else:
        g = _scan_by_steps(e, a) if e.device.type == "cpu" else _scan_by_doubling(e, a)
    return g.to(dtype).movedim(-2, dim)


def _check_scan(e: Tensor, a: Tensor, dim: int) -> int:
    """``dim`` as a non-negative index, after checking ``e [..., T, d]`` (time at ``dim``) and ``a [d]`` /
    ``[d, d]``: tensors (a float decay or a NumPy array failed with "has no attribute 'shape'", or, in
    :func:`time_feedback`, inside autograd) and an integer ``dim``."""
    if not isinstance(e, Tensor):
        raise TypeError(f"reverse_scan: e must be a tensor [..., T, d]; got {type(e).__name__}")
    if not isinstance(a, Tensor):
        d = e.shape[-1] if e.dim() else "d"
        fix = (f"for one decay c of every channel, a = torch.full(({d},), c)" if isinstance(a, numbers.Real) else
               "convert it with torch.as_tensor(a)")
        raise TypeError(f"reverse_scan: a must be a tensor, [{d}] per-channel decays or a [{d}, {d}] matrix; got "
                        f"{type(a).__name__}: {fix}")
    if not is_integer(dim):  # (1.0 failed in torch's movedim, naming no argument)
        raise TypeError(f"reverse_scan: dim (the time dimension of e) must be an int, got {dim!r}")
    dim = int(dim)
    if e.dim() < 2:
        raise ValueError(f"reverse_scan needs e of shape [..., T, d]; got {tuple(e.shape)}")
    if not -e.dim() <= dim < e.dim():
        raise IndexError(f"reverse_scan: dim {dim} is out of range for e of {e.dim()} dimensions")
    dim = dim % e.dim()
    if dim == e.dim() - 1:
        raise ValueError("reverse_scan: the time dimension must not be the last (channel) dimension")
    d = e.shape[-1]
    if a.shape not in ((d,), (d, d)):
        raise ValueError(f"reverse_scan: a must have shape [{d}] or [{d}, {d}] to match e's channels; got "
                         f"{tuple(a.shape)}")
    return dim


def _scan_by_steps(e: Tensor, a: Tensor) -> Tensor:
    g = torch.empty_like(e)
    T = e.shape[-2]
    if T == 0:
        return g
    later = g[..., T - 1, :]
    later.copy_(e[..., T - 1, :])
    diagonal = a.dim() == 1
    for t in range(T - 2, -1, -1):
        out = g[..., t, :]
        if diagonal:
            later = torch.addcmul(e[..., t, :], a, later, out=out)
        else:
            later = torch.add(e[..., t, :], later @ a.mT, out=out)
    return g


def _scan_differentiable(e: Tensor, a: Tensor) -> Tensor:
    """The step-by-step scan without writing in place, so that autograd differentiates it (in ``e`` and ``a``)."""
    T = e.shape[-2]
    if T == 0:
        return e.clone()
    later, rows = e[..., T - 1, :], [e[..., T - 1, :]]
    for t in range(T - 2, -1, -1):
        later = e[..., t, :] + (a * later if a.dim() == 1 else later @ a.mT)
        rows.append(later)
    return torch.stack(rows[::-1], dim=-2)


def _scan_by_doubling(e: Tensor, a: Tensor) -> Tensor:
    g = e.clone()
    T = g.shape[-2]
    diagonal = a.dim() == 1
    power, offset = a, 1
    while offset < T:
        later = g[..., offset:, :]
        g[..., : T - offset, :] += later * power if diagonal else later @ power.mT
        power = power * power if diagonal else power @ power
        offset *= 2
    return g


class _TimeFeedback(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, a: Tensor, dim: int) -> Tensor:  # type: ignore[override]
        ctx.dim = dim
        ctx.save_for_backward(a)
        return h.view_as(h)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (a,) = ctx.saved_tensors
        return reverse_scan(grad, a, ctx.dim), None, None


def time_feedback(h: Tensor, a: Tensor, dim: int = -2) -> Tensor:
    r"""Stationary state feedback (DSF) on a sequence of states.

    Identity in the forward pass. In the backward pass the gradient arriving at the
    states -- the *local* errors :math:`e_t = \partial\mathcal{L}_t/\partial h_t` when each
    :math:`h_t` was computed from a detached :math:`h_{t-1}` -- is replaced by

    .. math::
        g_t = e_t + A\,g_{t+1},

    so autograd yields :math:`\sum_t g_t^\top\,\partial h_t/\partial\theta`. With
    :math:`A = J^\top` for a time-invariant linear recurrence this is exactly BPTT.

    Args:
        h: ``[..., T, d]`` states (time along ``dim``).
        a: ``[d]`` decays or a ``[d, d]`` matrix (see :func:`reverse_scan`).
        dim: the time dimension (not the last one).
    """
    dim = _check_scan(h, a, dim)  # now, not when the backward pass reaches it
    return _TimeFeedback.apply(h, a, dim)
