"""The reductions of the loss, in one place: from cell costs (the torch path) or row costs
(the native op) to what ``reduction`` asks for. See the 'Reductions' table in the docs.

The OT cost of a row is the mass-weighted sum of its cell costs. For 1-D inputs, 'none'
returns per-cell costs scaled by K * mass_k (K cells), so that their mean is the OT cost; on
the equal-size unweighted grid K * mass_k = 1 and they are the per-pair losses
h(u_(i) - v_(i)). For rows, 'none' returns the (G,) per-row OT costs. 'sum' is always the
sum of 'none'.
"""

from __future__ import annotations

from torch import Tensor

from ._coupling import Coupling, integrate


def reduce_cells(costs: Tensor, coupling: Coupling, reduction: str, rows: bool) -> Tensor:
    """Reduce the per-cell costs of the torch path."""
    mass = coupling.mass
    if rows or reduction == "mean":
        return reduce_rows(integrate(costs, mass), reduction, costs.shape[-1])[0]
    if mass is not None:
        costs = costs * (mass * mass.shape[-1])
    return costs if reduction == "none" else costs.sum()


def reduce_shares(shares: Tensor, reduction: str, rows: bool) -> Tensor:
    """Reduce each cell's share of the loss (``_orders.contributions``, whose sum over a row
    is its loss): 'none' on 1-D inputs is K times each share, so that their mean is the loss."""
    if rows or reduction == "mean":
        return reduce_rows(shares.sum(-1), reduction, shares.shape[-1])[0]
    cells = shares * shares.shape[-1]
    return cells if reduction == "none" else cells.sum()


def reduce_rows(row_cost: Tensor, reduction: str, cells: int) -> tuple[Tensor, float]:
    """Per-row OT costs reduced as the public losses reduce them, and the derivative of the
    result with respect to each row's cost (the same for every row).

    Rows (``row_cost`` of shape (G,)): returned as they are for 'none', else averaged or
    summed. One row (0-d): 'mean' is its cost; 'sum' is the sum of the 'none' cells
    K * mass_k * h_k of the torch path, i.e. ``cells`` (K) times the cost.
    """
    if row_cost.dim() == 0:
        return (row_cost * cells, float(cells)) if reduction == "sum" else (row_cost, 1.0)
    if reduction == "mean":
        return row_cost.mean(), 1.0 / max(row_cost.shape[0], 1)
    return (row_cost.sum() if reduction == "sum" else row_cost), 1.0


def cell_count(u: Tensor, v: Tensor, u_weights: Tensor | None, v_weights: Tensor | None) -> int:
    """The number K of cells of a row's coupling: n pairs, or the n + m cells of the merged grid."""
    n, m = u.shape[-1], v.shape[-1]
    return n if n == m and u_weights is None and v_weights is None else n + m
