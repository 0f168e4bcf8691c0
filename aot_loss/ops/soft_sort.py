"""The ``aot_loss::soft_sort`` and ``aot_loss::soft_sort_backward`` ops (schemas in
``library``): default kernels, fakes and autograd.

``soft_sort(x, strength, regularization)`` soft-sorts the last dim and returns
``(values, state)``; ``state`` packs what the backward needs (see ``pav``).
``soft_sort_backward(grad, x, state, regularization)`` returns the gradient with respect to
``x``.
The plain torch kernels of ``pav`` are the default (CompositeExplicitAutograd) kernels; the
native library overrides both on CPU. Double backward is not provided.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._dtypes import FLOAT_DTYPES
from .._optional import require
from .library import LIBRARY
from .pav import soft_sort_backward_torch, soft_sort_torch


def check_backward_args(
    grad: Tensor, x: Tensor, state: Tensor, regularization: str, values: bool = True
) -> None:
    """The checks of ``soft_sort_backward``'s arguments that the native kernel makes
    (csrc/bindings/soft_sort_cpu.cpp), for the op's Python kernels: anyone can call the op, and its
    kernel indexes with ``state``. The state's values (with ``values``) are checked on CPU,
    where that costs no synchronisation; elsewhere torch's own index checks stop a bad one."""

    def fail(message: str) -> None:
        raise RuntimeError(f"aot_loss::soft_sort_backward: {message}")

    if regularization not in ("l2", "kl"):
        fail(f"regularization must be 'l2' or 'kl', got '{regularization}'")
    if grad.dtype not in FLOAT_DTYPES or x.dtype != grad.dtype:
        fail(f"grad and x must have one floating dtype, got {grad.dtype} and {x.dtype}")
    if state.dtype != torch.int64:
        fail(f"state must be int64, got {state.dtype}")
    if not (grad.shape == x.shape == state.shape):
        shapes = f"{tuple(grad.shape)}, {tuple(x.shape)} and {tuple(state.shape)}"
        fail(f"grad, x and state must have one shape, got {shapes}")
    if values and state.device.type == "cpu" and state.numel() > 0:
        n = state.shape[-1]
        perm, first = state & 0xFFFFFFFF, state >> 32
        is_permutation = bool((perm.sort(-1).values == torch.arange(n)).all())
        if not (is_permutation and bool((state >= 0).all()) and bool((first <= torch.arange(n)).all())):
            fail("state is not the state of soft_sort's forward; pass the one aot_loss::soft_sort returned")


def _soft_sort_backward_checked(grad: Tensor, x: Tensor, state: Tensor, regularization: str) -> Tensor:
    check_backward_args(grad, x, state, regularization)
    return soft_sort_backward_torch(grad, x, state, regularization)


LIBRARY.impl("soft_sort", soft_sort_torch, "CompositeExplicitAutograd")
LIBRARY.impl("soft_sort_backward", _soft_sort_backward_checked, "CompositeExplicitAutograd")
forward_op = torch.ops.aot_loss.soft_sort.default
backward_op = torch.ops.aot_loss.soft_sort_backward.default


@torch.library.register_fake("aot_loss::soft_sort")
def _soft_sort_fake(x: Tensor, strength: float, regularization: str) -> tuple[Tensor, Tensor]:
    return x.new_empty(x.shape), x.new_empty(x.shape, dtype=torch.int64)


@torch.library.register_fake("aot_loss::soft_sort_backward")
def _soft_sort_backward_fake(grad: Tensor, x: Tensor, state: Tensor, regularization: str) -> Tensor:
    check_backward_args(grad, x, state, regularization, values=False)  # no data under a fake tensor
    return grad.new_empty(grad.shape)


def _setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple) -> None:
    ctx.save_for_backward(inputs[0], output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.regularization = inputs[2]  # type: ignore[attr-defined]


def _backward(ctx: torch.autograd.function.FunctionCtx, grad_values: Tensor, _grad_state: Tensor) -> tuple:
    return grad_x(backward_op, ctx, grad_values), None, None


def grad_x(kernel: Callable[..., Tensor], ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
    """The gradient with respect to ``x`` from what the forward saved, by ``kernel``."""
    x, state = ctx.saved_tensors  # type: ignore[attr-defined]
    return kernel(grad.contiguous(), x, state, ctx.regularization)  # type: ignore[attr-defined]


torch.library.register_autograd("aot_loss::soft_sort", _backward, setup_context=_setup_context)


def torchsort_soft_sort(x: Tensor, strength: float, regularization: str) -> Tensor:
    """The soft sort of the optional torchsort package (``soft_backend="torchsort"``)."""
    torchsort = require("torchsort", "backend='torchsort'")  # optional, untyped
    rows = x.reshape(-1, x.shape[-1])  # torchsort takes 2-D input only
    values = torchsort.soft_sort(rows, regularization=regularization, regularization_strength=strength)
    return values.reshape(x.shape)
