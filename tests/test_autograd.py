"""The two autograd paths of each op (aot_loss/ops/autograd.py) agree: the eager
``autograd.Function`` that the losses use, and the formula registered with
``torch.library.register_autograd``, which compiled graphs and direct calls of
``torch.ops.aot_loss.*`` use. Values and gradients must be identical, bit for bit, on the
kernel the dispatcher serves in this run (native where loaded; CI runs the suite without the
native library too, where the torch kernels serve)."""

import pytest
import torch
from tolerances import tol

from aot_loss._reduction import cell_count, reduce_rows
from aot_loss.ops.autograd import reduced_costs, soft_sort_last

CASES = [  # (u shape, v shape, weighted)
    ((6,), (6,), False),
    ((5,), (9,), False),
    ((7,), (4,), True),
    ((3, 8), (3, 8), False),
    ((4, 6), (4, 11), True),
    ((2, 300), (2, 200), False),
]


def _leaves(generator, shape_u, shape_v, dtype):
    u = torch.randn(*shape_u, generator=generator, dtype=dtype).requires_grad_()
    v = torch.randn(*shape_v, generator=generator, dtype=dtype).requires_grad_()
    return u, v


# 'none' on 1-D inputs is the torch path's per-cell costs, not an output of the op
REDUCED = [(*case, r) for case in CASES for r in ("mean", "sum", "none") if r != "none" or len(case[0]) == 2]


@pytest.mark.parametrize(("shape_u", "shape_v", "weighted", "reduction"), REDUCED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dominance_eager_function_equals_registered_formula(shape_u, shape_v, weighted, reduction, dtype):
    generator = torch.Generator().manual_seed(0)
    u, v = _leaves(generator, shape_u, shape_v, dtype)
    wu = torch.rand(*shape_u, generator=generator, dtype=dtype) if weighted else None
    wv = torch.rand(*shape_v, generator=generator, dtype=dtype) if weighted else None
    args = ("logistic", 0.7, 0.1)

    eager = reduced_costs(u, v, wu, wv, *args, reduction)
    eager_grads = torch.autograd.grad(eager.sum(), (u, v))

    row_cost = torch.ops.aot_loss.dominance(u, v, wu, wv, *args, True)[0]  # the registered formula
    registered = reduce_rows(row_cost, reduction, cell_count(u, v, wu, wv))[0]
    registered_grads = torch.autograd.grad(registered.sum(), (u, v))

    torch.testing.assert_close(eager, registered, **tol("exact"))
    for got, want in zip(eager_grads, registered_grads, strict=True):
        torch.testing.assert_close(got, want, **tol("exact"))


@pytest.mark.parametrize("shape", [(7,), (3, 9), (2, 500)])
@pytest.mark.parametrize("regularization", ["l2", "kl"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_soft_sort_eager_function_equals_registered_formula(shape, regularization, dtype):
    generator = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(*shape, generator=generator, dtype=dtype)).requires_grad_()
    weights = torch.randn(*shape, generator=generator, dtype=dtype)

    eager = soft_sort_last(x, 0.5, regularization, "auto")
    (eager_grad,) = torch.autograd.grad((eager * weights).sum(), x)

    registered = torch.ops.aot_loss.soft_sort(x, 0.5, regularization)[0]
    (registered_grad,) = torch.autograd.grad((registered * weights).sum(), x)

    torch.testing.assert_close(eager, registered, **tol("exact"))
    torch.testing.assert_close(eager_grad, registered_grad, **tol("exact"))
