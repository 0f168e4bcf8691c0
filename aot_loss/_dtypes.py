"""The dtypes things are computed in, declared once.

- Inputs: float16, bfloat16, float32 and float64 (``FLOAT_DTYPES``). float8 has no
  arithmetic promotion in torch, so it is refused rather than failing inside a sort.
- Computation: float32 or float64 (``COMPUTE_DTYPES``); half precision is upcast to float32.
- Long sums (cumulative masses, soft-sort pools): float64, except on MPS, which has none.
"""

from __future__ import annotations

import torch
from torch import Tensor

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
COMPUTE_DTYPES = (torch.float32, torch.float64)


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The promoted dtype of the inputs, with float16/bfloat16 raised to float32."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        if t.dtype is not dtype:  # promote_types costs ~0.25 us a call: skip it for equal dtypes
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype if dtype in COMPUTE_DTYPES else torch.promote_types(dtype, torch.float32)


def as_dtype(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x.to(dtype)`` without the dispatch when it is already that dtype (~1 us at small n)."""
    return x if x.dtype == dtype else x.to(dtype)


def upcast(
    u: Tensor, v: Tensor, u_weights: Tensor | None, v_weights: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Samples and weights in the computation dtype of ``u`` and ``v`` (see compute_dtype)."""
    dtype = compute_dtype(u, v)
    uw = None if u_weights is None else as_dtype(u_weights, dtype)
    vw = uw if v_weights is u_weights else None if v_weights is None else as_dtype(v_weights, dtype)
    return as_dtype(u, dtype), as_dtype(v, dtype), uw, vw  # shared weights stay one tensor


def accumulation_dtype(x: Tensor) -> torch.dtype:
    """The dtype of long sums over ``x``'s samples: float64 (as in the native kernels), but
    on MPS, which has none. A cell's length is a difference of two cumulative masses and is
    about 1/K of them: summed in float32, 1e5 weights put a relative error of ~1e-2 on the
    lengths and on the gradients they scale, where float64 leaves float32's own ~1e-7. The
    soft sort's pooling decisions and block sums need the same."""
    return torch.float32 if x.device.type == "mps" else torch.float64
