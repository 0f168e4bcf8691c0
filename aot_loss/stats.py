r"""Dominance with confidence: the almost stochastic order test, and a ranking of models by it.

A point estimate (``aot_loss.metrics``) says how far U is from dominating V on these samples;
the test says whether that is more than noise. Both orders compare quantities that are exact
on the merged grid of the two samples' cumulative masses (piecewise constant quantile gaps,
piecewise linear Lorenz gaps), and a bootstrap resample is a row of that grid: all resamples
of a test are computed as one batch of rows, without sorting again (a resample of a sorted
sample is the same sorted sample with integer counts as weights).

Definitions (del Barrio, Cuesta-Albertos and Matrán 2018; Dror, Shlomov and Reichart 2019;
for the second order, Nitsure et al. 2024): with $G = Q$ (order 1) or $G = L$, the absolute
Lorenz curve $L(t) = \int_0^t Q$ (order 2),

$$
\varepsilon(U, V) = \frac{\int_0^1 \big(G_V(t) - G_U(t)\big)_+^2\,dt}
{\int_0^1 \big(G_V(t) - G_U(t)\big)^2\,dt},
$$

0 when U dominates V, 1 when V dominates U, and 1/2 for identical samples (no order either
way). The upper confidence bound, as ``deepsig.aso`` computes it: resample each side with
replacement to its own size $B$ times, $c = \sqrt{nm/(n+m)}$,
$\sigma = \mathrm{std}\big(c(\varepsilon^* - \varepsilon)\big)$ over the resamples, and

$$
\varepsilon_{\mathrm{upper}} = \mathrm{clip}\big(\varepsilon + z_{\gamma}\,\sigma / c,\ 0,\ 1\big),
\qquad \gamma = \mathrm{confidence} + (1 - \mathrm{confidence}) / k
$$

for $k$ comparisons (Bonferroni), $z_\gamma$ the standard normal quantile. U almost
dominates V at threshold $\tau$ when $\varepsilon_{\mathrm{upper}} < \tau$ (0.5 is lenient,
0.2 strict).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from statistics import NormalDist
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ._coupling import Coupling, couple_sorted
from ._violation import violation_areas

__all__ = ["AlmostDominance", "Ranking", "almost_dominance", "rank", "violation_ratio"]

# Cells of the merged grid per batch of bootstrap rows: bounds the memory of a test (about
# 100 bytes a cell) whatever n, m and the number of resamples; batches this size stay in
# cache and ran faster than larger ones.
_CELLS_PER_BATCH = 1 << 18

Progress = Callable[[int, int], None]  # (resamples done, resamples in all)


class AlmostDominance(NamedTuple):
    """The result of :func:`almost_dominance`."""

    epsilon: float  #: the violation ratio of U against V on the samples
    epsilon_upper: float  #: its upper confidence bound: U almost dominates V at tau if below tau
    sigma: float  #: the bootstrap's standard deviation of c (epsilon* - epsilon)
    n: int  #: the size of U
    m: int  #: the size of V
    order: int  #: 1 (quantiles) or 2 (Lorenz curves)
    confidence: float  #: the confidence level used, after the Bonferroni correction
    num_bootstrap: int  #: the number of resamples


class Ranking(NamedTuple):
    """The result of :func:`rank`."""

    names: tuple[str, ...]  #: the models, best first (most wins, ties broken by the mean)
    epsilon_upper: Tensor  #: (k, k) float64: [i, j] bounds "names[i] almost dominates names[j]"
    wins: tuple[int, ...]  #: how many models each one almost dominates at the threshold


def almost_dominance(
    u: Tensor | np.ndarray | Sequence[float],
    v: Tensor | np.ndarray | Sequence[float],
    *,
    order: int = 1,
    confidence: float = 0.95,
    num_comparisons: int = 1,
    num_bootstrap: int = 1000,
    seed: int | None = None,
) -> AlmostDominance:
    r"""The almost stochastic order test of U over V: the violation ratio and its upper
    confidence bound (see the module's docstring for the definitions).

    $$
    \varepsilon = \frac{\sum_k \Delta_k (-d_k)_+^2}{\sum_k \Delta_k d_k^2}
    $$

    on the cells of the merged grid for order 1 (for order 2, the same integrals of the
    piecewise linear Lorenz gap $L_U - L_V$), equal to
    ``metrics.fsd_violation_ratio(u, v, p=2)`` (``ssd_violation_ratio`` for order 2) except
    for identical samples, where it is 1/2 rather than 0. Unlike ``deepsig.aso``, which
    reads the quantile functions on a grid of step ``dt`` and misses the levels above
    $1 - dt$, it is exact.

    The samples are observations of equal weight: the bootstrap resamples observations, so
    weighted samples are not taken (repeat a sample to weigh it).

    Args:
        u: scores of U, the model expected to be better (higher is better).
        v: scores of V.
        order: 1 (first-order, quantiles) or 2 (second-order, lower-tail means).
        confidence: the confidence level of the bound, in (0, 1).
        num_comparisons: the number of tests run together; the confidence is corrected for
            it (Bonferroni).
        num_bootstrap: resamples for sigma, at least 2.
        seed: seeds the resampling: the same seed gives the same result on every call;
            `None` draws a fresh seed.

    Returns:
        An [`AlmostDominance`][aot_loss.stats.AlmostDominance] named tuple.

    Shape:
        - `u`: $(n,)$ and `v`: $(m,)$, any sizes $\ge 1$; tensors, NumPy arrays or sequences of
          real numbers (computed in float64 on the CPU).

    Example:
        >>> import torch
        >>> from aot_loss.stats import almost_dominance
        >>> g = torch.Generator().manual_seed(0)
        >>> v = torch.randn(500, generator=g, dtype=torch.float64)
        >>> result = almost_dominance(v + 0.1, v, seed=0)  # a shifted copy dominates ...
        >>> result.epsilon, round(result.epsilon_upper, 2)  # ... but by little: almost at 0.5, not 0.2
        (0.0, 0.31)
    """
    x, y = _sample("u", u), _sample("v", v)
    _check_order(order)
    level = _corrected_confidence(confidence, _count("num_comparisons", num_comparisons, 1))
    resamples = _count("num_bootstrap", num_bootstrap, 2)
    epsilon, sigma = _bootstrap(x, y, order, resamples, _generator(seed))
    upper = _upper(epsilon, sigma, level, x.numel(), y.numel())
    return AlmostDominance(epsilon, upper, sigma, x.numel(), y.numel(), order, level, resamples)


def rank(
    scores: Mapping[str, Tensor | np.ndarray | Sequence[float]],
    *,
    order: int = 1,
    confidence: float = 0.95,
    threshold: float = 0.5,
    num_bootstrap: int = 1000,
    seed: int | None = None,
    progress: Progress | None = None,
) -> Ranking:
    r"""Rank $k \ge 2$ models by almost stochastic dominance of their scores.

    Every ordered pair $(i, j)$ is tested, with the confidence corrected for the
    $k(k-1)/2$ comparisons (Bonferroni, as ``deepsig.multi_aso``): model $i$ almost
    dominates $j$ when $\varepsilon_{\mathrm{upper}}(i, j) < \tau$. Both directions of a pair
    share one bootstrap: $\varepsilon(j, i) = 1 - \varepsilon(i, j)$ exactly, on the samples
    and on every resample, so $\sigma$ is the same. ``wins[i]`` counts the models that
    ``names[i]`` almost dominates; models are ordered by wins, then by mean score.

    Args:
        scores: model name -> its scores (tensors, NumPy arrays or sequences of real numbers).
        order: 1 (quantiles) or 2 (lower-tail means).
        confidence: the family's confidence level, in (0, 1).
        threshold: $\tau$ in (0, 1]: 0.5 is lenient, 0.2 strict.
        num_bootstrap: resamples per pair, at least 2.
        seed: seeds the resampling (the same seed, the same ranking); `None` draws one.
        progress: called as `progress(done, total)` with the resamples done after each
            batch of them (``python -m aot_loss compare`` draws its progress bar with it).

    Returns:
        A [`Ranking`][aot_loss.stats.Ranking] named tuple `(names, epsilon_upper, wins)`;
        the diagonal of `epsilon_upper` is NaN.

    Shape:
        - each model's scores: $(n_i,)$, sizes may differ.
        - `epsilon_upper`: $(k, k)$, rows and columns in the order of `names`.

    Example:
        >>> import torch
        >>> from aot_loss.stats import rank
        >>> g = torch.Generator().manual_seed(0)
        >>> base = torch.randn(300, generator=g, dtype=torch.float64)
        >>> ranking = rank({"sft": base, "dpo": base + 0.5, "aot": base + 1.0}, seed=0)
        >>> ranking.names, ranking.wins
        (('aot', 'dpo', 'sft'), (2, 1, 0))
    """
    names, samples = _models(scores)
    _check_order(order)
    level = _corrected_confidence(confidence, len(names) * (len(names) - 1) // 2)
    tau = _threshold(threshold)
    resamples = _count("num_bootstrap", num_bootstrap, 2)
    upper = _pairwise_upper(samples, order, level, resamples, _generator(seed), progress)
    wins = [int((upper[i] < tau).sum()) for i in range(len(names))]  # NaN (the diagonal) never wins
    means = [float(s.mean()) for s in samples]
    order_of = sorted(range(len(names)), key=lambda i: (-wins[i], -means[i]))
    index = torch.tensor(order_of)
    return Ranking(
        tuple(names[i] for i in order_of), upper[index][:, index], tuple(wins[i] for i in order_of)
    )


def _pairwise_upper(
    samples: Sequence[Tensor],
    order: int,
    level: float,
    num_bootstrap: int,
    generator: torch.Generator,
    progress: Progress | None = None,
) -> Tensor:
    """The (k, k) matrix of upper bounds of validated, sorted float64 ``samples`` (NaN on the
    diagonal) at the corrected confidence ``level``; ``progress`` hears of each batch."""
    k = len(samples)
    upper = torch.full((k, k), math.nan, dtype=torch.float64)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    for number, (i, j) in enumerate(pairs):
        report = None
        if progress is not None:
            done = number * num_bootstrap
            report = lambda rows, done=done: progress(done + rows, len(pairs) * num_bootstrap)  # noqa: E731
        epsilon, sigma = _bootstrap(samples[i], samples[j], order, num_bootstrap, generator, report)
        n, m = samples[i].numel(), samples[j].numel()
        upper[i, j] = _upper(epsilon, sigma, level, n, m)
        upper[j, i] = _upper(1.0 - epsilon, sigma, level, n, m)
    return upper


def violation_ratio(
    u: Tensor | np.ndarray | Sequence[float], v: Tensor | np.ndarray | Sequence[float], *, order: int = 1
) -> float:
    r"""The violation ratio $\varepsilon(U, V)$ of :func:`almost_dominance` alone, without
    the bootstrap: $\int (G_V - G_U)_+^2 / \int (G_V - G_U)^2$ with $G = Q$ (order 1) or
    $L$ (order 2), 1/2 for identical samples.

    Args:
        u: scores of U; v: scores of V (tensors, NumPy arrays or sequences of real numbers).
        order: 1 or 2.

    Returns:
        $\varepsilon$ in $[0, 1]$.

    Shape:
        - `u`: $(n,)$, `v`: $(m,)$.

    Example:
        >>> from aot_loss.stats import violation_ratio
        >>> violation_ratio([1.0, 2.0], [1.0, 2.0]), violation_ratio([2.0, 3.0], [1.0, 2.0])
        (0.5, 0.0)
    """
    _check_order(order)
    return _epsilon(_sample("u", u), _sample("v", v), order)


def _epsilon(x: Tensor, y: Tensor, order: int) -> float:
    """The violation ratio of sorted float64 samples."""
    return float(_ratio(couple_sorted(x, y, None, None), order))


def _bootstrap(
    x: Tensor,
    y: Tensor,
    order: int,
    resamples: int,
    generator: torch.Generator,
    progress: Callable[[int], None] | None = None,
) -> tuple[float, float]:
    """(epsilon, sigma) of sorted float64 samples: the resamples are rows of counts."""
    n, m = x.numel(), y.numel()
    value = _epsilon(x, y, order)
    rows = max(1, _CELLS_PER_BATCH // (n + m))
    ratios = []
    for start in range(0, resamples, rows):
        size = min(rows, resamples - start)
        cells = couple_sorted(
            x.expand(size, n), y.expand(size, m), _counts(n, size, generator), _counts(m, size, generator)
        )
        ratios.append(_ratio(cells, order))
        if progress is not None:
            progress(start + size)
    scale = math.sqrt(n * m / (n + m))
    sigma = float((scale * (torch.cat(ratios) - value)).std(correction=0))
    return value, sigma


def _counts(n: int, rows: int, generator: torch.Generator) -> Tensor:
    """(rows, n) int64: how often each of n samples is drawn in n draws with replacement."""
    draws = torch.randint(n, (rows, n), generator=generator)
    draws += torch.arange(rows).unsqueeze(-1) * n  # row r counts into bins r n .. r n + n - 1
    return torch.bincount(draws.flatten(), minlength=rows * n).view(rows, n)


def _ratio(cells: Coupling, order: int) -> Tensor:
    violation, total = violation_areas(cells, order, 2)
    return torch.where(total == 0, 0.5, violation / torch.where(total == 0, 1.0, total))


def _upper(epsilon: float, sigma: float, level: float, n: int, m: int) -> float:
    z = NormalDist().inv_cdf(level)
    return min(max(epsilon + z * sigma / math.sqrt(n * m / (n + m)), 0.0), 1.0)


def _generator(seed: object) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
        return generator
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
    return generator.manual_seed(seed)


def _sample(name: str, x: object) -> Tensor:
    """A 1-D sample of finite real numbers as a sorted float64 CPU tensor."""
    if isinstance(x, Tensor):
        array = x.detach().cpu()
        if array.dtype == torch.bool or array.is_complex():
            raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
        t = array.to(torch.float64)
    else:
        try:
            values = np.asarray(x)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a tensor, an array or a sequence of real numbers") from None
        if values.dtype.kind not in "iuf":
            raise TypeError(f"{name} must hold real numbers, got {values.dtype} ({type(x).__name__})")
        t = torch.from_numpy(values.astype(np.float64, copy=True))
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        index = int((~finite).nonzero()[0])
        raise ValueError(f"{name} holds a non-finite value ({float(t[index])}) at index {index}")
    return t.sort(stable=True).values


def _models(scores: object) -> tuple[list[str], list[Tensor]]:
    if not isinstance(scores, Mapping):
        raise TypeError(f"scores must be a mapping of model name to scores, got {type(scores).__name__}")
    if len(scores) < 2:
        raise ValueError(f"scores must hold at least 2 models, got {len(scores)}")
    names = [str(name) for name in scores]
    return names, [_sample(f"scores[{name!r}]", values) for name, values in scores.items()]


def _check_order(order: object) -> None:
    if isinstance(order, bool) or order not in (1, 2):
        raise ValueError(f"order must be 1 (first-order) or 2 (second-order), got {order!r}")


def _corrected_confidence(confidence: object, comparisons: int) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    level = float(confidence)
    return level + (1 - level) / comparisons if comparisons > 1 else level


def _count(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    return value


def _threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be a number in (0, 1], got {threshold!r}")
    return float(threshold)
