"""The convex costs h applied to the coupled differences d = Q_U(t) - Q_V(t): the registry.

Each built-in cost is declared once, as a :class:`Cost` in ``COSTS``: its name (the
``loss=`` string and the id the native op takes), h, its analytic slope h' (the
``aot_loss::dominance`` op returns its gradients from the forward pass), and whether it
reads ``label_smoothing``. Everything else derives from the table: option checks, the op's
torch kernel, the names a loaded native library must know (``csrc/common/costs.h`` holds
its functors; ``tests/test_costs.py`` checks that both tables and the test oracles agree).

Adding a cost: its two functions and its ``Cost`` below, its name in ``LossName``, and its
functor in ``csrc/common/costs.h``. Until the native library is rebuilt, ``backend="auto"``
computes the new cost on the torch path.

At a kink and at NaN the slope is the one torch's autograd gives (its relu backward passes
the gradient where not x <= 0: relu'(0) = 0, relu'(NaN) = 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

LossName = Literal["logistic", "squared_hinge", "least_squares", "hinge"]
CostFn = Callable[[Tensor], Tensor]
Loss = LossName | CostFn


class CostFunction(Protocol):
    """Signature shared by the built-in costs and their slopes."""

    def __call__(self, d: Tensor, beta: float, label_smoothing: float) -> Tensor: ...


@dataclass(frozen=True)
class Cost:
    """A built-in cost: h(d; beta, label_smoothing) and its derivative in d."""

    name: str
    value: CostFunction
    slope: CostFunction
    smoothing: bool = False  # reads label_smoothing (the other costs refuse a non-zero value)


def logistic(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    """(1 - ls) softplus(-beta d) + ls softplus(beta d): TRL's ``aot``/``aot_unpaired`` term.

    softplus(-x) is -log sigmoid(x) without the overflow of log(1 + exp(.)).
    """
    cost = F.softplus(-beta * d)
    # label_smoothing is a Python float, so this branch is static under torch.compile.
    if label_smoothing:
        cost = (1.0 - label_smoothing) * cost + label_smoothing * F.softplus(beta * d)
    return cost


def logistic_slope(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    """d/dd softplus(-beta d) = -beta sigmoid(-beta d), smoothed like :func:`logistic`."""
    slope = -beta * torch.sigmoid(-beta * d)
    if label_smoothing:
        slope = (1.0 - label_smoothing) * slope + label_smoothing * beta * torch.sigmoid(beta * d)
    return slope


def squared_hinge(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    """relu(beta - d)^2: beta is a margin; zero once a quantile leads by beta."""
    return torch.relu(beta - d).square()


def squared_hinge_slope(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    return -2.0 * torch.relu(beta - d)


def least_squares(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    """(beta - d)^2: regresses every quantile gap onto beta (IPO-like, not monotone)."""
    return (beta - d).square()


def least_squares_slope(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    return -2.0 * (beta - d)


def hinge(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    """relu(beta - d): the Wasserstein-1 violation with margin beta."""
    return torch.relu(beta - d)


def hinge_slope(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    # not (beta - d <= 0), as relu's backward tests it: 0 at the kink, -1 at NaN
    return -(beta - d <= 0).logical_not().to(d.dtype)


COSTS: dict[str, Cost] = {
    cost.name: cost
    for cost in (
        Cost("logistic", logistic, logistic_slope, smoothing=True),
        Cost("squared_hinge", squared_hinge, squared_hinge_slope),
        Cost("least_squares", least_squares, least_squares_slope),
        Cost("hinge", hinge, hinge_slope),
    )
}


def check_custom_costs(costs: object, diff: Tensor) -> None:
    """A callable ``loss`` must map the tensor of differences elementwise to a tensor."""
    if not isinstance(costs, Tensor):
        raise TypeError(f"loss callable must return a Tensor, got {type(costs).__name__}")
    if costs.shape != diff.shape:
        raise ValueError(
            f"loss callable must map d elementwise: got shape {tuple(costs.shape)} "
            f"for d of shape {tuple(diff.shape)}"
        )


def checked_cost(cost: CostFn) -> CostFn:
    """A callable cost whose every output is checked as :func:`check_custom_costs` checks it."""

    def checked(d: Tensor) -> Tensor:
        costs = cost(d)
        check_custom_costs(costs, d)
        return costs

    return checked
