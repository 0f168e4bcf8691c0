"""CUDA: same values and gradients as on CPU, same tie handling, no host synchronisation.

Skipped cleanly when no CUDA device is present.
"""

import pytest
import torch
from oracles import BUILTIN_COSTS

import aot_loss

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
    torch.testing.assert_close(gpu, cpu, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gpu_grads[0], cpu_grads[0], rtol=1e-5, atol=1e-6)


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


def test_default_path_never_synchronises():
    u = torch.randn(1000, device="cuda", requires_grad=True)
    v = torch.randn(700, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
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
