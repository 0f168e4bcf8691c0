"""aot_loss.metrics against float64 NumPy oracles and planted answers."""

import numpy as np
import oracles
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import BUILTIN_COSTS, lorenz, numpy_cost, quantile_integral, ssd_dense
from strategies import samples, weights_for
from tolerances import approx, tol

import aot_loss
from aot_loss.metrics import (
    fsd_violation,
    fsd_violation_ratio,
    lorenz_curves,
    ot_violation,
    quantile_curves,
    ssd_violation,
    ssd_violation_ratio,
)

f64 = torch.float64


def _t(x):
    return torch.as_tensor(x, dtype=f64)


def below(d):
    return (d < 0).astype(np.float64)


def expected_ratio(u, v, uw=None, vw=None):
    total = quantile_integral(u, v, np.abs, uw, vw)
    return 0.0 if total == 0 else quantile_integral(u, v, lambda d: np.maximum(-d, 0.0), uw, vw) / total


def draw_case(data, weighted):
    u, v = data.draw(samples()), data.draw(samples())
    if not weighted:
        return u, v, None, None
    return u, v, data.draw(weights_for(len(u))), data.draw(weights_for(len(v)))


def weight_kwargs(uw, vw):
    return {
        "u_weights": None if uw is None else _t(uw),
        "v_weights": None if vw is None else _t(vw),
    }


@given(data=st.data(), weighted=st.booleans())
def test_violation_and_ratio_match_quantile_integral(data, weighted):
    u, v, uw, vw = draw_case(data, weighted)
    kw = weight_kwargs(uw, vw)
    got = fsd_violation(_t(u), _t(v), **kw).item()
    assert got == pytest.approx(quantile_integral(u, v, below, uw, vw), **approx("float64_unit"))
    got = fsd_violation_ratio(_t(u), _t(v), **kw).item()
    assert got == pytest.approx(expected_ratio(u, v, uw, vw), **approx("float64_unit"))


@given(data=st.data(), weighted=st.booleans(), loss=st.sampled_from(BUILTIN_COSTS))
def test_ot_violation_matches_quantile_integral(data, weighted, loss):
    u, v, uw, vw = draw_case(data, weighted)
    got = ot_violation(_t(u), _t(v), loss=loss, beta=0.7, **weight_kwargs(uw, vw)).item()
    expected = quantile_integral(u, v, numpy_cost(loss, 0.7), uw, vw)
    assert got == pytest.approx(expected, **approx("float64_sums"))


@pytest.mark.parametrize("n, m", [(500, 500), (500, 317), (64, 1000)])
@pytest.mark.parametrize("weighted", [False, True])
def test_random_float32_against_float64_oracle(n, m, weighted):
    rng = np.random.default_rng(n + m)
    u, v = rng.normal(0.3, 1.0, n), rng.normal(0.0, 1.5, m)
    uw, vw = (rng.random(n), rng.random(m)) if weighted else (None, None)
    u32, v32 = u.astype(np.float32).astype(np.float64), v.astype(np.float32).astype(np.float64)
    kw = {
        "u_weights": None if uw is None else torch.tensor(uw, dtype=torch.float32),
        "v_weights": None if vw is None else torch.tensor(vw, dtype=torch.float32),
    }
    tu, tv = torch.tensor(u32, dtype=torch.float32), torch.tensor(v32, dtype=torch.float32)
    assert fsd_violation(tu, tv, **kw).item() == pytest.approx(
        quantile_integral(u32, v32, below, uw, vw), **approx("float32_unit")
    )
    assert fsd_violation_ratio(tu, tv, **kw).item() == pytest.approx(
        expected_ratio(u32, v32, uw, vw), **approx("float32_unit")
    )
    expected = quantile_integral(u32, v32, numpy_cost("logistic", 2.0), uw, vw)
    assert ot_violation(tu, tv, beta=2.0, **kw).item() == pytest.approx(
        expected, **approx("float32_relative")
    )


@pytest.mark.parametrize("c", [0.5, 1e-3, -1e-3, -2.0])
@pytest.mark.parametrize("sizes", [(50, 50), (100, 50)])
def test_planted_shift(c, sizes):
    """U = V + c (U repeating V's sample has V's distribution): violation 0 or 1."""
    n, m = sizes
    v = torch.randn(m, dtype=f64, generator=torch.Generator().manual_seed(1))
    u = v.repeat(n // m) + c
    expected = 0.0 if c > 0 else 1.0
    assert fsd_violation(u, v).item() == expected
    assert fsd_violation_ratio(u, v).item() == pytest.approx(expected, **approx("float64_unit"))
    assert fsd_violation(v, u).item() == 1.0 - expected


def test_identical_samples_dominate_with_ties():
    x = torch.tensor([1.0, 2.0, 2.0, 5.0])
    assert fsd_violation(x, x.flip(0)).item() == 0.0
    assert fsd_violation_ratio(x, x).item() == 0.0  # 0/0 is defined as 0


def test_rows_equal_one_call_per_row():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(5, 40, generator=g), torch.randn(5, 23, generator=g) + 0.2
    uw, vw = torch.rand(5, 40, generator=g), torch.rand(5, 23, generator=g)
    for metric in (fsd_violation, fsd_violation_ratio, ot_violation):
        rows = metric(u, v, u_weights=uw, v_weights=vw)
        assert rows.shape == (5,)
        for i in range(5):
            torch.testing.assert_close(rows[i], metric(u[i], v[i], u_weights=uw[i], v_weights=vw[i]))
    curves = quantile_curves(u, v, 33)
    assert curves.u.shape == (5, 33) and curves.v.shape == (5, 33)
    torch.testing.assert_close(curves.u[3], quantile_curves(u[3], v[3], 33).u)


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
def test_ot_violation_is_the_unpaired_loss(loss):
    g = torch.Generator().manual_seed(3)
    u, v, w = torch.randn(30, generator=g), torch.randn(20, generator=g), torch.rand(30, generator=g)
    got = ot_violation(u, v, loss=loss, beta=0.5, u_weights=w)
    torch.testing.assert_close(got, aot_loss.unpaired(u, v, loss=loss, beta=0.5, pos_weights=w))
    rows_u, rows_v = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    torch.testing.assert_close(
        ot_violation(rows_u, rows_v, loss=loss, beta=0.5),
        aot_loss.unpaired(rows_u, rows_v, loss=loss, beta=0.5, reduction="none"),
    )


def test_ot_violation_takes_label_smoothing_and_callables():
    u, v = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([2.0, -1.0, 0.5])
    smoothed = ot_violation(u, v, beta=1.0, label_smoothing=0.2)
    torch.testing.assert_close(smoothed, aot_loss.unpaired(u, v, beta=1.0, label_smoothing=0.2))
    assert ot_violation(u, v, loss=torch.abs).item() == pytest.approx((1.0 + 0.5 + 1.0) / 3)


@given(data=st.data(), weighted=st.booleans())
def test_quantile_curves_match_numpy_inverted_cdf(data, weighted):
    u, v, uw, vw = draw_case(data, weighted)
    levels = np.array(data.draw(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20)))
    curves = quantile_curves(_t(u), _t(v), levels.tolist(), **weight_kwargs(uw, vw))
    np.testing.assert_array_equal(curves.t.numpy(), levels)
    # NumPy's weighted path compares levels with the cumulative masses k/n, as the definition
    # does; its unweighted path rounds n * t first and misses some exact levels (0.28, n = 25).
    for got, x, w in ((curves.u, u, uw), (curves.v, v, vw)):
        w = np.ones(len(x)) if w is None else w
        np.testing.assert_array_equal(got.numpy(), np.quantile(x, levels, method="inverted_cdf", weights=w))


def test_quantile_curves_on_exact_levels():
    """Levels that equal a cumulative mass take the sample reaching it, not the next one."""
    u = torch.tensor([40.0, 10.0, 30.0, 20.0])
    curves = quantile_curves(u, u, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    assert curves.u.tolist() == [10.0, 10.0, 20.0, 30.0, 40.0]
    ten = torch.arange(10.0)
    assert quantile_curves(ten, ten, [0.3, 0.7]).u.tolist() == [2.0, 6.0]
    x = torch.arange(25.0)  # np.quantile(x, 0.28, method="inverted_cdf") gives 7, not 6
    assert quantile_curves(x, x, [0.28, 0.56]).u.tolist() == [6.0, 13.0]
    # Q(0) skips leading zero-mass samples, as NumPy's weighted inverted_cdf does.
    w = torch.tensor([1.0, 0.0, 0.0, 1.0])  # masses of 40, 10, 30, 20
    assert quantile_curves(u, u, [0.0, 0.5, 1.0], u_weights=w).u.tolist() == [20.0, 20.0, 40.0]


def test_nan_gives_nan():
    u, v = torch.tensor([0.0, float("nan"), 2.0]), torch.tensor([1.0, 1.0, 1.0])
    for metric in (fsd_violation, fsd_violation_ratio, ot_violation):
        assert metric(u, v).isnan()
        assert metric(v, u).isnan()
    assert quantile_curves(u, v, [0.0, 1.0]).u[1].isnan()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes_and_no_autograd(dtype):
    u = torch.tensor([0.0, 2.0, 5.0, 6.0], dtype=dtype, requires_grad=True)
    v = torch.tensor([1.0, 1.0, 3.0, 4.0], dtype=dtype)
    out_dtype = f64 if dtype == f64 else torch.float32
    for metric in (fsd_violation, fsd_violation_ratio, ot_violation):
        out = metric(u, v)
        assert out.dtype == out_dtype and not out.requires_grad
    assert fsd_violation(u, v).item() == 0.25
    assert fsd_violation_ratio(u, v).item() == pytest.approx(0.25 / 1.5)
    curves = quantile_curves(u, v, 5)
    assert curves.u.dtype == out_dtype and not curves.u.requires_grad
    assert curves.t.dtype == f64


def test_exported():
    assert aot_loss.metrics.fsd_violation is fsd_violation


@given(data=st.data(), weighted=st.booleans(), seed=st.integers(0, 2**16))
def test_metrics_are_invariant_to_the_order_of_each_sample(data, weighted, seed):
    u, v, uw, vw = draw_case(data, weighted)
    rng = np.random.default_rng(seed)
    pu, pv = rng.permutation(len(u)), rng.permutation(len(v))
    shuffled_uw, shuffled_vw = (None if w is None else w[p] for w, p in ((uw, pu), (vw, pv)))
    for metric in (fsd_violation, fsd_violation_ratio, ot_violation):
        want = metric(_t(u), _t(v), **weight_kwargs(uw, vw)).item()
        got = metric(_t(u[pu]), _t(v[pv]), **weight_kwargs(shuffled_uw, shuffled_vw)).item()
        assert got == pytest.approx(want, **approx("float64_unit")), metric.__name__


@given(
    data=st.data(),
    weighted=st.booleans(),
    shift=st.integers(-8, 8).map(lambda k: k / 4),
    scale=st.sampled_from([0.5, 2.0, 4.0]),
)
def test_violations_are_invariant_to_a_common_shift_and_positive_scale(data, weighted, shift, scale):
    """Values on the grid k / 4: shifting by a multiple of 1/4 and scaling by a power of two is exact."""
    u, v, uw, vw = draw_case(data, weighted)
    kw = weight_kwargs(uw, vw)
    for metric in (fsd_violation, fsd_violation_ratio):
        want = metric(_t(u), _t(v), **kw).item()
        got = metric(_t(scale * u + shift), _t(scale * v + shift), **kw).item()
        assert got == pytest.approx(want, **approx("float64_unit")), metric.__name__


@given(data=st.data(), weighted=st.booleans(), gap=st.integers(1, 8).map(lambda k: k / 4))
def test_planted_dominance_either_way(data, weighted, gap):
    """U = V + gap (each permuted): U dominates, violation 0; V dominates U strictly: 1."""
    v = data.draw(samples())
    w = data.draw(weights_for(len(v))) if weighted else None
    p = np.random.default_rng(len(v)).permutation(len(v))
    u, uw = v[p] + gap, (None if w is None else w[p])
    assert fsd_violation(_t(u), _t(v), **weight_kwargs(uw, w)).item() == 0.0
    assert fsd_violation_ratio(_t(u), _t(v), **weight_kwargs(uw, w)).item() == 0.0
    assert fsd_violation(_t(v), _t(u), **weight_kwargs(w, uw)).item() == pytest.approx(
        1.0, **approx("float64_unit")
    )
    assert fsd_violation_ratio(_t(v), _t(u), **weight_kwargs(w, uw)).item() == pytest.approx(
        1.0, **approx("float64_unit")
    )


@given(data=st.data(), weighted=st.booleans())
def test_swapping_the_samples_complements_the_violation(data, weighted):
    """Levels where U < V and where V < U are disjoint (ties in neither); the areas below and
    above split the total area, so the two ratios add to 1 unless the quantiles coincide."""
    u, v, uw, vw = draw_case(data, weighted)
    forward, backward = weight_kwargs(uw, vw), weight_kwargs(vw, uw)
    assert fsd_violation(_t(u), _t(v), **forward) + fsd_violation(_t(v), _t(u), **backward) <= 1 + 1e-12
    total = quantile_integral(u, v, np.abs, uw, vw)
    ratios = fsd_violation_ratio(_t(u), _t(v), **forward) + fsd_violation_ratio(_t(v), _t(u), **backward)
    assert ratios.item() == pytest.approx(0.0 if total == 0 else 1.0, **approx("float64_unit"))


# Second order: the Lorenz curves L(t) = integral_0^t Q and their difference C = L_U - L_V.


@settings(max_examples=40, deadline=None)
@given(data=st.data(), weighted=st.booleans())
def test_ssd_metrics_match_a_dense_grid(data, weighted):
    u, v, uw, vw = draw_case(data, weighted)
    kw = weight_kwargs(uw, vw)
    measure, ratio = ssd_dense(u, v, uw, vw)
    assert ssd_violation(_t(u), _t(v), **kw).item() == pytest.approx(measure, **approx("dense_grid"))
    assert ssd_violation_ratio(_t(u), _t(v), **kw).item() == pytest.approx(ratio, **approx("dense_grid"))


@given(data=st.data(), weighted=st.booleans())
def test_lorenz_curves_match_numpy(data, weighted):
    u, v, uw, vw = draw_case(data, weighted)
    t = np.linspace(0.0, 1.0, 37)
    curves = lorenz_curves(_t(u), _t(v), _t(t), **weight_kwargs(uw, vw))
    np.testing.assert_allclose(curves.u.numpy(), lorenz(u, uw, t), **tol("float64"))
    np.testing.assert_allclose(curves.v.numpy(), lorenz(v, vw, t), **tol("float64"))


def test_a_mean_preserving_contraction_dominates_at_second_order_only():
    """U = mean(V) + (V - mean(V)) / 2 keeps V's mean with half its spread: its quantiles
    cross V's (FSD fails both ways) but every lower tail mean of U is at least V's."""
    rng = np.random.default_rng(0)
    v = np.round(rng.normal(size=64) * 8) / 8  # dyadic: the means are exact
    u = v.mean() + (v - v.mean()) / 2
    assert fsd_violation(_t(u), _t(v)).item() > 0 and fsd_violation(_t(v), _t(u)).item() > 0
    assert ssd_violation(_t(u), _t(v)).item() == 0.0 and ssd_violation_ratio(_t(u), _t(v)).item() == 0.0
    assert ssd_violation(_t(v), _t(u)).item() == 1.0 and ssd_violation_ratio(_t(v), _t(u)).item() == 1.0


@settings(max_examples=60, deadline=None)
@given(data=st.data(), weighted=st.booleans(), shift=st.sampled_from([0.0, 0.25, 3.0]))
def test_first_order_dominance_implies_second_order(data, weighted, shift):
    v, _, vw, _ = draw_case(data, weighted)
    u = np.sort(v) + shift + np.abs(data.draw(samples(min_size=len(v), max_size=len(v))))  # Q_U >= Q_V
    uw = None if vw is None else vw[np.argsort(v, kind="stable")]
    kw = weight_kwargs(uw, vw)
    assert fsd_violation(_t(u), _t(v), **kw).item() == 0.0
    assert ssd_violation(_t(u), _t(v), **kw).item() == 0.0
    assert ssd_violation_ratio(_t(u), _t(v), **kw).item() == 0.0


def test_listing_every_sample_twice_changes_no_second_order_metric():
    u, v = torch.randn(9, dtype=f64), torch.randn(6, dtype=f64)
    for metric in (ssd_violation, ssd_violation_ratio):
        torch.testing.assert_close(metric(u.repeat(2), v), metric(u, v), **tol("float64"))
    torch.testing.assert_close(lorenz_curves(u.repeat(2), v).u, lorenz_curves(u, v).u, **tol("float64"))


def test_second_order_metrics_of_rows_and_dtypes():
    u, v = torch.randn(3, 10, dtype=f64), torch.randn(3, 7, dtype=f64)
    for metric in (ssd_violation, ssd_violation_ratio):
        rows = metric(u, v)
        assert rows.shape == (3,)
        torch.testing.assert_close(
            rows, torch.stack([metric(a, b) for a, b in zip(u, v, strict=True)]), **tol("exact")
        )
        assert metric(u.float(), v.float()).dtype == torch.float32
        assert metric(u.half(), v.half()).dtype == torch.float32
    assert lorenz_curves(u, v, 5).u.shape == (3, 5)
    assert ssd_violation(torch.tensor([0.0, float("nan")]), torch.tensor([1.0])).isnan()


def test_second_order_metrics_name_bad_arguments():
    with pytest.raises(ValueError, match="u_weights must not contain negative values"):
        ssd_violation(torch.ones(2), torch.ones(2), u_weights=torch.tensor([1.0, -1.0]))
    with pytest.raises(TypeError, match=r"v must be a torch\.Tensor"):
        ssd_violation_ratio(torch.ones(2), [1.0])
    with pytest.raises(ValueError, match="grid must be an int >= 2"):
        lorenz_curves(torch.ones(2), torch.ones(2), 1)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("n, m, weighted", [(7, 7, False), (5, 9, False), (6, 4, True)])
def test_violation_ratios_with_p_equal_the_numpy_oracle(order, p, n, m, weighted):
    rng = np.random.default_rng(31 * n + m + p)
    u, v = rng.normal(0.2, 1.0, n), rng.normal(0.0, 1.5, m)
    uw, vw = (rng.uniform(0.1, 2.0, n), rng.uniform(0.1, 2.0, m)) if weighted else (None, None)
    below, total = oracles.violation_ratio(u, v, order, p, uw, vw)
    metric = fsd_violation_ratio if order == 1 else ssd_violation_ratio
    got = metric(_t(u), _t(v), **weight_kwargs(uw, vw), p=p).item()
    assert got == pytest.approx(below / total, **approx("float64_sums"))


@pytest.mark.parametrize("metric", [fsd_violation_ratio, ssd_violation_ratio])
@pytest.mark.parametrize("p", [0, 3, 1.5, True, "2"])
def test_violation_ratio_p_must_be_1_or_2(metric, p):
    with pytest.raises(ValueError, match=r"p must be 1 \(areas\) or 2"):
        metric(torch.randn(4), torch.randn(4), p=p)
