"""The convex costs h applied to the coupled differences d = Q_U(t) - Q_V(t).

A small table of functions, one per built-in name. Each takes the differences and the two
parameters; ``label_smoothing`` is only read by the logistic cost (the caller rejects a
non-zero value for the others).
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
