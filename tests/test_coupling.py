"""The monotone coupling (aot_loss/_coupling.py) and the reductions (aot_loss/_reduction.py),
tested directly: the cells of the merged grid against the float64 NumPy quantile functions of
tests/oracles.py, the plan's indices against the sorted samples, and each reduction against
its definition."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import quantile_integral
from strategies import samples, weights_for
from tolerances import approx, tol

from aot_loss._coupling import couple, couple_sorted, cumulative_mass, integrate, plan
from aot_loss._reduction import cell_count, reduce_cells, reduce_rows


@settings(max_examples=60, deadline=None)
@given(data=st.data(), weighted=st.booleans())
def test_cells_integrate_any_function_of_the_gap_exactly(data, weighted):
    """sum_k mass_k f(d_k) is the integral of f(Q_U - Q_V) for any f: the cells are the
    merged grid's, and d_k the gap on each."""
    u, v = data.draw(samples()), data.draw(samples())
    uw = data.draw(weights_for(len(u))) if weighted else None
    vw = data.draw(weights_for(len(v))) if weighted else None
    c = couple(*(None if x is None else torch.tensor(x) for x in (u, v, uw, vw)))
    for f in (np.abs, np.square, lambda d: np.maximum(1.0 - d, 0.0)):
        got = integrate(torch.from_numpy(f(c.diff.numpy())), c.mass).item()
        assert got == pytest.approx(quantile_integral(u, v, f, uw, vw), **approx("float64"))


def test_the_plan_couples_sorted_samples_cell_by_cell():
    u, v = (
        torch.tensor([3.0, -1.0, 2.0, 0.5], dtype=torch.float64),
        torch.tensor([1.0, 4.0], dtype=torch.float64),
    )
    p = plan(u, v, None, None)
    assert torch.equal(p.u_sorted, u.sort().values) and torch.equal(u[p.u_perm], p.u_sorted)
    assert torch.equal(p.v_sorted, v.sort().values) and torch.equal(v[p.v_perm], p.v_sorted)
    # levels 1/4, 1/2, 3/4, 1 and 1/2, 1: six cells of lengths 1/4, 1/4, 0, 1/4, 1/4, 0
    assert p.mass is not None and p.mass.sum().item() == pytest.approx(1.0, **approx("float64_unit"))
    diff, cells = couple(u, v, None, None).diff, p.mass > 0
    torch.testing.assert_close(diff[cells], (p.u_sorted[p.iu] - p.v_sorted[p.iv])[cells], **tol("exact"))
    assert (diff[~cells] == 0).all()  # a cell of zero length couples nothing
    assert cell_count(u, v, None, None) == 6 and cell_count(u, u, None, None) == 4


def test_equal_sizes_couple_order_statistics_pairwise():
    u, v = torch.randn(9, dtype=torch.float64), torch.randn(9, dtype=torch.float64)
    c = couple(u, v, None, None)
    assert c.mass is None
    torch.testing.assert_close(c.diff, u.sort().values - v.sort().values, **tol("exact"))


def test_cumulative_masses_end_at_exactly_one():
    w = torch.tensor([[0.1, 0.7, 0.2, 0.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float32)
    x = torch.randn(2, 4)
    ordered, perm = torch.sort(x, dim=-1, stable=True)
    levels = cumulative_mass(w, perm, ordered, torch.float64)
    assert levels.dtype == torch.float64 and (levels[:, -1] == 1.0).all()
    assert (levels.diff(dim=-1) >= 0).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_row_reductions_and_their_derivative(reduction):
    rows = torch.tensor([0.5, 1.5, 4.0], dtype=torch.float64)
    out, factor = reduce_rows(rows, reduction, cells=7)
    want = {"mean": rows.mean(), "sum": rows.sum(), "none": rows}[reduction]
    torch.testing.assert_close(out, want, **tol("exact"))
    assert factor == {"mean": 1 / 3, "sum": 1.0, "none": 1.0}[reduction]
    one, factor = reduce_rows(torch.tensor(2.0), reduction, cells=7)  # 'sum' of one row: K cells
    assert (one.item(), factor) == ((14.0, 7.0) if reduction == "sum" else (2.0, 1.0))


def test_cell_reductions_mean_is_the_integral_and_none_rescales_cells():
    u, v = torch.randn(5, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    c = couple(u, v, None, None)
    costs = c.diff.square()
    mean = reduce_cells(costs, c, "mean", rows=False)
    none = reduce_cells(costs, c, "none", rows=False)
    torch.testing.assert_close(mean, integrate(costs, c.mass), **tol("exact"))
    torch.testing.assert_close(none.mean(), mean, **tol("float64"))
    torch.testing.assert_close(reduce_cells(costs, c, "sum", rows=False), none.sum(), **tol("exact"))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_integer_counts_merge_exactly_as_the_samples_repeated(data):
    """couple_sorted with counts (a bootstrap's rows) integrates like the repeated samples,
    whose cells the NumPy oracle finds; a row of ones is the uniform grid, bit for bit."""
    u, v = np.sort(data.draw(samples())), np.sort(data.draw(samples()))
    cu = data.draw(st.lists(st.integers(0, 3), min_size=len(u), max_size=len(u)).filter(any))
    cv = data.draw(st.lists(st.integers(0, 3), min_size=len(v), max_size=len(v)).filter(any))
    counts = torch.tensor([cu, [1] * len(u)]), torch.tensor([cv, [1] * len(v)])
    c = couple_sorted(torch.tensor(u).expand(2, -1), torch.tensor(v).expand(2, -1), *counts)
    for f in (np.abs, np.square, lambda d: np.maximum(1.0 - d, 0.0)):
        got = integrate(torch.from_numpy(f(c.diff.numpy())), c.mass)[0].item()
        assert got == pytest.approx(
            quantile_integral(np.repeat(u, cu), np.repeat(v, cv), f), **approx("float64")
        )
    uniform = couple(torch.tensor(u), torch.tensor(v), None, None)
    if uniform.mass is not None:  # n != m: the merged uniform grid
        assert torch.equal(c.mass[1], uniform.mass) and torch.equal(c.diff[1], uniform.diff)
