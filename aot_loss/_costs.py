"""The convex costs h applied to the coupled differences d = Q_U(t) - Q_V(t).

Two small tables of functions, one entry per built-in name: ``COSTS`` (h) and ``SLOPES``
(h', the analytic derivative used by the ``aot_loss::dominance`` op, which returns its
gradients from the forward pass). Each takes the differences and the two parameters;
``label_smoothing`` is only read by the logistic cost (the caller rejects a non-zero value
for the others). At a kink and at NaN the slope is the one torch's autograd gives (its relu
backward passes the gradient where not x <= 0: relu'(0) = 0, relu'(NaN) = 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

LossName = Literal["logistic", "squared_hinge", "least_squares", "hinge"]
CostFn = Callable[[Tensor], Tensor]


class BuiltinCost(Protocol):
    """Signature shared by the built-in costs."""

    def __call__(self, d: Tensor, beta: float, label_smoothing: float) -> Tensor: ...


def logistic(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    """(1 - ls) softplus(-beta d) + ls softplus(beta d): TRL's ``aot``/``aot_unpaired`` term.

    softplus(-x) is -log sigmoid(x) without the overflow of log(1 + exp(.)).
    """
    cost = F.softplus(-beta * d)
    # label_smoothing is a Python float, so this branch is static under torch.compile.
    if label_smoothing:
        cost = (1.0 - label_smoothing) * cost + label_smoothing * F.softplus(beta * d)
    return cost


def squared_hinge(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    """relu(beta - d)^2: beta is a margin; zero once a quantile leads by beta."""
    return torch.relu(beta - d).square()


def least_squares(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    """(beta - d)^2: regresses every quantile gap onto beta (IPO-like, not monotone)."""
    return (beta - d).square()


def hinge(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    """relu(beta - d): the Wasserstein-1 violation with margin beta."""
    return torch.relu(beta - d)


COSTS: dict[str, BuiltinCost] = {
    "logistic": logistic,
    "squared_hinge": squared_hinge,
    "least_squares": least_squares,
    "hinge": hinge,
}


def logistic_slope(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    """d/dd softplus(-beta d) = -beta sigmoid(-beta d), smoothed like :func:`logistic`."""
    slope = -beta * torch.sigmoid(-beta * d)
    if label_smoothing:
        slope = (1.0 - label_smoothing) * slope + label_smoothing * beta * torch.sigmoid(beta * d)
    return slope


def squared_hinge_slope(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    return -2.0 * torch.relu(beta - d)


def least_squares_slope(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    return -2.0 * (beta - d)


def hinge_slope(d: Tensor, beta: float, label_smoothing: float) -> Tensor:
    # not (beta - d <= 0), as relu's backward tests it: 0 at the kink, -1 at NaN
    return -(beta - d <= 0).logical_not().to(d.dtype)


SLOPES: dict[str, BuiltinCost] = {
    "logistic": logistic_slope,
    "squared_hinge": squared_hinge_slope,
    "least_squares": least_squares_slope,
    "hinge": hinge_slope,
}
