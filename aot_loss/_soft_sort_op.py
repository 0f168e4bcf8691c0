"""The ``aot_loss::soft_sort`` and ``aot_loss::soft_sort_backward`` ops (schemas in
``_library``): default kernels, fakes, autograd, and which implementation serves a call.

``soft_sort(x, strength, regularization)`` soft-sorts the last dim and returns
``(values, state)``; ``state`` packs what the backward needs (see ``_pav``).
``soft_sort_backward(grad, x, state, regularization)`` returns the gradient with respect to
``x``.
The plain torch kernels of ``_pav`` are the default (CompositeExplicitAutograd) kernels; the
native library overrides both on CPU. Double backward is not provided.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import _native
from ._library import LIBRARY
from ._optional import require
from ._pav import soft_sort_backward_torch, soft_sort_torch
from ._validation import FLOAT_DTYPES, SoftSortBackend


def check_backward_args(
    grad: Tensor, x: Tensor, state: Tensor, regularization: str, values: bool = True
) -> None:
    """The checks of ``soft_sort_backward``'s arguments that the native kernel makes
    (csrc/soft_sort_cpu.cpp), for the op's Python kernels: anyone can call the op, and its
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
_forward_op = torch.ops.aot_loss.soft_sort.default
_backward_op = torch.ops.aot_loss.soft_sort_backward.default


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
    return _grad_x(_backward_op, ctx, grad_values), None, None


def _grad_x(kernel: Callable[..., Tensor], ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
    """The gradient with respect to ``x`` from what the forward saved, by ``kernel``."""
    x, state = ctx.saved_tensors  # type: ignore[attr-defined]
    return kernel(grad.contiguous(), x, state, ctx.regularization)  # type: ignore[attr-defined]


torch.library.register_autograd("aot_loss::soft_sort", _backward, setup_context=_setup_context)


def _function(
    forward_kernel: Callable[..., tuple[Tensor, Tensor]], backward_kernel: Callable[..., Tensor]
) -> type[torch.autograd.Function]:
    """The op's autograd formula as an ``autograd.Function`` over the given kernels, applied
    in eager mode without the generic wrapper of ``register_autograd``, which costs ~40 us
    per call in torch 2.13."""

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
            _no_double_backward()
            return _grad_x(backward_kernel, ctx, grad), None, None

    return SoftSort


_NativeSoftSort = _function(_forward_op, _backward_op)  # through the dispatcher: native where loaded
_TorchSoftSort = _function(soft_sort_torch, soft_sort_backward_torch)  # the reference, called directly


def _no_double_backward() -> None:
    if torch.is_grad_enabled():
        raise RuntimeError("aot_loss.soft_sort does not support double backward (create_graph=True)")


def soft_sort_last(x: Tensor, strength: float, regularization: str, backend: SoftSortBackend) -> Tensor:
    """Soft sort of a float32/float64 ``x`` along its last dim by the chosen backend."""
    if backend == "torchsort":
        return _torchsort(x, strength, regularization)
    native = _use_native(x, backend)
    if torch.compiler.is_compiling():  # the op, opaque to the compiler, with its registered autograd
        return _forward_op(x, strength, regularization)[0]
    if torch._C._are_functorch_transforms_active():
        # torch.func.grad differentiates the backward (create_graph=True), which is not
        # differentiable here, and the pooling's data-dependent shapes do not batch.
        raise RuntimeError(
            "aot_loss.soft_sort (and sort='soft') does not run under torch.func transforms "
            "(grad, vmap, jacrev, ...); use torch.autograd, or sort='hard'"
        )
    if torch.is_grad_enabled() and x.requires_grad:
        function = _NativeSoftSort if native else _TorchSoftSort
        return function.apply(x, strength, regularization)
    return (_forward_op if native else soft_sort_torch)(x, strength, regularization)[0]


def native_devices() -> tuple[str, ...]:
    """Device types with a native soft-sort kernel (none when the library is not loaded or
    was built before soft sort existed)."""
    return _NATIVE_DEVICES


def _find_native_devices() -> tuple[str, ...]:
    if not _native.STATUS.loaded:
        return ()
    has_kernel = torch._C._dispatch_has_kernel_for_dispatch_key
    return tuple(d for d in _native.STATUS.devices if has_kernel("aot_loss::soft_sort", d.upper()))


_NATIVE_DEVICES = _find_native_devices()  # the library was loaded once, by _library


def _use_native(x: Tensor, backend: SoftSortBackend) -> bool:
    if backend == "torch":
        return False
    status = _native.STATUS
    if x.device.type in native_devices():
        return True
    if backend == "auto":
        return False
    if not status.loaded:
        raise RuntimeError(f"backend='native' is unavailable: the native library is {status.reason}")
    raise RuntimeError(
        f"backend='native' has no soft-sort kernel for device {x.device.type!r} in {status.path} "
        f"(kernels for: {native_devices() or 'none; rebuild it: ' + _native.build_command()})"
    )


def _torchsort(x: Tensor, strength: float, regularization: str) -> Tensor:
    torchsort = require("torchsort", "backend='torchsort'")  # optional, untyped
    rows = x.reshape(-1, x.shape[-1])  # torchsort takes 2-D input only
    values = torchsort.soft_sort(rows, regularization=regularization, regularization_strength=strength)
    return values.reshape(x.shape)
