"""Differentiable soft sorting: :func:`soft_sort`."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from ._dtypes import as_dtype, compute_dtype
from ._validation import SoftSortBackend, check_dense, check_soft_sort_backend, check_strength
from .ops.autograd import soft_sort_last
from .ops.pav import REGULARIZATIONS

__all__ = ["SoftSortBackend", "soft_sort"]


def soft_sort(
    x: Tensor,
    *,
    strength: float = 1.0,
    regularization: Literal["l2", "kl"] = "l2",
    dim: int = -1,
    backend: SoftSortBackend = "auto",
) -> Tensor:
    r"""Differentiable ascending sort: the projection onto the permutahedron of Blondel et
    al. (2020), the same values as `torchsort.soft_sort`.

    With $z$ the ascending sort of $x$ along `dim` and spacing $\delta = 1/\text{strength}$,
    the L2 soft sort is the closest sequence to $z$ whose consecutive gaps are at most
    $\delta$:

    $$
    \operatorname{soft\_sort}(x) = \arg\min_{o}\ \lVert o - z\rVert^2
    \quad\text{s.t.}\quad o_{i+1} - o_i \le \delta .
    $$

    It is solved exactly by pool-adjacent-violators: where sorted values are more than
    $\delta$ apart they are pooled into blocks, each block keeps the mean of its values and
    spreads them with spacing exactly $\delta$. Every gap of the sorted input at most
    $\delta$ gives the exact sort; strength $\to 0$ converges to it. With
    `regularization="kl"` a block keeps the soft minimum $-\log\sum e^{-z}$ (plus a constant
    of its length) instead of the mean. The gradient is exact: inside a block it is
    averaged (L2) or softmax$(-z)$-weighted (KL); elsewhere it is the sort's permutation.

    Args:
        x: a floating tensor. float16/bfloat16 are computed in float32 and returned in
            their dtype.
        strength: regularisation strength $> 0$ (torchsort's `regularization_strength`).
            Smaller is closer to the hard sort. Its unit is the inverse of $x$'s: the AOT
            paper's 0.1 means blocks are spread 10 nats apart.
        regularization: `"l2"` (default; the paper's and torchsort's) or `"kl"`.
        dim: the dimension to sort along.
        backend: `"auto"` (the native CPU kernel when built, the torch kernel elsewhere),
            `"torch"`, `"native"` (raises if it cannot serve `x`) or `"torchsort"` (needs the
            torchsort package; see the install recipe in the soft-sort docs). Under
            `torch.compile` the op runs the kernel registered for the device (native on CPU
            when built), whatever `"auto"`/`"torch"`/`"native"` says. Calls under
            `torch.func` transforms (`grad`, `vmap`, ...) raise `RuntimeError`: the backward
            is not differentiable, and the pooling does not batch.

    Returns:
        The soft-sorted values, ascending along `dim`, with the shape and dtype of `x`.

    Shape:
        - `x`: any shape with at least one dimension; `dim` of size $n$.
        - Output: the shape of `x`.

    NaN and infinity:
        NaN sorts last (as in `torch.sort`), stays NaN and leaves the other values as if
        it were absent. With `"l2"`, an infinite value is more than any spacing away from
        the others, so it pools the whole row into one block: every value of the row
        becomes that infinity (NaN if both signs occur). With `"kl"`, a block's level is a
        soft minimum, which `+inf` does not move and `-inf` takes over: `+inf` values come
        out as very large finite values would, and a `-inf` makes the row `-inf`.

    Example:
        >>> import torch, aot_loss
        >>> x = torch.tensor([8.0, 0.0, 5.0, 3.0, 2.0, 1.0, 6.0, 7.0, 9.0])
        >>> aot_loss.soft_sort(x, strength=0.1)  # gaps <= 10: the exact sort
        tensor([0., 1., 2., 3., 5., 6., 7., 8., 9.])
        >>> aot_loss.soft_sort(x, strength=1.0)  # 3 -> 5 is a gap of 2 > 1: all pooled
        tensor([0.5556, 1.5556, 2.5556, 3.5556, 4.5556, 5.5556, 6.5556, 7.5556, 8.5556])
    """
    check_soft_sort_args(x, strength, regularization, dim, backend)
    last = dim in (-1, x.dim() - 1)  # skips two movedim dispatches (~2 us each) at small n
    work = x if last else x.movedim(dim, -1)
    values = soft_sort_last(as_dtype(work, compute_dtype(x)), float(strength), regularization, backend)
    values = as_dtype(values, x.dtype)
    return values if last else values.movedim(-1, dim)


def check_soft_sort_args(
    x: object, strength: object, regularization: object, dim: object, backend: object
) -> None:
    """Validate the arguments of :func:`soft_sort`, naming the offending one."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    check_dense("x", x)
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension, got a 0-d tensor")
    check_strength("strength", strength)
    if regularization not in REGULARIZATIONS:
        raise ValueError(f"regularization must be one of {REGULARIZATIONS}, got {regularization!r}")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {dim!r} ({type(dim).__name__})")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim must be in [{-x.dim()}, {x.dim()}) for x of shape {tuple(x.shape)}, got {dim}")
    check_soft_sort_backend("backend", backend)
