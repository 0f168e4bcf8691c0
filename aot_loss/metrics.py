r"""Dominance diagnostics: how far U is from dominating V, quantile by quantile.

U first-order dominates V when $Q_U(t) \ge Q_V(t)$ at every level $t \in [0, 1]$. With
U the rewards of chosen responses and V those of rejected ones (or U the policy's
chosen-minus-rejected margins and V the reference's) that is what AOT trains for. Every
metric here integrates over $t$ exactly, on the merged grid of the two samples' cumulative
masses that the losses couple on: $K = n + m$ cells (or $n$ sorted pairs when $n = m$
without weights), cell $k$ of length $\Delta_k$ carrying the difference
$d_k = Q_U - Q_V$. Cost: two sorts, $O((n + m)\log(n + m))$.

The metrics are diagnostics: they never build an autograd graph, and they return the
computation dtype (float32 for half precision and float32, float64 for float64). A NaN
sample sorts last and makes the metric NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from ._costs import Loss, check_custom_costs
from ._coupling import Coupling, couple_values, cumulative_mass, integrate
from ._dtypes import as_dtype, compute_dtype, upcast
from ._options import check_options
from ._orders import shares
from ._sort import sort_values, stable_sort
from ._validation import check_sample_pair, check_weights
from ._violation import lorenz_gap, violation_areas

__all__ = [
    "LorenzCurves",
    "QuantileCurves",
    "fsd_violation",
    "fsd_violation_ratio",
    "lorenz_curves",
    "ot_violation",
    "quantile_curves",
    "ssd_violation",
    "ssd_violation_ratio",
]


def fsd_violation(
    u: Tensor, v: Tensor, *, u_weights: Tensor | None = None, v_weights: Tensor | None = None
) -> Tensor:
    r"""The share of quantile levels at which U falls below V.

    $$
    \mathrm{viol}(U, V) = \big|\{t \in [0, 1] : Q_U(t) < Q_V(t)\}\big|
    = \sum_k \Delta_k\, \mathbf{1}[d_k < 0].
    $$

    0 when U first-order dominates V (ties count as dominance), 1 when V dominates U
    strictly at every level. Unlike a reward accuracy it compares distributions, so it
    needs no pairing and allows $n \ne m$.

    Args:
        u: samples of U (e.g. rewards of chosen responses).
        v: samples of V (e.g. rewards of rejected responses); any size $m \ge 1$.
        u_weights: non-negative masses of the `u` samples, normalised per row; `None`
            means uniform.
        v_weights: the same for `v`.

    Returns:
        The violation area in $[0, 1]$.

    Shape:
        - `u`: $(n,)$ or rows $(G, n)$; `v`: $(m,)$ or $(G, m)$; weights as their samples.
        - Output: $()$, or $(G,)$ for rows.

    Example:
        >>> import torch
        >>> from aot_loss.metrics import fsd_violation
        >>> fsd_violation(torch.tensor([0.0, 2.0, 5.0, 6.0]), torch.tensor([1.0, 1.0, 3.0, 4.0]))
        tensor(0.2500)
    """
    cells = _couple(u, v, u_weights, v_weights)
    below = (cells.diff < 0).to(cells.diff.dtype)
    return integrate(torch.where(cells.diff.isnan(), cells.diff, below), cells.mass)


def fsd_violation_ratio(
    u: Tensor,
    v: Tensor,
    *,
    u_weights: Tensor | None = None,
    v_weights: Tensor | None = None,
    p: int = 1,
) -> Tensor:
    r"""The violation area of $Q_U - Q_V$ over its total area: almost stochastic dominance.

    $$
    \varepsilon_p(U, V) = \frac{\int_0^1 \big(Q_V(t) - Q_U(t)\big)_+^p\,dt}
    {\int_0^1 \big|Q_U(t) - Q_V(t)\big|^p\,dt}
    = \frac{\sum_k \Delta_k\,(-d_k)_+^p}{\sum_k \Delta_k\,|d_k|^p}.
    $$

    `p=1` is the ratio of areas; `p=2` is del Barrio et al.'s $\varepsilon_{W_2}$, the
    statistic of the almost stochastic order test (see
    [`almost_dominance`][aot_loss.stats.almost_dominance], which adds its confidence bound).

    U is $\varepsilon$-almost stochastically dominant over V (Leshno and Levy 2002; del
    Barrio et al. 2018) for every $\varepsilon$ at or above this ratio: 0 is dominance, 1/2
    a tie in area, 1 dominance of V. Unlike :func:`fsd_violation` it weighs each violation
    by its size. When $Q_U = Q_V$ everywhere the ratio is 0/0; it is defined as 0
    (dominance holds with ties). Infinite samples make it NaN.

    Args:
        u: samples of U.
        v: samples of V; any size $m \ge 1$.
        u_weights: non-negative masses of the `u` samples, or `None` for uniform.
        v_weights: the same for `v`.
        p: 1 (areas) or 2 (squared gaps).

    Returns:
        The ratio in $[0, 1]$.

    Shape:
        - `u`: $(n,)$ or rows $(G, n)$; `v`: $(m,)$ or $(G, m)$; weights as their samples.
        - Output: $()$, or $(G,)$ for rows.

    Example:
        >>> import torch
        >>> from aot_loss.metrics import fsd_violation_ratio
        >>> fsd_violation_ratio(torch.tensor([0.0, 2.0, 5.0, 6.0]), torch.tensor([1.0, 1.0, 3.0, 4.0]))
        tensor(0.1667)
    """
    return _ratio(u, v, u_weights, v_weights, 1, p)


def ssd_violation(
    u: Tensor, v: Tensor, *, u_weights: Tensor | None = None, v_weights: Tensor | None = None
) -> Tensor:
    r"""The share of levels at which the Lorenz curve of U falls below that of V:
    second-order (SSD) violation.

    With $L_X(t) = \int_0^t Q_X(s)\,ds$ the absolute Lorenz curve,

    $$
    \mathrm{viol}_2(U, V) = \big|\{t \in [0, 1] : L_U(t) < L_V(t)\}\big|.
    $$

    $L_U(t) / t$ is the mean of the lowest $t$-fraction of U, so a violation at $t$ means
    the worst $t$ of U is worse on average than the worst $t$ of V. U second-order dominates
    V (0 here) when every such tail mean of U is at least V's; first-order dominance implies
    it, not the reverse: SSD tolerates crossings of the quantiles that an earlier lead
    makes up for. $C = L_U - L_V$ is piecewise linear on the merged grid,
    $C(t_k) = \sum_{l \le k} \Delta_l d_l$, so the measure is exact (crossings found in
    closed form, sums in float64; a value of $C$ within the rounding of its sum counts as
    0, a tie).

    Args:
        u: samples of U (e.g. rewards of chosen responses).
        v: samples of V; any size $m \ge 1$.
        u_weights: non-negative masses of the `u` samples, or `None` for uniform.
        v_weights: the same for `v`.

    Returns:
        The violation measure in $[0, 1]$.

    Shape:
        - `u`: $(n,)$ or rows $(G, n)$; `v`: $(m,)$ or $(G, m)$; weights as their samples.
        - Output: $()$, or $(G,)$ for rows.

    Example:
        >>> import torch
        >>> from aot_loss.metrics import fsd_violation, ssd_violation
        >>> v = torch.tensor([-2.0, 0.0, 2.0, 4.0])
        >>> u = v.mean() + (v - v.mean()) / 2  # same mean, half the spread
        >>> fsd_violation(u, v), ssd_violation(u, v), ssd_violation(v, u)
        (tensor(0.5000), tensor(0.), tensor(1.))
    """
    start, end, length = lorenz_gap(_couple(u, v, u_weights, v_weights))
    low, high = torch.minimum(start, end), torch.maximum(start, end)
    # The share of each cell where the linear C is < 0: all of it, none, or up to the crossing.
    crossing = -low / (start.abs() + end.abs()).clamp_min(torch.finfo(torch.float64).tiny)
    share = torch.where(high <= 0, (low < 0).to(low.dtype), torch.where(low < 0, crossing, 0.0))
    share = torch.where(high.isnan(), high, share)  # a NaN sample makes the metric NaN
    return _metric_dtype((length * share).sum(-1), u, v)


def ssd_violation_ratio(
    u: Tensor,
    v: Tensor,
    *,
    u_weights: Tensor | None = None,
    v_weights: Tensor | None = None,
    p: int = 1,
) -> Tensor:
    r"""The area where the Lorenz curve of U falls below V's over the area between them.

    $$
    \varepsilon^{(2)}_p(U, V) = \frac{\int_0^1 \big(L_V(t) - L_U(t)\big)_+^p\,dt}
    {\int_0^1 \big|L_V(t) - L_U(t)\big|^p\,dt},
    $$

    the second-order counterpart of
    [`fsd_violation_ratio`][aot_loss.metrics.fsd_violation_ratio]: 0 is second-order
    dominance of U, 1 of V. Exact: both integrals of the piecewise linear
    $L_U - L_V$ are sums over the cells of the merged grid, split at the crossings (for
    `p=2`, of a linear function squared). When the curves coincide the ratio is 0/0,
    defined as 0.

    Args:
        u: samples of U.
        v: samples of V; any size $m \ge 1$.
        u_weights: non-negative masses of the `u` samples, or `None` for uniform.
        v_weights: the same for `v`.
        p: 1 (areas) or 2 (squared gaps).

    Returns:
        The ratio in $[0, 1]$.

    Shape:
        - `u`: $(n,)$ or rows $(G, n)$; `v`: $(m,)$ or $(G, m)$; weights as their samples.
        - Output: $()$, or $(G,)$ for rows.

    Example:
        >>> import torch
        >>> from aot_loss.metrics import ssd_violation_ratio
        >>> # U's lower half is worse (0 < 1), its upper half makes up for it only from t = 3/4
        >>> ssd_violation_ratio(torch.tensor([0.0, 3.0]), torch.tensor([1.0, 1.0]))
        tensor(0.7500)
    """
    return _ratio(u, v, u_weights, v_weights, 2, p)


def ot_violation(
    u: Tensor,
    v: Tensor,
    *,
    loss: Loss = "logistic",
    beta: float = 0.01,
    label_smoothing: float = 0.0,
    order: int = 1,
    quantile_range: tuple[float, float] = (0.0, 1.0),
    u_weights: Tensor | None = None,
    v_weights: Tensor | None = None,
) -> Tensor:
    r"""The relaxed violation that AOT minimises, per row, without gradients.

    $$
    \int_0^1 h\big(Q_U(t) - Q_V(t)\big)\,dt = \sum_k \Delta_k\, h(d_k),
    $$

    or its second-order or range-restricted form (`order`, `quantile_range`), the value of
    [`unpaired`][aot_loss.unpaired]`(u, v, ...)` with the same options (with
    `reduction="none"` for rows), for logging and evaluation on held-out data.

    Args:
        u: samples of U.
        v: samples of V; any size $m \ge 1$.
        loss: the cost $h$, as in [`unpaired`][aot_loss.unpaired]: `"logistic"`,
            `"squared_hinge"`, `"least_squares"`, `"hinge"` or a callable.
        beta: inverse temperature (logistic) or margin (hinge family); default 0.01.
        label_smoothing: $\epsilon \in [0, 0.5)$, logistic cost only.
        order: `1` (quantile gaps, default) or `2` (lower-tail mean gaps), as in
            [`unpaired`][aot_loss.unpaired].
        quantile_range: the levels `(lo, hi)` that count, default `(0, 1)`.
        u_weights: non-negative masses of the `u` samples, or `None` for uniform.
        v_weights: the same for `v`.

    Returns:
        The OT cost of coupling U with V under $h$.

    Shape:
        - `u`: $(n,)$ or rows $(G, n)$; `v`: $(m,)$ or $(G, m)$; weights as their samples.
        - Output: $()$, or $(G,)$ for rows.

    Example:
        >>> import torch
        >>> from aot_loss.metrics import ot_violation
        >>> u, v = torch.tensor([0.0, 2.0, 5.0, 6.0]), torch.tensor([1.0, 1.0, 3.0, 4.0])
        >>> ot_violation(u, v, loss="hinge", beta=1.0)
        tensor(0.5000)
    """
    options = check_options(
        {"loss": loss, "beta": beta, "label_smoothing": label_smoothing, "order": order,
         "quantile_range": quantile_range}
    )  # fmt: skip
    cells = _couple(u, v, u_weights, v_weights)
    if not options.plain:
        with torch.no_grad():
            return shares(cells.diff, cells.mass, options).sum(-1).to(cells.diff.dtype)
    costs = options.cost(cells.diff)
    if options.custom_cost:
        check_custom_costs(costs, cells.diff)
    return integrate(costs, cells.mass)


class QuantileCurves(NamedTuple):
    """The empirical quantile functions of U and V on a grid of levels."""

    t: Tensor
    """(K,) levels in [0, 1], float64."""
    u: Tensor
    """Q_U(t): (K,), or (G, K) for rows."""
    v: Tensor
    """Q_V(t): (K,), or (G, K) for rows."""


def quantile_curves(
    u: Tensor,
    v: Tensor,
    grid: int | Tensor | Sequence[float] = 101,
    *,
    u_weights: Tensor | None = None,
    v_weights: Tensor | None = None,
) -> QuantileCurves:
    r"""The empirical quantile functions $Q_U$ and $Q_V$ at the levels of `grid`.

    $$
    Q_X(t) = \inf\{x : F_X(x) \ge t\} = x_{(i)}, \quad
    i = \min\{i : c_i \ge t\}\quad (0 < t \le 1),
    $$

    with $c_i$ the cumulative mass of the sorted sample $x_{(1)} \le \dots \le x_{(n)}$
    (NumPy's `inverted_cdf`), and $Q_X(0)$ the smallest sample with positive mass. These
    are the step functions that the losses and the other metrics integrate; plot them to
    see dominance (the paper's Figure 1; `aot_loss.plot` draws them).

    Args:
        u: samples of U.
        v: samples of V; any size $m \ge 1$.
        grid: the levels: an int $K \ge 2$ for `K` evenly spaced levels from 0 to 1, or a
            1-D tensor or sequence of levels in $[0, 1]$.
        u_weights: non-negative masses of the `u` samples, or `None` for uniform.
        v_weights: the same for `v`.

    Returns:
        `QuantileCurves(t, u, v)`: the levels (float64, on the samples' device) and the two
        quantile functions at them (in the computation dtype).

    Shape:
        - `u`: $(n,)$ or rows $(G, n)$; `v`: $(m,)$ or $(G, m)$; weights as their samples.
        - Output: `t` $(K,)$; `u` and `v` $(K,)$, or $(G, K)$ for rows.

    Example:
        >>> import torch
        >>> from aot_loss.metrics import quantile_curves
        >>> curves = quantile_curves(torch.tensor([3.0, 1.0, 2.0, 4.0]), torch.tensor([0.0, 5.0]), 5)
        >>> curves.t
        tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000], dtype=torch.float64)
        >>> curves.u, curves.v
        (tensor([1., 1., 2., 3., 4.]), tensor([0., 0., 0., 5., 5.]))
    """
    u, v = check_sample_pair("u", u, "v", v)
    u_weights = check_weights("u_weights", u_weights, u, "u")
    v_weights = check_weights("v_weights", v_weights, v, "v")
    t = _check_grid(grid, u.device)
    return QuantileCurves(t, _quantiles(u, u_weights, t), _quantiles(v, v_weights, t))


class LorenzCurves(NamedTuple):
    """The absolute Lorenz curves of U and V on a grid of levels."""

    t: Tensor
    """(K,) levels in [0, 1], float64."""
    u: Tensor
    """L_U(t): (K,), or (G, K) for rows."""
    v: Tensor
    """L_V(t): (K,), or (G, K) for rows."""


def lorenz_curves(
    u: Tensor,
    v: Tensor,
    grid: int | Tensor | Sequence[float] = 101,
    *,
    u_weights: Tensor | None = None,
    v_weights: Tensor | None = None,
) -> LorenzCurves:
    r"""The absolute Lorenz curves $L_U$ and $L_V$ at the levels of `grid`.

    $$
    L_X(t) = \int_0^t Q_X(s)\,ds
    = \sum_{i < j} (c_i - c_{i-1})\, x_{(i)} + (t - c_{j-1})\, x_{(j)},
    \quad j = \min\{i : c_i \ge t\},
    $$

    with $Q_X$ and the cumulative masses $c_i$ of
    [`quantile_curves`][aot_loss.metrics.quantile_curves] ($c_0 = 0$). $L_X(1)$ is the mean,
    and $L_X(t) / t$ the mean of the lowest $t$-fraction of the sample: plot
    $L_U(t)/t$ against $L_V(t)/t$ to see second-order dominance (see
    [`ssd_violation`][aot_loss.metrics.ssd_violation]).

    Args:
        u: samples of U.
        v: samples of V; any size $m \ge 1$.
        grid: the levels: an int $K \ge 2$ for `K` evenly spaced levels from 0 to 1, or a
            1-D tensor or sequence of levels in $[0, 1]$.
        u_weights: non-negative masses of the `u` samples, or `None` for uniform.
        v_weights: the same for `v`.

    Returns:
        `LorenzCurves(t, u, v)`: the levels (float64, on the samples' device) and the two
        curves at them (in the computation dtype; summed in float64).

    Shape:
        - `u`: $(n,)$ or rows $(G, n)$; `v`: $(m,)$ or $(G, m)$; weights as their samples.
        - Output: `t` $(K,)$; `u` and `v` $(K,)$, or $(G, K)$ for rows.

    Example:
        >>> import torch
        >>> from aot_loss.metrics import lorenz_curves
        >>> curves = lorenz_curves(torch.tensor([3.0, 1.0, 2.0, 4.0]), torch.tensor([0.0, 5.0]), 5)
        >>> curves.u, curves.v
        (tensor([0.0000, 0.2500, 0.7500, 1.5000, 2.5000]), tensor([0.0000, 0.0000, 0.0000, 1.2500, 2.5000]))
    """
    u, v = check_sample_pair("u", u, "v", v)
    u_weights = check_weights("u_weights", u_weights, u, "u")
    v_weights = check_weights("v_weights", v_weights, v, "v")
    t = _check_grid(grid, u.device)
    return LorenzCurves(t, _lorenz(u, u_weights, t), _lorenz(v, v_weights, t))


def _lorenz(x: Tensor, weights: Tensor | None, t: Tensor) -> Tensor:
    """L_X(t): the mass-weighted sum of the sorted samples below level t (see lorenz_curves)."""
    dtype = compute_dtype(x)
    with torch.no_grad():
        ordered, perm = stable_sort(x.detach().to(torch.float64))
        levels = cumulative_mass(weights, perm, ordered, torch.float64).expand_as(ordered).contiguous()
        previous = torch.nn.functional.pad(levels, (1, 0))[..., :-1]  # c_{i-1}, with c_0 = 0
        # A zero-mass sample adds nothing, whatever it holds.
        pieces = torch.where(levels > previous, (levels - previous) * ordered, 0.0)
        below = torch.nn.functional.pad(pieces.cumsum(-1), (1, 0))  # sum over i < j, for j = 0..n
        targets = t.expand(*ordered.shape[:-1], -1).contiguous()
        j = torch.searchsorted(levels, targets).clamp(max=ordered.shape[-1] - 1)
        partial = (targets - previous.gather(-1, j)) * ordered.gather(-1, j)
        partial = torch.where(targets > previous.gather(-1, j), partial, 0.0)
        return (below.gather(-1, j) + partial).to(dtype)


def _ratio(u: Tensor, v: Tensor, u_weights: object, v_weights: object, order: int, p: object) -> Tensor:
    """The violation ratio of ``order`` with exponent ``p`` (0/0 is 0; NaN stays NaN)."""
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p must be 1 (areas) or 2 (squared gaps), got {p!r}")
    violation, total = violation_areas(_couple(u, v, u_weights, v_weights), order, int(p))
    # Only an exact zero total is 0/0; a NaN total (NaN samples) stays NaN.
    ratio = torch.where(total == 0, torch.zeros_like(total), violation / total)
    return _metric_dtype(ratio, u, v)


def _metric_dtype(value: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """A float64 metric in the computation dtype of ``u`` and ``v``."""
    return value.to(compute_dtype(u, v))


def _couple(u: object, v: object, u_weights: object, v_weights: object) -> Coupling:
    """Validate samples ``u``, ``v`` and their weights and couple them without autograd."""
    u, v = check_sample_pair("u", u, "v", v)
    uw = check_weights("u_weights", u_weights, u, "u")
    vw = check_weights("v_weights", v_weights, v, "v")
    return couple_values(*upcast(u, v, uw, vw))


def _check_grid(grid: object, device: torch.device) -> Tensor:
    """Levels in [0, 1] as a float64 tensor on ``device``."""
    if isinstance(grid, bool):
        raise TypeError(f"grid must be an int, a tensor or a sequence of levels, got {grid!r}")
    if isinstance(grid, int):
        if grid < 2:
            raise ValueError(f"grid must be an int >= 2 (the number of levels), got {grid!r}")
        return torch.linspace(0.0, 1.0, grid, dtype=torch.float64, device=device)
    if isinstance(grid, Tensor):
        if grid.is_complex() or grid.dtype == torch.bool:
            raise TypeError(f"grid must hold real levels in [0, 1], got dtype {grid.dtype}")
        t = grid.to(device=device, dtype=torch.float64)
    elif isinstance(grid, Sequence) and not isinstance(grid, str):
        try:
            t = torch.tensor(grid, dtype=torch.float64, device=device)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"grid must be a sequence of real levels in [0, 1], got {grid!r}") from None
    else:
        raise TypeError(f"grid must be an int, a tensor or a sequence of levels, got {type(grid).__name__}")
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"grid must be a non-empty 1-D set of levels, got shape {tuple(t.shape)}")
    if not bool(((t >= 0) & (t <= 1)).all()):  # also rejects NaN
        raise ValueError(f"grid levels must lie in [0, 1], got min {t.min().item()} and max {t.max().item()}")
    return t


def _quantiles(x: Tensor, weights: Tensor | None, t: Tensor) -> Tensor:
    """Q_X(t) = the first sorted sample whose cumulative mass reaches t (see quantile_curves)."""
    x = as_dtype(x, compute_dtype(x))
    with torch.no_grad():
        if weights is None:
            ordered = sort_values(x)
            n = ordered.shape[-1]
            levels = torch.arange(1, n + 1, dtype=torch.float64, device=x.device) / n
        else:
            ordered, perm = stable_sort(x.detach())
            levels = cumulative_mass(weights, perm, ordered, torch.float64)
        levels = levels.expand_as(ordered).contiguous()
        targets = t.expand(*ordered.shape[:-1], -1).contiguous()
        first = torch.searchsorted(levels, targets)
        if weights is not None:
            # Q(0) is the smallest sample with positive mass: skip leading zero-mass samples.
            first = torch.where(targets > 0, first, torch.searchsorted(levels, targets, right=True))
        return ordered.gather(-1, first.clamp(max=ordered.shape[-1] - 1))
