"""The Modules run the same code as the functions."""

import pytest
import torch
from oracles import BUILTIN_COSTS
from tolerances import tol

import aot_loss


@pytest.mark.parametrize("loss", BUILTIN_COSTS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_unpaired_module_equals_function(loss, reduction):
    u, v, wu = torch.randn(7), torch.randn(5), torch.rand(7)
    kw = dict(loss=loss, beta=0.3, reduction=reduction)
    module = aot_loss.UnpairedAOTLoss(**kw)
    torch.testing.assert_close(module(u, v), aot_loss.unpaired(u, v, **kw), **tol("exact"))
    torch.testing.assert_close(
        module(u, v, pos_weights=wu), aot_loss.unpaired(u, v, pos_weights=wu, **kw), **tol("exact")
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_paired_module_equals_function(reduction):
    pc, pr, rc, rr, w = (torch.randn(3, 6) for _ in range(5))
    kw = dict(beta=0.2, label_smoothing=0.1, reduction=reduction)
    module = aot_loss.PairedAOTLoss(**kw)
    torch.testing.assert_close(module(pc, pr, rc, rr), aot_loss.paired(pc, pr, rc, rr, **kw), **tol("exact"))
    w = w.abs()
    torch.testing.assert_close(
        module(pc, pr, rc, rr, weights=w), aot_loss.paired(pc, pr, rc, rr, weights=w, **kw), **tol("exact")
    )


def test_module_repr_and_no_parameters():
    module = aot_loss.UnpairedAOTLoss(loss="squared_hinge", beta=0.5)
    assert repr(module) == "UnpairedAOTLoss(loss='squared_hinge', beta=0.5, reduction='mean')"
    assert list(module.parameters()) == []
    assert "label_smoothing=0.1" in repr(aot_loss.PairedAOTLoss(label_smoothing=0.1))


def test_an_option_set_after_construction_takes_effect_at_the_next_call():
    """A beta schedule: `criterion.beta = b` gives the function's value at beta = b."""
    u, v = torch.randn(9), torch.randn(6)
    module = aot_loss.UnpairedAOTLoss(beta=0.1)
    for beta in (0.3, 1.5):
        module.beta = beta
        torch.testing.assert_close(module(u, v), aot_loss.unpaired(u, v, beta=beta), **tol("exact"))
    module.label_smoothing, module.reduction = 0.2, "none"
    want = aot_loss.unpaired(u, v, beta=1.5, label_smoothing=0.2, reduction="none")
    torch.testing.assert_close(module(u, v), want, **tol("exact"))
    assert "beta=1.5" in repr(module) and "label_smoothing=0.2" in repr(module)


@pytest.mark.parametrize(
    ("name", "value", "error", "message"),
    [
        ("beta", -1.0, ValueError, r"beta must be a finite number > 0, got -1.0"),
        ("loss", "hinge", ValueError, r"label_smoothing=0.1 applies to loss='logistic' only"),
        ("sort", "bubble", ValueError, r"sort must be one of \('hard', 'soft'\), got 'bubble'"),
        ("group", 3, TypeError, r"group must be .*, got 3"),
    ],
)
def test_a_bad_option_set_after_construction_raises_and_changes_nothing(name, value, error, message):
    u, v = torch.randn(5), torch.randn(5)
    module = aot_loss.PairedAOTLoss(beta=0.2, label_smoothing=0.1)
    with pytest.raises(error, match=message):
        setattr(module, name, value)
    assert module.beta == 0.2 and module.loss == "logistic" and module.sort == "hard" and module.group is None
    want = aot_loss.paired(u, v, v, u, beta=0.2, label_smoothing=0.1)
    torch.testing.assert_close(module(u, v, v, u), want, **tol("exact"))


def test_module_trains_a_scorer_towards_dominance():
    """A linear scorer trained with the module separates two Gaussian clouds by quantiles."""
    torch.manual_seed(0)
    scorer = torch.nn.Linear(4, 1)
    x_pos, x_neg = torch.randn(64, 4) + 1.0, torch.randn(48, 4) - 1.0
    criterion = aot_loss.UnpairedAOTLoss(beta=1.0)
    opt = torch.optim.SGD(scorer.parameters(), lr=0.5)
    first = None
    for _ in range(30):
        loss = criterion(scorer(x_pos).squeeze(-1), scorer(x_neg).squeeze(-1))
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    hinge = aot_loss.unpaired(scorer(x_pos).squeeze(-1), scorer(x_neg).squeeze(-1), loss="hinge", beta=1e-6)
    assert hinge.item() < 1e-3  # chosen scores dominate at (almost) every quantile
