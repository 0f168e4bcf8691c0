"""The monotone (quantile) coupling of two 1-D samples: the exact optimal transport plan
for any convex cost of u - v (Santambrogio 2015, Thm 2.9).

Every problem runs along the last dimension; leading dimensions are independent rows.

Equal sizes without weights couple the order statistics pairwise: d_i = u_(i) - v_(i), each
with mass 1/n. Otherwise both empirical quantile functions are step functions of t in [0, 1]
that jump at the cumulative masses of their sorted samples. Merging the two sets of jumps
gives K = n + m cells; on cell k both quantile functions are constant, so

    integral_0^1 h(Q_U(t) - Q_V(t)) dt = sum_k mass_k * h(u_(iu_k) - v_(iv_k)),

which is the construction of POT's ``wasserstein_1d`` generalised to any cost. The merge is
a rank computation, not a sort: O(n + m) integer arithmetic without weights (exact cell
lengths), two ``searchsorted`` calls with weights.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import Tensor

from ._dtypes import accumulation_dtype
from ._sort import sort_values, stable_sort


class Coupling(NamedTuple):
    """Coupled differences on the cells of the quantile grid."""

    diff: Tensor  # (..., K): Q_U - Q_V on each cell
    mass: Tensor | None  # (..., K): cell lengths, summing to 1; None means uniform 1/K


class Plan(NamedTuple):
    """The monotone coupling: both sorts and, on each cell, which sorted samples meet."""

    u_sorted: Tensor  # (..., n), carries autograd through u
    u_perm: Tensor  # (..., n) int64: u_sorted = u.gather(-1, u_perm)
    v_sorted: Tensor  # (..., m)
    v_perm: Tensor  # (..., m)
    iu: Tensor | None  # (..., K) index into u_sorted per cell; None: pairs (K = n = m)
    iv: Tensor | None  # (..., K) index into v_sorted per cell
    mass: Tensor | None  # (..., K) cell lengths; None: uniform 1/K


def plan(u: Tensor, v: Tensor, u_weights: Tensor | None, v_weights: Tensor | None) -> Plan:
    """Sort ``u`` and ``v`` (stable) and find the cells of their merged quantile grid.

    Args:
        u: (..., n) samples of U; v: (..., m) samples of V (same leading dims).
        u_weights, v_weights: non-negative masses of the same shapes, or None for uniform.
            They need not be normalised but every row must have positive total mass.
    """
    u_sorted, u_perm = stable_sort(u)
    v_sorted, v_perm = stable_sort(v)
    if u_weights is None and v_weights is None:
        iu, iv, mass = _grid(u_sorted, v_sorted, None, None)
    else:
        level_dtype = accumulation_dtype(u_sorted)
        cum_u = cumulative_mass(u_weights, u_perm, u_sorted, level_dtype)
        cum_v = cumulative_mass(v_weights, v_perm, v_sorted, level_dtype)
        iu, iv, mass = _grid(u_sorted, v_sorted, cum_u, cum_v)
    return Plan(u_sorted, u_perm, v_sorted, v_perm, iu, iv, mass)


def couple(u: Tensor, v: Tensor, u_weights: Tensor | None, v_weights: Tensor | None) -> Coupling:
    """Q_U - Q_V on every cell of the merged quantile grid (see :func:`plan`)."""
    p = plan(u, v, u_weights, v_weights)
    return Coupling(cell_diff(p), p.mass)


def couple_values(u: Tensor, v: Tensor, u_weights: Tensor | None, v_weights: Tensor | None) -> Coupling:
    """:func:`couple` without autograd, for diagnostics.

    Without weights only the sorted values matter, so no permutation is computed and the
    fastest sort at hand does the work (see :func:`~aot_loss._sort.sort_values`). Weights
    must follow their samples, which takes the permutation of :func:`plan`.
    """
    with torch.no_grad():
        if u_weights is not None or v_weights is not None:
            return couple(u, v, u_weights, v_weights)
        return couple_sorted(sort_values(u), sort_values(v), None, None)


def couple_sorted(
    u_sorted: Tensor, v_sorted: Tensor, u_counts: Tensor | None, v_counts: Tensor | None
) -> Coupling:
    """:func:`couple_values` of samples already sorted along the last dim: no sort. With
    integer ``u_counts`` and ``v_counts`` (rows of how often each sorted sample is drawn, as a
    bootstrap draws them; both or neither), every row is its own grid, merged in exact
    integer arithmetic like the uniform one."""
    with torch.no_grad():
        if u_counts is None or v_counts is None:
            iu, iv, mass = _grid(u_sorted, v_sorted, None, None)
        else:
            mass, from_u = _count_grid(u_counts, v_counts, u_sorted.dtype)
            iu, iv = _cell_indices(from_u, u_sorted.shape[-1], v_sorted.shape[-1])
        return Coupling(_diff(u_sorted, v_sorted, iu, iv, mass), mass)


def integrate(values: Tensor, mass: Tensor | None) -> Tensor:
    """sum_k mass_k * values_k over the cells of each row; uniform 1/K when ``mass`` is None."""
    return values.mean(-1) if mass is None else (values * mass).sum(-1)


def cell_diff(p: Plan) -> Tensor:
    """Q_U - Q_V on each cell of the plan: sorted pairs, or the samples each cell couples."""
    return _diff(p.u_sorted, p.v_sorted, p.iu, p.iv, p.mass)


def _diff(
    u_sorted: Tensor, v_sorted: Tensor, iu: Tensor | None, iv: Tensor | None, mass: Tensor | None
) -> Tensor:
    """The coupled differences; 0 on cells of zero length.

    A cell of zero length weighs nothing, but its cost times 0 is NaN when the cost is
    infinite or NaN there: a sample of weight 0 holding NaN or -inf, or a difference whose
    cost overflows. Its difference is set to 0 instead (cost h(0), times 0), and the
    ``where`` passes no gradient to what it replaced, so a sample of zero mass has no effect
    on the value and gets a zero gradient, whatever it holds (the native kernels do the same).
    """
    if iu is None or iv is None:
        return u_sorted - v_sorted
    diff = _gather(u_sorted, iu) - _gather(v_sorted, iv)
    return diff if mass is None else torch.where(mass > 0, diff, 0.0)


def _gather(x: Tensor, index: Tensor) -> Tensor:
    """``x.gather(-1, index)`` whose backward sums the gradients of the cells in float64.

    A sample meets many cells when the sizes differ a lot (each of 3 samples meets ~3e6
    cells of a 1e7-against-3 grid): summed in float32, as gather's backward does, its
    gradient was 4e-2 relative off. Gathering from a float64 copy moves that sum to float64
    (the native kernels sum cell gradients in double too); the cast back is exact, so the
    values are those of a float32 gather."""
    if x.dtype != torch.float32 or not (torch.is_grad_enabled() and x.requires_grad):
        return x.gather(-1, index)
    return x.to(accumulation_dtype(x)).gather(-1, index).to(x.dtype)


def _grid(
    u_sorted: Tensor, v_sorted: Tensor, cum_u: Tensor | None, cum_v: Tensor | None
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(iu, iv, mass)`` of the merged grid; all None for sorted pairs (n == m, uniform).

    ``cum_u``/``cum_v`` are the cumulative masses of weighted samples, None for uniform ones.
    """
    n, m = u_sorted.shape[-1], v_sorted.shape[-1]
    if cum_u is None or cum_v is None:
        if n == m:
            return None, None, None
        cells = _uniform_cells if torch.compiler.is_compiling() else _cached_uniform_cells
        iu, iv, mass = cells(n, m, u_sorted.device, u_sorted.dtype)
    else:
        mass, from_u = _merged_grid(cum_u, cum_v)
        mass = mass.to(u_sorted.dtype)  # lengths of levels summed in float64, in the samples' dtype
        iu, iv = _cell_indices(from_u, n, m)
    lead = u_sorted.shape[:-1]
    return iu.expand(*lead, -1), iv.expand(*lead, -1), mass


def _uniform_cells(n: int, m: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """``(iu, iv, mass)`` of the merged grid of two uniform samples of sizes n and m."""
    mass, from_u = _uniform_grid(n, m, device, dtype)
    iu, iv = _cell_indices(from_u, n, m)
    return iu, iv, mass


# The uniform grid depends on (n, m) only, which a training loop repeats every step: cached,
# it costs nothing after the first call (at n = 1e6, m = 5e5 it was a third of the step). The
# tensors are only read (gathers, products). A few entries bound the memory: 20 bytes a cell.
_cached_uniform_cells = functools.lru_cache(maxsize=4)(_uniform_cells)


def cumulative_mass(
    weights: Tensor | None, perm: Tensor, sorted_values: Tensor, dtype: torch.dtype
) -> Tensor:
    """Cumulative masses of the sorted sample in ``dtype``, normalised so the last is exactly 1."""
    return _normalised_cumsum(None if weights is None else weights.gather(-1, perm), sorted_values, dtype)


def _normalised_cumsum(weights: Tensor | None, sorted_values: Tensor, dtype: torch.dtype) -> Tensor:
    """Cumulative masses of weights in the order of ``sorted_values`` (uniform if None)."""
    n = sorted_values.shape[-1]
    if weights is None:
        steps = torch.arange(1, n + 1, device=sorted_values.device, dtype=dtype)
        return (steps / n).expand_as(sorted_values)
    cum = weights.to(dtype).cumsum(-1)
    return cum / cum[..., -1:]


def _merged_grid(cum_u: Tensor, cum_v: Tensor) -> tuple[Tensor, Tensor]:
    """Cell lengths and 'cell ends at a U level' flags of the merged cumulative masses.

    Merge by ranks: a U level is preceded by the V levels strictly below it, a V level by
    the U levels at or below it (ties put U first); the ranks are a permutation of 0..K-1.
    """
    n, m = cum_u.shape[-1], cum_v.shape[-1]
    cu, cv = cum_u.contiguous(), cum_v.contiguous()
    rank_u = torch.arange(n, device=cu.device) + torch.searchsorted(cv.detach(), cu.detach())
    rank_v = torch.arange(m, device=cu.device) + torch.searchsorted(cu.detach(), cv.detach(), right=True)
    shape = (*cu.shape[:-1], n + m)
    levels = cu.new_zeros(shape).scatter(-1, rank_u, cu).scatter(-1, rank_v, cv)
    from_u = torch.zeros(shape, dtype=torch.bool, device=cu.device).scatter(-1, rank_u, True)
    mass = torch.diff(levels, dim=-1, prepend=levels.new_zeros((*shape[:-1], 1)))
    return mass, from_u


def _uniform_grid(n: int, m: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The merged grid of levels i/n and j/m in exact integer arithmetic (units of 1/(n m)).

    U level i (1-based) sits at i*m and is preceded by the (i*m - 1) // n V levels j*n < i*m;
    V level j sits at j*n and is preceded by the (j*n) // m U levels i*m <= j*n.
    """
    i = torch.arange(1, n + 1, device=device)
    j = torch.arange(1, m + 1, device=device)
    rank_u = (i - 1) + (i * m - 1) // n
    rank_v = (j - 1) + (j * n) // m
    numerators = torch.empty(n + m, dtype=torch.int64, device=device)
    numerators = numerators.scatter(0, rank_u, i * m).scatter(0, rank_v, j * n)
    steps = torch.diff(numerators, prepend=numerators.new_zeros(1))
    mass = steps.to(dtype) / (n * m)
    from_u = torch.zeros(n + m, dtype=torch.bool, device=device).scatter(0, rank_u, True)
    return mass, from_u


def _count_grid(u_counts: Tensor, v_counts: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """:func:`_uniform_grid` for rows of integer counts (a row of ones is the uniform grid).
    With a_i, b_j the running counts of U and V out of their totals N_u, N_v, U level i sits
    at a_i N_v (units of 1/(N_u N_v)) and is preceded by the V levels b_j N_u < a_i N_v, that
    is b_j <= (a_i N_v - 1) // N_u; V level j by the U levels a_i N_v <= b_j N_u. How many
    running counts lie at or below each integer comes from one count of their values, so the
    merge is O(n + m) gathers, not a search."""
    rows, n = u_counts.shape[:-1], u_counts.shape[-1]
    m = v_counts.shape[-1]
    a, b = u_counts.cumsum(-1), v_counts.cumsum(-1)
    total_u, total_v = a[..., -1:], b[..., -1:]
    rank_u = torch.arange(n, device=a.device) + _at_most(
        b, (a * total_v - 1).div(total_u, rounding_mode="floor")
    )
    rank_v = torch.arange(m, device=a.device) + _at_most(a, (b * total_u).div(total_v, rounding_mode="floor"))
    shape = (*rows, n + m)
    numerators = a.new_empty(shape).scatter_(-1, rank_u, a * total_v).scatter_(-1, rank_v, b * total_u)
    steps = torch.diff(numerators, dim=-1, prepend=numerators.new_zeros((*rows, 1)))
    mass = steps.to(dtype) / (total_u * total_v).to(dtype)
    from_u = torch.zeros(shape, dtype=torch.bool, device=a.device).scatter_(-1, rank_u, True)
    return mass, from_u


def _at_most(running: Tensor, bound: Tensor) -> Tensor:
    """How many entries of each row of the non-decreasing integer ``running`` (values 0 to
    its last) are <= each ``bound`` (a negative bound: none)."""
    width = int(running[..., -1].max()) + 1
    offsets = (
        torch.arange(running[..., 0].numel(), device=running.device).view((*running.shape[:-1], 1)) * width
    )
    counts = torch.bincount((running + offsets).flatten(), minlength=offsets.numel() * width)
    at_most = counts.view(*running.shape[:-1], width).cumsum(-1)
    found = at_most.gather(-1, bound.clamp(0, width - 1))
    return torch.where(bound < 0, 0, found)


def _cell_indices(from_u: Tensor, n: int, m: int) -> tuple[Tensor, Tensor]:
    """Sorted-sample indices of Q_U and Q_V on each cell.

    On cell k, Q_U is the first U sample whose level is not yet passed: the number of U
    levels before the cell's end. The clamp only touches the final zero-length cell left
    when both sides reach mass 1 at the last two ranks.
    """
    before_u = torch.cumsum(from_u, dim=-1) - from_u.long()
    position = torch.arange(from_u.shape[-1], device=from_u.device)
    iu = before_u.clamp(max=n - 1)
    iv = (position - before_u).clamp(max=m - 1)
    return iu, iv
