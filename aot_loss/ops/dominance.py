"""The ``aot_loss::dominance`` op (schema in ``library``): default kernel, fake, autograd.

``aot_loss::dominance(u, v, u_weights, v_weights, cost, beta, label_smoothing, need_grad)``
returns ``(cost, grad_u, grad_v)``: the OT cost of each row (shape ``u.shape[:-1]``) and,
when ``need_grad``, the gradients of each row's cost with respect to ``u`` and ``v``,
computed in the same pass (empty ``(0,)`` tensors otherwise). Its autograd formula scales
those saved gradients by the incoming gradient, so the backward pass costs one multiply.

The pure-torch implementation below is the default (CompositeExplicitAutograd) kernel, so
the op exists on every device; the native library overrides it on the dispatch keys it
serves (CPU, and CUDA when built for it). Gradients with respect to the weights and double
backward are not provided by this op: the public functions route such calls to the
composite torch path (``backend="torch"``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._costs import COSTS
from .._coupling import cell_diff, plan
from .library import LIBRARY


def check_args(u: Tensor, v: Tensor, u_weights: Tensor | None, v_weights: Tensor | None, cost: str) -> None:
    """The op's argument checks, as the native kernels make them (csrc/bindings/dominance_binding.h),
    for the kernels written in Python: the op is public in ``torch.ops`` and replayed by
    compiled graphs, so a call need not come from the checked public functions. Without
    them the default kernel would broadcast rows of v against u, or read weights of
    another shape. Reads metadata only."""

    def fail(message: str) -> None:
        raise RuntimeError(f"aot_loss::dominance: {message}")

    if cost not in COSTS:
        fail(f"unknown cost '{cost}'")
    if u.dtype not in (torch.float32, torch.float64):
        fail(f"u must be float32 or float64, got {u.dtype}")
    for name, t in (("v", v), ("u_weights", u_weights), ("v_weights", v_weights)):
        if t is None:
            continue
        if t.device != u.device:
            fail(f"{name} must be on the device of u ({u.device}), got {t.device}")
        if t.dtype != u.dtype:
            fail(f"{name} must have the dtype of u")
        if t.dim() != u.dim() or u.dim() < 1:
            fail(f"{name} must have the number of dimensions of u (>= 1)")
    if u.shape[:-1] != v.shape[:-1]:
        shapes = f"got u of shape {_shape(u)} and v of shape {_shape(v)}"
        fail(f"v must have the rows of u (all dims but the last), {shapes}")
    if u.shape[-1] < 1 or v.shape[-1] < 1:
        fail("empty sample")
    for name, w, of, t in (("u_weights", u_weights, "u", u), ("v_weights", v_weights, "v", v)):
        if w is not None and w.shape != t.shape:
            fail(f"{name} must have the shape of {of} {_shape(t)}, got {_shape(w)}")


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def _dominance_torch(
    u: Tensor,
    v: Tensor,
    u_weights: Tensor | None,
    v_weights: Tensor | None,
    cost: str,
    beta: float,
    label_smoothing: float,
    need_grad: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Reference kernel: the coupling of ``_coupling.plan`` with analytic cell slopes."""
    check_args(u, v, u_weights, v_weights, cost)
    p = plan(u, v, u_weights, v_weights)
    diff = cell_diff(p)
    mass = p.mass if p.mass is not None else torch.full_like(diff, 1.0 / diff.shape[-1])
    row_cost = (COSTS[cost].value(diff, beta, label_smoothing) * mass).sum(-1)
    if not need_grad:
        return row_cost, u.new_empty(0), v.new_empty(0)
    cell_slope = COSTS[cost].slope(diff, beta, label_smoothing) * mass
    return row_cost, _scatter_back(cell_slope, p.iu, p.u_perm), _scatter_back(-cell_slope, p.iv, p.v_perm)


def _scatter_back(cell_grad: Tensor, cell_index: Tensor | None, perm: Tensor) -> Tensor:
    """Sum cell gradients onto sorted samples, then undo the sort."""
    if cell_index is None:
        sorted_grad = cell_grad
    else:
        sorted_grad = cell_grad.new_zeros(perm.shape).scatter_add(-1, cell_index, cell_grad)
    return sorted_grad.new_zeros(perm.shape).scatter(-1, perm, sorted_grad)


LIBRARY.impl("dominance", _dominance_torch, "CompositeExplicitAutograd")


@torch.library.register_fake("aot_loss::dominance")
def _dominance_fake(
    u: Tensor,
    v: Tensor,
    u_weights: Tensor | None,
    v_weights: Tensor | None,
    cost: str,
    beta: float,
    label_smoothing: float,
    need_grad: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    check_args(u, v, u_weights, v_weights, cost)
    if not need_grad:
        return u.new_empty(u.shape[:-1]), u.new_empty(0), v.new_empty(0)
    return u.new_empty(u.shape[:-1]), u.new_empty(u.shape), v.new_empty(v.shape)


def _setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple) -> None:
    ctx.save_for_backward(output[1], output[2])
    ctx.need_grad = inputs[-1]  # type: ignore[attr-defined]


def _dominance_backward(
    ctx: torch.autograd.function.FunctionCtx, grad_cost: Tensor, _grad_u: Tensor, _grad_v: Tensor
) -> tuple[Tensor | None, ...]:
    needs = ctx.needs_input_grad  # type: ignore[attr-defined]
    if needs[2] or needs[3]:
        raise RuntimeError(
            "aot_loss::dominance gives no gradient for the weights; use backend='torch' "
            "for differentiable weights"
        )
    if not ctx.need_grad:  # type: ignore[attr-defined]
        raise RuntimeError("aot_loss::dominance was called with need_grad=False; no gradient was saved")
    grad_u, grad_v = ctx.saved_tensors  # type: ignore[attr-defined]
    return *scale_saved(grad_cost, grad_u, grad_v, needs[0], needs[1]), *(None,) * 6


def scale_saved(
    grad_cost: Tensor, grad_u: Tensor, grad_v: Tensor, need_u: bool, need_v: bool
) -> tuple[Tensor | None, Tensor | None]:
    """The op's backward: the forward's per-row gradients times the incoming gradient."""
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        raise RuntimeError(
            "aot_loss::dominance does not support double backward (create_graph=True); use backend='torch'"
        )
    if need_u and need_v and grad_cost.dim() == 0:  # one row: one fused launch for both on a GPU
        grad_u, grad_v = torch._foreach_mul([grad_u, grad_v], grad_cost)
        return grad_u, grad_v
    scale = grad_cost.unsqueeze(-1) if grad_cost.dim() > 0 else grad_cost  # per row, or one factor
    return (scale * grad_u if need_u else None), (scale * grad_v if need_v else None)


torch.library.register_autograd("aot_loss::dominance", _dominance_backward, setup_context=_setup_context)
dominance = torch.ops.aot_loss.dominance.default  # the overload: skips the packet's lookup
