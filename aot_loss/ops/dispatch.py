"""Which kernel serves a call of an op: its native kernel or its torch kernel. One dispatch
for every op.

The choice reads only tensor metadata, options and what the loaded native library says it
serves (``native.STATUS``: the devices its kernels registered, its costs, dtypes and size
limits), never a copy of them, so a library built with fewer costs or devices routes the
rest to torch. Under ``torch.compile`` it is a static branch (guarded, no graph break).

- ``"torch"``: the torch kernel (for the dominance cost, autograd through torch's sort and
  gathers: every feature, double backward).
- ``"native"``: the native kernel; raises, saying why, when it cannot serve the call.
- ``"auto"``: native when it can serve the call, torch otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._options import Options
from . import native


def use_native(backend: str, reason: Exception | None) -> bool:
    """True if the native kernel computes the call; ``reason`` says why it cannot (None if it
    can). Raises ``reason`` for ``backend="native"``."""
    if reason is None:
        return backend != "torch"
    if backend == "native":
        raise reason
    return False


def unserved(op: str, x: Tensor) -> Exception | None:
    """Why the native library has no kernel of ``aot_loss::<op>`` for ``x``'s device and
    dtype, or None."""
    status = native.STATUS
    if not status.loaded:
        return RuntimeError(f"backend='native' is unavailable: the native library is {status.reason}")
    device_type = x.device.type  # read once: ~0.25 us per read
    devices = status.ops.get(op, ())
    if device_type not in devices:
        built = ", ".join(devices) or f"no device; rebuild it: {native.build_command()}"
        return RuntimeError(
            f"backend='native' has no kernel for device {device_type!r} (aot_loss::{op} in "
            f"{status.path} is built for {built})"
        )
    if x.dtype not in status.dtypes:
        return RuntimeError(f"backend='native' computes in {status.dtypes}, got {x.dtype}")
    return None


def dominance(
    options: Options, u: Tensor, v: Tensor, u_weights: Tensor | None, v_weights: Tensor | None
) -> bool:
    """True if the native ``aot_loss::dominance`` op computes this call of the primitive."""
    if options.backend == "torch":
        return False
    reason = _dominance_unserved(options, u, v, u_weights, v_weights)
    return reason is None or use_native(options.backend, reason)


def _dominance_unserved(
    options: Options, u: Tensor, v: Tensor, u_weights: Tensor | None, v_weights: Tensor | None
) -> Exception | None:
    reason = unserved("dominance", u)
    if reason is not None:
        return reason
    if torch._C._are_functorch_transforms_active():
        # torch.func.grad runs the backward with create_graph=True, which the op's
        # one-multiply backward refuses.
        return RuntimeError(
            "backend='native' does not run under torch.func transforms (grad, vmap, jacrev, ...); "
            "use backend='torch'"
        )
    if options.name is None:
        return ValueError(
            "backend='native' serves the built-in costs only; a callable loss needs backend='torch'"
        )
    status = native.STATUS
    if options.name not in status.costs:
        return ValueError(
            f"backend='native' has no kernel for loss={options.name!r}: the native library computes "
            f"{status.costs} (rebuild it: {native.build_command()})"
        )
    if not options.plain:
        return ValueError(
            "backend='native' computes order=1 over every level; order=2 and quantile_range run on "
            "the torch path (backend='torch')"
        )
    if options.reduction == "none" and u.dim() == 1:
        return ValueError(
            "backend='native' returns per-row costs; reduction='none' on 1-D inputs needs backend='torch'"
        )
    differentiable_weights = (u_weights is not None and u_weights.requires_grad) or (
        v_weights is not None and v_weights.requires_grad
    )
    if differentiable_weights and torch.is_grad_enabled():
        return ValueError(
            "backend='native' gives no gradient for the weights; differentiable weights need backend='torch'"
        )
    limits = status.limits
    longest, max_row = max(u.shape[-1], v.shape[-1]), limits["max_row"]
    if longest >= max_row:
        return ValueError(f"backend='native' serves rows shorter than {max_row} elements")
    block_row, max_long_rows = limits["cuda_block_row"], limits["cuda_max_long_rows"]
    long_rows = longest > block_row and u.device.type == "cuda"  # shapes first: a device read costs more
    if long_rows and u.numel() // max(u.shape[-1], 1) > max_long_rows:
        return ValueError(
            f"backend='native' on CUDA serves at most {max_long_rows} rows of more than {block_row} values"
        )
    return None


def soft_sort(x: Tensor, backend: str) -> bool:
    """True if the native ``aot_loss::soft_sort`` kernel sorts ``x`` (float32 or float64)."""
    if backend == "torch":
        return False
    return use_native(backend, unserved("soft_sort", x))
