r"""Exact violation integrals of a coupling, for the ratio metrics and the dominance tests.

On the merged grid the first-order gap $d = Q_U - Q_V$ is constant on each cell and the
second-order gap $C = L_U - L_V$ (the difference of the absolute Lorenz curves) is linear on
each cell, so $\int_0^1 (-G)_+^p$ and $\int_0^1 |G|^p$ ($G = d$ or $C$, $p = 1$ or 2) are
sums over the cells, split at the crossings of $C$. Sums in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._coupling import Coupling


def lorenz_gap(cells: Coupling) -> tuple[Tensor, Tensor, Tensor]:
    """C = L_U - L_V at the start and the end of each cell, and the cells' lengths, in
    float64: C(t_k) = sum_{l <= k} length_l d_l.

    A value of C within the rounding of its running sum (k eps sum_{l <= k} |length_l d_l|)
    is 0: where the curves meet exactly, as after a prefix that U and V share or at t = 1
    for equal means, the rounding of the cell lengths (1/3 is not a float) must not read as
    a violation over the cells that follow."""
    diff = cells.diff.to(torch.float64)
    length = (
        torch.full_like(diff, 1.0 / diff.shape[-1]) if cells.mass is None else cells.mass.to(torch.float64)
    )
    area = length * diff
    end = area.cumsum(-1)
    rounding = area.abs().cumsum(-1) * (diff.shape[-1] * torch.finfo(torch.float64).eps)
    end = torch.where(end.abs() <= rounding, 0.0, end)
    start = torch.nn.functional.pad(end, (1, 0))[..., :-1]
    return start, end, length


def violation_areas(cells: Coupling, order: int, p: int) -> tuple[Tensor, Tensor]:
    r"""$(\int_0^1 (-G)_+^p\,dt,\ \int_0^1 |G|^p\,dt)$ per row in float64, with $G = Q_U - Q_V$
    for ``order`` 1 and $G = L_U - L_V$ for ``order`` 2; ``p`` is 1 or 2.

    For order 2, on a cell where $C$ runs linearly from $s$ to $e$ over a length $\Delta$:
    $\int |C| = \Delta (|s| + |e|)/2$ and $\int C^2 = \Delta (s^2 + s e + e^2)/3$ without a
    crossing; with one, the part below zero is a triangle of base $\Delta |low| / (|s| + |e|)$
    and height $|low|$, of integrals base $|low| / 2$ and base $low^2 / 3$."""
    if order == 1:
        diff = cells.diff.to(torch.float64)
        mass = None if cells.mass is None else cells.mass.to(torch.float64)
        below, between = torch.relu(-diff), diff.abs()
        if p == 2:
            below, between = below.square(), between.square()
        if mass is None:
            return below.mean(-1), between.mean(-1)
        return (mass * below).sum(-1), (mass * between).sum(-1)
    start, end, length = lorenz_gap(cells)
    low = torch.minimum(start, end)
    opposite = start * end < 0
    # the share of the cell where C < 0: all of it (both ends <= 0), or up to the crossing
    span = torch.where(opposite, start.abs() + end.abs(), 1.0)
    base = torch.where(opposite, -low / span, 1.0)
    negative = opposite | (torch.maximum(start, end) <= 0)
    if p == 1:
        between = torch.where(opposite, (start.square() + end.square()) / (2 * span), (start + end).abs() / 2)
        below = torch.where(opposite, base * low.abs() / 2, torch.relu(-(start + end)) / 2)
    else:
        between = (start.square() + start * end + end.square()) / 3
        below = torch.where(negative, torch.where(opposite, base * low.square() / 3, between), 0.0)
    return (length * below).sum(-1), (length * between).sum(-1)
