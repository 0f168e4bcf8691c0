"""The one primitive: the dominance cost of U over V, integral_0^1 h(Q_U(t) - Q_V(t)) dt.

Both public losses (unpaired, paired) and their Modules only build U and V, validate, and
call :func:`dominance_cost`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from torch import Tensor

from . import _distributed
from ._costs import check_custom_costs
from ._coupling import couple
from ._dtypes import upcast
from ._options import Options
from ._orders import shares
from ._reduction import reduce_cells, reduce_shares
from .ops import dispatch
from .ops.autograd import reduced_costs, soft_sort_last


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
    if dispatch.dominance(options, u, v, u_weights, v_weights):
        name = cast(str, options.name)
        return reduced_costs(
            u, v, u_weights, v_weights, name, options.beta, options.label_smoothing, options.reduction
        )
    coupling = couple(u, v, u_weights, v_weights)
    if not options.plain:
        cell_shares = shares(coupling.diff, coupling.mass, options)
        return reduce_shares(cell_shares, options.reduction, rows=u.dim() == 2).to(u.dtype)
    costs = options.cost(coupling.diff)
    if options.custom_cost:
        check_custom_costs(costs, coupling.diff)
    return reduce_cells(costs, coupling, options.reduction, rows=u.dim() == 2)
