"""The fused op ``aot_loss::dominance``: native kernel equals the torch path, op registration
(opcheck, gradcheck, compile) and the backend switch.

Tests marked ``needs_native`` skip in a pure install; CI runs the suite a second time with
the library built (``AOT_LOSS_BUILD_EXT=1 pip install --no-build-isolation -e .``).
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from optional import needs_native
from oracles import BUILTIN_COSTS
from strategies import betas, costs, samples, weights_for
from tolerances import tol

import aot_loss
from aot_loss.ops import dominance as dominance_op
from aot_loss.ops import native

f32, f64 = torch.float32, torch.float64

# The sizes at which the CPU kernel changes algorithm, as the library exports them: the sort
# ranks up to rank_sort_max values, radix-sorts float32 with 8-bit digits below
# wide_radix_min and 11-bit digits from it; rows longer than chunk values are split into
# chunks that run on several threads. The cases cross each. (Without the library the
# tests that read them skip; the placeholders only let them be collected.)
TIERS = native.STATUS.facts.get("tiers") or {"rank_sort_max": 64, "wide_radix_min": 4096, "chunk": 32768}
RANK, WIDE, CHUNK = TIERS["rank_sort_max"], TIERS["wide_radix_min"], TIERS["chunk"]

# (shape of u, shape of v, weighted)
SHAPES = {
    "pairs_rank_sort": ((7,), (7,), False),
    "pairs_rank_sort_largest": ((RANK,), (RANK,), False),
    "pairs_radix": ((RANK + 1,), (RANK + 1,), False),
    "pairs_radix_11_bit": ((WIDE,), (WIDE,), False),
    "pairs_parallel_chunks": ((2 * CHUNK + 4464,), (2 * CHUNK + 4464,), False),
    "merged_parallel_chunks": ((2 * CHUNK + 4464,), (CHUNK + 7232,), False),
    "weighted_parallel_chunks": ((2 * CHUNK + 4464,), (2 * CHUNK + 464,), True),
    "unequal": ((49,), (23,), False),
    "weighted": ((64,), (50,), True),
    "rows": ((5, 33), (5, 33), False),
    "rows_unequal_weighted": ((4, 40), (4, 17), True),
}


def _problem(shape_u, shape_v, weighted, dtype):
    u = (torch.randn(shape_u, dtype=f64) * 3).to(dtype).requires_grad_()
    v = (torch.randn(shape_v, dtype=f64) * 3).to(dtype).requires_grad_()
    wu = torch.rand(shape_u, dtype=dtype) if weighted else None
    wv = torch.rand(shape_v, dtype=dtype) if weighted else None
    return u, v, wu, wv


def _loss_and_grads_with(fn, u, v):
    """fn(u, v) on fresh leaf copies, and the gradients of its sum."""
    u, v = u.detach().clone().requires_grad_(), v.detach().clone().requires_grad_()
    loss = fn(u, v)
    loss.sum().backward()
    return loss.detach(), u.grad, v.grad


def _loss_and_grads(backend, u, v, wu, wv, **options):
    return _loss_and_grads_with(
        lambda a, b: aot_loss.unpaired(a, b, pos_weights=wu, neg_weights=wv, backend=backend, **options), u, v
    )


def _tolerance(dtype):
    if dtype == f64:
        return {"rtol": 1e-10, "atol": 1e-12}
    # Both paths sum masses in float64; float32 products and sums of costs still round apart.
    return {"rtol": 2e-5, "atol": 1e-6}


@needs_native
@pytest.mark.parametrize("loss", BUILTIN_COSTS)
@pytest.mark.parametrize("case", SHAPES)
@pytest.mark.parametrize("dtype", [f32, f64])
def test_native_equals_torch(loss, case, dtype):
    u, v, wu, wv = _problem(*SHAPES[case], dtype)
    options = {"loss": loss, "beta": 0.7, "label_smoothing": 0.2 if loss == "logistic" else 0.0}
    for reduction in ("mean", "sum") + (("none",) if u.dim() == 2 else ()):
        native = _loss_and_grads("native", u, v, wu, wv, reduction=reduction, **options)
        torch_path = _loss_and_grads("torch", u, v, wu, wv, reduction=reduction, **options)
        for a, b in zip(native, torch_path, strict=True):
            assert a.dtype == b.dtype
            torch.testing.assert_close(a, b, **_tolerance(dtype))


@needs_native
@pytest.mark.parametrize(
    "case",
    [
        ((1024, 16), (1024, 16), False),  # many short rows: several chunks of rows
        ((300, 21), (300, 11), True),  # merged grids, row by row
        ((70_000,), (70_000,), False),  # one long row coupled in chunks of pairs
        ((70_000,), (40_000,), False),  # ... in chunks of cells
        ((70_000,), (66_000,), True),  # ... and of weighted levels and their counts
    ],
)
def test_native_results_do_not_depend_on_the_thread_count(case, threads):
    """Rows are split among threads and one long row is summed in chunks of a fixed size: the
    loss and gradients are bit-identical whatever the number of threads."""
    u, v, wu, wv = _problem(*case, f32)
    results = []
    for count in (1, 2, 3):
        threads(count)
        results.append(_loss_and_grads("native", u, v, wu, wv, beta=0.5))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)


@needs_native
@pytest.mark.parametrize(
    "n, m, weighted, dtype",
    [(150_000, 150_000, False, f32), (150_000, 140_000, True, f32), (150_000, 150_000, False, f64)],
)
def test_native_equals_torch_with_scratch_from_huge_pages(n, m, weighted, dtype):
    """Scratch blocks of 2 MiB or more (sort buffers, sorted copies, levels, cells) come
    2 MiB-aligned and advised as huge pages: rows this long take that path."""
    u, v, wu, wv = _problem((n,), (m,), weighted, dtype)
    native = _loss_and_grads("native", u, v, wu, wv, beta=0.5)
    torch_path = _loss_and_grads("torch", u, v, wu, wv, beta=0.5)
    for a, b in zip(native, torch_path, strict=True):
        torch.testing.assert_close(a, b, **_tolerance(dtype))


@needs_native
@pytest.mark.parametrize(
    "n, m, weighted", [(70_000, 70_000, False), (70_000, 40_000, False), (70_000, 66_000, True)]
)
def test_native_long_row_alone_equals_the_same_row_in_a_batch(n, m, weighted):
    """One row alone is coupled in parallel chunks, a row of a batch on one thread: the same
    chunks, summed in the same order, give the same bits."""
    u, v, wu, wv = _problem((2, n), (2, m), weighted, f32)
    batch = dominance_op.dominance(u.detach(), v.detach(), wu, wv, "logistic", 0.3, 0.1, True)
    first = (wu[0] if weighted else None, wv[0] if weighted else None)
    alone = dominance_op.dominance(u.detach()[0], v.detach()[0], *first, "logistic", 0.3, 0.1, True)
    for a, b in zip(alone, batch, strict=True):
        assert torch.equal(a, b[0])


@needs_native
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_native_half_inputs_are_upcast(dtype):
    u, v = torch.randn(40).to(dtype), torch.randn(40).to(dtype)
    native = _loss_and_grads("native", u, v, None, None, beta=0.5)
    torch_path = _loss_and_grads("torch", u, v, None, None, beta=0.5)
    assert native[0].dtype == f32 and native[1].dtype == dtype
    for a, b in zip(native, torch_path, strict=True):
        torch.testing.assert_close(a, b)


@needs_native
@pytest.mark.parametrize("n", [10, RANK, RANK + 1, 200, WIDE])  # every tier of the sort
@pytest.mark.parametrize("dtype", [f32, f64])
def test_ties_send_gradient_to_the_same_elements(n, dtype):
    """Stable sorts on both paths: tied values (including -0.0 == 0.0) keep input order."""
    values = torch.tensor([0.0, -0.0, 1.0, -1.0, 2.0], dtype=dtype)
    u = values[torch.randint(0, 5, (n,))]
    v = values[torch.randint(0, 5, (n,))] * 0.5
    for loss in BUILTIN_COSTS:
        native = _loss_and_grads("native", u, v, None, None, loss=loss, beta=0.3)
        torch_path = _loss_and_grads("torch", u, v, None, None, loss=loss, beta=0.3)
        for a, b in zip(native, torch_path, strict=True):
            torch.testing.assert_close(a, b, **({"rtol": 1e-12, "atol": 1e-15} if dtype == f64 else {}))
            assert torch.equal(a != 0, b != 0)


@needs_native
@settings(max_examples=150, deadline=None)
@given(
    u=samples(max_size=150),
    v=samples(max_size=150),
    loss=costs,
    beta=betas,
    weighted=st.booleans(),
    double=st.booleans(),
    data=st.data(),
)
def test_native_equals_torch_on_grids_with_ties(u, v, loss, beta, weighted, double, data):
    """Samples of grid values, so ties within and across U and V are common, from 1 to 150
    values (the rank sort up to 64, radix sort beyond): loss and gradients as on the torch
    path, and the gradient reaches the same elements."""
    dtype = f64 if double else f32
    wu = torch.from_numpy(data.draw(weights_for(len(u)))).to(dtype) if weighted else None
    wv = torch.from_numpy(data.draw(weights_for(len(v)))).to(dtype) if weighted else None
    u_t, v_t = torch.from_numpy(u).to(dtype), torch.from_numpy(v).to(dtype)
    options = {"loss": loss, "beta": beta}
    native = _loss_and_grads("native", u_t, v_t, wu, wv, **options)
    torch_path = _loss_and_grads("torch", u_t, v_t, wu, wv, **options)
    for a, b in zip(native, torch_path, strict=True):
        torch.testing.assert_close(a, b, **_tolerance(dtype))
    if not weighted and dtype == f64:  # float32 rounding may zero a slope on one path only
        for a, b in zip(native[1:], torch_path[1:], strict=True):
            assert torch.equal(a != 0, b != 0)


@needs_native
@pytest.mark.parametrize("repeat", [1, 25, 1250])  # 4, 100 and 5000 values: every tier of the sort
def test_nan_and_inf_behave_like_the_torch_path(repeat):
    u = torch.tensor([1.0, float("nan"), -2.0, 0.5]).repeat(repeat)
    v = torch.tensor([0.0, 1.0, float("inf"), -1.0]).repeat(repeat)
    assert torch.isnan(aot_loss.unpaired(u, v, backend="native"))
    assert torch.isnan(aot_loss.unpaired(u, v, backend="torch"))
    finite = torch.tensor([1.0, 0.0, -2.0, 0.5]).repeat(repeat)
    both = [aot_loss.unpaired(finite, v, loss="hinge", backend=b) for b in ("native", "torch")]
    torch.testing.assert_close(both[0], both[1])
    for loss in BUILTIN_COSTS:  # gradients too, NaN where the torch path has NaN
        for m in (4 * repeat, 3 * repeat):
            native = _loss_and_grads("native", u, v[:m], None, None, loss=loss, beta=0.5)
            torch_path = _loss_and_grads("torch", u, v[:m], None, None, loss=loss, beta=0.5)
            for a, b in zip(native, torch_path, strict=True):
                torch.testing.assert_close(a, b, equal_nan=True)


@needs_native
def test_paired_native_equals_torch():
    pc, pr, rc, rr = (torch.randn(33, dtype=f64) for _ in range(4))
    w = torch.rand(33, dtype=f64)

    def paired(backend, weights):
        return lambda a, b: aot_loss.paired(a, b, rc, rr, beta=0.4, weights=weights, backend=backend)

    for weights in (None, w):
        native = _loss_and_grads_with(paired("native", weights), pc, pr)
        torch_path = _loss_and_grads_with(paired("torch", weights), pc, pr)
        for x, y in zip(native, torch_path, strict=True):
            torch.testing.assert_close(x, y, **tol("float64_sums"))


@needs_native
def test_module_backend_native():
    criterion = aot_loss.UnpairedAOTLoss(loss="hinge", beta=0.3, backend="native")
    assert "backend='native'" in repr(criterion)
    u, v = torch.randn(12), torch.randn(9)
    torch.testing.assert_close(
        criterion(u, v), aot_loss.unpaired(u, v, loss="hinge", beta=0.3, backend="torch")
    )


def _sample_inputs():
    g = torch.Generator().manual_seed(3)
    u, v = torch.randn(9, generator=g, dtype=f64), torch.randn(6, generator=g, dtype=f64)
    rows_u, rows_v = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    return [
        (u.clone().requires_grad_(), v.clone().requires_grad_(), None, None, "logistic", 0.5, 0.1, True),
        (u, v, torch.rand(9, dtype=f64), torch.rand(6, dtype=f64), "squared_hinge", 0.5, 0.0, False),
        (rows_u.requires_grad_(), rows_v, None, None, "hinge", 0.2, 0.0, True),
        (rows_u.detach(), rows_v, torch.rand(3, 8), torch.rand(3, 8), "least_squares", 1.0, 0.0, True),
    ]


@pytest.mark.parametrize("index", range(4))
def test_opcheck(index):
    """Schema, fake kernel, autograd registration and AOT dispatch (native or composite)."""
    torch.library.opcheck(torch.ops.aot_loss.dominance.default, _sample_inputs()[index])


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
def test_op_gradcheck(loss):
    """The op's saved gradients, through its registered autograd formula, on every kernel."""
    u = (torch.randperm(20)[:7].to(f64) * 0.3).requires_grad_()
    v = (torch.randperm(20)[:5].to(f64) * 0.3 + 0.01).requires_grad_()
    w = torch.rand(7, dtype=f64) + 0.1

    def cost(a, b):
        return torch.ops.aot_loss.dominance(a, b, w, None, loss, 0.8, 0.0, True)[0]

    assert torch.autograd.gradcheck(cost, (u, v))


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
def test_composite_kernel_equals_the_torch_path(loss):
    """The op's default kernel (used wherever no native kernel is registered) is exact too."""
    u, v = torch.randn(4, 11, dtype=f64), torch.randn(4, 6, dtype=f64)
    wu = torch.rand(4, 11, dtype=f64)
    cost, grad_u, grad_v = dominance_op._dominance_torch(u, v, wu, None, loss, 0.6, 0.0, True)
    a, b = u.clone().requires_grad_(), v.clone().requires_grad_()
    expected = aot_loss.unpaired(a, b, loss=loss, beta=0.6, pos_weights=wu, reduction="none", backend="torch")
    expected.sum().backward()
    torch.testing.assert_close(cost, expected.detach())
    torch.testing.assert_close(grad_u, a.grad)
    torch.testing.assert_close(grad_v, b.grad)


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
def test_composite_kernel_nan_gradients_equal_the_torch_path(loss):
    u = torch.tensor([1.0, float("nan"), -2.0, 0.5], dtype=f64)
    v = torch.tensor([0.0, 1.0, float("nan")], dtype=f64)
    _, grad_u, grad_v = dominance_op._dominance_torch(u, v, None, None, loss, 0.5, 0.0, True)
    expected = _loss_and_grads("torch", u, v, None, None, loss=loss, beta=0.5)
    torch.testing.assert_close(grad_u, expected[1], equal_nan=True)
    torch.testing.assert_close(grad_v, expected[2], equal_nan=True)


@needs_native
def test_compile_fullgraph_native():
    torch.compiler.reset()
    fn = torch.compile(
        lambda a, b: aot_loss.unpaired(a, b, beta=0.5, backend="native"), fullgraph=True, backend="aot_eager"
    )
    u, v = torch.randn(10), torch.randn(7)
    compiled = _loss_and_grads_with(fn, u, v)
    eager = _loss_and_grads_with(lambda a, b: aot_loss.unpaired(a, b, beta=0.5, backend="native"), u, v)
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a, b)
    torch.compiler.reset()


@needs_native
def test_auto_routes_what_native_does_not_serve_to_torch():
    u, v = torch.randn(6, dtype=f64), torch.randn(4, dtype=f64)
    wu = torch.rand(6, dtype=f64).requires_grad_()
    loss = aot_loss.unpaired(u, v, pos_weights=wu)  # differentiable weights: torch path
    loss.backward()
    assert wu.grad is not None and wu.grad.abs().sum() > 0
    cells = aot_loss.unpaired(u, v, reduction="none")  # 1-D 'none': torch path
    assert cells.shape == (10,)
    custom = aot_loss.unpaired(u, v, loss=lambda d: (1 - d).square())
    torch.testing.assert_close(custom, aot_loss.unpaired(u, v, loss="least_squares", beta=1.0))


@needs_native
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss": lambda d: d.abs()}, "callable loss needs backend='torch'"),
        ({"reduction": "none"}, "reduction='none' on 1-D inputs"),
        ({"pos_weights": torch.ones(5, requires_grad=True)}, "differentiable weights"),
    ],
)
def test_native_refuses_what_it_does_not_serve(kwargs, match):
    with pytest.raises(ValueError, match=match):
        aot_loss.unpaired(torch.randn(5), torch.randn(5), backend="native", **kwargs)


@needs_native
def test_torch_func_transforms_run_on_the_torch_path():
    """torch.func.grad differentiates the backward (create_graph=True), which the op refuses,
    so 'auto' sends transformed calls to torch; they agree with the op's eager results."""
    u, v = torch.randn(7, dtype=f64), torch.randn(5, dtype=f64)
    leaf = u.clone().requires_grad_()
    aot_loss.unpaired(leaf, v, beta=0.5).backward()  # eager: the native op
    torch.testing.assert_close(torch.func.grad(lambda x: aot_loss.unpaired(x, v, beta=0.5))(u), leaf.grad)
    rows = torch.randn(3, 7, dtype=f64)
    per_row = torch.func.vmap(lambda x: aot_loss.unpaired(x, v, beta=0.5))(rows)
    torch.testing.assert_close(per_row, aot_loss.unpaired(rows, v.expand(3, 5), beta=0.5, reduction="none"))
    pc, pr, rc, rr = torch.randn(4, 6, dtype=f64)
    jacobian = torch.func.jacrev(lambda x, y: aot_loss.paired(x, y, rc, rr, loss="least_squares"), (0, 1))(
        pc, pr
    )
    leaves = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    aot_loss.paired(*leaves, rc, rr, loss="least_squares").backward()
    torch.testing.assert_close(jacobian, (leaves[0].grad, leaves[1].grad))


@needs_native
def test_native_refuses_torch_func_transforms():
    v = torch.randn(5)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return aot_loss.unpaired(x, v, backend="native")

    for transform, x in ((torch.func.grad, torch.randn(5)), (torch.func.vmap, torch.randn(3, 5))):
        with pytest.raises(RuntimeError, match=r"backend='native' does not run under torch.func transforms"):
            transform(loss)(x)


@needs_native
def test_double_backward_through_native_raises():
    u = torch.randn(6, requires_grad=True)
    loss = aot_loss.unpaired(u, torch.randn(6), backend="native")
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, u, create_graph=True)


def test_double_backward_on_the_torch_path():
    u = torch.randn(6, dtype=f64, requires_grad=True)
    v = torch.randn(6, dtype=f64)
    loss = aot_loss.unpaired(u, v, beta=1.0, backend="torch")
    (grad,) = torch.autograd.grad(loss, u, create_graph=True)
    (hess_diag,) = torch.autograd.grad(grad.sum(), u)
    # d^2/du_k^2 of mean softplus(-(u_(i) - v_(i))) is sigmoid(d) sigmoid(-d) / n at u_k's pair.
    u_sorted, perm = u.detach().sort()
    d = u_sorted - v.sort().values
    expected = torch.empty_like(d).scatter_(0, perm, torch.sigmoid(d) * torch.sigmoid(-d) / 6)
    torch.testing.assert_close(hess_diag, expected)


def test_native_unavailable(monkeypatch):
    monkeypatch.setattr(native, "STATUS", native.NativeStatus(False, "not built (build it with: X)"))
    u, v = torch.randn(5), torch.randn(5)
    with pytest.raises(RuntimeError, match=r"unavailable: the native library is not built \(build it with"):
        aot_loss.unpaired(u, v, backend="native")
    torch.testing.assert_close(aot_loss.unpaired(u, v), aot_loss.unpaired(u, v, backend="torch"))


def test_native_wrong_device(monkeypatch):
    monkeypatch.setattr(native, "STATUS", native.NativeStatus(True, "", ops={"dominance": ("cuda",)}))
    with pytest.raises(RuntimeError, match="no kernel for device 'cpu'"):
        aot_loss.unpaired(torch.randn(5), torch.randn(5), backend="native")


@needs_native
@pytest.mark.parametrize(
    ("args", "match"),
    [
        (
            (torch.ones(3, dtype=torch.int32), torch.ones(3, dtype=torch.int32)),
            "serves float32 and float64 only",
        ),
        ((torch.ones(3), torch.ones(3, dtype=f64)), "v must have the dtype of u"),
        ((torch.ones(3), torch.ones(2, 3)), "v must have the number of dimensions of u"),
    ],
)
def test_cpu_kernel_rejects_bad_operands(args, match):
    with pytest.raises(RuntimeError, match=match):
        torch.ops.aot_loss.dominance(*args, None, None, "logistic", 0.1, 0.0, False)


@needs_native
def test_cpu_kernel_rejects_an_unknown_cost():
    with pytest.raises(RuntimeError, match="unknown cost 'cubic'"):
        torch.ops.aot_loss.dominance(torch.ones(3), torch.ones(3), None, None, "cubic", 0.1, 0.0, False)
