"""Every bad input gets a ValueError/TypeError that names the argument and the value."""

import pytest
import torch

import aot_loss
from aot_loss import metrics

x = torch.randn(4)


def unpaired(**kw):
    args = {"r_pos": x, "r_neg": x}
    args.update(kw)
    return aot_loss.unpaired(args.pop("r_pos"), args.pop("r_neg"), **args)


def paired(**kw):
    args = {name: x for name in ("pc", "pr", "rc", "rr")}
    args.update(kw)
    return aot_loss.paired(args.pop("pc"), args.pop("pr"), args.pop("rc"), args.pop("rr"), **args)


CASES = [
    # (call, exception, pattern)
    (lambda: unpaired(r_pos=[1.0, 2.0]), TypeError, "r_pos must be a torch.Tensor, got list"),
    (
        lambda: unpaired(r_neg=torch.arange(4)),
        TypeError,
        r"r_neg must be a floating-point tensor, got dtype torch.int64",
    ),
    (lambda: unpaired(r_pos=torch.tensor(1.0)), ValueError, r"r_pos must be 1-D .* got shape \(\)"),
    (lambda: unpaired(r_neg=torch.randn(2, 2, 2)), ValueError, r"r_neg must be 1-D .* got shape \(2, 2, 2\)"),
    (lambda: unpaired(r_pos=torch.randn(0)), ValueError, r"r_pos must not be empty, got shape \(0,\)"),
    (lambda: unpaired(r_neg=torch.randn(3, 0)), ValueError, r"r_neg must not be empty, got shape \(3, 0\)"),
    (
        lambda: unpaired(r_pos=torch.randn(2, 4)),
        ValueError,
        r"both be 1-D or both be 2-D rows, got shapes \(2, 4\) and \(4,\)",
    ),
    (
        lambda: unpaired(r_pos=torch.randn(2, 4), r_neg=torch.randn(3, 4)),
        ValueError,
        "same number of rows, got 2 and 3",
    ),
    (
        lambda: unpaired(r_neg=torch.randn(4, device="meta")),
        ValueError,
        "r_neg is on meta but r_pos is on cpu",
    ),
    (
        lambda: unpaired(r_pos=x.to_sparse()),
        TypeError,
        "r_pos must be a dense tensor, got layout torch.sparse_coo; convert it with .to_dense()",
    ),
    (lambda: paired(pr=x.to_sparse()), TypeError, "policy_rejected_logps must be a dense"),
    (
        lambda: unpaired(r_pos=torch.nested.nested_tensor([x, x[:2]], layout=torch.jagged)),
        TypeError,
        "r_pos must be a dense tensor, got a nested tensor",
    ),
    (
        lambda: unpaired(neg_weights=torch.ones(4).to_sparse()),
        TypeError,
        "neg_weights must be a dense tensor",
    ),
    (
        lambda: aot_loss.soft_sort(x.to_sparse()),
        TypeError,
        "x must be a dense tensor, got layout torch.sparse_coo",
    ),
    (
        lambda: metrics.fsd_violation(x, x.to_sparse()),
        TypeError,
        "v must be a dense tensor",
    ),
    (lambda: paired(rr=torch.randn(5)), ValueError, r"same shape, got .*'ref_rejected_logps': \(5,\)"),
    (
        lambda: paired(pr=torch.randn(4, 1)),
        ValueError,
        r"same shape, got .*'policy_rejected_logps': \(4, 1\)",
    ),
    (lambda: paired(rc=torch.randn(4, device="meta")), ValueError, "ref_chosen_logps is on meta"),
    (
        lambda: paired(pc=torch.arange(4.0).to(torch.complex64)),
        TypeError,
        "policy_chosen_logps must be a floating",
    ),
    (
        lambda: unpaired(pos_weights=torch.tensor([1.0, -1.0, 1.0, 1.0])),
        ValueError,
        "pos_weights must not contain negative values, got -1.0 at index 1",
    ),
    (
        lambda: unpaired(neg_weights=torch.zeros(4)),
        ValueError,
        "neg_weights must not contain a row with zero total mass, got all zero weights",
    ),
    (
        lambda: unpaired(
            r_pos=torch.randn(2, 4), r_neg=torch.randn(2, 4), pos_weights=torch.tensor([[1.0] * 4, [0.0] * 4])
        ),
        ValueError,
        r"pos_weights must not contain a row with zero total mass, got zero mass in row\(s\) \[1\]",
    ),
    (
        lambda: unpaired(pos_weights=torch.tensor([1.0, float("nan"), 1.0, 1.0])),
        ValueError,
        "pos_weights must not contain NaN or infinite values, got nan at index 1",
    ),
    (
        lambda: paired(weights=torch.tensor([1.0, float("inf"), 1.0, 1.0])),
        ValueError,
        "weights must not contain NaN or infinite values, got inf at index 1",
    ),
    (
        lambda: unpaired(pos_weights=torch.ones(5)),
        ValueError,
        r"pos_weights must have the shape of r_pos \(4,\), got \(5,\)",
    ),
    (
        lambda: paired(weights=torch.ones(1, 4)),
        ValueError,
        r"weights must have the shape of policy_chosen_logps \(4,\), got \(1, 4\)",
    ),
    (
        lambda: unpaired(neg_weights=[1, 1, 1, 1]),
        TypeError,
        "neg_weights must be a torch.Tensor or None, got list",
    ),
    (
        lambda: unpaired(neg_weights=torch.ones(4, device="meta")),
        ValueError,
        "neg_weights is on meta but r_neg is on cpu",
    ),
    (
        lambda: unpaired(pos_weights=torch.ones(4, dtype=torch.complex64)),
        TypeError,
        "pos_weights must be bool, integer, float16, bfloat16, float32 or float64, got dtype torch.complex64",
    ),
    (
        lambda: unpaired(loss="dpo"),
        ValueError,
        r"loss must be one of \('logistic', .*\) or a callable, got 'dpo'",
    ),
    (lambda: unpaired(loss="dpo", label_smoothing=0.1), ValueError, r"loss must be one of .* got 'dpo'"),
    (lambda: unpaired(loss=3), TypeError, "loss must be a str .* or a callable, got int"),
    (
        lambda: paired(reduction="avg"),
        ValueError,
        r"reduction must be one of \('mean', 'sum', 'none'\), got 'avg'",
    ),
    (lambda: unpaired(beta=0.0), ValueError, "beta must be a finite number > 0, got 0.0"),
    (lambda: unpaired(beta=-1), ValueError, "beta must be a finite number > 0, got -1.0"),
    (lambda: paired(beta=float("inf")), ValueError, "beta must be a finite number > 0, got inf"),
    (lambda: paired(beta=float("nan")), ValueError, "beta must be a finite number > 0, got nan"),
    (lambda: unpaired(beta="0.1"), TypeError, "beta must be a real number, got '0.1'"),
    (lambda: unpaired(beta=True), TypeError, "beta must be a real number, got True"),
    (lambda: unpaired(label_smoothing=0.5), ValueError, r"label_smoothing must be in \[0, 0.5\), got 0.5"),
    (lambda: paired(label_smoothing=-0.1), ValueError, r"label_smoothing must be in \[0, 0.5\), got -0.1"),
    (
        lambda: unpaired(label_smoothing=0.1, loss="hinge"),
        ValueError,
        "label_smoothing=0.1 applies to loss='logistic' only, got loss='hinge'",
    ),
    (lambda: unpaired(check_finite=1), TypeError, "check_finite must be a bool, got 1"),
    (
        lambda: unpaired(backend="cuda"),
        ValueError,
        r"backend must be one of \('auto', 'torch', 'native'\), got 'cuda'",
    ),
    (lambda: unpaired(backend=None), ValueError, "backend must be one of"),
    (
        lambda: unpaired(loss=lambda d: d.sum()),
        ValueError,
        r"loss callable must map d elementwise: got shape \(\)",
    ),
    (lambda: unpaired(loss=lambda d: 1.0), TypeError, "loss callable must return a Tensor, got float"),
    (lambda: aot_loss.UnpairedAOTLoss(beta=0), ValueError, "beta must be a finite number > 0, got 0.0"),
    (lambda: aot_loss.PairedAOTLoss(reduction="max"), ValueError, "reduction must be one of"),
    (lambda: aot_loss.UnpairedAOTLoss()(x, x.long()), TypeError, "r_neg must be a floating-point tensor"),
    # metrics
    (lambda: metrics.fsd_violation(x.numpy(), x), TypeError, "u must be a torch.Tensor, got ndarray"),
    (
        lambda: metrics.fsd_violation_ratio(x, torch.randn(2, 4)),
        ValueError,
        r"u and v must both be 1-D or both be 2-D rows, got shapes \(4,\) and \(2, 4\)",
    ),
    (
        lambda: metrics.fsd_violation(x, x, v_weights=-torch.ones(4)),
        ValueError,
        "v_weights must not contain negative values, got -1.0 at index 0",
    ),
    (
        lambda: metrics.ot_violation(torch.randn(2, 3), torch.randn(3, 3)),
        ValueError,
        "u and v must have the same number of rows, got 2 and 3",
    ),
    (
        lambda: metrics.ot_violation(x, x, loss="hinge", label_smoothing=0.1),
        ValueError,
        "label_smoothing=0.1 applies to loss='logistic' only",
    ),
    (lambda: metrics.ot_violation(x, x, beta=-1.0), ValueError, "beta must be a finite number > 0, got -1.0"),
    (
        lambda: metrics.quantile_curves(x, x, 1),
        ValueError,
        r"grid must be an int >= 2 \(the number of levels\), got 1",
    ),
    (
        lambda: metrics.quantile_curves(x, x, True),
        TypeError,
        "grid must be an int, a tensor or a sequence of levels, got True",
    ),
    (
        lambda: metrics.quantile_curves(x, x, 0.5),
        TypeError,
        "grid must be an int, a tensor or a sequence of levels, got float",
    ),
    (
        lambda: metrics.quantile_curves(x, x, "abc"),
        TypeError,
        "grid must be an int, a tensor or a sequence of levels, got str",
    ),
    (
        lambda: metrics.quantile_curves(x, x, ["a"]),
        TypeError,
        r"grid must be a sequence of real levels in \[0, 1\], got \['a'\]",
    ),
    (
        lambda: metrics.quantile_curves(x, x, [0.5, 1.5]),
        ValueError,
        r"grid levels must lie in \[0, 1\], got min 0.5 and max 1.5",
    ),
    (
        lambda: metrics.quantile_curves(x, x, [0.5, float("nan")]),
        ValueError,
        r"grid levels must lie in \[0, 1\]",
    ),
    (
        lambda: metrics.quantile_curves(x, x, torch.rand(2, 2)),
        ValueError,
        r"grid must be a non-empty 1-D set of levels, got shape \(2, 2\)",
    ),
    (
        lambda: metrics.quantile_curves(x, x, []),
        ValueError,
        r"grid must be a non-empty 1-D set of levels, got shape \(0,\)",
    ),
    (
        lambda: metrics.quantile_curves(x, x, torch.ones(3, dtype=torch.bool)),
        TypeError,
        r"grid must hold real levels in \[0, 1\], got dtype torch.bool",
    ),
    (
        lambda: metrics.quantile_curves(x, x, u_weights=torch.ones(3)),
        ValueError,
        r"u_weights must have the shape of u \(4,\), got \(3,\)",
    ),
    # soft sort, and the losses' soft-sort options
    (lambda: aot_loss.soft_sort([1.0, 2.0]), TypeError, "x must be a torch.Tensor, got list"),
    (
        lambda: aot_loss.soft_sort(torch.arange(4)),
        TypeError,
        "x must be a floating-point tensor, got dtype torch.int64",
    ),
    (lambda: aot_loss.soft_sort(torch.tensor(1.0)), ValueError, "x must have at least one dimension"),
    (
        lambda: aot_loss.soft_sort(x, strength=0.0),
        ValueError,
        "strength must be a finite number > 0, got 0.0",
    ),
    (lambda: aot_loss.soft_sort(x, strength=-1), ValueError, "strength must be a finite number > 0, got -1"),
    (
        lambda: aot_loss.soft_sort(x, strength=float("inf")),
        ValueError,
        "strength must be a finite number > 0, got inf",
    ),
    (
        lambda: aot_loss.soft_sort(x, strength=float("nan")),
        ValueError,
        "strength must be a finite number > 0, got nan",
    ),
    (lambda: aot_loss.soft_sort(x, strength="0.1"), TypeError, "strength must be a real number, got '0.1'"),
    (lambda: aot_loss.soft_sort(x, strength=True), TypeError, "strength must be a real number, got True"),
    (
        lambda: aot_loss.soft_sort(x, regularization="entropic"),
        ValueError,
        r"regularization must be one of \('l2', 'kl'\), got 'entropic'",
    ),
    (
        lambda: aot_loss.soft_sort(x, dim=1),
        ValueError,
        r"dim must be in \[-1, 1\) for x of shape \(4,\), got 1",
    ),
    (lambda: aot_loss.soft_sort(x, dim=0.0), TypeError, "dim must be an int, got 0.0"),
    (
        lambda: aot_loss.soft_sort(x, backend="cuda"),
        ValueError,
        "backend must be one of .*'torchsort'.*got 'cuda'",
    ),
    (lambda: unpaired(sort="quick"), ValueError, r"sort must be one of \('hard', 'soft'\), got 'quick'"),
    (
        lambda: unpaired(sort="soft", soft_strength=0),
        ValueError,
        "soft_strength must be a finite number > 0, got 0",
    ),
    (lambda: paired(soft_strength=None), TypeError, "soft_strength must be a real number, got None"),
    (
        lambda: unpaired(sort="soft", soft_backend="numpy"),
        ValueError,
        "soft_backend must be one of .*got 'numpy'",
    ),
    (
        lambda: unpaired(sort="soft", neg_weights=torch.ones(4)),
        ValueError,
        "neg_weights cannot be used with sort='soft'",
    ),
    (
        lambda: paired(sort="soft", weights=torch.ones(4)),
        ValueError,
        "weights cannot be used with sort='soft'",
    ),
    (lambda: aot_loss.UnpairedAOTLoss(sort="Soft"), ValueError, "sort must be one of"),
]


@pytest.mark.parametrize(("call", "exception", "pattern"), CASES)
def test_bad_input_is_named(call, exception, pattern):
    with pytest.raises(exception, match=pattern):
        call()


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_float8_is_refused_by_name(dtype):
    """float8 passed the floating-point check, then failed inside torch ("Promotion for
    Float8 Types is not supported")."""
    with pytest.raises(
        TypeError, match=rf"r_neg must be float16, bfloat16, float32 or float64, got dtype {dtype}"
    ):
        unpaired(r_neg=x.to(dtype))
    with pytest.raises(TypeError, match=rf"pos_weights must be bool, integer, .* got dtype {dtype}"):
        unpaired(pos_weights=torch.rand(4).to(dtype))


@pytest.mark.parametrize("name", ["beta", "label_smoothing", "soft_strength"])
def test_an_int_beyond_float_range_is_named(name):
    with pytest.raises(
        ValueError, match=rf"{name} must be a finite number, got 1000.* \(too large for a float\)"
    ):
        unpaired(**{name: 10**400})


def test_meta_tensors_with_weights_propagate_shapes():
    """Value checks have nothing to read on the meta device: they are skipped, as without weights."""
    u, v = torch.randn(3, 6, device="meta"), torch.randn(3, 4, device="meta")
    out = aot_loss.unpaired(
        u, v, pos_weights=torch.rand(3, 6, device="meta"), reduction="none", check_finite=True
    )
    assert out.device.type == "meta" and out.shape == (3,)
    out = aot_loss.paired(
        *(torch.randn(5, device="meta") for _ in range(4)), weights=torch.rand(5, device="meta")
    )
    assert out.device.type == "meta" and out.shape == ()
