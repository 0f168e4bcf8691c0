r"""Second-order dominance and restricted ranges of levels, integrated on the merged grid.

The coupling gives cells k with ends $t_{k-1} \le t_k$ (lengths $\Delta_k$) and gaps
$d_k = Q_U - Q_V$. This module turns them into each cell's share $s_k$ of the loss, so that
the loss of a row is $\sum_k s_k$:

- order 1 on levels $[lo, hi]$: $s_k = |[t_{k-1}, t_k] \cap [lo, hi]|\, h(d_k) / (hi - lo)$;
- order 2: with $C(t) = \int_0^t (Q_U - Q_V) = L_U(t) - L_V(t)$, linear on each cell, the
  lower-tail mean gap $g(t) = C(t)/t = e_k + c_k / t$ on cell k ($e_k = d_k$,
  $c_k = C(t_{k-1}) - d_k t_{k-1}$), and $s_k = \int h(g(t))\,dt / (hi - lo)$ over the cell's
  part of $[lo, hi]$. On the first cell of positive length $c = 0$: $g = d$ there.

For order 2 the hinge, squared-hinge and least-squares integrals are exact: with
$p = \beta - e$, $h$ is a polynomial in $p - c/t$, whose integrals are those of $1$, $1/t$ and
$1/t^2$; the hinges split at the crossing $t = c/p$. The logistic cost splits as
$(1-\epsilon)\beta (-g)_+ + \epsilon\beta\, g_+ + \log(1 + e^{-\beta|g|})$: its two hinges are
exact and the bounded remainder is integrated by :func:`_quadrature`, a fixed rule whose nodes
depend only on the cell and its crossing $g = 0$. A callable cost is integrated by the same
rule, split at $g = 0$ and $g = \beta$, evaluated at its nodes. Everything is differentiable
by autograd: the nodes move smoothly with the inputs, so the gradient is the exact gradient of
the value computed. Sums and the curve $C$ are in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ._costs import CostFn, checked_cost
from ._options import Options

# The quadrature rule: around the crossing g = 0 the remainder log(1 + exp(-y)), y = scale |g|,
# varies on the scale y ~ 1 and has poles at y = +-i pi; panels graded in y (widths 0.5, 1, 2,
# ..., 32, then the rest of the piece) keep each pole several half-widths away and the
# remainder below e^-64 past them. Each panel is split in two in s = log t, where the factor
# t of dt = t ds is entire, and takes 8 Gauss-Legendre nodes in s.
_GRADES = (0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 63.5)
_SPLITS = 2
_NODES, _WEIGHTS = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(8))


def shares(diff: Tensor, mass: Tensor | None, options: Options) -> Tensor:
    """:func:`contributions` for the validated ``options`` (a callable cost checked as it runs)."""
    cost = checked_cost(options.cost) if options.custom_cost else options.cost
    return contributions(
        diff, mass, cost, options.name, options.beta, options.label_smoothing, options.order,
        options.quantile_range,
    )  # fmt: skip


def contributions(
    diff: Tensor,
    mass: Tensor | None,
    cost: CostFn,
    name: str | None,
    beta: float,
    label_smoothing: float,
    order: int,
    quantile_range: tuple[float, float],
) -> Tensor:
    """Each cell's share of the loss (see the module's docstring), in float64: (..., K)."""
    d = diff.to(torch.float64)
    length = torch.full_like(d, 1.0 / d.shape[-1]) if mass is None else mass.to(torch.float64)
    end = length.cumsum(-1)
    start = end - length
    lo, hi = quantile_range
    a, b = start.clamp(min=lo), end.clamp(max=hi)
    inside = b > a
    if order == 1:
        overlap = torch.where(inside, b - a, 0.0)
        values = cost(diff).to(torch.float64)
        return torch.where(inside, overlap * values, 0.0) / (hi - lo)
    area = length * d
    c = (area.cumsum(-1) - area) - d * start  # C(t_{k-1}) - d_k t_{k-1}
    c = torch.where(start > 0, c, 0.0)  # exactly 0 on the cells that start at t = 0
    a = torch.where(inside, a, b)  # an empty part: a = b, every integral below is 0
    return _order2(d, c, a, b, cost, name, beta, label_smoothing) / (hi - lo)


def _order2(
    e: Tensor, c: Tensor, a: Tensor, b: Tensor, cost: CostFn, name: str | None, beta: float, ls: float
) -> Tensor:
    """integral_a^b h(e + c/t) dt per cell (a < b, or a = b for none; c = 0 where a = 0)."""
    if name in ("hinge", "squared_hinge", "least_squares"):
        power = 1 if name == "hinge" else 2
        p = beta - e
        if name == "least_squares":
            return _polynomial(p, c, a, b, power)
        return _positive_part(p, c, a, b, power)
    if name == "logistic":
        # (1 - ls) softplus(-beta g) + ls softplus(beta g): two hinges and the bounded remainder
        hinges = (1.0 - ls) * beta * _positive_part(-e, c, a, b, 1)
        if ls:
            hinges = hinges + ls * beta * _positive_part(e, -c, a, b, 1)
        remainder = _quadrature(lambda g: torch.log1p(torch.exp(-beta * g.abs())), e, c, a, b, beta, ())
        return hinges + remainder
    # a callable: the rule on h itself, split at g = 0 and g = beta
    return _quadrature(lambda g: cost(g).to(torch.float64), e, c, a, b, 1.0, (beta,))


def _integrals(c: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """integral_a^b of 1, c/t and (c/t)^2: (b - a, c log(b/a), c^2 (1/a - 1/b)); the last two
    are 0 where c = 0 (a may be 0 there)."""
    safe_a = torch.where(c != 0, a, 1.0)
    width = b - a
    log_ratio = torch.log1p(width / safe_a)
    first = torch.where(c != 0, c * log_ratio, 0.0)
    second = torch.where(c != 0, c * c * width / (safe_a * torch.where(c != 0, b, 1.0)), 0.0)
    return width, first, second


def _polynomial(p: Tensor, c: Tensor, a: Tensor, b: Tensor, power: int) -> Tensor:
    """integral_a^b (p - c/t)^power dt, power 1 or 2."""
    width, first, second = _integrals(c, a, b)
    if power == 1:
        return p * width - first
    return p * p * width - 2 * p * first + second


def _positive_part(p: Tensor, c: Tensor, a: Tensor, b: Tensor, power: int) -> Tensor:
    """integral_a^b relu(p - c/t)^power dt. p - c/t is monotone in t: split [a, b] at its
    root c/p and keep the pieces where it is positive (read at each piece's midpoint)."""
    safe_p = torch.where(p != 0, p, 1.0)
    root = torch.where((p != 0) & (c != 0), c / safe_p, a)
    middle = torch.minimum(torch.maximum(root, a), b)
    total = torch.zeros_like(p)
    for lo, hi in ((a, middle), (middle, b)):
        centre = (lo + hi) / 2
        value = p - c / torch.where(c != 0, centre, 1.0)
        positive = (value > 0) & (hi > lo)
        total = total + torch.where(positive, _polynomial(p, c, lo, hi, power), 0.0)
    return total


def _quadrature(
    h: Callable[[Tensor], Tensor],
    e: Tensor,
    c: Tensor,
    a: Tensor,
    b: Tensor,
    scale: float,
    levels: tuple[float, ...],
) -> Tensor:
    """integral_a^b h(e + c/t) dt by the fixed rule: [a, b] split where g = 0 and where g
    equals each of ``levels``; each piece cut into panels graded in y = scale |g| from its
    end nearest g = 0, each panel into halves in s = log t with 8 Gauss-Legendre nodes.
    Where c = 0, g = e on the whole cell and the integral is h(e) (b - a)."""
    constant = c == 0
    safe_c = torch.where(constant, 1.0, c)
    safe_a = torch.where(constant, 1.0, a)
    safe_b = torch.where(constant, 2.0, b)
    cuts = [safe_a, safe_b]
    for level in (0.0, *levels):  # g(t) = level at t = c / (level - e), where in (a, b)
        denominator = level - e
        safe = torch.where(denominator != 0, denominator, 1.0)
        t = torch.where(denominator != 0, safe_c / safe, safe_a)
        cuts.append(torch.minimum(torch.maximum(t, safe_a), safe_b))
    edges = torch.stack(cuts, -1).sort(-1).values  # (..., K, P + 1) piece ends
    x, y = edges[..., :-1], edges[..., 1:]
    # g at both ends of each piece; its sign is the piece's (no crossing inside)
    ex, cx = e.unsqueeze(-1), safe_c.unsqueeze(-1)
    gx, gy = ex + cx / x, ex + cx / y
    sign = torch.where((gx + gy) >= 0, 1.0, -1.0)
    yx, yy = scale * gx.abs(), scale * gy.abs()
    near = torch.minimum(yx, yy)
    far = torch.maximum(yx, yy)
    grades = near.unsqueeze(-1) + torch.tensor(_GRADES, dtype=near.dtype, device=near.device)
    grades = torch.cat([torch.minimum(grades, far.unsqueeze(-1)), far.unsqueeze(-1)], -1)
    # back to t: g = sign y / scale, t = c / (g - e); the ends of each piece are kept exact
    g = sign.unsqueeze(-1) * grades / scale
    gap = g - ex.unsqueeze(-1)
    t = cx.unsqueeze(-1) / torch.where(gap != 0, gap, 1.0)
    lower, upper = x.unsqueeze(-1), y.unsqueeze(-1)
    t = torch.minimum(torch.maximum(t, lower), upper).sort(-1).values
    t = torch.cat([lower, t[..., 1:-1], upper], -1)
    # each panel [t_i, t_{i+1}] in s = log t, halved, with the Gauss-Legendre nodes
    s = torch.log(t)
    s0, s1 = s[..., :-1], s[..., 1:]
    fractions = (torch.arange(_SPLITS + 1, dtype=s.dtype, device=s.device)) / _SPLITS
    bounds = s0.unsqueeze(-1) + (s1 - s0).unsqueeze(-1) * fractions
    left, right = bounds[..., :-1], bounds[..., 1:]
    nodes, weights = _NODES.to(s), _WEIGHTS.to(s)
    centre, half = (left + right) / 2, (right - left) / 2
    sn = centre.unsqueeze(-1) + half.unsqueeze(-1) * nodes
    tn = torch.exp(sn)
    shape = (*e.shape, 1, 1, 1, 1)
    gn = e.reshape(shape) + safe_c.reshape(shape) / tn
    integrand = h(gn) * tn * half.unsqueeze(-1) * weights
    total = integrand.sum((-1, -2, -3, -4))
    return torch.where(constant, h(e) * (b - a), total)
