r"""Jacobian influence per distance, and the influence-weighted range :math:`R`.

Domain-free: the caller supplies, for each seed :math:`s` (an output node, an output
position), the L1 mass of the Jacobian of its output w.r.t. every input element,

.. math::
    I(s, u) = \sum_{i,j} \left|\frac{\partial y_{s,i}}{\partial x_{u,j}}\right|,

and the distance of every input element from the seed (hops in a graph, lags in a
sequence). This module sums the mass per distance,

.. math::
    T_h(s) = \sum_{u:\ \operatorname{dist}(s,u) = h} I(s, u),

averages it over seeds (optionally normalised by distance 0), and computes the
range, the influence-weighted mean distance

.. math::
    R = \frac{1}{S}\sum_s \frac{\sum_h h\,T_h(s)}{\sum_h T_h(s)}

from the un-normalised rows (Liang et al. 2025, as ``torch_geometric.utils.total_influence``).

The masses themselves come from :func:`jacobian_l1`, the one Jacobian routine every domain uses:
for many seeds at once, when each seed's output row depends on its own disjoint slice of the
input (the seeds' hop balls side by side, one copy of a sequence per measured position), one
vector-Jacobian product per output channel gives every seed's row:

.. math::
    m_p = \sum_{i=1}^{C} \Big|\frac{\partial \sum_s y_{s,i}}{\partial x_p}\Big|_1
        = \sum_{i=1}^{C} \Big|\frac{\partial y_{s(p),i}}{\partial x_p}\Big|_1 ,

exact because input element :math:`p` reaches only its own seed's output :math:`s(p)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, KeysView, Set
from contextlib import contextmanager

import torch
from torch import Tensor

__all__ = ["jacobian_l1", "distance_totals", "influence_curve", "influence_range", "chosen_indices", "DEAD_SEED",
           "refuse_inference_mode", "model_device", "output_tolerance", "check_repeatable", "uncompiled",
           "naming_dtype_mismatch"]


def chosen_indices(given, size: int, name: str, unit: str) -> Tensor:
    """The indices (``int64``, on the CPU) a user chose among ``size`` items: integer ids (a list, a tuple, a
    ``range``, an array, a tensor; order and repeats kept; a set, which has no order, in increasing order; any other
    iterable of ids, such as a generator or a dict's keys, as it yields them) or a boolean mask of ``size`` entries.
    ``name`` and ``unit`` word the errors (``"nodes="``, ``"node"``): a float id, a mask of another length, no index,
    one outside ``[0, size-1]``, a 0/1 mask stored as integers (``size`` entries, each 0 or 1, with ``size >= 3``), or
    a tensor on the meta device.
    """
    check_not_meta(name, given, f"its values choose the {unit}s")  # (torch's "Cannot copy out of meta tensor")
    if isinstance(given, Set) and not isinstance(given, KeysView):  # (torch's "Could not infer dtype of set":
        # nodes={3, 4}; a dict's keys, set-like but in the dict's order, keep it: they were sorted, and the rows of
        # per_seed no longer followed the dict the user read them by)
        try:
            given = sorted(given)
        except TypeError:  # (ids that do not compare: refused below, as a list of them is)
            given = list(given)
    elif not isinstance(given, (Tensor, list, tuple, range, str, bytes)) and not hasattr(given, "__array__") \
            and hasattr(given, "__iter__"):  # (a generator, dict.keys(): "Could not infer dtype of generator")
        given = list(given)
    given = torch.as_tensor(given).cpu()
    if given.numel() == 0:
        raise ValueError(f"{name} is empty; give at least one {unit}")
    if given.dtype == torch.bool:
        if given.shape != (size,):
            raise ValueError(f"a boolean {name} mask must have one entry per {unit}, shape [{size}]; "
                             f"got {list(given.shape)}")
        given = given.nonzero().flatten()
    elif given.dtype.is_floating_point or given.dtype.is_complex:
        raise TypeError(f"{name} must hold integer {unit} ids or be a boolean mask; got {given.dtype}")
    if given.dim() > 1:
        raise ValueError(f"{name} must be a 1-D list of {unit} ids (or a boolean mask); got shape {list(given.shape)}")
    if given.dtype != torch.bool and size >= 3 and given.shape == (size,) and bool(((given == 0) | (given == 1)).all()):
        # (one 0/1 entry per item is a mask stored as integers, e.g. a uint8 or int64 data.test_mask: read as ids it
        # measured items 0 and 1 over and over)
        raise ValueError(f"{name} looks like a 0/1 mask of {size} {unit}s stored as {given.dtype}, not a list of "
                         f"{unit} ids (read as ids it chooses only {unit}s 0 and 1, {size} times in all); pass it as "
                         f"a boolean mask: {name.rstrip('=')}=mask.bool()")
    chosen = given.long().flatten()
    if chosen.numel() == 0:
        raise ValueError(f"{name} is empty; give at least one {unit}")
    if int(chosen.min()) < 0 or int(chosen.max()) >= size:
        raise ValueError(f"{name} must lie in [0, {size - 1}] ({size} {unit}s); "
                         f"got values in [{int(chosen.min())}, {int(chosen.max())}]")
    return chosen


def uncompiled(model):
    """The module ``torch.compile`` wrapped (its ``_orig_mod``) when ``model`` is a compiled one, else ``model``.

    The measures take one backward pass per output channel through one forward (``retain_graph=True``), which a
    compiled module's backward refuses ("compiled with non-empty donated buffers"), and each new hop ball or batch
    shape would compile again; the wrapped module computes the same function with the same parameters."""
    inner = getattr(model, "_orig_mod", None) if isinstance(model, torch.nn.Module) else None
    return inner if isinstance(inner, torch.nn.Module) else model


def model_device(model) -> torch.device | None:
    """The device an ``nn.Module`` computes on (its first parameter's, else its first buffer's), where the inputs of
    a measurement go, as :meth:`~fwdlearn.graphs.ForwardGNN.scores` and a language model's ``evaluate`` take them
    (a GPU model measured on a CPU graph or CPU tokens failed inside its first layer: "Expected all tensors to be on
    the same device"); ``None`` for any other callable, or a module without tensors (its inputs stay where they
    are). A module with a tensor on the meta device is refused, naming it
    (:func:`~fwdlearn.errors.check_model_values`): its inputs, moved there, were refused as the caller's own meta
    tensors."""
    if not isinstance(model, torch.nn.Module):
        return None
    check_model_values(model, "the influence is the Jacobian of its outputs, which need its values")
    first = next(model.parameters(), None)
    if first is None:
        first = next(model.buffers(), None)
    return first.device if first is not None else None


#: what torch's dtype errors say (F.linear's "mat1 and mat2 must have the same dtype", addmm's "expected m1 and m2 to
#: have the same dtype", a conv's "Input type (double) and bias type (float) should be the same", "expected scalar type
#: Float but found Double", a scatter's "self (Float) and source (Double) must have the same scalar type")
_DTYPE_ERROR = re.compile(r"dtype|scalar type|\btype \(|same type", re.IGNORECASE)


#: how torch's messages spell a dtype ("mat1 and mat2 must have the same dtype, but got Double and Float")
_DTYPE_WORDS = {torch.float32: ("float",), torch.float64: ("double", "float64"), torch.float16: ("half", "float16"),
                torch.bfloat16: ("bfloat16",)}


@contextmanager
def naming_dtype_mismatch(model, inputs: Tensor, name: str, measure: str) -> Iterator[None]:
    """Turn torch's dtype error from a call of ``model`` on ``inputs`` (``name``: ``"data.x"``, ``"inputs"``) into a
    ``TypeError`` naming both dtypes and the fix: a float64 model given float32 features (or the reverse, or bfloat16
    ones) failed in its first layer with "mat1 and mat2 must have the same dtype", naming neither the tensors nor the
    conversion. ``measure`` does not convert either of them itself (a cast of the user's data or model changes the
    numbers measured). For an ``nn.Module`` the error is named so when ``inputs``' dtype is none of its floating
    parameters' and buffers'; for any other callable (a wrapper around a module) when torch's message speaks of dtypes
    and names the inputs' one. Any other error passes as it is."""
    try:
        yield
    except RuntimeError as error:
        message = str(error)
        if not _DTYPE_ERROR.search(message) or not inputs.is_floating_point():
            raise
        if isinstance(model, torch.nn.Module):
            dtypes = [t.dtype for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
            if not dtypes or inputs.dtype in dtypes:
                raise
            raise TypeError(f"{name} is {inputs.dtype} but the model's parameters are {dtypes[0]}, and the model "
                            f"failed on them ({message}). Convert one of them: model.to({inputs.dtype}), or "
                            f"{name}.to({dtypes[0]}); {measure} converts neither (a cast would change the numbers "
                            "measured)") from error
        if not any(word in message.lower() for word in _DTYPE_WORDS.get(inputs.dtype, ())):
            raise
        other = torch.float64 if inputs.dtype == torch.float32 else torch.float32  # (an example of another dtype)
        raise TypeError(f"the model failed on {name} of dtype {inputs.dtype} with a dtype error ({message}): give "
                        f"{name} the dtype of the model's parameters ({name}.to({other}) for a {other} model), or "
                        f"convert the model: model.to({inputs.dtype}); {measure} converts neither (a cast would "
                        "change the numbers measured)") from error


def output_tolerance(outputs: Tensor) -> float:
    """How far two calls' outputs may differ and still be the same model's: 1 % of the outputs' scale, their largest
    magnitude (more in half precision, whose rounding is coarser), room for a GPU's scatter sums, whose order varies.
    (It was 1 % of 1 + that scale, at least 0.01 whatever the scale: a random model with outputs below about 1, an
    untrained GCN's of 0.004, passed as deterministic.)"""
    return max(1e-2, torch.finfo(outputs.dtype).eps ** 0.5) * float(outputs.abs().max())


def check_repeatable(first: Tensor, again: Tensor, call: str, measure: str, draw: str) -> None:
    """Refuse a random model: ``again``, a second ``call`` on the same input, differs from ``first`` by more than
    :func:`output_tolerance`. Its Jacobian would differ per ``draw`` and per call (``F.dropout(x, p)`` keeps
    ``training=True`` in ``eval()`` mode, and a wrapper around a module is not put in ``eval()`` mode by ``measure``:
    a graph model's R read 0.85, then 0.89 on the same seeds)."""
    if first.is_floating_point() and again.shape == first.shape and \
            bool(((again - first).abs() > output_tolerance(first)).any()):
        raise ValueError(f"{call} gave other outputs when called again on the same input: it is random (dropout "
                         "active in eval mode, such as F.dropout(x, p) without training=self.training, or a wrapper "
                         f"around a module in train mode, which {measure} does not put in eval mode), and its "
                         f"influence would be a different random draw per {draw}. Make it deterministic: call "
                         "model.eval() before wrapping it, and pass training=self.training to F.dropout")


def refuse_inference_mode() -> None:
    """Refuse to measure inside ``torch.inference_mode()`` (checked before any call of the model: a custom autograd
    Function there failed first, with a message about itself)."""
    if torch.is_inference_mode_enabled():
        raise ValueError("influence takes input gradients, which torch.inference_mode() does not allow: measure it "
                         "outside that block (torch.no_grad() around it is fine)")


def jacobian_l1(f: Callable[[Tensor], Tensor], x: Tensor, readout: Tensor | None = None) -> Tensor:
    r"""Jacobian L1 mass of every input row:
    :math:`m_p = \sum_i \lVert \partial (\sum_s y_{s,i}) / \partial x_p \rVert_1`.

    Args:
        f: maps ``x`` (``[..., F]``, features last) to the seeds' outputs ``[S, C]``. Every input row
            must reach at most one seed's output row (disjoint inputs per seed), so the masses are
            exact per seed; gradients are enabled inside.
        x: the input; it is detached and differentiated.
        readout: ``None``, or a weight ``W`` of shape ``[C, H]`` when ``f`` returns the seeds' features ``[S, H]``
            that a linear map turns into the outputs, :math:`y = z W^\top + b` (a language model's head over its
            vocabulary; a bias adds nothing to a Jacobian): the mass is that of ``y``,
            :math:`\sum_i |\sum_j W_{ij}\, \partial z_j / \partial x_p|`, from ``H`` backward passes instead of
            ``C`` (the features' Jacobian is held, ``H`` times the size of ``x``, and multiplied by ``W``).

    Returns:
        ``x.shape[:-1]``: the mass of every input row (summed over output channels and features), in ``x``'s dtype or,
        for a half-precision ``x``, float32 (the sum is taken in it).

    A plain loop over channels, one backward each, measured faster on CPU than ``is_grads_batched``
    (1.3-2x slower on unions of 1-4k nodes of road-graph hop balls of 25 to 450 nodes, GCN of 8
    and 16 layers), than ``torch.func.vmap`` over the vector-Jacobian product, and than replicating
    the input once per channel (2-3x slower: C forward passes instead of one).
    """
    refuse_inference_mode()
    inputs = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = f(inputs)
        if out.dim() != 2:
            raise ValueError(f"jacobian_l1: f must return the seeds' outputs as [seeds, channels]; got "
                             f"{tuple(out.shape)}")
        if not out.requires_grad:  # (autograd's "element 0 of tensors does not require grad")
            raise ValueError("the model's output does not depend on its input (no gradient reaches x): the influence "
                             "of every input is zero; check that the model reads x, and that it is not run under "
                             "torch.inference_mode()")
        # summed in at least float32: a bfloat16 sum over channels stalls once the total dwarfs each term (a bf16 LM
        # of 1000 tokens read R 0.68 for 0.52)
        wide = torch.promote_types(inputs.dtype, torch.float32)
        if readout is not None:
            return _read_out_mass(out, inputs, readout, wide)
        mass = torch.zeros(inputs.shape[:-1], dtype=wide, device=inputs.device)
        channels = out.shape[1]
        for channel in range(channels):
            (grad,) = torch.autograd.grad(out[:, channel].sum(), inputs, retain_graph=channel < channels - 1)
            mass += grad.abs().sum(dim=-1, dtype=wide)
    return mass.detach()


#: elements of the product ``W @ J`` that :func:`jacobian_l1` holds at once on its ``readout`` path (64 MiB in float32)
READOUT_BLOCK = 1 << 24


def _read_out_mass(features: Tensor, inputs: Tensor, weight: Tensor, wide: torch.dtype) -> Tensor:
    """:func:`jacobian_l1`'s mass of ``features @ weight.T`` (``features`` ``[S, H]``, computed from ``inputs``): the
    features' Jacobian from ``H`` backward passes, then ``|W J|`` summed over the outputs and the input features, a
    block of input rows at a time."""
    hidden = features.shape[1]
    if weight.dim() != 2 or weight.shape[1] != hidden:
        raise ValueError(f"jacobian_l1: readout must be a weight [outputs, {hidden}] for features [seeds, {hidden}]; "
                         f"got {tuple(weight.shape)}")
    width = inputs.shape[-1]
    jacobian = inputs.new_empty((hidden, inputs.numel() // width, width))  # [H, N, F]: row p's features' Jacobian
    for j in range(hidden):
        (grad,) = torch.autograd.grad(features[:, j].sum(), inputs, retain_graph=j < hidden - 1)
        jacobian[j] = grad.reshape(-1, width)
    weight = weight.detach().to(device=inputs.device, dtype=wide)
    rows = jacobian.shape[1]
    mass = torch.zeros(rows, dtype=wide, device=inputs.device)
    block = max(1, READOUT_BLOCK // (weight.shape[0] * width))
    for start in range(0, rows, block):
        part = jacobian[:, start:start + block].to(wide)  # [H, n, F]
        product = weight @ part.reshape(hidden, -1)  # [C, n * F]
        mass[start:start + block] = product.abs().reshape(weight.shape[0], -1, width).sum(dim=(0, 2))
    return mass.reshape(inputs.shape[:-1]).detach()


def distance_totals(mass: Tensor, distance: Tensor, max_distance: int) -> Tensor:
    r"""Per-seed totals :math:`T_h(s)` for :math:`h = 0, \ldots, D`.

    Args:
        mass: ``[S, N]`` Jacobian L1 masses of ``S`` seeds over ``N`` input elements.
        distance: ``[S, N]`` (or ``[N]``, shared by all seeds) integer distances; entries
            below 0 or above ``max_distance`` are ignored (unreachable, out of range).
        max_distance: :math:`D`.

    Returns:
        ``[S, D + 1]`` tensor of totals.
    """
    if mass.dim() != 2:
        raise ValueError(f"mass must have shape [seeds, inputs]; got {tuple(mass.shape)}")
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    if distance.dim() == 1 and distance.shape[0] == mass.shape[1]:  # (another length: refused below, not by expand)
        distance = distance.unsqueeze(0).expand_as(mass)
    if distance.shape != mass.shape:
        raise ValueError(
            f"distance must have shape {tuple(mass.shape)} (or [{mass.shape[1]}]) to match mass; "
            f"got {tuple(distance.shape)}"
        )
    if distance.dtype.is_floating_point:
        raise TypeError("distance must be an integer tensor (hops or lags)")
    valid = (distance >= 0) & (distance <= max_distance)
    slot = torch.where(valid, distance, torch.full_like(distance, max_distance + 1))
    totals = torch.zeros(mass.shape[0], max_distance + 2, dtype=mass.dtype, device=mass.device)
    totals.scatter_add_(1, slot.long(), torch.where(valid, mass, torch.zeros_like(mass)))
    return totals[:, : max_distance + 1]


def influence_curve(totals: Tensor, normalize: bool = True) -> Tensor:
    r"""Mean over seeds of :math:`T_h`, divided by its distance-0 value when ``normalize``.

    Args:
        totals: ``[S, D + 1]`` from :func:`distance_totals`.
        normalize: divide by the distance-0 value (the curve then starts at 1); ``False``: the raw mean.
    """
    normalize = check_bool("normalize", normalize)  # (normalize="no" is true: the curve came back divided, in silence)
    if totals.dim() != 2 or totals.shape[0] == 0:
        raise ValueError(f"totals must have shape [seeds >= 1, D + 1]; got {tuple(totals.shape)}")
    curve = totals.mean(dim=0)
    if normalize:
        if curve[0] == 0:
            raise ZeroDivisionError("the distance-0 influence is zero, so the curve cannot be normalised; use "
                                    "normalize=False")
        curve = curve / curve[0]
    return curve


#: a seed whose total influence is below this many float epsilons times the median seed's self-influence (distance 0)
#: is numerically zero (every ReLU on its paths dead, or all but flipped by rounding): its totals are rounding noise,
#: which differs between batchings and Jacobian paths. The scale is the self-influence, not a seed's total: a seed
#: whose ball holds an all-zero feature row (the input normalisation's 1/eps derivative) has a total about 1e12 times
#: the others', and when most balls hold one the median total is such a giant, under which live seeds looked dead
DEAD_SEED = 64


def influence_range(totals: Tensor) -> float:
    r"""The influence-weighted mean distance :math:`R` (from un-normalised per-seed totals),

    .. math::
        R = \frac{1}{|S'|} \sum_{s \in S'} \frac{\sum_h h\,T_{s,h}}{\sum_h T_{s,h}},

    over the seeds :math:`S'` whose total influence is not numerically zero: above :data:`DEAD_SEED` float epsilons
    times the median of the seeds' distance-0 totals :math:`T_{s,0}` (the median of the totals when that is zero, a
    model without self-influence). A dead seed's rounding noise would otherwise enter :math:`R` with a weight of one
    seed. The floor is relative to the whole: a live seed whose inputs are on a far smaller or larger scale than the
    others' (a component with features 1e6 times larger, under an input normalisation) can fall below it in float32;
    measure in float64 (its floor is 1e-9 of float32's) to keep it. (No warning for the few seeds it leaves out: most
    models leave a few seeds with every ReLU dead, whose rounding noise this floor is for.) The floor needs the median
    seed to be live: a warning says so when the median is itself numerically zero next to the largest (below
    :data:`DEAD_SEED` float epsilons of it: most seeds dead, as in a narrow or deep untrained model, or a few seeds far
    above the rest, as beside an all-zero feature row), where :math:`R` keeps the dead seeds' noise (an 8-layer GCN of
    width 8 on the Minnesota roads, 177 of 200 seeds dead, read 2.48 by the layered Jacobian, 2.50 by autograd and
    2.54 in float64 for the live seeds' 2.52). ``nan``, with a warning, when every seed's total is zero.
    """
    if totals.dim() != 2 or totals.shape[0] == 0:
        raise ValueError(f"totals must have shape [seeds >= 1, D + 1]; got {tuple(totals.shape)}")
    row_sums = totals.sum(dim=1)
    eps = torch.finfo(totals.dtype).eps if totals.dtype.is_floating_point else 0.0
    own, what = totals[:, 0], "self-influence"
    if not bool(own.median() > 0):  # (a model without self-influence: the totals set the scale)
        own, what = row_sums, "total influence"
    scale = own.median().clamp_min(0)
    keep = row_sums > DEAD_SEED * eps * scale
    if not bool(keep.any()):
        warn("every seed has zero total influence; R is undefined (nan)")
        return float("nan")
    if bool(scale <= DEAD_SEED * eps * own.max()):  # (the floor is then rounding noise: dead seeds pass it)
        small = int((row_sums[keep] <= DEAD_SEED * eps * row_sums.max()).sum())
        warn(f"R: the median seed's {what} ({float(scale):.3g}) is numerically zero next to the largest "
             f"({float(own.max()):.3g}), so R cannot tell dead seeds' rounding noise from influence: {small} of the "
             f"{int(keep.sum())} seeds it averages have totals below {DEAD_SEED} float epsilons of the largest, and R "
             "may change with the Jacobian path, batching or dtype. Most seeds are dead (every ReLU on their paths "
             "off, as in a narrow or deep untrained model: measure a wider, shallower or trained one), or a few seeds' "
             "influence is far above the rest (an all-zero feature row: the input normalisation's 1/eps); the "
             "per-seed totals returned beside R hold the rows to pick from")
    distances = torch.arange(totals.shape[1], dtype=totals.dtype, device=totals.device)
    per_seed = (totals[keep] @ distances) / row_sums[keep]
    return float(per_seed.mean())
from fwdlearn.errors import check_bool, check_model_values, check_not_meta, warn
