"""CUDA: same values and gradients as on CPU, same tie handling, no host synchronisation;
and the native CUDA kernels against the torch path on the GPU.

Skipped cleanly when no CUDA device is present.
"""

import re
import subprocess
import sys

import pytest
import torch
from oracles import BUILTIN_COSTS
from strategies import spread
from tolerances import tol

import aot_loss
from aot_loss.ops import native

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _both(fn, *tensors):
    """Value and gradients of fn on CPU and on CUDA."""
    results = []
    for device in ("cpu", "cuda"):
        xs = [t.detach().to(device).requires_grad_(t.requires_grad) for t in tensors]
        out = fn(*xs)
        out.sum().backward()
        results.append((out.cpu(), [x.grad.cpu() if x.grad is not None else None for x in xs]))
    return results


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
@pytest.mark.parametrize(("n", "m"), [(64, 64), (100, 37), (5000, 3000), (70000, 70000)])
def test_cuda_matches_cpu(loss, n, m):
    u, v = torch.randn(n, dtype=torch.float64, requires_grad=True), torch.randn(m, dtype=torch.float64)
    (cpu, cpu_grads), (gpu, gpu_grads) = _both(lambda a, b: aot_loss.unpaired(a, b, loss=loss), u, v)
    torch.testing.assert_close(gpu, cpu)
    torch.testing.assert_close(gpu_grads[0], cpu_grads[0])


def test_cuda_weighted_rows_match_cpu():
    u, v = torch.randn(4, 300, requires_grad=True), torch.randn(4, 200)
    w = torch.rand(4, 300)
    fn = lambda a, b, c: aot_loss.unpaired(a, b, pos_weights=c, reduction="none")  # noqa: E731
    (cpu, cpu_grads), (gpu, gpu_grads) = _both(fn, u, v, w)
    torch.testing.assert_close(gpu, cpu, **tol("float32_paths"))
    torch.testing.assert_close(gpu_grads[0], cpu_grads[0], **tol("float32_paths"))


@pytest.mark.parametrize("n", [8, 3000, 50000])
def test_ties_send_gradients_to_the_same_elements_as_on_cpu(n):
    u = (torch.randint(0, 5, (n,)).double() / 2).requires_grad_()
    v = torch.randn(n, dtype=torch.float64)
    fn = lambda a, b: aot_loss.unpaired(a, b, loss="squared_hinge", beta=1.0)  # noqa: E731
    (_, cpu_grads), (_, gpu_grads) = _both(fn, u, v)
    torch.testing.assert_close(gpu_grads[0], cpu_grads[0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_is_computed_in_float32(dtype):
    u, v = torch.randn(256, device="cuda", dtype=dtype), torch.randn(256, device="cuda", dtype=dtype)
    out = aot_loss.paired(u, v, v, u)
    assert out.dtype == torch.float32 and out.device.type == "cuda"


# torch warns that the sync debug mode is a prototype; the warning is raised after the mode is
# set, so the mode is switched on inside the try that switches it off again.
@pytest.mark.filterwarnings("ignore:Synchronization debug mode is a prototype")
def test_default_path_never_synchronises():
    u = torch.randn(1000, device="cuda", requires_grad=True)
    v = torch.randn(700, device="cuda")
    try:
        torch.cuda.set_sync_debug_mode("error")
        aot_loss.unpaired(u, v).backward()
        aot_loss.paired(u, u * 2, u.detach(), u.detach()).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("weighted", [False, True])
def test_cuda_metrics_match_cpu(weighted):
    from aot_loss import metrics

    u, v = torch.randn(3, 500, dtype=torch.float64), torch.randn(3, 333, dtype=torch.float64)
    kw = {"u_weights": torch.rand(3, 500, dtype=torch.float64)} if weighted else {}
    gpu_kw = {k: w.cuda() for k, w in kw.items()}
    for metric in (metrics.fsd_violation, metrics.fsd_violation_ratio, metrics.ot_violation):
        torch.testing.assert_close(metric(u.cuda(), v.cuda(), **gpu_kw).cpu(), metric(u, v, **kw))
    gpu_curves = metrics.quantile_curves(u.cuda(), v.cuda(), 77, **gpu_kw)
    for got, expected in zip(gpu_curves, metrics.quantile_curves(u, v, 77, **kw), strict=True):
        torch.testing.assert_close(got.cpu(), expected)


@pytest.mark.parametrize("regularization", ["l2", "kl"])
@pytest.mark.parametrize("shape", [(64,), (3, 1000), (100000,)])
def test_cuda_soft_sort_matches_cpu(shape, regularization):
    x = (torch.randn(*shape, dtype=torch.float64) * 20).requires_grad_()
    (cpu, cpu_grads), (gpu, gpu_grads) = _both(
        lambda t: (
            aot_loss.soft_sort(t, strength=0.1, regularization=regularization)
            * torch.arange(t.shape[-1], device=t.device)
        ),
        x,
    )
    torch.testing.assert_close(gpu, cpu)
    torch.testing.assert_close(gpu_grads[0], cpu_grads[0])


def test_cuda_soft_loss_matches_cpu():
    u, v = torch.randn(256, requires_grad=True), torch.randn(256)
    (cpu, cpu_grads), (gpu, gpu_grads) = _both(
        lambda a, b: aot_loss.unpaired(a * 30, b * 30, beta=0.1, sort="soft"), u, v
    )
    torch.testing.assert_close(gpu, cpu)
    torch.testing.assert_close(gpu_grads[0], cpu_grads[0])


# The native CUDA kernels (built with AOT_LOSS_BUILD_EXT=1 AOT_LOSS_BUILD_CUDA=1).
needs_cuda_native = pytest.mark.skipif(
    "cuda" not in aot_loss.info().ops.get("dominance", ()),
    reason="needs the native CUDA kernels: AOT_LOSS_BUILD_EXT=1 AOT_LOSS_BUILD_CUDA=1 "
    "pip install --no-build-isolation -e . against a CUDA build of torch",
)
f32, f64 = torch.float32, torch.float64

# The CUDA kernel's limits as the library exports them: rows of up to BLOCK values per sample
# run one thread block each, longer rows the grid-wide path, at most LONG_ROWS of them.
# (Without the library these tests skip; the placeholders only let them be collected.)
LIMITS = native.STATUS.limits or {"cuda_block_row": 4096, "cuda_max_long_rows": 65535}
BLOCK, LONG_ROWS = LIMITS["cuda_block_row"], LIMITS["cuda_max_long_rows"]

# (shape of u, shape of v, weighted): the block kernel (<= BLOCK per sample) and the long path
CUDA_SHAPES = {
    "block_pairs": ((64,), (64,), False),
    "block_one": ((1,), (1,), False),
    "block_unequal": ((100,), (37,), False),
    "block_weighted": ((300,), (200,), True),
    "block_rows": ((5, 33), (5, 33), False),
    "block_many_short_rows": ((1024, 16), (1024, 16), False),
    "block_largest": ((BLOCK,), (BLOCK,), False),
    "block_skewed": ((BLOCK,), (1,), False),
    "block_rows_unequal_weighted": ((4, 40), (4, 17), True),
    "long_pairs": ((70_000,), (70_000,), False),
    "long_unequal": ((5000,), (3000,), False),
    "long_weighted": ((6000,), (4500,), True),
    "long_rows": ((3, 5000), (3, BLOCK + 4), False),
    "long_rows_weighted": ((2, BLOCK + 1), (2, BLOCK + 1), True),
    # from 2^21 values per sample the gradients are un-sorted rather than scattered
    "unsort_pairs": ((2_100_000,), (2_100_000,), False),
    "unsort_unequal_weighted": ((2_097_152,), (2_000_001,), True),
}


def _native_vs_torch(u, v, wu, wv, **options):
    """Loss and gradients of both backends on the same CUDA tensors."""
    return [_run(backend, u, v, wu, wv, **options) for backend in ("native", "torch")]


@needs_cuda_native
@pytest.mark.parametrize("loss", BUILTIN_COSTS)
@pytest.mark.parametrize("case", CUDA_SHAPES)
@pytest.mark.parametrize("dtype", [f32, f64])
def test_cuda_native_equals_torch(loss, case, dtype):
    shape_u, shape_v, weighted = CUDA_SHAPES[case]
    u = (torch.randn(shape_u, dtype=f64) * 3).to(dtype).cuda()
    v = (torch.randn(shape_v, dtype=f64) * 3).to(dtype).cuda()
    wu = torch.rand(shape_u, dtype=dtype).cuda() if weighted else None
    wv = torch.rand(shape_v, dtype=dtype).cuda() if weighted else None
    options = {"loss": loss, "beta": 0.7, "label_smoothing": 0.2 if loss == "logistic" else 0.0}
    options["reduction"] = "none" if u.dim() == 2 else "mean"
    native = _run("native", u, v, wu, wv, **options)
    # The reference is the torch path in float64: in float32 its cumulative weights lose
    # about 1% of a cell's mass at 2^21 values, where the kernel's are float64.
    reference = _run("torch", *(t.to(f64) if t is not None else None for t in (u, v, wu, wv)), **options)
    if dtype == f64:
        # a cell's mass is a difference of cumulative weights (~1 / (n + m)) summed in another
        # order by CUB's scan than by torch: its rounding is relatively ~(n + m) eps
        tolerance = {"rtol": 1e-10, "atol": 1e-14 * (u.shape[-1] + v.shape[-1]) if weighted else 1e-12}
    else:
        tolerance = tol("float32_long_sums") if weighted else tol("float32_cuda")
    assert all(t.dtype == dtype and t.device.type == "cuda" for t in native)
    # gradients are O(1 / size): compared times the size, so that the tolerance means the same
    for got, expected, size in zip(native, reference, (1, u.shape[-1], v.shape[-1]), strict=True):
        torch.testing.assert_close(got.to(f64) * size, expected * size, **tolerance)


def _run(backend, u, v, wu, wv, **options):
    """Loss and gradients of one backend."""
    a, b = u.detach().clone().requires_grad_(), v.detach().clone().requires_grad_()
    loss = aot_loss.unpaired(a, b, pos_weights=wu, neg_weights=wv, backend=backend, **options)
    loss.sum().backward()
    return loss.detach(), a.grad, b.grad


@needs_cuda_native
@pytest.mark.parametrize(
    ("n", "m"), [(10, 10), (200, 200), (40, 17), (3000, 4096), (50_000, 50_000), (9000, 50)]
)
def test_cuda_native_ties_send_gradients_to_the_same_elements(n, m):
    values = torch.tensor([0.0, -0.0, 1.0, -1.0, 2.0], dtype=f64)
    u = values[torch.randint(0, 5, (n,))].cuda()
    v = (values[torch.randint(0, 5, (m,))] * 0.5).cuda()
    for loss in BUILTIN_COSTS:
        native, torch_path = _native_vs_torch(u, v, None, None, loss=loss, beta=0.3)
        for a, b in zip(native, torch_path, strict=True):
            torch.testing.assert_close(a, b, **tol("float64_elementwise"))
            assert torch.equal(a != 0, b != 0)


@needs_cuda_native
@pytest.mark.parametrize(("n", "m"), [(6, 6), (6, 4), (5000, 5000), (5000, 4200)])
def test_cuda_native_non_finite_values_match_the_torch_path(n, m):
    u, v = torch.randn(n, dtype=f64), torch.randn(m, dtype=f64)
    u[1], u[-1], v[2], v[0] = float("nan"), -float("inf"), float("inf"), float("nan")
    for loss in BUILTIN_COSTS:
        native, torch_path = _native_vs_torch(u.cuda(), v.cuda(), None, None, loss=loss, beta=0.5)
        for a, b in zip(native, torch_path, strict=True):
            torch.testing.assert_close(a, b, equal_nan=True)


@needs_cuda_native
@pytest.mark.parametrize("shape", [(300,), (8, 100), (100_000,)])
def test_cuda_native_repeats_bit_for_bit(shape):
    u, v = torch.randn(shape, device="cuda"), torch.randn(shape, device="cuda")
    w = torch.rand(shape, device="cuda")
    for weights in (None, w):
        runs = [_native_vs_torch(u, v, weights, None, reduction="sum")[0] for _ in range(2)]
        for a, b in zip(*runs, strict=True):
            assert torch.equal(a, b)


@needs_cuda_native
@pytest.mark.parametrize("shape", [(9,), (3, 8), (5000,)])
def test_cuda_native_opcheck(shape):
    u = torch.randn(shape, device="cuda", dtype=f64, requires_grad=True)
    v = torch.randn(shape, device="cuda", dtype=f64)
    w = torch.rand(shape, device="cuda", dtype=f64)
    for args in [(u, v, None, None, "logistic", 0.5, 0.1, True), (u, v, w, None, "hinge", 0.2, 0.0, True)]:
        torch.library.opcheck(torch.ops.aot_loss.dominance.default, args)


@needs_cuda_native
def test_cuda_native_gradcheck():
    u = (torch.randperm(20)[:7].to(f64) * 0.3).cuda().requires_grad_()
    v = (torch.randperm(20)[:5].to(f64) * 0.3 + 0.01).cuda().requires_grad_()
    w = (torch.rand(7, dtype=f64) + 0.1).cuda()
    for loss in BUILTIN_COSTS:

        def cost(a, b, loss=loss):
            return torch.ops.aot_loss.dominance(a, b, w, None, loss, 0.8, 0.0, True)[0]

        assert torch.autograd.gradcheck(cost, (u, v))


@needs_cuda_native
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    ("shape_u", "shape_v", "weighted"),
    [((3, 40), (3, 17), False), ((2, 5000), (2, 5000), False), ((50,), (50,), False), ((50,), (20,), True)],
)
def test_cuda_native_public_gradients_for_every_reduction(shape_u, shape_v, weighted, reduction):
    """gradcheck of the public loss on the native path: its Function reduces the row costs
    itself and folds the reduction's derivative into the backward."""
    if reduction == "none" and len(shape_u) == 1:
        pytest.skip("reduction='none' on 1-D inputs takes the torch path")
    u, v = spread(*shape_u, device="cuda"), spread(*shape_v, device="cuda")
    w = (torch.rand(shape_u, dtype=f64) + 0.1).cuda() if weighted else None

    def loss(a, b):
        return aot_loss.unpaired(a, b, beta=0.8, pos_weights=w, reduction=reduction, backend="native")

    assert torch.autograd.gradcheck(loss, (u, v), fast_mode=True)


@needs_cuda_native
def test_cuda_native_compile_fullgraph():
    torch.compiler.reset()
    u = torch.randn(2, 300, device="cuda", requires_grad=True)
    v = torch.randn(2, 200, device="cuda")
    fn = torch.compile(lambda a, b: aot_loss.unpaired(a, b, backend="native"), fullgraph=True)
    fn(u, v).backward()
    expected = u.detach().clone().requires_grad_()
    aot_loss.unpaired(expected, v, backend="torch").backward()
    torch.testing.assert_close(u.grad, expected.grad)


def _op_error(call):
    """stderr of `torch.ops.aot_loss.dominance(<call>)` run in a child process, which must
    end by the op's RuntimeError: a crash inside a native kernel (seen on the GPU machine
    before the build hid a statically linked libstdc++, docs/native.md) then fails this test,
    not the whole session."""
    code = f"import torch, aot_loss\ntorch.ops.aot_loss.dominance({call})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    failed = done.returncode == 1 and "RuntimeError" in done.stderr
    assert failed, f"exit {done.returncode}: {done.stderr[-800:]}"
    return done.stderr


ONES = "torch.ones(3, device='cuda')"


@needs_cuda_native
@pytest.mark.parametrize(
    ("operands", "match"),
    [
        ("torch.ones(3, device='cuda', dtype=torch.int32), " * 2, "serves float32 and float64 only"),
        (f"{ONES}, torch.ones(3, device='cuda', dtype=torch.float64), ", "v must have the dtype of u"),
        (f"{ONES}, torch.ones(2, 3, device='cuda'), ", "v must have the number of dimensions of u"),
        (f"{ONES}, {ONES}, ", "u_weights must be on the CUDA device of u"),  # CPU weights below
    ],
)
def test_cuda_kernel_rejects_bad_operands(operands, match):
    weights = "torch.ones(3), None" if "u_weights" in match else "None, None"
    assert re.search(match, _op_error(f"{operands}{weights}, 'logistic', 0.1, 0.0, False"))


@needs_cuda_native
def test_cuda_kernel_rejects_an_unknown_cost():
    assert "unknown cost 'cubic'" in _op_error(f"{ONES}, {ONES}, None, None, 'cubic', 0.1, 0.0, False")


@needs_cuda_native
def test_cuda_native_refuses_more_long_rows_than_the_grid_holds():
    u = torch.zeros(1, BLOCK + 1, device="cuda").expand(LONG_ROWS + 1, BLOCK + 1)  # no memory behind the rows
    with pytest.raises(
        ValueError, match=f"on CUDA serves at most {LONG_ROWS} rows of more than {BLOCK} values"
    ):
        aot_loss.unpaired(u, u, backend="native", reduction="none")
