"""The CUDA kernels' algorithms, run on the host.

The CUDA kernels keep their algorithms in torch-free headers of per-element functions:
``csrc/cuda/dominance_block.h`` (rows of up to 4096 values per sample: a bitonic sort of
U and V together, then pairs or the merged grid, as phases separated by barriers) and
``csrc/cuda/dominance_long.h`` (longer rows: the steps around CUB's segmented sort and
scan). ``tests/csrc/cuda_paths_host.cpp`` runs both on the host: the block phases serially in
both directions and on 8 threads that meet at barriers as a CUDA block's threads do, the long
path with a stable sort and a running sum standing in for CUB, its gradients scattered or
un-sorted. They must match the
torch path and the float64 oracle on every cost, size, weighting, row shape, tie and
non-finite value. On a machine with a GPU, ``tests/test_cuda.py`` checks the compiled kernels.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch
from host_programs import COMPILER, build
from oracles import BUILTIN_COSTS, numpy_cost, quantile_integral
from tolerances import approx, tol

import aot_loss

pytestmark = pytest.mark.skipif(COMPILER is None, reason="needs a C++ compiler")
FLAGS = ["-std=c++20", "-O1", "-pthread", "-fno-strict-aliasing", "-Wall", "-Wextra", "-Werror"]


def _compile(exe, *flags):
    build(exe, ["tests/csrc/cuda_paths_host.cpp"], [*FLAGS, *flags])


def _problem_text(path, u, v, wu, wv, loss, beta, ls, descending, grad):
    dtype = "f32" if u.dtype == torch.float32 else "f64"
    n, m = u.shape[-1], v.shape[-1]
    weighted = (wu is not None) | (wv is not None) << 1
    sizes = f"{u.numel() // n} {n} {m} {weighted} {int(grad)}"
    header = f"{dtype} {path} {loss} {beta!r} {ls!r} {int(descending)} {sizes}"
    body = [t.reshape(-1) for t in (u, v, wu, wv) if t is not None]
    return header + "\n" + "\n".join(" ".join(repr(float(x)) for x in t.tolist()) for t in body) + "\n"


@pytest.fixture(scope="module")
def cuda_path(tmp_path_factory):
    exe = tmp_path_factory.mktemp("cuda_paths") / "cuda_paths_host"
    _compile(exe)

    def run(path, u, v, wu=None, wv=None, *, loss="logistic", beta=1.0, ls=0.0, descending=False, grad=True):
        """(cost, grad_u, grad_v) of the rows of u (..., n) and v (..., m) by the given path."""
        text = _problem_text(path, u, v, wu, wv, loss, beta, ls, descending, grad)
        done = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True)
        values = torch.tensor([float(x) for x in done.stdout.split()], dtype=torch.float64).to(u.dtype)
        rows = u.numel() // u.shape[-1]
        cost = values[:rows].reshape(u.shape[:-1])
        if not grad:
            return cost, None, None
        grads = values[rows:]
        return cost, grads[: u.numel()].reshape(u.shape), grads[u.numel() :].reshape(v.shape)

    return run


def _torch_path(u, v, wu=None, wv=None, *, loss="logistic", beta=1.0, ls=0.0):
    u, v = u.clone().requires_grad_(), v.clone().requires_grad_()
    out = aot_loss.unpaired(
        u, v, pos_weights=wu, neg_weights=wv, loss=loss, beta=beta, label_smoothing=ls, reduction="none"
        if u.dim() == 2 else "mean", backend="torch"
    )  # fmt: skip
    out.sum().backward()
    return out.detach(), u.grad, v.grad


# block: the block kernel's phases serially; threads: on 8 host threads with barriers, as on
# a GPU; long: the long-row path, run here on every size, not only rows above 4096; unsort:
# the long path putting its gradients back by position, as for rows of millions
PATHS = ["block", "threads", "long", "unsort"]
SIZES = [(1, 1), (3, 2), (2, 3), (7, 7), (64, 64), (100, 37), (1, 300), (300, 1), (513, 511), (4096, 4096)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("loss", BUILTIN_COSTS)
@pytest.mark.parametrize(("n", "m"), SIZES)
@pytest.mark.parametrize("weighted", [0, 1, 2, 3])
def test_cuda_path_equals_the_torch_path(cuda_path, path, loss, n, m, weighted):
    gen = torch.Generator().manual_seed(n * 7919 + m + weighted)
    u = torch.randn(n, generator=gen, dtype=torch.float64) * 2
    v = torch.randn(m, generator=gen, dtype=torch.float64)
    wu = torch.rand(n, generator=gen, dtype=torch.float64) if weighted & 1 else None
    wv = torch.rand(m, generator=gen, dtype=torch.float64) if weighted & 2 else None
    ls = 0.1 if loss == "logistic" else 0.0
    expected = _torch_path(u, v, wu, wv, loss=loss, beta=0.6, ls=ls)
    for descending in (False, True):
        got = cuda_path(path, u, v, wu, wv, loss=loss, beta=0.6, ls=ls, descending=descending)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, **tol("float64_sums"))
    h = numpy_cost(loss, 0.6, ls)
    oracle = quantile_integral(
        u.numpy(), v.numpy(), h, None if wu is None else wu.numpy(), None if wv is None else wv.numpy()
    )
    assert got[0].item() == pytest.approx(oracle, **approx("float64_chunked"))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("rows", "n", "m", "weighted"), [(5, 33, 33, 0), (4, 40, 17, 3), (3, 9, 20, 2), (2, 1, 5, 1)]
)
def test_cuda_path_rows(cuda_path, path, rows, n, m, weighted):
    gen = torch.Generator().manual_seed(rows * n * m)
    u = torch.randn(rows, n, generator=gen, dtype=torch.float64)
    v = torch.randn(rows, m, generator=gen, dtype=torch.float64)
    wu = torch.rand(rows, n, generator=gen, dtype=torch.float64) if weighted & 1 else None
    wv = torch.rand(rows, m, generator=gen, dtype=torch.float64) if weighted & 2 else None
    expected = _torch_path(u, v, wu, wv, loss="squared_hinge", beta=0.4)
    for descending in (False, True):
        got = cuda_path(path, u, v, wu, wv, loss="squared_hinge", beta=0.4, descending=descending)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, **tol("float64_sums"))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("n", "m"), [(10, 10), (200, 200), (40, 17), (2000, 4096)])
def test_cuda_path_ties_send_gradients_to_the_same_elements(cuda_path, path, n, m):
    values = torch.tensor([0.0, -0.0, 1.0, -1.0, 2.0], dtype=torch.float64)
    gen = torch.Generator().manual_seed(n + m)
    u = values[torch.randint(0, 5, (n,), generator=gen)]
    v = values[torch.randint(0, 5, (m,), generator=gen)] * 0.5
    for loss in BUILTIN_COSTS:
        got = cuda_path(path, u, v, loss=loss, beta=0.3)
        expected = _torch_path(u, v, loss=loss, beta=0.3)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, **tol("float64_elementwise"))
            assert torch.equal(a != 0, b != 0)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n", "m"), [(6, 6), (6, 4)])
def test_cuda_path_non_finite_values(cuda_path, path, dtype, n, m):
    nan, inf = float("nan"), float("inf")
    u = torch.tensor([1.0, nan, -2.0, 0.5, -inf, 3.0][:n], dtype=dtype)
    v = torch.tensor([0.0, 1.0, inf, -1.0, nan, 2.0][:m], dtype=dtype)
    for loss in BUILTIN_COSTS:
        got = cuda_path(path, u, v, loss=loss, beta=0.5)
        expected = _torch_path(u, v, loss=loss, beta=0.5)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, equal_nan=True)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("n", "m", "weighted"), [(300, 300, 0), (100, 37, 0), (64, 50, 3)])
def test_cuda_path_float32(cuda_path, path, n, m, weighted):
    gen = torch.Generator().manual_seed(n + m)
    u, v = torch.randn(n, generator=gen) * 3, torch.randn(m, generator=gen) * 3
    wu = torch.rand(n, generator=gen) if weighted else None
    wv = torch.rand(m, generator=gen) if weighted else None
    got = cuda_path(path, u, v, wu, wv, loss="logistic", beta=0.7)
    expected = _torch_path(u, v, wu, wv, loss="logistic", beta=0.7)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, **tol("float32_long_sums"))


@pytest.mark.parametrize("path", PATHS)
def test_cuda_path_without_gradients(cuda_path, path):
    u, v = torch.randn(50, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
    cost, grad_u, grad_v = cuda_path(path, u, v, grad=False)
    assert grad_u is None and grad_v is None
    torch.testing.assert_close(cost, _torch_path(u, v)[0], **tol("float64_relative"))


def test_block_phases_have_no_data_race(tmp_path):
    """ThreadSanitizer over the threads path: a missing barrier between phases is a race."""
    exe = tmp_path / "cuda_paths_tsan"
    try:
        _compile(exe, "-fsanitize=thread", "-g")
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"no ThreadSanitizer build here: {exc.stderr.decode()[-200:]}")
    gen = torch.Generator().manual_seed(5)
    cases = [(100, 100, False, False), (100, 37, False, False), (64, 50, True, True), (9, 300, False, True)]
    for n, m, weight_u, weight_v in cases:
        u, v = (
            torch.randn(2, n, generator=gen, dtype=torch.float64),
            torch.randn(2, m, generator=gen, dtype=torch.float64),
        )
        wu = torch.rand(2, n, generator=gen, dtype=torch.float64) if weight_u else None
        wv = torch.rand(2, m, generator=gen, dtype=torch.float64) if weight_v else None
        text = _problem_text("threads", u, v, wu, wv, "logistic", 0.5, 0.0, False, True)
        done = subprocess.run([str(exe)], input=text, capture_output=True, text=True)
        assert "ThreadSanitizer" not in done.stderr, done.stderr[-2000:]
        assert done.returncode == 0


def test_oracle_sanity():
    """The oracle these tests lean on agrees with brute force on a tiny problem."""
    u, v = np.array([0.3, -1.0]), np.array([0.5, 0.1])
    h = numpy_cost("least_squares", 0.0)
    brute = min(np.mean(h(u[list(p)] - v)) for p in ([0, 1], [1, 0]))
    assert quantile_integral(u, v, h) == pytest.approx(brute)
