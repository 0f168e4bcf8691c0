"""The one primitive: the dominance cost of U over V, integral_0^1 h(Q_U(t) - Q_V(t)) dt.

Both public losses (unpaired, paired) and their Modules only build U and V, validate, and
call :func:`dominance_cost`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor

from . import _distributed, _dominance_op
from ._backend import use_native
from ._coupling import Coupling, couple, integrate
from ._soft_sort_op import soft_sort_last
from ._validation import Options

_COMPUTE_DTYPES = (torch.float32, torch.float64)


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The promoted dtype of the inputs, with float16/bfloat16 raised to float32."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        if t.dtype is not dtype:  # promote_types costs ~0.25 us a call: skip it for equal dtypes
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype if dtype in _COMPUTE_DTYPES else torch.promote_types(dtype, torch.float32)


def as_dtype(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x.to(dtype)`` without the dispatch when it is already that dtype (~1 us at small n)."""
    return x if x.dtype == dtype else x.to(dtype)


def upcast(
    u: Tensor, v: Tensor, u_weights: Tensor | None, v_weights: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Samples and weights in the computation dtype of ``u`` and ``v`` (see compute_dtype)."""
    dtype = compute_dtype(u, v)
    uw = None if u_weights is None else as_dtype(u_weights, dtype)
    vw = uw if v_weights is u_weights else None if v_weights is None else as_dtype(v_weights, dtype)
    return as_dtype(u, dtype), as_dtype(v, dtype), uw, vw  # shared weights stay one tensor


def dominance_cost(
    u: Tensor,
    v: Tensor,
    u_weights: Tensor | None,
    v_weights: Tensor | None,
    options: Options,
    group: Any = None,
    names: Sequence[str] = ("u", "v", "u_weights", "v_weights"),
) -> Tensor:
    """OT cost of coupling U with V by quantiles under h, reduced as ``options.reduction``.

    Inputs are validated (1-D, or 2-D rows with equal row counts) and share a device. With a
    resolved process ``group``, U and V are every rank's samples, gathered first (see
    :mod:`._distributed`); ``names`` are the arguments' names for its error messages.
    """
    u, v, u_weights, v_weights = upcast(u, v, u_weights, v_weights)
    if group is not None:
        u, v, u_weights, v_weights = _distributed.gather(group, u, v, u_weights, v_weights, options, names)
    if options.sort == "soft":  # the samples' soft order statistics; the coupling keeps their order
        u = soft_sort_last(u, options.soft_strength, "l2", options.soft_backend)
        v = soft_sort_last(v, options.soft_strength, "l2", options.soft_backend)
    if use_native(options, u, v, u_weights, v_weights):
        return _native_cost(u, v, u_weights, v_weights, options)
    coupling = couple(u, v, u_weights, v_weights)
    costs = options.cost(coupling.diff)
    if options.custom_cost:
        _check_custom_costs(costs, coupling.diff)
    return _reduce(costs, coupling, options.reduction, rows=u.dim() == 2)


def _native_cost(
    u: Tensor, v: Tensor, u_weights: Tensor | None, v_weights: Tensor | None, options: Options
) -> Tensor:
    """The fused op's OT costs, reduced as :func:`_reduce` reduces the torch path."""
    name = cast(str, options.name)
    return _dominance_op.reduced_costs(
        u, v, u_weights, v_weights, name, options.beta, options.label_smoothing, options.reduction
    )


def _check_custom_costs(costs: object, diff: Tensor) -> None:
    if not isinstance(costs, Tensor):
        raise TypeError(f"loss callable must return a Tensor, got {type(costs).__name__}")
    if costs.shape != diff.shape:
        raise ValueError(
            f"loss callable must map d elementwise: got shape {tuple(costs.shape)} "
            f"for d of shape {tuple(diff.shape)}"
        )


def _reduce(costs: Tensor, coupling: Coupling, reduction: str, rows: bool) -> Tensor:
    """Reduce per-cell costs; see the 'Reductions' table in the docs.

    The OT cost of a row is the mass-weighted sum of its cell costs. For 1-D inputs,
    'none' returns per-cell costs scaled by K * mass_k (K cells), so that their mean is the
    OT cost; on the equal-size unweighted grid K * mass_k = 1 and they are the per-pair
    losses h(u_(i) - v_(i)). For rows, 'none' returns the (G,) per-row OT costs.
    """
    mass = coupling.mass
    if rows or reduction == "mean":
        return _dominance_op.reduce_row_costs(integrate(costs, mass), reduction, costs.shape[-1])[0]
    if mass is not None:
        costs = costs * (mass * mass.shape[-1])
    return costs if reduction == "none" else costs.sum()
