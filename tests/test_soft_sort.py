"""aot_loss.soft_sort: values and gradients against a re-typed oracle, torchsort (installed or
recorded), finite differences and the hard sort; every backend; the op; its use in the losses."""

import importlib.util
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from optional import native_reason, needs
from oracles import soft_sort_oracle
from strategies import samples
from tolerances import tol

import aot_loss
from aot_loss.ops import pav as _pav

HAS_TORCHSORT = importlib.util.find_spec("torchsort") is not None
needs_torchsort = needs("torchsort")
needs_native = pytest.mark.skipif(
    "cpu" not in aot_loss.info().ops.get("soft_sort", ()), reason=native_reason()
)
BACKENDS = ["torch", pytest.param("native", marks=needs_native)]
REGULARIZATIONS = ["l2", "kl"]
VECTORS = json.loads((Path(__file__).parent / "data" / "torchsort_vectors.json").read_text())


def _inputs(kind, n=40, rows=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        return torch.randn(rows, n, generator=g, dtype=torch.float64) * 5
    if kind == "tied":
        return torch.randint(-3, 4, (rows, n), generator=g).double()
    if kind == "constant":
        return torch.full((rows, n), 2.5, dtype=torch.float64)
    if kind == "heavy":  # Cauchy: long pooled tails, the case the rounds of _pav accelerate
        return torch.tan(torch.pi * (torch.rand(rows, n, generator=g, dtype=torch.float64) - 0.5)) * 3
    raise ValueError(kind)


def _values_and_grad(x, upstream, **kw):
    x = x.detach().clone().requires_grad_()
    out = aot_loss.soft_sort(x, **kw)
    out.backward(upstream)
    return out.detach(), x.grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("regularization", REGULARIZATIONS)
@pytest.mark.parametrize("strength", [0.05, 0.5, 2.0])
@pytest.mark.parametrize("kind", ["random", "tied", "constant", "heavy"])
def test_values_equal_the_retyped_oracle(kind, strength, regularization, backend):
    x = _inputs(kind)
    out = aot_loss.soft_sort(x, strength=strength, regularization=regularization, backend=backend)
    for row, got in zip(x, out, strict=True):
        np.testing.assert_allclose(
            got.numpy(), soft_sort_oracle(row.numpy(), strength, regularization), **tol("pav_oracle")
        )


@pytest.mark.parametrize("regularization", REGULARIZATIONS)
@pytest.mark.parametrize("pad", [0, 1, 5])
@pytest.mark.parametrize("kind", ["random", "tied", "heavy"])
def test_segments_grown_from_tiny_pads_solve_the_rows(kind, pad, regularization, monkeypatch):
    """The torch path pools on segments around the violations, grown where an edge still
    violates. Forced onto tiny segments even where violations are dense, it must still give
    the oracle's values and the whole-row solve's gradients."""
    x = torch.cat([_inputs(kind, n=120, rows=3, seed=5), torch.tensor([[1.0] * 60 + [float("inf")] * 60])])
    upstream = torch.randn_like(x)
    kw = {"strength": 0.3, "regularization": regularization, "backend": "torch"}
    whole_rows = _values_and_grad(x, upstream, **kw)
    monkeypatch.setattr(_pav, "_PAD", pad)
    monkeypatch.setattr(_pav, "_MAX_PAD", pad)
    monkeypatch.setattr(_pav, "_MAX_COVER", 1e9)
    segmented = _values_and_grad(x, upstream, **kw)
    for row, got in zip(x[:3], segmented[0][:3], strict=True):
        np.testing.assert_allclose(
            got.numpy(), soft_sort_oracle(row.numpy(), 0.3, regularization), **tol("pav_oracle")
        )
    if regularization == "l2":  # the infinity pools the row (under KL it pools like a huge value)
        assert torch.equal(segmented[0][3], torch.full((120,), float("inf"), dtype=torch.float64))
    torch.testing.assert_close(segmented, whole_rows, **tol("float64"))


@given(
    samples(min_size=1, max_size=40),
    st.integers(0, 3),
    st.sampled_from([0.3, 1.0, 4.0]),
    st.sampled_from(REGULARIZATIONS),
)
def test_segments_equal_the_oracle_on_any_sample(x, pad, strength, regularization):
    saved = _pav._PAD, _pav._MAX_PAD, _pav._MAX_COVER
    _pav._PAD, _pav._MAX_PAD, _pav._MAX_COVER = pad, pad, 1e9  # segments always, pads of `pad`
    try:
        out = aot_loss.soft_sort(
            torch.from_numpy(x), strength=strength, regularization=regularization, backend="torch"
        )
    finally:
        _pav._PAD, _pav._MAX_PAD, _pav._MAX_COVER = saved
    np.testing.assert_allclose(
        out.numpy(), soft_sort_oracle(x, strength, regularization), **tol("pav_oracle")
    )


@pytest.mark.parametrize("regularization", REGULARIZATIONS)
def test_long_heavy_tailed_row_pools_only_segments(regularization, monkeypatch):
    """On 20000 Cauchy values only the tails pool: PAV runs on segments, not on the row."""
    sizes = []
    solve = _pav._solve
    monkeypatch.setattr(_pav, "_solve", lambda stat, *a: sizes.append(stat.numel()) or solve(stat, *a))
    x = _inputs("heavy", n=20_000, rows=1, seed=1)[0]
    out = aot_loss.soft_sort(x, strength=0.1, regularization=regularization, backend="torch")
    np.testing.assert_allclose(
        out.numpy(), soft_sort_oracle(x.numpy(), 0.1, regularization), **tol("pav_oracle")
    )
    assert sizes and max(sizes) < 5_000, sizes  # segments, not the 20000 values of the row


@needs_torchsort
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("regularization", REGULARIZATIONS)
@pytest.mark.parametrize("strength", [0.1, 1.0, 4.0])
@pytest.mark.parametrize("kind", ["random", "tied", "constant", "heavy"])
def test_equals_installed_torchsort(kind, strength, regularization, backend):
    import torchsort

    x = _inputs(kind, rows=4)
    upstream = torch.randn_like(x)
    ours = _values_and_grad(x, upstream, strength=strength, regularization=regularization, backend=backend)
    xr = x.clone().requires_grad_()
    theirs = torchsort.soft_sort(xr, regularization=regularization, regularization_strength=strength)
    theirs.backward(upstream)
    torch.testing.assert_close(ours[0], theirs.detach(), **tol("float32_absolute"))
    # torchsort's sort is not stable: tied inputs may swap gradients; their sums must agree
    torch.testing.assert_close(_tie_sums(x, ours[1]), _tie_sums(x, xr.grad), **tol("float32_absolute"))
    if kind not in ("tied", "constant"):
        torch.testing.assert_close(ours[1], xr.grad, **tol("float32_absolute"))
    one_d = aot_loss.soft_sort(x[0], strength=strength, regularization=regularization, backend=backend)
    torch.testing.assert_close(one_d, theirs[0].detach(), **tol("float32_absolute"))


def _tie_sums(x, grad):
    """Per element, the gradient summed over the elements of its row with an equal value."""
    return ((x[..., :, None] == x[..., None, :]).to(grad.dtype) * grad[..., None, :]).sum(-1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "case", VECTORS["cases"], ids=lambda c: f"{c['name']}-{c['strength']}-{c['regularization']}"
)
def test_equals_recorded_torchsort_vectors(case, backend):
    x = torch.tensor(case["x"], dtype=torch.float64)
    values, grad = _values_and_grad(
        x,
        torch.tensor(case["upstream"], dtype=torch.float64),
        strength=case["strength"],
        regularization=case["regularization"],
        backend=backend,
    )
    torch.testing.assert_close(
        values, torch.tensor(case["values"], dtype=torch.float64), **tol("float32_absolute")
    )
    torch.testing.assert_close(
        grad, torch.tensor(case["grad"], dtype=torch.float64), **tol("float32_absolute")
    )


@needs_torchsort
def test_torchsort_backend_is_torchsort():
    import torchsort

    x = _inputs("random")
    ours = aot_loss.soft_sort(x, strength=0.3, backend="torchsort")
    torch.testing.assert_close(ours, torchsort.soft_sort(x, regularization_strength=0.3), **tol("exact"))


def test_torchsort_backend_without_torchsort_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchsort", None)  # makes `import torchsort` fail
    with pytest.raises(
        ImportError, match=r"needs torchsort, which could not be imported.*docs/soft-sort\.md"
    ):
        aot_loss.soft_sort(torch.randn(5), backend="torchsort")


@given(
    samples(min_size=1, max_size=14), st.sampled_from([0.05, 0.5, 1.0, 4.0]), st.sampled_from(REGULARIZATIONS)
)
def test_exact_sort_when_every_gap_is_at_most_the_spacing(x, strength, regularization):
    gaps = np.diff(np.sort(x))
    spacing = 1.0 / strength
    if gaps.size and gaps.max() > spacing:
        x = np.sort(x)[0] + np.cumsum(np.r_[0.0, np.minimum(gaps, spacing * 0.999)])  # squeeze the gaps
    out = aot_loss.soft_sort(torch.from_numpy(x), strength=strength, regularization=regularization)
    np.testing.assert_allclose(out.numpy(), np.sort(x), **tol("pav_oracle"))


@pytest.mark.parametrize("regularization", REGULARIZATIONS)
def test_converges_to_the_hard_sort_as_strength_goes_to_zero(regularization):
    x = _inputs("heavy", n=200, rows=1)[0]
    hard = torch.sort(x).values
    errors = [
        (aot_loss.soft_sort(x, strength=s, regularization=regularization) - hard).abs().max().item()
        for s in (10.0, 1.0, 0.1, 0.01, 1e-3, 1e-4)
    ]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(errors)), errors
    assert errors[0] > 1.0 and errors[-1] < 1e-9, errors


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("regularization", REGULARIZATIONS)
@pytest.mark.parametrize("kind", ["random", "heavy"])
def test_gradcheck(kind, regularization, backend):
    x = _inputs(kind, n=9, rows=2).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: aot_loss.soft_sort(t, strength=0.7, regularization=regularization, backend=backend), (x,)
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_other_dim(backend):
    x = _inputs("random", n=6, rows=4).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: aot_loss.soft_sort(t, strength=0.4, dim=0, backend=backend), (x,)
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("regularization", REGULARIZATIONS)
def test_batched_equals_row_by_row_and_dim_moves(regularization, backend):
    x = _inputs("heavy", n=17, rows=6).reshape(2, 3, 17)
    upstream = torch.randn_like(x)
    kw = {"strength": 0.3, "regularization": regularization, "backend": backend}
    batched = _values_and_grad(x, upstream, **kw)
    for i in range(2):
        for j in range(3):
            single = _values_and_grad(x[i, j], upstream[i, j], **kw)
            torch.testing.assert_close(batched[0][i, j], single[0], **tol("exact"))
            torch.testing.assert_close(batched[1][i, j], single[1], **tol("exact"))
    along_0 = aot_loss.soft_sort(x.transpose(0, 2), dim=0, **kw)
    torch.testing.assert_close(along_0, batched[0].transpose(0, 2), **tol("exact"))


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("regularization", REGULARIZATIONS)
@pytest.mark.parametrize("kind", ["random", "tied", "constant", "heavy"])
def test_native_equals_reference(kind, regularization, dtype):
    x = _inputs(kind, n=300, rows=5, seed=3).to(dtype)
    upstream = torch.randn_like(x)
    kw = {"strength": 0.2, "regularization": regularization}
    native = _values_and_grad(x, upstream, backend="native", **kw)
    reference = _values_and_grad(x, upstream, backend="torch", **kw)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(native[0], reference[0], atol=tol, rtol=tol)
    torch.testing.assert_close(native[1], reference[1], atol=tol, rtol=tol)
    if kind == "tied":  # ties: the same elements receive the gradient
        assert torch.equal(native[1] != 0, reference[1] != 0)


@needs_native
@pytest.mark.parametrize("regularization", REGULARIZATIONS)
def test_native_equals_reference_on_a_row_with_scratch_from_huge_pages(regularization):
    """A row of 150000 float32 values sorts through 2.4 MiB of scratch, which comes from
    2 MiB-aligned memory advised as huge pages."""
    x = _inputs("heavy", n=150_000, rows=1, seed=7)[0].float()
    upstream = torch.randn_like(x)
    kw = {"strength": 0.2, "regularization": regularization}
    native = _values_and_grad(x, upstream, backend="native", **kw)
    reference = _values_and_grad(x, upstream, backend="torch", **kw)
    for a, b in zip(native, reference, strict=True):
        torch.testing.assert_close(a, b, **tol("float32_threads"))


@needs_native
@pytest.mark.parametrize("regularization", REGULARIZATIONS)
def test_native_results_do_not_depend_on_the_thread_count(regularization, threads):
    """Rows (4096, 8) are split among threads: values and gradients are bit-identical."""
    x = _inputs("heavy", n=8, rows=4096, seed=5).float()
    upstream = torch.randn_like(x)
    kw = {"backend": "native", "strength": 0.3, "regularization": regularization}
    results = []
    for count in (1, 2, 3):
        threads(count)
        results.append(_values_and_grad(x, upstream, **kw))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    x = _inputs("random").to(dtype)
    out = aot_loss.soft_sort(x, strength=0.5)
    assert out.dtype == dtype
    torch.testing.assert_close(out, aot_loss.soft_sort(x.float(), strength=0.5).to(dtype), **tol("exact"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_keeps_its_precision_on_long_rows(backend):
    """torchsort offsets by (n - i) / strength in the input dtype; _pav works relative to blocks."""
    x = _inputs("random", n=5000, rows=1)[0] * 20
    exact = aot_loss.soft_sort(x, strength=0.1, backend="torch")
    out = aot_loss.soft_sort(x.float(), strength=0.1, backend=backend)
    assert (out.double() - exact).abs().max() < 1e-4  # float32 rounding of values of size ~100


@given(samples(min_size=1, max_size=12), st.sampled_from([0.1, 1.0, 5.0]), st.sampled_from(REGULARIZATIONS))
def test_properties_sorted_permutation_invariant_shift_equivariant(x, strength, regularization):
    t = torch.from_numpy(x)
    out = aot_loss.soft_sort(t, strength=strength, regularization=regularization)
    assert (out.diff() >= -1e-9).all()  # ascending
    perm = torch.randperm(t.numel())
    torch.testing.assert_close(
        aot_loss.soft_sort(t[perm], strength=strength, regularization=regularization), out
    )
    shifted = aot_loss.soft_sort(t + 3.25, strength=strength, regularization=regularization)
    torch.testing.assert_close(shifted, out + 3.25)
    if regularization == "l2":  # blocks keep their means
        torch.testing.assert_close(out.sum(), t.sum())


def test_nan_sorts_last_and_leaves_the_rest():
    x = torch.tensor([3.0, float("nan"), -1.0, 40.0, 2.0])
    out = aot_loss.soft_sort(x, strength=0.5)
    assert torch.isnan(out[-1])
    torch.testing.assert_close(out[:-1], aot_loss.soft_sort(x[~torch.isnan(x)], strength=0.5))


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_infinity_pools_the_whole_row_with_l2(backend):
    inf = float("inf")
    for x, expected in (([1.0, inf, 0.0], inf), ([1.0, -inf, 0.0], -inf)):
        out = aot_loss.soft_sort(torch.tensor(x), strength=0.5, backend=backend)
        assert torch.equal(out, torch.full((3,), expected))
    assert torch.isnan(aot_loss.soft_sort(torch.tensor([inf, 0.0, -inf]), backend=backend)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_kl_infinities_follow_the_soft_minimum(backend):
    """KL pools a block to a soft minimum, which +inf does not move and -inf takes over:
    +inf values come out as huge finite ones would, and -inf makes the whole row -inf."""
    inf, kw = float("inf"), {"strength": 0.3, "regularization": "kl", "backend": backend}
    x = torch.tensor([1.0] * 60 + [inf] * 60, dtype=torch.float64)
    out = aot_loss.soft_sort(x, **kw)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, aot_loss.soft_sort(x.nan_to_num(posinf=1e6), **kw))
    y = torch.tensor([-inf, 1.0, -inf, 2.0, inf], dtype=torch.float64)
    assert torch.equal(aot_loss.soft_sort(y, **kw), torch.full((5,), -inf, dtype=torch.float64))


def test_double_backward_is_refused():
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    y = aot_loss.soft_sort(x, strength=0.5)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_func_transforms_are_refused_clearly(backend):
    x = torch.randn(3, 6, dtype=torch.float64)
    match = r"does not run under torch.func transforms \(grad, vmap, jacrev, ...\); use torch.autograd"
    with pytest.raises(RuntimeError, match=match):
        torch.func.grad(lambda row: aot_loss.soft_sort(row, backend=backend).pow(2).sum())(x[0])
    with pytest.raises(RuntimeError, match=match):
        torch.func.vmap(lambda row: aot_loss.soft_sort(row, backend=backend))(x)
    with pytest.raises(RuntimeError, match=match):
        torch.func.grad(lambda u: aot_loss.unpaired(u, x[1], sort="soft", soft_backend=backend))(x[0])


def test_opcheck():
    for regularization in REGULARIZATIONS:
        x = _inputs("heavy", n=12, rows=2).requires_grad_()
        torch.library.opcheck(torch.ops.aot_loss.soft_sort.default, (x, 0.3, regularization))
        _, state = torch.ops.aot_loss.soft_sort.default(x.detach(), 0.3, regularization)
        grad = torch.randn_like(x)
        torch.library.opcheck(
            torch.ops.aot_loss.soft_sort_backward.default, (grad, x.detach(), state, regularization)
        )


def test_compile_fullgraph():
    torch.compiler.reset()
    x = _inputs("heavy", n=16, rows=2)
    upstream = torch.randn_like(x)

    def fn(t):
        return aot_loss.soft_sort(t, strength=0.3) * 2

    eager = _values_and_grad_fn(fn, x, upstream)
    compiled = _values_and_grad_fn(torch.compile(fn, fullgraph=True, backend="aot_eager"), x, upstream)
    torch.testing.assert_close(compiled[0], eager[0])
    torch.testing.assert_close(compiled[1], eager[1])
    torch.compiler.reset()


def _values_and_grad_fn(fn, x, upstream):
    x = x.detach().clone().requires_grad_()
    out = fn(x)
    out.backward(upstream)
    return out.detach(), x.grad


# The losses with sort="soft"


def _soft(t, strength=0.1):
    return aot_loss.soft_sort(t, strength=strength)


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("loss", ["logistic", "squared_hinge", "least_squares", "hinge"])
def test_unpaired_soft_equals_the_loss_on_soft_sorted_inputs(loss, backend):
    u = (torch.randn(24, dtype=torch.float64) * 30).requires_grad_()
    v = (torch.randn(24, dtype=torch.float64) * 30).requires_grad_()
    ours = aot_loss.unpaired(u, v, loss=loss, beta=0.2, sort="soft", backend=backend)
    by_hand = aot_loss.unpaired(_soft(u), _soft(v), loss=loss, beta=0.2, backend="torch")
    torch.testing.assert_close(ours, by_hand)
    g_ours = torch.autograd.grad(ours, (u, v))
    g_hand = torch.autograd.grad(by_hand, (u, v))
    for a, b in zip(g_ours, g_hand, strict=True):
        torch.testing.assert_close(a, b)


def test_soft_loss_equals_trl_listing_on_soft_sorted_values():
    """The paper's listing: delta = soft_sort(u) - soft_sort(v), no re-sort, mean of costs."""
    u, v = torch.randn(16, dtype=torch.float64) * 40, torch.randn(16, dtype=torch.float64) * 40
    delta = _soft(u, 0.1) - _soft(v, 0.1)
    listing = (-torch.nn.functional.logsigmoid(0.05 * delta)).mean()
    torch.testing.assert_close(aot_loss.unpaired(u, v, beta=0.05, sort="soft"), listing)


def test_paired_soft_and_modules():
    pc, pr, rc, rr = (torch.randn(3, 10, dtype=torch.float64) * 20 for _ in range(4))
    pc.requires_grad_()
    got = aot_loss.paired(pc, pr, rc, rr, beta=0.1, sort="soft", soft_strength=0.3, reduction="none")
    want = aot_loss.unpaired(_soft(pc - pr, 0.3), _soft(rc - rr, 0.3), beta=0.1, reduction="none")
    torch.testing.assert_close(got, want)
    module = aot_loss.PairedAOTLoss(beta=0.1, sort="soft", soft_strength=0.3, reduction="none")
    torch.testing.assert_close(module(pc, pr, rc, rr), got)
    assert "sort='soft', soft_strength=0.3" in repr(module)
    unpaired_module = aot_loss.UnpairedAOTLoss(sort="soft")
    torch.testing.assert_close(unpaired_module(pc[0], pr[0]), aot_loss.unpaired(pc[0], pr[0], sort="soft"))


def test_soft_unequal_sizes_couple_the_soft_sorted_samples_on_the_merged_grid():
    u, v = torch.randn(9, dtype=torch.float64) * 25, torch.randn(4, dtype=torch.float64) * 25
    got = aot_loss.unpaired(u, v, loss="squared_hinge", beta=0.5, sort="soft")
    want = aot_loss.unpaired(_soft(u), _soft(v), loss="squared_hinge", beta=0.5)
    torch.testing.assert_close(got, want)


def test_soft_with_a_tiny_strength_is_the_hard_loss():
    u, v = torch.randn(20, dtype=torch.float64) * 5, torch.randn(20, dtype=torch.float64) * 5
    torch.testing.assert_close(
        aot_loss.unpaired(u, v, beta=0.3, sort="soft", soft_strength=1e-6), aot_loss.unpaired(u, v, beta=0.3)
    )


@pytest.mark.parametrize("soft_backend", [pytest.param("native", marks=needs_native), "torch"])
def test_soft_backend_is_used(soft_backend):
    u, v = torch.randn(30) * 20, torch.randn(30) * 20
    got = aot_loss.unpaired(u, v, sort="soft", soft_backend=soft_backend)
    torch.testing.assert_close(got, aot_loss.unpaired(_soft(u), _soft(v)))


def test_soft_loss_compiles_fullgraph():
    torch.compiler.reset()
    u, v = torch.randn(12) * 20, torch.randn(12) * 20

    def fn(a, b):
        return aot_loss.unpaired(a, b, beta=0.1, sort="soft")

    ua, va = u.clone().requires_grad_(), v.clone().requires_grad_()
    eager = fn(ua, va)
    eager.backward()
    uc, vc = u.clone().requires_grad_(), v.clone().requires_grad_()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")(uc, vc)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(uc.grad, ua.grad)
    torch.testing.assert_close(vc.grad, va.grad)
    torch.compiler.reset()
