"""gradcheck (float64) for every differentiable path, and where gradients must (not) go."""

import pytest
import torch
from oracles import BUILTIN_COSTS
from strategies import spread

import aot_loss

f64 = torch.float64


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
@pytest.mark.parametrize(("n", "m"), [(5, 5), (6, 4), (3, 7)])
def test_gradcheck_unpaired(loss, n, m):
    u, v = spread(n), spread(m)
    assert torch.autograd.gradcheck(lambda a, b: aot_loss.unpaired(a, b, loss=loss, beta=0.8), (u, v))


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
def test_gradcheck_weighted_including_weights(loss):
    u, v = spread(5), spread(4)
    wu = torch.rand(5, dtype=f64).add(0.1).requires_grad_()
    wv = torch.rand(4, dtype=f64).add(0.1).requires_grad_()

    def f(a, b, x, y):
        return aot_loss.unpaired(a, b, loss=loss, beta=0.8, pos_weights=x, neg_weights=y)

    assert torch.autograd.gradcheck(f, (u, v, wu, wv))


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_rows(loss, reduction):
    u, v = spread(3, 5), spread(3, 4)
    f = lambda a, b: aot_loss.unpaired(a, b, loss=loss, beta=0.5, reduction=reduction)  # noqa: E731
    assert torch.autograd.gradcheck(f, (u, v))


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
def test_gradcheck_paired_and_reference_gets_no_gradient(loss):
    pc, pr = spread(6), spread(6)
    rc, rr = spread(6), spread(6)
    w = torch.rand(6, dtype=f64) + 0.1
    assert torch.autograd.gradcheck(lambda a, b: aot_loss.paired(a, b, rc, rr, loss=loss, beta=0.5), (pc, pr))
    assert torch.autograd.gradcheck(
        lambda a, b: aot_loss.paired(a, b, rc, rr, loss=loss, beta=0.5, weights=w), (pc, pr)
    )
    aot_loss.paired(pc, pr, rc, rr, loss=loss).backward()
    assert rc.grad is None and rr.grad is None
    assert pc.grad is not None and pr.grad is not None


@pytest.mark.parametrize(("m", "weighted"), [(5, False), (3, False), (5, True)])
def test_gradcheck_label_smoothing_and_sum(m, weighted):
    """'sum' of one row is K times its cost: K = n pairs, or n + m cells of the merged grid."""
    u, v = spread(5), spread(m)
    w = torch.rand(5, dtype=f64) + 0.1 if weighted else None

    def f(a, b):
        return aot_loss.unpaired(a, b, beta=1.0, label_smoothing=0.2, pos_weights=w, reduction="sum")

    assert torch.autograd.gradcheck(f, (u, v))


def test_zero_mass_sample_gets_exactly_zero_gradient():
    u, v = spread(6), spread(4)
    wu = torch.tensor([1.0, 0.0, 2.0, 0.0, 1.0, 1.0], dtype=f64)
    aot_loss.unpaired(u, v, pos_weights=wu, neg_weights=torch.rand(4, dtype=f64)).backward()
    assert u.grad[1] == 0 and u.grad[3] == 0
    assert (u.grad[wu > 0] != 0).all()


def test_ties_send_gradient_by_input_order():
    """Stable sort: among equal values the earlier element takes the lower quantile."""
    u = torch.tensor([1.0, 1.0, 1.0], dtype=f64, requires_grad=True)
    v = torch.tensor([0.0, 1.0, 2.0], dtype=f64)
    aot_loss.unpaired(u, v, loss=lambda d: d * torch.arange(1.0, 4.0, dtype=f64)).backward()
    torch.testing.assert_close(u.grad, torch.tensor([1.0, 2.0, 3.0], dtype=f64) / 3)


def test_gradient_matches_analytic_sorted_pairs():
    """d/du_(i) of mean softplus(-beta (u_(i) - v_(i))) = -beta sigmoid(-beta d_i) / n."""
    u, v = spread(7), spread(7)
    beta = 0.9
    aot_loss.unpaired(u, v, beta=beta).backward()
    us, iu = torch.sort(u.detach())
    d = us - torch.sort(v.detach()).values
    expected = torch.empty_like(d).scatter_(0, iu, -beta * torch.sigmoid(-beta * d) / 7)
    torch.testing.assert_close(u.grad, expected)
