"""How the ops are differentiated, and the two entry points that call them.

Each op has one autograd formula, registered with ``torch.library.register_autograd`` in its
module (``dominance``, ``soft_sort``); compiled graphs use it, and so does any direct call of
``torch.ops.aot_loss.*``. In eager mode the entry points below apply the same formula
through a plain ``autograd.Function`` instead, because the generic wrapper of
``register_autograd`` costs ~40 us per call in torch 2.13 (it re-reads the schema to fill
defaults and redispatches in Python): at the batch sizes of preference training that
overhead would be most of the step. This module is the only place with that choice;
``tests/test_autograd.py`` checks that both paths give identical values and gradients on
every backend.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._reduction import cell_count, reduce_rows
from . import dispatch
from .dominance import dominance, scale_saved
from .pav import soft_sort_backward_torch, soft_sort_torch
from .soft_sort import backward_op, forward_op, grad_x, torchsort_soft_sort


class DominanceFunction(torch.autograd.Function):
    """``aot_loss::dominance``'s registered formula, eagerly. The reduction of the row
    costs happens inside it too, so that it adds no autograd node: its derivative is one
    factor, folded into the backward's multiply."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        u: Tensor,
        v: Tensor,
        u_weights: Tensor | None,
        v_weights: Tensor | None,
        cost: str,
        beta: float,
        label_smoothing: float,
        reduction: str,
    ) -> Tensor:
        # Inside Function.forward the op needs no autograd kernel: skip its Python redispatch.
        with torch._C._AutoDispatchBelowAutograd():
            row_cost, grad_u, grad_v = dominance(
                u, v, u_weights, v_weights, cost, beta, label_smoothing, True
            )
        ctx.save_for_backward(grad_u, grad_v)
        out, factor = reduce_rows(row_cost, reduction, cell_count(u, v, u_weights, v_weights))
        ctx.factor = factor  # type: ignore[attr-defined]
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        grad_u, grad_v = ctx.saved_tensors  # type: ignore[attr-defined]
        needs = ctx.needs_input_grad  # type: ignore[attr-defined]
        factor = ctx.factor  # type: ignore[attr-defined]
        grad_cost = grad_out if factor == 1.0 else grad_out * factor
        return *scale_saved(grad_cost, grad_u, grad_v, needs[0], needs[1]), *(None,) * 6


def reduced_costs(
    u: Tensor,
    v: Tensor,
    u_weights: Tensor | None,
    v_weights: Tensor | None,
    cost: str,
    beta: float,
    label_smoothing: float,
    reduction: str,
) -> Tensor:
    """The op's OT costs reduced as ``reduction`` (see :func:`~.._reduction.reduce_rows`),
    differentiable in ``u`` and ``v`` (not the weights)."""
    need_grad = torch.is_grad_enabled() and (u.requires_grad or v.requires_grad)
    if need_grad and not torch.compiler.is_compiling():
        return DominanceFunction.apply(u, v, u_weights, v_weights, cost, beta, label_smoothing, reduction)
    row_cost = dominance(u, v, u_weights, v_weights, cost, beta, label_smoothing, need_grad)[0]
    return reduce_rows(row_cost, reduction, cell_count(u, v, u_weights, v_weights))[0]


def _soft_sort_function(
    forward_kernel: Callable[..., tuple[Tensor, Tensor]], backward_kernel: Callable[..., Tensor]
) -> type[torch.autograd.Function]:
    """``aot_loss::soft_sort``'s registered formula, eagerly, over the given kernels."""

    class SoftSort(torch.autograd.Function):
        @staticmethod
        def forward(
            ctx: torch.autograd.function.FunctionCtx, x: Tensor, strength: float, regularization: str
        ) -> Tensor:
            with torch._C._AutoDispatchBelowAutograd():  # skips the op's Python autograd kernel
                values, state = forward_kernel(x, strength, regularization)
            ctx.save_for_backward(x, state)
            ctx.regularization = regularization  # type: ignore[attr-defined]
            return values

        @staticmethod
        def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
            if torch.is_grad_enabled():
                raise RuntimeError("aot_loss.soft_sort does not support double backward (create_graph=True)")
            return grad_x(backward_kernel, ctx, grad), None, None

    return SoftSort


NativeSoftSort = _soft_sort_function(forward_op, backward_op)  # through the dispatcher: native where loaded
TorchSoftSort = _soft_sort_function(
    soft_sort_torch, soft_sort_backward_torch
)  # the reference, called directly


def soft_sort_last(x: Tensor, strength: float, regularization: str, backend: str) -> Tensor:
    """Soft sort of a float32/float64 ``x`` along its last dim by the chosen backend."""
    if backend == "torchsort":
        return torchsort_soft_sort(x, strength, regularization)
    native = dispatch.soft_sort(x, backend)
    if torch.compiler.is_compiling():  # the op, opaque to the compiler, with its registered autograd
        return forward_op(x, strength, regularization)[0]
    if torch._C._are_functorch_transforms_active():
        # torch.func.grad differentiates the backward (create_graph=True), which is not
        # differentiable here, and the pooling's data-dependent shapes do not batch.
        raise RuntimeError(
            "aot_loss.soft_sort (and sort='soft') does not run under torch.func transforms "
            "(grad, vmap, jacrev, ...); use torch.autograd, or sort='hard'"
        )
    if torch.is_grad_enabled() and x.requires_grad:
        function = NativeSoftSort if native else TorchSoftSort
        return function.apply(x, strength, regularization)
    return (forward_op if native else soft_sort_torch)(x, strength, regularization)[0]
