"""torch.compile(fullgraph=True) traces forward and backward of functions and Modules."""

import pytest
import torch
from tolerances import tol

import aot_loss


@pytest.fixture(autouse=True)
def _reset():
    torch.compiler.reset()
    yield
    torch.compiler.reset()


def _grads(fn, *inputs):
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*inputs)
    out.sum().backward()
    return out.detach(), [x.grad for x in inputs]


W6 = torch.rand(6, generator=torch.Generator().manual_seed(1))

CASES = {
    "unpaired": (lambda u, v: aot_loss.unpaired(u, v, beta=0.5), (8,), (8,)),
    "unequal": (lambda u, v: aot_loss.unpaired(u, v, loss="squared_hinge", beta=0.5), (9,), (4,)),
    "weighted": (
        lambda u, v: aot_loss.unpaired(u, v, pos_weights=torch.arange(7.0), neg_weights=torch.ones(5)),
        (7,),
        (5,),
    ),
    "rows_none": (lambda u, v: aot_loss.unpaired(u, v, reduction="none"), (3, 6), (3, 5)),
    "paired": (lambda u, v: aot_loss.paired(u, v, v.detach() * 0.5, u.detach() * 0.3, beta=0.1), (8,), (8,)),
    "paired_weighted": (
        lambda u, v: aot_loss.paired(u, v, v.detach(), u.detach(), weights=W6),
        (6,),
        (6,),
    ),
    "module_unpaired": (aot_loss.UnpairedAOTLoss(loss="hinge", beta=0.2), (8,), (11,)),
    "module_paired": (
        lambda u, v: aot_loss.PairedAOTLoss(label_smoothing=0.1)(u, v, v.detach(), u.detach()),
        (8,),
        (8,),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fullgraph_aot_eager_forward_and_backward(case):
    fn, shape_u, shape_v = CASES[case]
    u, v = torch.randn(*shape_u), torch.randn(*shape_v)
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    expected_out, expected_grads = _grads(fn, u, v)
    out, grads = _grads(compiled, u, v)
    torch.testing.assert_close(out, expected_out)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_fullgraph_inductor_forward_and_backward():
    fn = lambda u, v: aot_loss.unpaired(u, v, beta=0.5) + aot_loss.unpaired(u, v[:5], loss="hinge")  # noqa: E731
    u, v = torch.randn(16), torch.randn(12)
    expected_out, expected_grads = _grads(fn, u, v)
    out, grads = _grads(torch.compile(fn, fullgraph=True), u, v)
    torch.testing.assert_close(out, expected_out)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_weight_checks_still_fire_under_compile():
    fn = torch.compile(
        lambda u, v, w: aot_loss.unpaired(u, v, pos_weights=w), fullgraph=True, backend="aot_eager"
    )
    u, v = torch.randn(4), torch.randn(4)
    assert torch.isfinite(fn(u, v, torch.ones(4)))
    with pytest.raises(RuntimeError, match="pos_weights must not contain negative values"):
        fn(u, v, torch.tensor([1.0, -1.0, 1.0, 1.0]))


def test_a_compiled_module_follows_an_option_set_between_calls():
    module = aot_loss.UnpairedAOTLoss(beta=0.1)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    u, v = torch.randn(8), torch.randn(6)
    for options in ({"beta": 0.1}, {"beta": 2.0}, {"beta": 2.0, "loss": "least_squares"}):
        for name, value in options.items():
            setattr(module, name, value)
        torch.testing.assert_close(compiled(u, v), aot_loss.unpaired(u, v, **options), **tol("exact"))
