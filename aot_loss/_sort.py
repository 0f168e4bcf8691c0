"""Stable ascending sort along the last dimension, with the permutation kept.

Ties keep their input order (stable), so gradients reach the same elements on every device,
and NaNs go last, as in ``torch.sort``.

On CPU, ``torch.sort`` of a 1-D integer tensor with at least ``at::internal::GRAIN_SIZE``
(32768) elements takes fbgemm's parallel radix sort, which is stable and several times faster
than the comparison sort used for floats. Large CPU inputs are therefore sorted through
order-preserving integer keys: the IEEE bit pattern with the magnitude bits flipped for
negative numbers orders exactly like the floats.

float32 does better still: its 32-bit key and the 32-bit position pack into one int64
(key high, position low), which orders by value and then by position, so any sort of these
distinct integers is the stable sort, and NumPy's vectorised int64 sort (AVX-512 or AVX2)
beats either torch sort from about a thousand values on (figures in docs/performance.md,
"Why it is faster"). Under ``torch.compile`` the torch sorts are used, so that the graph
holds no NumPy call.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_RADIX_MIN_NUMEL = 32768
_PACKED_MIN_NUMEL = 1024  # below it NumPy's fixed costs outweigh the faster sort
# Bits of the key dtype below the sign bit, and the key given to NaN so NaNs sort last.
_KEY = {
    torch.float32: (torch.int32, 0x7FFFFFFF),
    torch.float64: (torch.int64, 0x7FFFFFFFFFFFFFFF),
}


def stable_sort(x: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(values, indices)`` of a stable ascending sort of ``x`` along its last dim.

    ``values`` carries autograd through ``x``; ``indices`` is the permutation (int64).
    """
    if _use_packed_keys(x):
        indices = _packed_argsort(x.detach())
        return x.gather(-1, indices), indices
    if _use_radix_keys(x):
        indices = _radix_argsort(x.detach())
        return x.gather(-1, indices), indices
    values, indices = torch.sort(x, dim=-1, stable=True)
    return values, indices


def sort_values(x: Tensor) -> Tensor:
    """Ascending sorted values of ``x`` along its last dim, without autograd or permutation.

    For diagnostics, where ties need no stable order (equal values are interchangeable).
    On CPU NumPy's sort does the work: it is vectorised (AVX-512 or AVX2 where the CPU
    has them) and an order of magnitude faster than ``torch.sort`` on long rows. NaNs go
    last in both.
    """
    x = x.detach()
    if x.device.type == "cpu" and x.dtype in _KEY:
        return torch.from_numpy(np.sort(x.numpy(), axis=-1))
    return torch.sort(x, dim=-1).values


def _use_packed_keys(x: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.numel() >= _PACKED_MIN_NUMEL
        and x.shape[-1] < 2**32
        and not torch.compiler.is_compiling()
    )


def _packed_argsort(x: Tensor) -> Tensor:
    """Stable argsort of CPU float32 along the last dim: one NumPy sort of int64 keys
    (order key << 32 | position)."""
    a = x.numpy() + np.float32(0)  # a contiguous copy in which -0.0 became 0.0, so they tie
    bits = a.view(np.int32)
    key = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    key[np.isnan(a)] = 0x7FFFFFFF  # every NaN after +inf, as torch.sort puts them
    packed = (key.astype(np.int64) << 32) | np.arange(a.shape[-1], dtype=np.int64)  # signed: no overflow
    packed.sort(axis=-1)
    return torch.from_numpy(packed & 0xFFFFFFFF)


def _use_radix_keys(x: Tensor) -> bool:
    if x.device.type != "cpu" or x.numel() < _RADIX_MIN_NUMEL:
        return False
    # 1-D keys of either width; rows only for float32, whose 32-bit keys pack with a row id.
    return (x.dim() == 1 and x.dtype in _KEY) or x.dtype == torch.float32


def _order_key(x: Tensor) -> Tensor:
    """Integers that sort exactly as the floats ``x`` do, with -0.0 == 0.0 and NaN last."""
    key_dtype, low_bits = _KEY[x.dtype]
    x = torch.where(x == 0, torch.zeros_like(x), x)  # -0.0 and 0.0 must tie, as floats do
    bits = x.view(key_dtype)
    key = bits ^ ((bits >> (bits.element_size() * 8 - 1)) & low_bits)
    return torch.where(torch.isnan(x), torch.full_like(key, low_bits), key)


def _radix_argsort(x: Tensor) -> Tensor:
    key = _order_key(x)
    if x.dim() == 1:
        return torch.sort(key, stable=True).indices
    # Rows: one 1-D sort of (row << 32 | unsigned key), which orders by row, then by value.
    rows, n = x.shape
    row = torch.arange(rows, device=x.device, dtype=torch.int64).unsqueeze(-1)
    packed = (row << 32) | (key.to(torch.int64) + 2**31)
    flat = torch.sort(packed.reshape(-1), stable=True).indices
    return flat.view(rows, n) - row * n
