r"""The paper's Figure 1 views: quantile curves with the violation of dominance shaded.

- [`reward_quantiles`][aot_loss.plot.reward_quantiles]: (a) the quantiles of the rewards of
  chosen responses against those of rejected ones, one panel per model.
- [`margin_quantiles`][aot_loss.plot.margin_quantiles]: (b) the quantiles of the policy's
  chosen-minus-rejected margins against the reference's, one panel per model.
- [`reward_tail_means`][aot_loss.plot.reward_tail_means]: the second-order view, the mean of
  the lowest $t$-fraction of chosen rewards against that of rejected ones.

Both draw on a standalone `matplotlib.figure.Figure` (no pyplot, no display, no change to
the global backend), return it, and write a PNG when given a path. Needs matplotlib: the
`plot` extra (`pip install ".[plot]"` in a clone). As in `aot_loss.metrics`, a NaN sample
sorts last: its curve breaks off at the top levels and the panel's violation reads `nan`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ._optional import missing
from .metrics import fsd_violation, lorenz_curves, quantile_curves, ssd_violation

try:
    from matplotlib.figure import Figure
except ImportError as error:  # tested by hiding matplotlib (tests/test_optional.py)
    raise missing("matplotlib", "aot_loss.plot", error) from error

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["margin_quantiles", "reward_quantiles", "reward_tail_means"]

Pair = tuple[Tensor, Tensor]
Pairs = Pair | Mapping[str, Pair]
PathLike = str | os.PathLike[str]

_ABOVE, _BELOW = "#2ca02c", "#d62728"  # dominance green, violation red


def reward_quantiles(
    rewards: Pairs, *, grid: int = 501, title: str | None = None, path: PathLike | None = None
) -> Figure:
    r"""Figure 1(a): quantiles of chosen vs rejected rewards, violations of dominance shaded.

    For each model, plots $Q_{r^+}(t)$ and $Q_{r^-}(t)$ against the percentile $100\,t$,
    shades red where $Q_{r^+}(t) < Q_{r^-}(t)$ (the chosen rewards fail to dominate) and
    green where they lead, and puts the violation area
    ([`fsd_violation`][aot_loss.metrics.fsd_violation]) in the panel's title.

    Args:
        rewards: `(chosen, rejected)` rewards $\log \pi/\pi_{ref}$ of one model, or a
            mapping from model name to such a pair (one panel each, shared y axis).
            Counts may differ.
        grid: levels at which each quantile function is drawn ($\ge 2$).
        title: the figure's title.
        path: when given, the figure is also written there (PNG, or any format matplotlib
            infers from the suffix).

    Returns:
        The figure.

    Shape:
        - Each `chosen`: $(n,)$; each `rejected`: $(m,)$.

    Example:
        >>> import torch
        >>> from aot_loss.plot import reward_quantiles
        >>> chosen, rejected = torch.randn(200) + 0.5, torch.randn(150)
        >>> fig = reward_quantiles({"AOT": (chosen, rejected)}, title="held-out rewards")
        >>> len(fig.axes)
        1
    """
    return _panels(rewards, ("chosen", "rejected"), "reward  log π/π_ref", grid, title, path)


def reward_tail_means(
    rewards: Pairs, *, grid: int = 501, title: str | None = None, path: PathLike | None = None
) -> Figure:
    r"""The second-order view: lower-tail means of chosen vs rejected rewards, violations of
    second-order dominance shaded.

    For each model, plots the mean of the lowest $t$-fraction of each sample,
    $L(t)/t = \frac{1}{t}\int_0^t Q(s)\,ds$ (at $t = 0$ its limit, the smallest sample),
    against the percentile $100\,t$; shades red where the chosen rewards' tail mean falls
    below the rejected ones' and green where it leads, and puts the
    [`ssd_violation`][aot_loss.metrics.ssd_violation] in the panel's title. At $t = 1$ both
    curves reach the samples' means; the curves cross less often than the quantiles, since
    second-order dominance is implied by first-order dominance.

    Args:
        rewards: `(chosen, rejected)` rewards of one model, or a mapping from model name to
            such a pair (one panel each, shared y axis). Counts may differ.
        grid: levels at which each curve is drawn ($\ge 2$).
        title: the figure's title.
        path: when given, the figure is also written there.

    Returns:
        The figure.

    Shape:
        - Each `chosen`: $(n,)$; each `rejected`: $(m,)$.

    Example:
        >>> import torch
        >>> from aot_loss.plot import reward_tail_means
        >>> rejected = torch.linspace(-2.0, 2.0, 101)
        >>> chosen = rejected / 2  # the same mean, half the spread
        >>> reward_tail_means((chosen, rejected)).axes[0].get_title()
        'SSD violation 0.00'
    """
    return _panels(
        rewards, ("chosen", "rejected"), "lower-tail mean reward", grid, title, path, second_order=True
    )


def margin_quantiles(
    margins: Pairs, *, grid: int = 501, title: str | None = None, path: PathLike | None = None
) -> Figure:
    r"""Figure 1(b): quantiles of the policy's margins vs the reference's, violations shaded.

    The margin of a pair is $\log \pi(y^+|x) - \log \pi(y^-|x)$. Paired AOT trains the
    policy's margins $U$ to dominate the reference's $V$; for each model this plots $Q_U$
    and $Q_V$ against the percentile and shades red where $Q_U < Q_V$.

    Args:
        margins: `(policy_margins, reference_margins)` of one model, or a mapping from model
            name to such a pair (one panel each, shared y axis).
        grid: levels at which each quantile function is drawn ($\ge 2$).
        title: the figure's title.
        path: when given, the figure is also written there.

    Returns:
        The figure.

    Shape:
        - Each `policy_margins` and `reference_margins`: $(n,)$ (sizes may differ).

    Example:
        >>> import torch
        >>> from aot_loss.plot import margin_quantiles
        >>> policy, reference = torch.randn(100) + 1.0, torch.randn(100)
        >>> fig = margin_quantiles((policy, reference))
        >>> fig.axes[0].get_title()
        'FSD violation 0.00'
    """
    return _panels(margins, ("policy", "reference"), "margin  log π(y+) − log π(y−)", grid, title, path)


def _panels(
    pairs: Pairs,
    labels: tuple[str, str],
    ylabel: str,
    grid: int,
    title: str | None,
    path: PathLike | None,
    second_order: bool = False,
) -> Figure:
    named = _named_pairs(pairs)
    fig = Figure(figsize=(4.2 * len(named) + 0.6, 3.8), layout="constrained")
    axes = fig.subplots(1, len(named), sharey=True, squeeze=False)[0]
    for ax, (name, (u, v)) in zip(axes, named.items(), strict=True):
        if second_order:
            _draw(ax, *_tail_means(u, v, grid), labels)
            label, violation = "SSD", ssd_violation(u, v).item()
        else:
            _draw(ax, *_quantiles(u, v, grid), labels)
            label, violation = "FSD", fsd_violation(u, v).item()
        ax.set_title(f"{name + ': ' if name else ''}{label} violation {violation:.2f}")
        ax.set_xlabel("percentile")
    axes[0].set_ylabel(ylabel)
    axes[0].legend(loc="upper left", fontsize="small")
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(os.fspath(path), dpi=150)
    return fig


def _named_pairs(pairs: object) -> dict[str, Pair]:
    """``{name: (u, v)}`` from one pair (name '') or a mapping, with 1-D samples checked."""
    items = pairs.items() if isinstance(pairs, Mapping) else [("", pairs)]
    named: dict[str, Pair] = {}
    for name, pair in items:
        where = f" for {name!r}" if name else ""
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            got = (
                f"a {type(pair).__name__} of {len(pair)}"
                if isinstance(pair, (tuple, list))
                else type(pair).__name__
            )
            raise TypeError(f"expected a pair (u, v) of tensors{where}, got {got}")
        u, v = _as_tensor(pair[0]), _as_tensor(pair[1])
        if u.dim() != 1 or v.dim() != 1:
            raise ValueError(f"expected 1-D samples{where}, got shapes {tuple(u.shape)} and {tuple(v.shape)}")
        named[str(name)] = (u, v)
    if not named:
        raise ValueError("nothing to plot: the mapping of models is empty")
    return named


def _as_tensor(x: object) -> Tensor:
    """Tensors as they are (moved to the CPU); arrays and sequences converted."""
    if isinstance(x, Tensor):
        return x.detach().cpu()
    try:
        return torch.as_tensor(x, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"expected a tensor or an array of samples, got {type(x).__name__}") from None


def _quantiles(u: Tensor, v: Tensor, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentiles and Q_U, Q_V there."""
    curves = quantile_curves(u, v, grid)
    return (100 * curves.t).numpy(), curves.u.double().numpy(), curves.v.double().numpy()


def _tail_means(u: Tensor, v: Tensor, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentiles and L_U(t)/t, L_V(t)/t there; at t = 0 the limit Q(0), the smallest sample."""
    curves, start = lorenz_curves(u, v, grid), quantile_curves(u, v, [0.0])
    t = curves.t.numpy()
    inner = np.maximum(t, np.finfo(np.float64).tiny)
    mean_u = np.where(t > 0, curves.u.double().numpy() / inner, start.u.double().numpy()[0])
    mean_v = np.where(t > 0, curves.v.double().numpy() / inner, start.v.double().numpy()[0])
    return 100 * t, mean_u, mean_v


def _draw(ax: Axes, t: np.ndarray, qu: np.ndarray, qv: np.ndarray, labels: tuple[str, str]) -> None:
    ax.fill_between(t, qu, qv, where=qu >= qv, color=_ABOVE, alpha=0.18, linewidth=0, interpolate=True)
    ax.fill_between(t, qu, qv, where=qu < qv, color=_BELOW, alpha=0.35, linewidth=0, interpolate=True)
    ax.plot(t, qu, color="#1f77b4", linewidth=1.6, label=labels[0])
    ax.plot(t, qv, color="#7f7f7f", linewidth=1.6, linestyle="--", label=labels[1])
    ax.grid(alpha=0.3)
    ax.set_xlim(0, 100)
