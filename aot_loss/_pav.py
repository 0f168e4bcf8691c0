"""Soft sort by pool-adjacent-violators, in plain torch: the reference kernels of the
``aot_loss::soft_sort`` op (Blondel et al. 2020, "Fast differentiable sorting and ranking").

With ``z`` the ascending sort of a row of ``n`` values and spacing ``delta = 1 / strength``,
torchsort's L2 soft sort is the isotonic regression ``argmin ||o - z||^2`` subject to
``o[i+1] - o[i] <= delta``. Its solution cuts the sorted row into blocks ``[a, b]``: inside a
block the values are pooled to their mean and spread with spacing ``delta``, so
``o[i] = mean(z[a..b]) + delta * (i - (a + b) / 2)``. A block is pooled with its right
neighbour while its *level* ``l = mean(z[a..b]) - delta * (a + b) / 2`` (the dual variable
of torchsort's PAV, less the constant ``n * delta``) is not above the neighbour's. With KL
regularisation the mean becomes a soft minimum,
``l = -logsumexp(-z[a..b]) + log(sum_{k<L} exp(-k delta)) - a delta`` for a block of
``L = b - a + 1`` values, and ``o[i] = l + i delta``.

Writing the levels relative to the block (instead of torchsort's ``w = (n - i) / strength``
offsets, up to ``n / strength``) keeps every intermediate at the scale of the data: the
outputs never come from a difference of two numbers of size ``n * delta``, which is where
torchsort loses its float32 precision for long rows.

The derivative of a block's outputs is the same for all of them: ``d o[i] / d z[j] =
coef[j]`` for ``j`` in the block, with ``coef = 1 / L`` (L2) or the softmax of ``-z`` over
the block (KL). The forward returns, per sorted position, its block's first index and the
sort permutation, from which the backward rebuilds ``coef``.

PAV is sequential; here it runs as rounds over all rows at once: each round pools every
maximal run of blocks whose levels do not decrease (merges PAV would make, in a different
order, which gives the same unique solution), until no two neighbours violate the order.
Decisions are taken in float64 (float32 on MPS, which has no float64).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._sort import stable_sort

REGULARIZATIONS = ("l2", "kl")


def soft_sort_torch(x: Tensor, strength: float, regularization: str) -> tuple[Tensor, Tensor]:
    """Soft sort of ``x`` along its last dim: ``(values, state)``.

    ``values`` are the ascending soft-sorted values (dtype of ``x``). ``state`` (int64) is
    what the backward needs, packed into one tensor because every output of a native op
    costs an allocation through the dispatcher (~2 us at small n): the first sorted index
    of each sorted position's block in the high 32 bits, the stable sort permutation in
    the low 32 bits. Both of shape ``x.shape``; rows must be shorter than 2**32.
    """
    n = x.shape[-1]
    z, perm = stable_sort(x.detach())
    if x.numel() == 0:
        return z, perm
    rows = z.reshape(-1, n).to(_work_dtype(x))
    block, stat, first, length = _pool(rows, 1.0 / strength, regularization)
    values = _values(rows, block, stat, first, length, 1.0 / strength, regularization)
    starts = torch.remainder(first, n)[block].reshape(x.shape)
    return values.to(x.dtype).reshape(x.shape), (starts << 32) | perm


def soft_sort_backward_torch(grad: Tensor, x: Tensor, state: Tensor, regularization: str) -> Tensor:
    """Gradient with respect to the unsorted input ``x``: per block, the sum of ``grad``
    times each member's weight (``1 / L``, or the softmax of ``-z`` over the block),
    scattered back through the permutation."""
    n = grad.shape[-1]
    if grad.numel() == 0:
        return torch.zeros_like(grad)
    perm = state & 0xFFFFFFFF
    rows = torch.arange(0, state.numel(), n, device=state.device).reshape(*state.shape[:-1], 1)
    block = ((state >> 32) + rows).reshape(-1)  # flat block ids, unique across rows
    work = _work_dtype(x)
    sums = torch.zeros(grad.numel(), dtype=work, device=grad.device)
    sums.index_add_(0, block, grad.reshape(-1).to(work))
    if regularization == "l2":
        counts = torch.zeros_like(sums).index_add_(0, block, torch.ones_like(sums))
        sorted_grad = sums[block] / counts[block]
    else:
        logits = -x.detach().gather(-1, perm).reshape(-1).to(work)
        lse = _merge(logits, block, grad.numel(), "kl")
        sorted_grad = sums[block] * torch.exp(logits - lse[block])
    sorted_grad = sorted_grad.to(grad.dtype).reshape(grad.shape)
    return torch.zeros_like(sorted_grad).scatter_(-1, perm, sorted_grad)


def _work_dtype(x: Tensor) -> torch.dtype:
    """float64 for the pooling decisions and sums, except on MPS, which has no float64."""
    return torch.float32 if x.device.type == "mps" else torch.float64


def _log_span(length: Tensor, delta: float) -> Tensor:
    """``log(sum_{k < L} exp(-k delta))`` for block lengths ``L``, without overflow."""
    return torch.log(-torch.expm1(-length * delta)) - math.log(-math.expm1(-delta))


def _levels(stat: Tensor, first: Tensor, length: Tensor, n: int, delta: float, regularization: str) -> Tensor:
    """Dual level of each block (see the module docstring), comparable within a row."""
    a = torch.remainder(first, n).to(stat.dtype)
    if regularization == "l2":
        return stat / length - delta * (a + (length - 1) / 2)
    return _log_span(length, delta) - stat - delta * a


def _pool(rows: Tensor, delta: float, regularization: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """PAV over all rows: the block id of every element and per block its statistic (sum
    of z for L2, logsumexp of -z for KL), first flat index and length."""
    z = rows.reshape(-1)
    n = rows.shape[-1]
    stat = z.clone() if regularization == "l2" else -z
    first = torch.arange(z.numel(), device=z.device)
    length = torch.ones_like(z)
    window, step = _FIRST_WINDOW, -1
    while True:
        level = _levels(stat, first, length, n, delta, regularization)
        violation = (level[:-1] <= level[1:]) & (torch.remainder(first[1:], n) != 0)
        if not bool(violation.any()):
            break
        joins = _absorb(level, stat, first, length, violation, n, delta, regularization, window, step)
        merged = torch.cumsum(~joins, 0) - 1  # old block -> new block
        count = int(merged[-1]) + 1
        first = first[~joins]
        length = torch.zeros(count, dtype=length.dtype, device=z.device).index_add_(0, merged, length)
        stat = _merge(stat, merged, count, regularization)
        window, step = 2 * window, -step
    starts = torch.zeros(z.numel(), dtype=torch.int64, device=z.device).index_fill_(0, first, 1)
    return torch.cumsum(starts, 0) - 1, stat, first, length


_FIRST_WINDOW = 8  # blocks a run may absorb in the first round; doubles every round


def _absorb(
    level: Tensor,
    stat: Tensor,
    first: Tensor,
    length: Tensor,
    violation: Tensor,
    n: int,
    delta: float,
    regularization: str,
    window: int,
    step: int,
) -> Tensor:
    """One round of pooling: which blocks join their left neighbour.

    Each maximal run of violating blocks has a *seed* at its right end (``step = -1``) or
    at its left end (``step = 1``). The seed pools away from it, one block at a time as
    sequential PAV would, while the order is violated (the next block's level is not above
    the pooled level on its left), up to ``window`` blocks and never into the next seed's
    run (so that runs pool independently). Pooling past the run in both directions (the
    caller alternates them) keeps the number of rounds logarithmic when an extreme value
    absorbs a long tail of blocks (heavy-tailed rewards), where merging runs alone takes
    one round per absorbed block.
    """
    count = level.numel()
    left = torch.cat([violation.new_zeros(1), violation])  # block k violates with k - 1
    right = torch.cat([violation, violation.new_zeros(1)])  # block k violates with k + 1
    seeds = torch.nonzero(left & ~right if step < 0 else right & ~left).squeeze(1)
    row = torch.div(first, n, rounding_mode="floor")
    if step < 0:
        row_edge = torch.searchsorted(row, row[seeds])
        neighbour = torch.cat([seeds.new_full((1,), -1), seeds[:-1]]) + 1
        reach = seeds - torch.maximum(neighbour, row_edge)
    else:
        row_edge = torch.searchsorted(row, row[seeds], right=True) - 1
        neighbour = torch.cat([seeds[1:], seeds.new_full((1,), count)]) - 1
        reach = torch.minimum(neighbour, row_edge) - seeds
    budget = max(2 * count, 1 << 16) // seeds.numel()
    width = max(1, min(window, budget, int(reach.max())))
    # Column t holds block seed + step * t; statistics pooled over columns 0..t accumulate.
    offsets = torch.arange(width + 1, device=level.device)
    valid = offsets <= reach[:, None]
    blocks = (seeds[:, None] + step * offsets).clamp(0, count - 1)
    pooled_length = torch.cumsum(torch.where(valid, length[blocks], 0), 1)
    start = first[blocks] if step < 0 else first[seeds][:, None]
    a = torch.remainder(start, n).to(level.dtype)
    if regularization == "l2":
        pooled_sum = torch.cumsum(torch.where(valid, stat[blocks], 0), 1)
        pooled = pooled_sum / pooled_length - delta * (a + (pooled_length - 1) / 2)
    else:
        pooled_lse = torch.logcumsumexp(torch.where(valid, stat[blocks], -math.inf), 1)
        pooled = _log_span(pooled_length, delta) - pooled_lse - delta * a
    candidate = level[blocks[:, 1:]]
    violates = candidate <= pooled[:, :-1] if step < 0 else pooled[:, :-1] <= candidate
    taken = torch.cumprod(valid[:, 1:] & violates, 1).sum(1)  # >= 1: the run's own neighbour
    # Blocks joining their left neighbour: (seed - taken, seed] or (seed, seed + taken].
    begin = seeds - taken + 1 if step < 0 else seeds + 1
    marks = torch.zeros(count + 1, dtype=torch.int64, device=level.device)
    marks.index_add_(0, begin, torch.ones_like(seeds))
    marks.index_add_(0, begin + taken, -torch.ones_like(seeds))
    return torch.cumsum(marks, 0)[:count] > 0


def _merge(stat: Tensor, merged: Tensor, count: int, regularization: str) -> Tensor:
    """Statistics of the merged blocks: sums add; logsumexps combine stably."""
    if regularization == "l2":
        return torch.zeros(count, dtype=stat.dtype, device=stat.device).index_add_(0, merged, stat)
    top = torch.full((count,), -math.inf, dtype=stat.dtype, device=stat.device)
    top = top.scatter_reduce(0, merged, stat, "amax")
    top = torch.where(torch.isinf(top), 0.0, top)  # inf - inf would be NaN; exp/log give +-inf
    total = torch.zeros_like(top).index_add_(0, merged, torch.exp(stat - top[merged]))
    return top + torch.log(total)


def _values(
    rows: Tensor,
    block: Tensor,
    stat: Tensor,
    first: Tensor,
    length: Tensor,
    delta: float,
    regularization: str,
) -> Tensor:
    """Soft-sorted value of every element, from its block."""
    n = rows.shape[-1]
    z = rows.reshape(-1)
    offset = torch.remainder(torch.arange(z.numel(), device=z.device), n) - torch.remainder(first, n)[block]
    offset = offset.to(z.dtype)  # an int64 tensor times a float would give float32
    size = length[block]
    if regularization == "l2":
        return (stat / length)[block] + delta * (offset - (size - 1) / 2)
    return _log_span(size, delta) - stat[block] + delta * offset
