"""Which implementation serves a call: the composite torch path or the native op.

The choice reads only tensor metadata, options and the load status of the native library,
so under ``torch.compile`` it is a static branch (guarded, no graph break).

- ``"torch"``: autograd through torch's sort and gathers (every feature, double backward).
- ``"native"``: the fused ``aot_loss::dominance`` op; raises when it cannot serve the call.
- ``"auto"``: native when it can serve the call, torch otherwise.

Calls under torch.func transforms go to torch: ``torch.func.grad`` runs the backward with
``create_graph=True``, which the native op's one-multiply backward refuses.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _native
from ._validation import Options

_MAX_ROW = 2**32 - 1  # the native kernels index rows with 32-bit permutations
# The CUDA kernel runs rows of up to 4096 values per sample one block each; longer rows go
# through grid-wide kernels that put rows on the grid's y dimension (at most 65535).
_CUDA_BLOCK_ROW = 4096
_CUDA_MAX_LONG_ROWS = 65535


def use_native(
    options: Options, u: Tensor, v: Tensor, u_weights: Tensor | None, v_weights: Tensor | None
) -> bool:
    """True if the native op should compute this call (raises for an unserved 'native')."""
    if options.backend == "torch":
        return False
    reason = _unserved(options, u, v, u_weights, v_weights)
    if reason is None:
        return True
    if options.backend == "native":
        raise reason
    return False


def _unserved(
    options: Options, u: Tensor, v: Tensor, u_weights: Tensor | None, v_weights: Tensor | None
) -> Exception | None:
    status = _native.STATUS
    if not status.loaded:
        return RuntimeError(f"backend='native' is unavailable: the native library is {status.reason}")
    device_type = u.device.type  # read once: ~0.25 us per read
    if device_type not in status.devices:
        return RuntimeError(
            f"backend='native' has no kernel for device {device_type!r}; built for {status.devices}"
        )
    if torch._C._are_functorch_transforms_active():
        return RuntimeError(
            "backend='native' does not run under torch.func transforms (grad, vmap, jacrev, ...); "
            "use backend='torch'"
        )
    if options.name is None:
        return ValueError(
            "backend='native' serves the built-in costs only; a callable loss needs backend='torch'"
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
    longest = max(u.shape[-1], v.shape[-1])
    if longest >= _MAX_ROW:
        return ValueError(f"backend='native' serves rows shorter than {_MAX_ROW} elements")
    long_rows = device_type == "cuda" and longest > _CUDA_BLOCK_ROW
    if long_rows and u.numel() // max(u.shape[-1], 1) > _CUDA_MAX_LONG_ROWS:
        return ValueError(
            f"backend='native' on CUDA serves at most {_CUDA_MAX_LONG_ROWS} rows of more than "
            f"{_CUDA_BLOCK_ROW} values"
        )
    return None
