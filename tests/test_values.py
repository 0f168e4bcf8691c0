"""Loss values against the independent oracles in oracles.py."""

import numpy as np
import pytest
import torch
from oracles import (
    BUILTIN_COSTS,
    dpo_loss,
    numpy_cost,
    ot_bruteforce,
    ot_linprog,
    quantile_integral,
    trl_aot_paired,
    trl_aot_unpaired,
)
from tolerances import approx, tol

import aot_loss

f64 = torch.float64


def _t(x):
    return torch.as_tensor(np.asarray(x), dtype=f64)


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
@pytest.mark.parametrize(("n", "m"), [(1, 1), (5, 5), (7, 3), (3, 7), (2, 5), (6, 4), (1, 6)])
def test_unequal_sizes_match_quantile_integral_and_linprog(loss, n, m):
    rng = np.random.default_rng(n * 10 + m)
    beta = 0.7
    u, v = rng.normal(size=n) * 2, rng.normal(size=m) * 2
    h = numpy_cost(loss, beta)
    expected = quantile_integral(u, v, h)
    got = aot_loss.unpaired(_t(u), _t(v), loss=loss, beta=beta).item()
    assert got == pytest.approx(expected, **approx("float64"))
    assert got == pytest.approx(ot_linprog(u, v, h), **approx("linprog"))


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
@pytest.mark.parametrize(("n", "m"), [(4, 4), (7, 3), (3, 6), (7, 7)])
def test_weighted_matches_quantile_integral_and_linprog(loss, n, m):
    rng = np.random.default_rng(100 + n * 10 + m)
    beta = 0.4
    u, v = rng.normal(size=n), rng.normal(size=m)
    wu, wv = rng.uniform(0.1, 2.0, size=n), rng.uniform(0.1, 2.0, size=m)
    wu[0] = 0.0  # a zero-mass sample
    h = numpy_cost(loss, beta)
    got = aot_loss.unpaired(_t(u), _t(v), loss=loss, beta=beta, pos_weights=_t(wu), neg_weights=_t(wv))
    assert got.item() == pytest.approx(quantile_integral(u, v, h, wu, wv), **approx("float64"))
    assert got.item() == pytest.approx(ot_linprog(u, v, h, wu, wv), **approx("linprog"))


def test_one_side_weighted_matches_linprog():
    rng = np.random.default_rng(3)
    u, v, wv = rng.normal(size=5), rng.normal(size=4), rng.uniform(0, 1, size=4)
    h = numpy_cost("logistic", 1.0)
    got = aot_loss.unpaired(_t(u), _t(v), beta=1.0, neg_weights=_t(wv)).item()
    assert got == pytest.approx(ot_linprog(u, v, h, None, wv), **approx("linprog"))


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
def test_paired_weighted_matches_linprog(loss):
    rng = np.random.default_rng(7)
    pc, pr, rc, rr = (rng.normal(size=6) * 3 for _ in range(4))
    w = rng.uniform(0, 1, size=6)
    h = numpy_cost(loss, 0.3)
    got = aot_loss.paired(_t(pc), _t(pr), _t(rc), _t(rr), loss=loss, beta=0.3, weights=_t(w)).item()
    assert got == pytest.approx(ot_linprog(pc - pr, rc - rr, h, w, w), **approx("linprog"))


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
def test_sorted_pairs_equal_bruteforce_over_permutations(loss):
    rng = np.random.default_rng(11)
    for _ in range(20):
        u, v = rng.normal(size=6) * 2, rng.normal(size=6) * 2
        h = numpy_cost(loss, 0.5)
        got = aot_loss.unpaired(_t(u), _t(v), loss=loss, beta=0.5).item()
        assert got == pytest.approx(ot_bruteforce(u, v, h), **approx("float64_unit"))


def test_sorted_coupling_is_not_optimal_for_the_zero_one_cost():
    """Convexity matters (paper.md section 3): with h = 1[d < 0] the monotone coupling loses."""
    rng = np.random.default_rng(0)
    zero_one = lambda d: (d < 0).astype(np.float64)  # noqa: E731
    worse = 0
    for _ in range(100):
        u, v = rng.normal(size=6), rng.normal(size=6)
        sorted_cost = aot_loss.unpaired(_t(u), _t(v), loss=lambda d: (d < 0).to(d.dtype)).item()
        assert sorted_cost >= ot_bruteforce(u, v, zero_one) - 1e-12
        worse += sorted_cost > ot_bruteforce(u, v, zero_one) + 1e-12
    assert worse > 0


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0])
def test_equals_trl_formulas(label_smoothing, beta):
    pc, pr, rc, rr = (torch.randn(33, dtype=f64) * 20 - 100 for _ in range(4))
    kw = dict(beta=beta, label_smoothing=label_smoothing)
    trl_paired = trl_aot_paired(pc, pr, rc, rr, **kw)
    trl_unpaired = trl_aot_unpaired(pc, pr, rc, rr, **kw)
    torch.testing.assert_close(aot_loss.paired(pc, pr, rc, rr, **kw), trl_paired.mean(), **tol("float32"))
    torch.testing.assert_close(
        aot_loss.paired(pc, pr, rc, rr, reduction="none", **kw), trl_paired, **tol("float32")
    )
    torch.testing.assert_close(
        aot_loss.paired(pc, pr, rc, rr, reduction="sum", **kw), trl_paired.sum(), **tol("float32")
    )
    torch.testing.assert_close(
        aot_loss.unpaired(pc - rc, pr - rr, **kw), trl_unpaired.mean(), **tol("float32")
    )
    torch.testing.assert_close(
        aot_loss.unpaired(pc - rc, pr - rr, reduction="none", **kw), trl_unpaired, **tol("float32")
    )


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_batch_of_one_is_dpo(label_smoothing):
    pc, pr, rc, rr = (torch.randn(1, dtype=f64) * 5 for _ in range(4))
    dpo = dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=label_smoothing)[0]
    kw = dict(beta=0.1, label_smoothing=label_smoothing)
    torch.testing.assert_close(aot_loss.paired(pc, pr, rc, rr, **kw), dpo)
    torch.testing.assert_close(aot_loss.unpaired(pc - rc, pr - rr, **kw), dpo)


def test_reductions_on_the_merged_grid():
    """1-D 'none' on the merged grid has n + m cells whose mean is the loss, and 'sum' is their sum."""
    u, v = torch.randn(5, dtype=f64), torch.randn(3, dtype=f64)
    mean = aot_loss.unpaired(u, v, beta=0.5)
    none = aot_loss.unpaired(u, v, beta=0.5, reduction="none")
    assert none.shape == (8,)
    torch.testing.assert_close(none.mean(), mean)
    torch.testing.assert_close(aot_loss.unpaired(u, v, beta=0.5, reduction="sum"), none.sum())


def test_rows_reductions():
    u, v = torch.randn(4, 6, dtype=f64), torch.randn(4, 9, dtype=f64)
    per_row = torch.stack([aot_loss.unpaired(u[g], v[g]) for g in range(4)])
    torch.testing.assert_close(aot_loss.unpaired(u, v, reduction="none"), per_row)
    torch.testing.assert_close(aot_loss.unpaired(u, v), per_row.mean())
    torch.testing.assert_close(aot_loss.unpaired(u, v, reduction="sum"), per_row.sum())


def test_custom_callable_cost_matches_oracle():
    u, v = np.array([0.3, -1.2, 2.0, 0.1]), np.array([1.0, -0.5, 0.0])
    got = aot_loss.unpaired(_t(u), _t(v), loss=lambda d: torch.exp(-d)).item()
    assert got == pytest.approx(quantile_integral(u, v, lambda d: np.exp(-d)), **approx("float64_unit"))


def test_weights_scale_free_and_uniform_equals_unweighted():
    u, v = torch.randn(6, dtype=f64), torch.randn(4, dtype=f64)
    base = aot_loss.unpaired(u, v)
    torch.testing.assert_close(aot_loss.unpaired(u, v, pos_weights=torch.full((6,), 3.0, dtype=f64)), base)
    torch.testing.assert_close(
        aot_loss.unpaired(u, v, pos_weights=torch.ones(6, dtype=torch.bool), neg_weights=torch.ones(4)), base
    )


def test_integer_weights_duplicate_samples():
    """Mass 2 on a sample is the same measure as that sample listed twice."""
    u, v = torch.tensor([0.5, -1.0, 2.0], dtype=f64), torch.tensor([0.0, 1.0], dtype=f64)
    weighted = aot_loss.unpaired(u, v, pos_weights=torch.tensor([2, 1, 1]))
    duplicated = aot_loss.unpaired(torch.tensor([0.5, 0.5, -1.0, 2.0], dtype=f64), v)
    torch.testing.assert_close(weighted, duplicated)
