"""Independent float64 references. None of this code calls aot_loss.

- ``quantile_integral``: integral_0^1 h(Q_U(t) - Q_V(t)) dt by evaluating both empirical
  quantile functions at the midpoint of every cell between consecutive cumulative masses.
- ``ot_linprog``: min over all couplings gamma in Pi(a, b) of sum_ij gamma_ij h(u_i - v_j),
  solved as a linear program (no sorting anywhere).
- ``ot_bruteforce``: min over permutations, equal sizes.
- ``trl_*`` / ``dpo_loss``: TRL's formulas, re-typed from paper.md section 8.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linprog

NumpyCost = Callable[[np.ndarray], np.ndarray]

# The built-in costs h(d; beta, ls), written again in NumPy (log(1 + e^x) as logaddexp(0, x)).
# tests/test_costs.py checks that these names are the library's and the native library's.
NUMPY_COSTS: dict[str, Callable[[np.ndarray, float, float], np.ndarray]] = {
    "logistic": lambda d, beta, ls: (
        (1 - ls) * np.logaddexp(0.0, -beta * d) + ls * np.logaddexp(0.0, beta * d)
    ),
    "squared_hinge": lambda d, beta, ls: np.maximum(beta - d, 0.0) ** 2,
    "least_squares": lambda d, beta, ls: (beta - d) ** 2,
    "hinge": lambda d, beta, ls: np.maximum(beta - d, 0.0),
}
BUILTIN_COSTS = tuple(NUMPY_COSTS)


def numpy_cost(name: str, beta: float, label_smoothing: float = 0.0) -> NumpyCost:
    """The built-in cost ``name`` with its parameters bound."""
    return lambda d: NUMPY_COSTS[name](d, beta, label_smoothing)


def _quantile_function(values: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values, dtype=np.float64)
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(w[order])
    return values[order], cum / cum[-1]


def _evaluate(sorted_values: np.ndarray, cum: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Q(t) = inf{x : F(x) >= t}: the first sorted value whose cumulative mass reaches t."""
    index = np.minimum(np.searchsorted(cum, t, side="left"), len(cum) - 1)
    return sorted_values[index]


def quantile_integral(
    u: np.ndarray,
    v: np.ndarray,
    h: NumpyCost,
    u_weights: np.ndarray | None = None,
    v_weights: np.ndarray | None = None,
    quantile_range: tuple[float, float] = (0.0, 1.0),
) -> float:
    """Exact integral of h(Q_U - Q_V) over [0, 1] for weighted empirical measures; over
    [lo, hi] divided by hi - lo with a ``quantile_range``."""
    xu, cu = _quantile_function(u, u_weights)
    xv, cv = _quantile_function(v, v_weights)
    lo, hi = quantile_range
    if (lo, hi) != (0.0, 1.0):
        levels = np.union1d(np.concatenate([[lo], cu, cv]), [hi])
        levels = levels[(levels >= lo) & (levels <= hi)]
        lengths, mids = np.diff(levels), (levels[:-1] + levels[1:]) / 2
        return float(np.sum(lengths * h(_evaluate(xu, cu, mids) - _evaluate(xv, cv, mids)))) / (hi - lo)
    levels = np.union1d(np.concatenate([[0.0], cu, cv]), [1.0])
    lengths = np.diff(levels)
    mids = (levels[:-1] + levels[1:]) / 2
    return float(np.sum(lengths * h(_evaluate(xu, cu, mids) - _evaluate(xv, cv, mids))))


def ot_linprog(
    u: np.ndarray,
    v: np.ndarray,
    h: NumpyCost,
    u_weights: np.ndarray | None = None,
    v_weights: np.ndarray | None = None,
) -> float:
    """Optimal transport cost by linear programming over all couplings."""
    n, m = len(u), len(v)
    a = np.ones(n) if u_weights is None else np.asarray(u_weights, dtype=np.float64)
    b = np.ones(m) if v_weights is None else np.asarray(v_weights, dtype=np.float64)
    a, b = a / a.sum(), b / b.sum()
    cost = h(np.asarray(u, np.float64)[:, None] - np.asarray(v, np.float64)[None, :]).ravel()
    rows = np.kron(np.eye(n), np.ones((1, m)))  # sum_j gamma_ij = a_i
    cols = np.kron(np.ones((1, n)), np.eye(m))  # sum_i gamma_ij = b_j
    result = linprog(
        cost,
        A_eq=np.vstack([rows, cols]),
        b_eq=np.concatenate([a, b]),
        bounds=(0, None),
        method="highs",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    assert result.status == 0, result.message
    return float(result.fun)


def ot_bruteforce(u: np.ndarray, v: np.ndarray, h: NumpyCost) -> float:
    """min over permutations sigma of mean_i h(u_i - v_sigma(i)); equal sizes only."""
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    return min(float(np.mean(h(u - v[list(p)]))) for p in itertools.permutations(range(len(v))))


def _trl_losses(delta: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    return -F.logsigmoid(beta * delta) * (1 - label_smoothing) - F.logsigmoid(-beta * delta) * label_smoothing


def trl_aot_logratios(u, v, beta: float, label_smoothing: float = 0.0, dim: int = 0) -> torch.Tensor:
    """TRL's AOT branch on log-ratios: sort both sides along ``dim`` (TRL: 0), subtract,
    label-smoothed logistic; per-pair losses."""
    u_sorted, _ = torch.sort(u, dim=dim)
    v_sorted, _ = torch.sort(v, dim=dim)
    delta = u_sorted - v_sorted
    return _trl_losses(delta, beta, label_smoothing)


def trl_aot_paired(pc, pr, rc, rr, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """TRL ``loss_type="aot"``: per-pair losses (the trainer takes their mean).

    pi_logratios = pc - pr and ref_logratios = rc - rr are sorted and compared.
    """
    return trl_aot_logratios(pc - pr, rc - rr, beta, label_smoothing)


def trl_aot_unpaired(pc, pr, rc, rr, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """TRL ``loss_type="aot_unpaired"`` (formerly ``aot_pair``): per-pair losses.

    chosen_logratios = pc - rc and rejected_logratios = pr - rr are sorted and compared.
    """
    return trl_aot_logratios(pc - rc, pr - rr, beta, label_smoothing)


def dpo_loss(pc, pr, rc, rr, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """(c)DPO per-pair losses: -log sigmoid(beta * ((pc - rc) - (pr - rr)))."""
    logits = (pc - rc) - (pr - rr)
    return _trl_losses(logits, beta, label_smoothing)


def soft_sort_oracle(x, strength, regularization="l2"):
    """torchsort's soft sort re-typed from its definition (Blondel et al. 2020), in Python
    floats: the dual isotonic problem on y = w - s with w_i = (n - i) / strength and
    s = -x sorted descending, solved by a textbook stack PAV; output w - sol, negated back
    to ascending. L2: argmin_{v decreasing} ||v - y||^2 (blocks take the mean of y); KL:
    argmin_{v decreasing} <exp(y - v), 1> + <exp(s), v> (blocks take lse(w) - lse(s))."""
    values = [float(t) for t in np.asarray(x, dtype=np.float64).ravel()]
    n = len(values)
    s = sorted((-t for t in values), reverse=True)
    w = [(n - i) / strength for i in range(n)]

    def lse(terms):
        top = max(terms)
        return top + math.log(sum(math.exp(t - top) for t in terms))

    def value(block):
        if regularization == "l2":
            return sum(w[i] - s[i] for i in block) / len(block)
        return lse([w[i] for i in block]) - lse([s[i] for i in block])

    stack = []
    for i in range(n):
        stack.append([i])
        while len(stack) > 1 and value(stack[-2]) <= value(stack[-1]):
            right = stack.pop()
            stack[-1] += right
    sol = [0.0] * n
    for block in stack:
        for i in block:
            sol[i] = value(block)
    return np.array([sol[i] - w[i] for i in range(n)])  # torchsort: sign * (w - sol), sign = -1


def lorenz(values: np.ndarray, weights: np.ndarray | None, t: np.ndarray) -> np.ndarray:
    """L(t) = integral_0^t Q(s) ds: linear between the knots (0, 0) and (c_i, sum_{l <= i} w_l x_(l))
    of the samples with positive mass, interpolated by NumPy."""
    xs, cum = _quantile_function(values, weights)
    mass = np.diff(np.concatenate([[0.0], cum]))
    keep = mass > 0
    knots = np.concatenate([[0.0], cum[keep]])
    heights = np.concatenate([[0.0], np.cumsum(mass[keep] * xs[keep])])
    return np.interp(t, knots, heights)


def ssd_dense(u, v, u_weights=None, v_weights=None, levels: int = 10**6, tie: float = 1e-9):
    """(measure of {L_U < L_V}, ratio of areas) on a dense grid of level midpoints; gaps within
    ``tie`` of 0 (rounding of the knots' sums) count as 0."""
    t = (np.arange(levels) + 0.5) / levels
    gap = lorenz(u, u_weights, t) - lorenz(v, v_weights, t)
    gap[np.abs(gap) <= tie] = 0.0
    total = np.abs(gap).mean()
    return float((gap < 0).mean()), (0.0 if total == 0 else float(np.maximum(-gap, 0.0).mean() / total))


def order2_integral(u, v, h: NumpyCost, u_weights=None, v_weights=None, quantile_range=(0.0, 1.0)) -> float:
    """(1 / (hi - lo)) integral_lo^hi h(g(t)) dt with g(t) = (L_U(t) - L_V(t)) / t, the lower-tail
    mean gap, by SciPy's adaptive quad between the knots of both Lorenz curves."""
    from scipy.integrate import quad

    lo, hi = quantile_range
    _, cu = _quantile_function(u, u_weights)
    _, cv = _quantile_function(v, v_weights)
    knots = np.unique(np.concatenate([[lo, hi], cu, cv]))
    knots = knots[(knots >= lo) & (knots <= hi)]

    def integrand(t: float) -> float:
        gap = lorenz(u, u_weights, np.array([t]))[0] - lorenz(v, v_weights, np.array([t]))[0]
        return float(h(np.array([gap / t]))[0])

    total = 0.0
    for a, b in itertools.pairwise(knots):
        if b > a:
            total += quad(integrand, a, b, epsabs=1e-15, epsrel=1e-12, limit=400)[0]
    return total / (hi - lo)


def violation_ratio(u, v, order: int = 1, p: int = 2, u_weights=None, v_weights=None) -> tuple[float, float]:
    """(integral of (G_V - G_U)_+^p, integral of |G_U - G_V|^p) over t in [0, 1], G = Q for order 1
    and G = L (the Lorenz curve) for order 2, between the knots of both samples: Q_U - Q_V is
    constant there (read at the midpoint); L_U - L_V is linear, so its p-th power integrates
    exactly by Simpson's rule once split at its root."""
    _, cu = _quantile_function(u, u_weights)
    _, cv = _quantile_function(v, v_weights)
    knots = np.unique(np.concatenate([[0.0, 1.0], cu, cv]))
    below = total = 0.0
    for a, b in itertools.pairwise(knots):
        if order == 1:
            xu, qu = _quantile_function(u, u_weights)
            xv, qv = _quantile_function(v, v_weights)
            mid = np.array([(a + b) / 2])
            gap = float(_evaluate(xu, qu, mid)[0] - _evaluate(xv, qv, mid)[0])
            below += (b - a) * max(-gap, 0.0) ** p
            total += (b - a) * abs(gap) ** p
            continue

        def gap_at(t: float) -> float:
            return float(lorenz(u, u_weights, np.array([t]))[0] - lorenz(v, v_weights, np.array([t]))[0])

        ga, gb = gap_at(a), gap_at(b)
        pieces = [(a, b)]
        if ga * gb < 0:
            root = a + (b - a) * ga / (ga - gb)
            pieces = [(a, root), (root, b)]
        for x, y in pieces:
            gx, gm, gy = gap_at(x), gap_at((x + y) / 2), gap_at(y)
            power = (abs(gx) ** p, abs(gm) ** p, abs(gy) ** p)
            simpson = (y - x) / 6 * (power[0] + 4 * power[1] + power[2])
            total += simpson
            if gm < 0:
                below += simpson
    return below, total
