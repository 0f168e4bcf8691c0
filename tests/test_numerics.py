"""Numerical safety, half precision, NaN semantics and the CPU radix-key sort."""

import numpy as np
import pytest
import torch
from optional import native_reason
from oracles import BUILTIN_COSTS, numpy_cost, quantile_integral
from tolerances import TOLERANCES, approx, tol

import aot_loss
from aot_loss import _coupling
from aot_loss._sort import _RADIX_MIN_NUMEL, stable_sort

f64 = torch.float64


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_rewards_give_finite_losses_and_gradients(loss, dtype):
    u = (torch.randn(64, dtype=dtype) * 1e4).requires_grad_()
    v = (torch.randn(48, dtype=dtype) * 1e4).requires_grad_()
    out = aot_loss.unpaired(u, v, loss=loss, beta=1.0, label_smoothing=0.1 if loss == "logistic" else 0.0)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(u.grad).all() and torch.isfinite(v.grad).all()


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.bfloat16, 1.6e-2), (torch.float16, 2e-3)])
@pytest.mark.parametrize("loss", BUILTIN_COSTS)
def test_half_precision_is_computed_in_float32(dtype, rtol, loss):
    u64, v64 = torch.randn(40, dtype=f64) * 3, torch.randn(40, dtype=f64) * 3
    u = u64.to(dtype).requires_grad_()
    v = v64.to(dtype)
    out = aot_loss.unpaired(u, v, loss=loss, beta=0.5)
    assert out.dtype == torch.float32
    expected = aot_loss.unpaired(u64, v64, loss=loss, beta=0.5)
    torch.testing.assert_close(out.double(), expected, rtol=rtol, atol=rtol)
    out.backward()
    assert u.grad.dtype == dtype


@pytest.mark.parametrize("backend", ["torch", "native"])
def test_float32_weights_on_long_rows_keep_float32_precision(backend):
    """A cell's length is a difference of two cumulative masses, ~1/K of them: summed in
    float32 over 7e4 weights, the lengths and the gradients they scale were off by 5e-3
    relative. Levels are summed in float64 on both paths."""
    if backend == "native" and not aot_loss.info().native:
        pytest.skip(native_reason())
    # float32 values, so that float64 computes the same problem exactly
    u64, v64 = (torch.randn(70_000) * 3).double(), (torch.randn(66_000) * 3).double()
    wu, wv = torch.rand(70_000).double(), torch.rand(66_000).double()

    def loss_and_grads(dtype, backend):
        u, v = u64.to(dtype, copy=True).requires_grad_(), v64.to(dtype, copy=True).requires_grad_()
        loss = aot_loss.unpaired(
            u, v, pos_weights=wu.to(dtype), neg_weights=wv.to(dtype), beta=0.3, backend=backend
        )
        loss.backward()
        return loss.double(), u.grad.double(), v.grad.double()

    exact = loss_and_grads(f64, "torch")
    for got, want in zip(loss_and_grads(torch.float32, backend), exact, strict=True):
        assert ((got - want).abs().max() / want.abs().max()).item() < TOLERANCES["float32_vs_float64"][0]


def test_paired_half_margins_are_formed_in_float32():
    """Log-probs around -1000 in bf16 are spaced by 4: the margin must not be formed in bf16."""
    pc = torch.tensor([-1000.0, -1004.0], dtype=torch.bfloat16)
    pr = torch.tensor([-1004.0, -1008.0], dtype=torch.bfloat16)
    rc, rr = pc.clone(), pc.clone()
    out = aot_loss.paired(pc, pr, rc, rr, beta=1.0, reduction="none")
    assert out.dtype == torch.float32
    expected = torch.nn.functional.softplus(-torch.tensor([4.0, 4.0]))
    torch.testing.assert_close(out, expected)


def test_output_dtype_follows_promotion():
    u32, v64 = torch.randn(5), torch.randn(5, dtype=f64)
    assert aot_loss.unpaired(u32, v64).dtype == f64
    assert aot_loss.unpaired(u32, u32).dtype == torch.float32


def test_nan_reward_gives_nan_loss_by_default_and_error_when_checked():
    u, v = torch.tensor([0.0, float("nan"), 1.0]), torch.tensor([0.5, 0.2, 0.1])
    assert torch.isnan(aot_loss.unpaired(u, v))
    none = aot_loss.unpaired(u, v, reduction="none")
    assert torch.isnan(none[-1]) and torch.isfinite(none[:-1]).all()  # NaN sorts last
    with pytest.raises(
        ValueError, match=r"r_pos contains NaN or infinite values \(check_finite=True\), got nan at index 1"
    ):
        aot_loss.unpaired(u, v, check_finite=True)
    with pytest.raises(
        ValueError, match=r"ref_rejected_logps contains NaN or infinite values .*, got inf at index 2"
    ):
        aot_loss.paired(v, v, v, torch.tensor([0.0, 1.0, float("inf")]), check_finite=True)


def _tricky_values(n: int, dtype: torch.dtype) -> torch.Tensor:
    x = torch.randint(-50, 50, (n,)).to(dtype) / 7  # many ties
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), -float("nan")], dtype=dtype)
    copies = min(50, n // 12)
    x[torch.randperm(n)[: 6 * copies]] = special.repeat(copies)
    return x


# Which key sort serves: packed int64 keys through NumPy (float32 from 1024 values on),
# torch's radix sort of integer keys (float64 from _RADIX_MIN_NUMEL on, and float32 under
# torch.compile), or torch's stable comparison sort (the rest).
SORT_PATHS = [
    (torch.float32, 37, False),
    (torch.float32, 5000, False),
    (torch.float32, _RADIX_MIN_NUMEL + 1234, False),
    (torch.float32, _RADIX_MIN_NUMEL + 1234, True),
    (torch.float64, _RADIX_MIN_NUMEL + 1234, False),
    (torch.float64, 5000, False),
]


@pytest.mark.parametrize(("dtype", "n", "compiling"), SORT_PATHS)
def test_key_sorts_equal_stable_torch_sort(dtype, n, compiling, monkeypatch):
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling)
    x = _tricky_values(n, dtype)
    values, indices = stable_sort(x)
    expected = torch.sort(x, stable=True)
    torch.testing.assert_close(values, expected.values, equal_nan=True)
    assert torch.equal(indices, expected.indices)


@pytest.mark.parametrize("compiling", [False, True])
def test_key_sorts_of_rows_equal_stable_torch_sort(compiling, monkeypatch):
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling)
    x = torch.stack([_tricky_values(20000, torch.float32) for _ in range(3)])
    values, indices = stable_sort(x)
    expected = torch.sort(x, dim=-1, stable=True)
    torch.testing.assert_close(values, expected.values, equal_nan=True)
    assert torch.equal(indices, expected.indices)


def test_large_unequal_sizes_match_the_oracle():
    """Exercises the radix-key sort and the integer merged grid at sizes where both matter."""
    rng = np.random.default_rng(5)
    u, v = rng.normal(size=40000), rng.normal(size=33333) + 0.2
    got = aot_loss.unpaired(torch.from_numpy(u), torch.from_numpy(v), loss="squared_hinge", beta=0.1).item()
    expected = quantile_integral(u, v, numpy_cost("squared_hinge", 0.1))
    assert got == pytest.approx(expected, **approx("float64_sums"))


def test_float32_large_weighted_close_to_float64_oracle():
    rng = np.random.default_rng(9)
    u, v = rng.normal(size=50000), rng.normal(size=20000)
    wu, wv = rng.uniform(size=50000), rng.uniform(size=20000)
    got = aot_loss.unpaired(
        torch.tensor(u, dtype=torch.float32),
        torch.tensor(v, dtype=torch.float32),
        pos_weights=torch.tensor(wu, dtype=torch.float32),
        neg_weights=torch.tensor(wv, dtype=torch.float32),
        beta=1.0,
    ).item()
    assert got == pytest.approx(
        quantile_integral(u, v, numpy_cost("logistic", 1.0), wu, wv), **approx("float32_relative")
    )


def test_uniform_grid_is_cached_per_size_and_never_written():
    """The merged grid of uniform unequal samples depends on (n, m) only and is cached; a
    cached grid must equal a fresh one and stay unchanged by the losses that read it."""
    _coupling._cached_uniform_cells.cache_clear()
    u, v = torch.randn(7, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    first = aot_loss.unpaired(u, v, reduction="none", backend="torch")
    second = aot_loss.unpaired(u + 1, v, reduction="none", backend="torch")
    assert _coupling._cached_uniform_cells.cache_info().hits >= 1
    torch.testing.assert_close(second, aot_loss.unpaired(u + 1, v, reduction="none", backend="torch"))
    assert not torch.equal(first, second)
    cached = _coupling._cached_uniform_cells(7, 3, u.device, u.dtype)
    fresh = _coupling._uniform_cells(7, 3, u.device, u.dtype)
    for a, b in zip(cached, fresh, strict=True):
        assert torch.equal(a, b)


def _backend_or_skip(backend: str) -> None:
    if backend == "native" and not aot_loss.info().native:
        pytest.skip(native_reason())


@pytest.mark.parametrize("backend", ["torch", "native"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m", [6, 8, 13])
def test_a_cost_that_overflows_gives_inf_on_every_size(backend, dtype, m):
    """(1e30 - 2e30)^2 overflows float32 (and 1e300's float64): the loss is inf, never the
    NaN that a cell of zero length (inf * 0) used to add on the merged grid."""
    _backend_or_skip(backend)
    big = 1e30 if dtype == torch.float32 else 1e300
    u, v = torch.full((8,), big, dtype=dtype), torch.full((m,), 2 * big, dtype=dtype)
    for weights in (None, torch.rand(m, dtype=dtype) + 0.1):
        out = aot_loss.unpaired(u, v, neg_weights=weights, loss="least_squares", beta=1.0, backend=backend)
        assert out.item() == float("inf"), (m, weights is not None)


@pytest.mark.parametrize("backend", ["torch", "native"])
@pytest.mark.parametrize("bad", [float("nan"), float("-inf"), float("inf"), 1e38])
@pytest.mark.parametrize("side", ["u", "v"])
@pytest.mark.parametrize("sizes", [(9, 9), (9, 7), (5, 12)])
def test_a_sample_of_zero_weight_has_no_effect_whatever_it_holds(backend, bad, side, sizes):
    """Masking samples by a zero weight (padding, filtered samples) is the natural idiom: the
    value equals the loss without them, they get a zero gradient and the others a finite one."""
    _backend_or_skip(backend)
    n, m = sizes
    g = torch.Generator().manual_seed(n * m)
    u, v = torch.randn(n, dtype=f64, generator=g), torch.randn(m, dtype=f64, generator=g)
    wu, wv = torch.rand(n, dtype=f64, generator=g) + 0.1, torch.rand(m, dtype=f64, generator=g) + 0.1
    values, weights = (u, wu) if side == "u" else (v, wv)
    masked = [1, values.shape[0] - 2]  # two zero-mass samples, wherever they sort
    values[masked], weights[masked] = bad, 0.0
    u.requires_grad_(), v.requires_grad_()
    for loss in BUILTIN_COSTS:
        out = aot_loss.unpaired(u, v, pos_weights=wu, neg_weights=wv, loss=loss, beta=0.7, backend=backend)
        gu, gv = torch.autograd.grad(out, (u, v))
        keep_u = wu > 0
        keep_v = wv > 0
        kept = (u.detach()[keep_u].numpy(), v.detach()[keep_v].numpy())
        expected = quantile_integral(*kept, numpy_cost(loss, 0.7), wu[keep_u].numpy(), wv[keep_v].numpy())
        np.testing.assert_allclose(out.item(), expected, **tol("float64_sums_relative"), err_msg=loss)
        grad = gu if side == "u" else gv
        assert (grad[masked] == 0).all(), (loss, grad[masked])
        assert torch.isfinite(gu).all() and torch.isfinite(gv).all(), loss


@pytest.mark.parametrize("bad", [float("nan"), float("-inf")])
def test_the_metrics_ignore_a_sample_of_zero_weight(bad):
    u, v = torch.randn(20, dtype=f64), torch.randn(15, dtype=f64) + 0.2
    w = torch.rand(20, dtype=f64) + 0.1
    u2, w2 = torch.cat([u, torch.tensor([bad], dtype=f64)]), torch.cat([w, torch.zeros(1, dtype=f64)])
    for metric in (aot_loss.metrics.fsd_violation, aot_loss.metrics.fsd_violation_ratio):
        torch.testing.assert_close(metric(u2, v, u_weights=w2), metric(u, v, u_weights=w))


@pytest.mark.parametrize("backend", ["torch", "native"])
@pytest.mark.parametrize("weighted", [False, True])
def test_a_short_sample_against_a_long_one_gets_float32_precise_gradients(backend, weighted):
    """Each of 3 samples meets ~7e5 cells of a 2e6-against-3 grid: summed in float32 their
    gradients were 1.5e-3 relative off (4e-2 at 1e7); both paths sum cells in float64."""
    _backend_or_skip(backend)
    g = torch.Generator().manual_seed(6)
    u, v = torch.randn(2_000_000, generator=g), torch.randn(3, generator=g)
    w = torch.rand(2_000_000, generator=g) + 0.5 if weighted else None
    grads = []
    for dtype in (torch.float32, f64):
        uu, vv = u.to(dtype).requires_grad_(), v.to(dtype).requires_grad_()
        ww = None if w is None else w.to(dtype)
        out = aot_loss.unpaired(uu, vv, pos_weights=ww, beta=0.1, backend=backend)
        grads.append(torch.autograd.grad(out, (uu, vv)))
    (gu32, gv32), (gu64, gv64) = grads
    torch.testing.assert_close(gv32.double(), gv64, **tol("float32_vs_float64"))
    torch.testing.assert_close(gu32.double(), gu64, **tol("float32_vs_float64_grad"))


def test_check_finite_exempts_samples_of_zero_weight():
    u, v = torch.randn(6, dtype=f64), torch.randn(5, dtype=f64)
    u[2], v[4] = float("nan"), float("-inf")
    wu, wv = torch.ones(6, dtype=f64), torch.ones(5, dtype=f64)
    wu[2] = wv[4] = 0.0
    masked = aot_loss.unpaired(u, v, pos_weights=wu, neg_weights=wv, check_finite=True)
    keep_u, keep_v = wu > 0, wv > 0
    torch.testing.assert_close(masked, aot_loss.unpaired(u[keep_u], v[keep_v]))
    wu[2] = 1.0
    with pytest.raises(
        ValueError, match=r"r_pos contains NaN or infinite values \(check_finite=True\), got nan at index 2"
    ):
        aot_loss.unpaired(u, v, pos_weights=wu, neg_weights=wv, check_finite=True)
    logps = torch.randn(4, 5, dtype=f64)
    logps[1, 3] = float("nan")
    w = torch.ones(5, dtype=f64)
    w[3] = 0.0
    torch.testing.assert_close(
        aot_loss.paired(*logps, weights=w, check_finite=True), aot_loss.paired(*logps[:, w > 0])
    )
