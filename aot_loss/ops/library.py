"""The ``aot_loss::`` operator schemas, defined once, here.

- ``dominance(u, v, u_weights, v_weights, cost, beta, label_smoothing, need_grad)
  -> (cost, grad_u, grad_v)``: the fused OT cost of each row and, when ``need_grad``, its
  gradients (``dominance``).
- ``soft_sort(x, strength, regularization) -> (values, state)``: the soft sort of the last
  dim and, packed in one int64 tensor, what its backward needs (``soft_sort``, ``pav``).
- ``soft_sort_backward(grad, x, state, regularization) -> grad_x``.

Each op module registers a pure-torch default (CompositeExplicitAutograd) kernel, so every
op exists on every device. The optional native library, loaded here once the schemas exist,
overrides them on the dispatch keys it serves.
"""

from __future__ import annotations

import torch

from . import native

LIBRARY = torch.library.Library("aot_loss", "DEF")  # registrations live as long as this object
LIBRARY.define(
    "dominance(Tensor u, Tensor v, Tensor? u_weights, Tensor? v_weights, str cost, float beta, "
    "float label_smoothing, bool need_grad) -> (Tensor, Tensor, Tensor)"
)
LIBRARY.define("soft_sort(Tensor x, float strength, str regularization) -> (Tensor, Tensor)")
LIBRARY.define("soft_sort_backward(Tensor grad, Tensor x, Tensor state, str regularization) -> Tensor")
OPS = ("dominance", "soft_sort", "soft_sort_backward")

native.load(OPS)  # after the schemas: the library's kernels attach to them
