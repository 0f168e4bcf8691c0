"""Property tests with hypothesis, each against an oracle or a planted answer."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from oracles import numpy_cost, quantile_integral
from strategies import betas, costs, monotone_costs, samples, weights_for
from tolerances import approx, tol

import aot_loss

f64 = torch.float64


def _t(x):
    return torch.as_tensor(x, dtype=f64)


@given(u=samples(), v=samples(), loss=costs, beta=betas)
def test_matches_quantile_integral_with_ties(u, v, loss, beta):
    got = aot_loss.unpaired(_t(u), _t(v), loss=loss, beta=beta).item()
    assert got == pytest.approx(quantile_integral(u, v, numpy_cost(loss, beta)), **approx("float64_sums"))


@given(data=st.data(), loss=costs, beta=betas)
def test_weighted_matches_quantile_integral(data, loss, beta):
    u, v = data.draw(samples()), data.draw(samples())
    wu, wv = data.draw(weights_for(len(u))), data.draw(weights_for(len(v)))
    got = aot_loss.unpaired(_t(u), _t(v), loss=loss, beta=beta, pos_weights=_t(wu), neg_weights=_t(wv))
    expected = quantile_integral(u, v, numpy_cost(loss, beta), wu, wv)
    assert got.item() == pytest.approx(expected, **approx("float64_sums"))


@given(u=samples(), v=samples(), loss=costs, seed=st.integers(0, 2**32 - 1))
def test_permutation_invariance_each_side(u, v, loss, seed):
    rng = np.random.default_rng(seed)
    base = aot_loss.unpaired(_t(u), _t(v), loss=loss, beta=0.5)
    shuffled = aot_loss.unpaired(_t(rng.permutation(u)), _t(rng.permutation(v)), loss=loss, beta=0.5)
    torch.testing.assert_close(shuffled, base, **tol("float64"))


@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_weighted_permutation_invariance(data, seed):
    u, v = data.draw(samples()), data.draw(samples())
    wu, wv = data.draw(weights_for(len(u))), data.draw(weights_for(len(v)))
    rng = np.random.default_rng(seed)
    pu, pv = rng.permutation(len(u)), rng.permutation(len(v))
    kw = dict(beta=0.5)
    base = aot_loss.unpaired(_t(u), _t(v), pos_weights=_t(wu), neg_weights=_t(wv), **kw)
    shuffled = aot_loss.unpaired(_t(u[pu]), _t(v[pv]), pos_weights=_t(wu[pu]), neg_weights=_t(wv[pv]), **kw)
    torch.testing.assert_close(shuffled, base, **tol("float64"))


@given(u=samples(), v=samples(), loss=costs, shift=st.sampled_from([-3.0, 0.25, 7.5]))
def test_common_shift_leaves_the_loss_unchanged(u, v, loss, shift):
    base = aot_loss.unpaired(_t(u), _t(v), loss=loss, beta=0.5)
    torch.testing.assert_close(aot_loss.unpaired(_t(u + shift), _t(v + shift), loss=loss, beta=0.5), base)


@given(u=samples(), v=samples(), loss=monotone_costs, beta=betas, shift=st.sampled_from([0.25, 1.0, 4.0]))
def test_monotone_decrease_under_positive_shift_of_u(u, v, loss, beta, shift):
    base = aot_loss.unpaired(_t(u), _t(v), loss=loss, beta=beta)
    shifted = aot_loss.unpaired(_t(u + shift), _t(v), loss=loss, beta=beta)
    assert shifted <= base
    if loss == "logistic":
        assert shifted < base


@given(
    v=samples(),
    loss=st.sampled_from(["hinge", "squared_hinge"]),
    beta=betas,
    margin=st.sampled_from([1e-6, 0.5]),
)
def test_hinge_family_is_zero_under_dominance_by_beta(v, loss, beta, margin):
    """Planted dominance: U = V + beta + margin (margin > 0), so every quantile gap exceeds beta."""
    u = v + beta + margin
    assert aot_loss.unpaired(_t(u), _t(v), loss=loss, beta=beta).item() == 0.0
    # and still zero with a different size for V's twin
    assert aot_loss.unpaired(_t(np.repeat(u, 2)), _t(v), loss=loss, beta=beta).item() == 0.0


@given(data=st.data(), loss=costs)
def test_rows_equal_a_loop_over_rows(data, loss):
    g = data.draw(st.integers(1, 4))
    n, m = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    u = np.stack([data.draw(samples(n, n)) for _ in range(g)])
    v = np.stack([data.draw(samples(m, m)) for _ in range(g)])
    rows = aot_loss.unpaired(_t(u), _t(v), loss=loss, reduction="none")
    loop = torch.stack([aot_loss.unpaired(_t(u[i]), _t(v[i]), loss=loss) for i in range(g)])
    torch.testing.assert_close(rows, loop, **tol("float64"))


@given(u=samples(), loss=costs)
def test_identical_samples_cost_h_of_zero(u, loss):
    """U = V (in any order): every quantile gap is 0, so the cost is h(0)."""
    h0 = numpy_cost(loss, 0.5)(np.zeros(1))[0]
    got = aot_loss.unpaired(_t(u), _t(u[::-1].copy()), loss=loss, beta=0.5).item()
    assert got == pytest.approx(h0, **approx("float64"))


@given(u=samples(), v=samples())
def test_paired_equals_unpaired_on_margins(u, v):
    n = min(len(u), len(v))
    pc, pr = _t(u[:n]), _t(v[:n])
    rc, rr = _t(v[:n] * 0.5), _t(u[:n] * 0.25)
    torch.testing.assert_close(aot_loss.paired(pc, pr, rc, rr), aot_loss.unpaired(pc - pr, rc - rr))
