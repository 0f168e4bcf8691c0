"""order=2 (lower-tail mean gaps) and quantile_range (aot_loss/_orders.py), against oracles
written from the definitions (tests/oracles.py): SciPy's adaptive quad of h(g(t)) between the
knots of NumPy Lorenz curves, and the midpoint rule on the merged levels for order 1."""

import numpy as np
import pytest
import torch
from oracles import BUILTIN_COSTS, numpy_cost, order2_integral, quantile_integral
from strategies import spread
from tolerances import TOLERANCES, approx, tol

import aot_loss
from aot_loss.metrics import ot_violation

f64 = torch.float64
RANGES = [(0.0, 1.0), (0.0, 0.2), (0.8, 1.0), (0.13, 0.61)]


def _case(seed, n, m, weighted, scale=1.0):
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=n) * scale + 0.3 * scale, rng.normal(size=m) * scale
    uw = rng.random(n) + 0.1 * (rng.random(n) > 0.3) if weighted else None
    vw = rng.random(m) if weighted else None
    return u, v, uw, vw


def _tensors(*arrays):
    return [None if a is None else torch.tensor(a, dtype=f64) for a in arrays]


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
@pytest.mark.parametrize("quantile_range", RANGES)
@pytest.mark.parametrize(("n", "m", "weighted"), [(6, 6, False), (7, 4, False), (5, 9, True), (1, 1, False)])
def test_order2_equals_adaptive_quadrature_of_the_definition(loss, quantile_range, n, m, weighted):
    u, v, uw, vw = _case(n * 31 + m, n, m, weighted, scale=2.0)
    tu, tv, tuw, tvw = _tensors(u, v, uw, vw)
    ls = 0.1 if loss == "logistic" else 0.0
    got = aot_loss.unpaired(
        tu, tv, loss=loss, beta=0.7, label_smoothing=ls, pos_weights=tuw, neg_weights=tvw,
        order=2, quantile_range=quantile_range,
    )  # fmt: skip
    want = order2_integral(u, v, numpy_cost(loss, 0.7, ls), uw, vw, quantile_range)
    assert got.item() == pytest.approx(want, **approx("adaptive_quadrature"))


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
@pytest.mark.parametrize("quantile_range", RANGES[1:])
@pytest.mark.parametrize(("n", "m", "weighted"), [(6, 6, False), (7, 4, False), (5, 9, True)])
def test_order1_on_a_range_equals_the_clipped_integral(loss, quantile_range, n, m, weighted):
    u, v, uw, vw = _case(n * 17 + m, n, m, weighted)
    tu, tv, tuw, tvw = _tensors(u, v, uw, vw)
    got = aot_loss.unpaired(
        tu, tv, loss=loss, beta=0.7, pos_weights=tuw, neg_weights=tvw, quantile_range=quantile_range
    )
    want = quantile_integral(u, v, numpy_cost(loss, 0.7), uw, vw, quantile_range)
    assert got.item() == pytest.approx(want, **approx("float64_elementwise"))


@pytest.mark.parametrize("beta", [1.0, 30.0, 100.0, 400.0])
@pytest.mark.parametrize("quantile_range", [(0.0, 1.0), (0.02, 0.3)])
def test_logistic_order2_is_within_1e_7_of_adaptive_quadrature_for_large_beta_gaps(beta, quantile_range):
    """|beta g| up to about 1e3: the remainder log(1 + exp(-beta |g|)) varies on a scale of
    1/beta around the crossing g = 0, which the graded panels resolve."""
    for seed in range(4):
        u, v, uw, _ = _case(seed, 9, 6, seed % 2 == 1, scale=3.0)
        tu, tv, tuw, _ = _tensors(u, v, uw, None)
        got = aot_loss.unpaired(tu, tv, beta=beta, pos_weights=tuw, order=2, quantile_range=quantile_range)
        want = order2_integral(u, v, numpy_cost("logistic", beta), uw, None, quantile_range)
        relative, absolute = TOLERANCES["logistic_rule"]
        assert abs(got.item() - want) <= max(relative * abs(want), absolute)


def test_a_callable_is_integrated_by_the_rule():
    u, v, uw, vw = _case(3, 8, 5, True)
    tu, tv, tuw, tvw = _tensors(u, v, uw, vw)
    got = aot_loss.unpaired(tu, tv, loss=lambda d: torch.exp(-d), pos_weights=tuw, neg_weights=tvw, order=2)
    want = order2_integral(u, v, lambda d: np.exp(-d), uw, vw)
    assert got.item() == pytest.approx(want, **approx("adaptive_quadrature"))


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
@pytest.mark.parametrize("order", [1, 2])
def test_a_shift_costs_h_of_the_shift_at_every_level(loss, order):
    """U = V + c: every quantile gap and every tail mean gap is c."""
    v = torch.randn(11, dtype=f64)
    for quantile_range in RANGES:
        got = aot_loss.unpaired(v + 0.4, v, loss=loss, beta=0.7, order=order, quantile_range=quantile_range)
        want = numpy_cost(loss, 0.7)(np.array([0.4]))[0]
        assert got.item() == pytest.approx(want, **approx("float64"))


def test_one_sample_each_is_h_of_the_difference():
    got = aot_loss.unpaired(
        torch.tensor([1.5], dtype=f64), torch.tensor([-0.5], dtype=f64), beta=0.3, order=2
    )
    want = numpy_cost("logistic", 0.3)(np.array([2.0]))[0]
    assert got.item() == pytest.approx(want, **approx("float64_elementwise"))


def test_order2_depends_on_the_distributions_alone():
    """Listing every sample twice is doubling its mass: the same loss."""
    u, v = torch.randn(7, dtype=f64), torch.randn(5, dtype=f64)
    for loss in BUILTIN_COSTS:
        once = aot_loss.unpaired(u, v, loss=loss, beta=0.5, order=2, quantile_range=(0.1, 0.9))
        twice = aot_loss.unpaired(u.repeat(2), v, loss=loss, beta=0.5, order=2, quantile_range=(0.1, 0.9))
        torch.testing.assert_close(twice, once, **tol("float64"))


def test_order2_of_a_mean_preserving_contraction_has_no_hinge_violation():
    """Second-order dominance of U means every tail mean gap g(t) >= 0: the hinge with
    margin 0+ costs nothing, where the quantile gaps (order 1) do cost."""
    v = torch.linspace(-2.0, 2.0, 41, dtype=f64)
    u = v.mean() + (v - v.mean()) / 2
    hinge = {"loss": "hinge", "beta": 1e-9}
    assert aot_loss.unpaired(u, v, order=2, **hinge).item() < 1e-8
    assert aot_loss.unpaired(u, v, order=1, **hinge).item() > 0.1
    assert aot_loss.unpaired(v, u, order=2, **hinge).item() > 0.1


@pytest.mark.parametrize("order", [1, 2])
def test_reductions_none_mean_sum_and_rows(order):
    u, v = torch.randn(7, dtype=f64), torch.randn(4, dtype=f64)
    kw = {"beta": 0.5, "order": order, "quantile_range": (0.1, 0.7)}
    mean = aot_loss.unpaired(u, v, **kw)
    cells = aot_loss.unpaired(u, v, reduction="none", **kw)
    assert cells.shape == (11,)
    torch.testing.assert_close(cells.mean(), mean, **tol("float64"))
    torch.testing.assert_close(aot_loss.unpaired(u, v, reduction="sum", **kw), cells.sum(), **tol("exact"))
    ru, rv = torch.randn(3, 6, dtype=f64), torch.randn(3, 9, dtype=f64)
    rows = aot_loss.unpaired(ru, rv, reduction="none", **kw)
    one_by_one = torch.stack([aot_loss.unpaired(a, b, **kw) for a, b in zip(ru, rv, strict=True)])
    torch.testing.assert_close(rows, one_by_one, **tol("float64"))
    torch.testing.assert_close(aot_loss.unpaired(ru, rv, **kw), rows.mean(), **tol("float64"))


@pytest.mark.parametrize("loss", [*BUILTIN_COSTS, "callable"])
@pytest.mark.parametrize(("order", "quantile_range"), [(2, (0.0, 1.0)), (2, (0.1, 0.8)), (1, (0.15, 0.7))])
def test_gradcheck(loss, order, quantile_range):
    cost = (lambda d: torch.exp(-d)) if loss == "callable" else loss
    u, v = spread(6), spread(4)
    w = torch.rand(4, dtype=f64) + 0.2

    def f(a, b):
        return aot_loss.unpaired(
            a, b, loss=cost, beta=0.7, neg_weights=w, order=order, quantile_range=quantile_range
        )

    assert torch.autograd.gradcheck(f, (u, v))


def test_paired_is_unpaired_on_the_margins_and_modules_and_metrics_agree():
    pc, pr, rc, rr = (torch.randn(8, dtype=f64) for _ in range(4))
    kw = {"beta": 0.4, "order": 2, "quantile_range": (0.0, 0.5)}
    paired = aot_loss.paired(pc, pr, rc, rr, **kw)
    torch.testing.assert_close(paired, aot_loss.unpaired(pc - pr, rc - rr, **kw), **tol("exact"))
    torch.testing.assert_close(aot_loss.PairedAOTLoss(**kw)(pc, pr, rc, rr), paired, **tol("exact"))
    torch.testing.assert_close(ot_violation(pc - pr, rc - rr, **kw), paired, **tol("exact"))


def test_soft_sort_then_order2():
    """The soft sort only replaces the samples by their soft order statistics."""
    u, v = torch.randn(9, dtype=f64), torch.randn(9, dtype=f64)
    got = aot_loss.unpaired(u, v, sort="soft", soft_strength=0.5, order=2, beta=0.5)
    su, sv = aot_loss.soft_sort(u, strength=0.5), aot_loss.soft_sort(v, strength=0.5)
    torch.testing.assert_close(got, aot_loss.unpaired(su, sv, order=2, beta=0.5), **tol("exact"))


def test_auto_runs_order2_and_ranges_on_torch_and_native_says_why():
    u, v = torch.randn(16), torch.randn(12)
    for kw in ({"order": 2}, {"quantile_range": (0.0, 0.5)}):
        torch.testing.assert_close(
            aot_loss.unpaired(u, v, **kw), aot_loss.unpaired(u, v, backend="torch", **kw), **tol("exact")
        )
        if aot_loss.info().native:
            with pytest.raises(ValueError, match="order=2 and quantile_range run on the torch path"):
                aot_loss.unpaired(u, v, backend="native", **kw)


def test_half_precision_is_computed_in_float32():
    u, v = torch.randn(8, dtype=torch.bfloat16), torch.randn(6, dtype=torch.bfloat16)
    assert aot_loss.unpaired(u, v, order=2).dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"order": 3}, ValueError, "order must be 1"),
        ({"order": True}, ValueError, "order must be 1"),
        ({"order": 2.0}, ValueError, "order must be 1"),
        ({"quantile_range": (0.5, 0.5)}, ValueError, r"quantile_range must be a pair \(lo, hi\)"),
        ({"quantile_range": (-0.1, 0.5)}, ValueError, "quantile_range must be a pair"),
        ({"quantile_range": (0.2, 1.5)}, ValueError, "quantile_range must be a pair"),
        ({"quantile_range": (0.2,)}, ValueError, "quantile_range must be a pair"),
        ({"quantile_range": "ab"}, ValueError, "quantile_range must be a pair"),
        ({"quantile_range": (0.0, "1")}, TypeError, r"quantile_range\[1\] must be a real number"),
    ],
)
def test_bad_values_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        aot_loss.unpaired(torch.zeros(2), torch.zeros(2), **kwargs)


def test_a_list_range_is_a_range_and_bools_never_hit_the_cache():
    u, v = torch.randn(5, dtype=f64), torch.randn(5, dtype=f64)
    as_list = aot_loss.unpaired(u, v, quantile_range=[0.0, 0.5])
    torch.testing.assert_close(as_list, aot_loss.unpaired(u, v, quantile_range=(0.0, 0.5)), **tol("exact"))
    aot_loss.unpaired(u, v, quantile_range=(0.0, 1.0))
    with pytest.raises(TypeError, match=r"quantile_range\[0\] must be a real number"):
        aot_loss.unpaired(u, v, quantile_range=(False, True))


def test_check_finite_and_nan_with_order2():
    u, v = torch.tensor([0.0, float("nan")], dtype=f64), torch.tensor([1.0], dtype=f64)
    with pytest.raises(ValueError, match="r_pos contains NaN or infinite values"):
        aot_loss.unpaired(u, v, order=2, check_finite=True)
    assert aot_loss.unpaired(u, v, order=2).isnan()
