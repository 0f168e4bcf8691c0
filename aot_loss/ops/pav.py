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
The rounds run only on segments around the violations of the sorted input, which on
heavy-tailed rows are a small share of it (see ``_pool``). Decisions are taken in float64
(float32 on MPS, which has no float64).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._dtypes import accumulation_dtype
from .._sort import stable_sort

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
    values, starts = _pool(z.reshape(-1, n).to(accumulation_dtype(x)), 1.0 / strength, regularization)
    return values.to(x.dtype).reshape(x.shape), (starts.reshape(x.shape) << 32) | perm


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
    work = accumulation_dtype(x)
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


def _log_span(length: Tensor, delta: float) -> Tensor:
    """``log(sum_{k < L} exp(-k delta))`` for block lengths ``L``, without overflow."""
    return torch.log(-torch.expm1(-length * delta)) - math.log(-math.expm1(-delta))


def _levels(stat: Tensor, start: Tensor, length: Tensor, delta: float, regularization: str) -> Tensor:
    """Dual level of each block (see the module docstring), comparable within a row;
    ``start`` is the position in its row of the block's first value."""
    a = start.to(stat.dtype)
    if regularization == "l2":
        return stat / length - delta * (a + (length - 1) / 2)
    return _log_span(length, delta) - stat - delta * a


def _pool(rows: Tensor, delta: float, regularization: str) -> tuple[Tensor, Tensor]:
    """PAV over all rows: the soft-sorted value of every element, and the position in its
    row of the first element of its block.

    Only values near a violation (for a value alone, a sorted gap of at least ``delta``)
    can pool, and on heavy-tailed rows those are the tails, a few thousand values among
    millions that stay alone (and keep their value). So PAV runs on *segments*: the values
    within a pad (16 to 64) of each violation, cut off from their neighbours. A segment whose end
    block still violates the order with the value just outside it is doubled on that side
    and solved again, until no segment's edge violates. Every merge made on the way is one
    PAV makes (pooling violators, in any order), and at the end no two neighbours violate,
    so the blocks are PAV's unique solution. Where violations are dense, the segments are
    the rows.
    """
    z = rows.reshape(-1)
    count, n = rows.shape
    total = z.numel()
    pos = torch.arange(n, device=z.device).repeat(count)
    stat = z if regularization == "l2" else -z
    level = z - delta * pos  # of every value alone, under both regularizations
    violating = torch.nonzero((level[:-1] <= level[1:]) & (pos[1:] != 0)).squeeze(1)
    if violating.numel() == 0:
        return z.clone(), pos
    # Wide pads save growth rounds (each costs dozens of small ops); they stay within a
    # quarter of the values per violation so that sparse violations keep small segments.
    pad = max(_PAD, min(_MAX_PAD, total // (4 * violating.numel())))
    if violating.numel() * (2 * pad + 2) > _MAX_COVER * total:  # the rows, as one segment each
        seg = torch.arange(count, device=z.device).repeat_interleave(n)
        first, length, pooled, _ = _solve(stat, pos, seg, delta, regularization)
        return _values(first, length, pooled, pos, delta, regularization)
    row_start = violating - pos[violating]
    lo = (violating - pad).maximum(row_start)
    hi = (violating + 1 + pad).minimum(row_start + (n - 1))
    index = torch.arange(total, device=z.device)
    while True:
        lo, hi = _segments(lo, hi, pos)
        size = hi - lo + 1
        offsets = torch.cumsum(size, 0) - size
        seg = torch.zeros(int(offsets[-1] + size[-1]), dtype=torch.int64, device=z.device)
        seg[offsets[1:]] = 1
        seg = torch.cumsum(seg, 0)
        members = lo[seg] + index[: seg.numel()] - offsets[seg]
        first, length, pooled, block_level = _solve(stat[members], pos[members], seg, delta, regularization)
        # The value just outside each segment is alone: compare it with the segment's end blocks.
        segment_of_block = seg[first]
        ends = torch.arange(lo.numel(), device=z.device)
        first_level = block_level[torch.searchsorted(segment_of_block, ends)]
        last_level = block_level[torch.searchsorted(segment_of_block, ends, right=True) - 1]
        grow_left = (pos[lo] != 0) & (level[(lo - 1).clamp(min=0)] <= first_level)
        grow_right = (pos[hi] != n - 1) & (last_level <= level[(hi + 1).clamp(max=total - 1)])
        if not bool((grow_left | grow_right).any()):
            break
        row_start = lo - pos[lo]
        lo = torch.where(grow_left, (lo - size).maximum(row_start), lo)
        hi = torch.where(grow_right, (hi + size).minimum(row_start + (n - 1)), hi)
    values, starts = _values(first, length, pooled, pos[members], delta, regularization)
    return z.clone().index_put_((members,), values), pos.clone().index_put_((members,), starts)


_PAD, _MAX_PAD = 16, 64  # values on each side of a violation that its segment starts with
_MAX_COVER = 1.0  # segments while they start on at most this share of the values; else rows


def _segments(lo: Tensor, hi: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
    """Disjoint segments, sorted, covering the ranges ``[lo, hi]`` (each within a row);
    ranges that overlap or touch within a row are joined."""
    order = torch.argsort(lo)
    lo, hi = lo[order], hi[order]
    reach = torch.cummax(hi, 0).values
    new = torch.ones_like(lo, dtype=torch.bool)
    new[1:] = (lo[1:] > reach[:-1] + 1) | (lo[1:] - pos[lo[1:]] != lo[:-1] - pos[lo[:-1]])
    last = torch.cat(
        [torch.nonzero(new).squeeze(1)[1:] - 1, new.new_full((1,), new.numel() - 1, dtype=torch.int64)]
    )
    return lo[new], reach[last]


def _solve(stat: Tensor, pos: Tensor, seg: Tensor, delta: float, regularization: str) -> tuple[Tensor, ...]:
    """PAV in rounds on values cut into segments (``seg``, sorted) that pool independently;
    ``pos`` is each value's position in its row. Per block: first index, length, statistic
    and level."""
    first = torch.arange(stat.numel(), device=stat.device)
    length = torch.ones_like(stat)
    window, step = _FIRST_WINDOW, -1
    while True:
        level = _levels(stat, pos[first], length, delta, regularization)
        block_seg = seg[first]
        violation = (level[:-1] <= level[1:]) & (block_seg[1:] == block_seg[:-1])
        if not bool(violation.any()):
            return first, length, stat, level
        joins = _absorb(
            level, stat, first, length, violation, pos, block_seg, delta, regularization, window, step
        )
        merged = torch.cumsum(~joins, 0) - 1  # old block -> new block
        count = int(merged[-1]) + 1
        first = first[~joins]
        length = torch.zeros(count, dtype=length.dtype, device=stat.device).index_add_(0, merged, length)
        stat = _merge(stat, merged, count, regularization)
        window, step = 2 * window, -step


_FIRST_WINDOW = 8  # blocks a run may absorb in the first round; doubles every round


def _absorb(
    level: Tensor,
    stat: Tensor,
    first: Tensor,
    length: Tensor,
    violation: Tensor,
    pos: Tensor,
    block_seg: Tensor,
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
    run or out of its segment (so that runs pool independently). Pooling past the run in
    both directions (the caller alternates them) keeps the number of rounds logarithmic
    when an extreme value absorbs a long tail of blocks (heavy-tailed rewards), where
    merging runs alone takes one round per absorbed block.
    """
    count = level.numel()
    left = torch.cat([violation.new_zeros(1), violation])  # block k violates with k - 1
    right = torch.cat([violation, violation.new_zeros(1)])  # block k violates with k + 1
    seeds = torch.nonzero(left & ~right if step < 0 else right & ~left).squeeze(1)
    if step < 0:
        edge = torch.searchsorted(block_seg, block_seg[seeds])  # the segment's first block
        neighbour = torch.cat([seeds.new_full((1,), -1), seeds[:-1]]) + 1
        reach = seeds - torch.maximum(neighbour, edge)
    else:
        edge = torch.searchsorted(block_seg, block_seg[seeds], right=True) - 1
        neighbour = torch.cat([seeds[1:], seeds.new_full((1,), count)]) - 1
        reach = torch.minimum(neighbour, edge) - seeds
    budget = max(2 * count, 1 << 16) // seeds.numel()
    width = max(1, min(window, budget, int(reach.max())))
    # Column t holds block seed + step * t; statistics pooled over columns 0..t accumulate.
    offsets = torch.arange(width + 1, device=level.device)
    valid = offsets <= reach[:, None]
    blocks = (seeds[:, None] + step * offsets).clamp(0, count - 1)
    pooled_length = torch.cumsum(torch.where(valid, length[blocks], 0), 1)
    start = first[blocks] if step < 0 else first[seeds][:, None]
    a = pos[start].to(level.dtype)
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
    first: Tensor, length: Tensor, stat: Tensor, pos: Tensor, delta: float, regularization: str
) -> tuple[Tensor, Tensor]:
    """Soft-sorted value of every element of solved blocks (first index, length and
    statistic of each), and the position in its row of its block's first element."""
    starts = torch.zeros(pos.numel(), dtype=torch.int64, device=pos.device).index_fill_(0, first, 1)
    block = torch.cumsum(starts, 0) - 1
    start = pos[first][block]
    offset = (pos - start).to(stat.dtype)  # an int64 tensor times a float would give float32
    size = length[block]
    if regularization == "l2":
        return (stat / length)[block] + delta * (offset - (size - 1) / 2), start
    return _log_span(size, delta) - stat[block] + delta * offset, start
