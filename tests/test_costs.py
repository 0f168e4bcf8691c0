"""The cost registry (aot_loss/_costs.py): one declaration per cost, and every table that
names the costs agrees with it: the type of `loss=`, the native library's table
(csrc/common/costs.h, exported by csrc/bindings/facts.cpp), and the test oracles."""

import typing

import numpy as np
import pytest
import torch
from optional import needs_native
from oracles import NUMPY_COSTS
from tolerances import approx, tol

import aot_loss
from aot_loss import _costs
from aot_loss.ops import native


def test_the_tables_name_the_same_costs():
    names = tuple(_costs.COSTS)
    assert typing.get_args(_costs.LossName) == names
    assert tuple(NUMPY_COSTS) == names  # the independent NumPy oracles


@needs_native
def test_the_native_library_computes_every_registered_cost():
    assert aot_loss.info().costs == tuple(_costs.COSTS)  # same names, same order (the C++ ids)


@pytest.mark.parametrize("name", list(_costs.COSTS))
def test_each_cost_and_slope_against_numpy(name):
    cost = _costs.COSTS[name]
    d = torch.linspace(-3, 3, 61, dtype=torch.float64)
    for beta, ls in ((0.5, 0.0), (2.0, 0.2 if cost.smoothing else 0.0)):
        want = NUMPY_COSTS[name](d.numpy(), beta, ls)
        np.testing.assert_allclose(cost.value(d, beta, ls).numpy(), want, **tol("float64_elementwise"))
        x = d.clone().requires_grad_()
        (grad,) = torch.autograd.grad(cost.value(x, beta, ls).sum(), x)
        torch.testing.assert_close(cost.slope(d, beta, ls), grad, **tol("float64_elementwise"))


@pytest.mark.parametrize("name", list(_costs.COSTS))
def test_each_cost_on_every_backend(name):
    """Each registered cost reaches the loss through every backend with the oracle's value."""
    u, v = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64), torch.tensor([1.0, 0.5], dtype=torch.float64)
    backends = ["torch", "native"] if aot_loss.info().native else ["torch"]
    values = [aot_loss.unpaired(u, v, loss=name, beta=0.7, backend=b) for b in backends]
    # merged grid of (1/3, 2/3, 1) and (1/2, 1): cells 1/3, 1/6, 1/6, 1/3
    d = np.array([-1.0 - 0.5, 0.3 - 0.5, 0.3 - 1.0, 2.0 - 1.0])
    want = float(np.dot([1 / 3, 1 / 6, 1 / 6, 1 / 3], NUMPY_COSTS[name](d, 0.7, 0.0)))
    for value in values:
        assert value.item() == pytest.approx(want, **approx("float64"))


def test_a_cost_the_native_library_does_not_know_goes_to_torch(monkeypatch):
    """backend='auto' sends a registered cost that the loaded library lacks (a library built
    before the cost was added) to the torch path; backend='native' says why it cannot."""
    status = native.STATUS
    if not status.loaded:
        pytest.skip("needs a loaded native library to take a cost away from")
    facts = dict(status.facts) | {"costs": [c for c in status.costs if c != "hinge"]}
    fewer = native.NativeStatus(True, "", status.path, status.ops, status.build, facts)
    monkeypatch.setattr(native, "STATUS", fewer)
    u, v = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    auto = aot_loss.unpaired(u, v, loss="hinge", beta=0.5)
    assert auto == aot_loss.unpaired(u, v, loss="hinge", beta=0.5, backend="torch")
    with pytest.raises(ValueError, match="backend='native' has no kernel for loss='hinge'"):
        aot_loss.unpaired(u, v, loss="hinge", beta=0.5, backend="native")


@needs_native
def test_the_kernel_rejects_an_unknown_cost():
    u = torch.randn(4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="unknown cost 'cubic'"):
        torch.ops.aot_loss.dominance(u, u, None, None, "cubic", 1.0, 0.0, False)
