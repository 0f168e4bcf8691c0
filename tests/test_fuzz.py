"""A bounded fuzz of the public losses over their whole argument space.

Half the calls are valid by construction and must return a tensor of the documented shape,
never NaN without NaN or infinite inputs; the others perturb one or more arguments (a wrong
type, dtype, shape, device, value or option) and must either still return, or raise a
ValueError/TypeError that names one of the arguments, or the RuntimeError that says the
native backend cannot serve the call. Never another exception.
"""

from __future__ import annotations

import re

import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import aot_loss

UNPAIRED = ("r_pos", "r_neg")
UNPAIRED_WEIGHTS = ("pos_weights", "neg_weights")
PAIRED = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
VALID_OPTIONS = {
    "loss": [
        "logistic",
        "hinge",
        "squared_hinge",
        "least_squares",
        lambda d: torch.nn.functional.softplus(-d),
    ],
    "beta": [0.01, 0.1, 1, 2.5],
    "label_smoothing": [0.0],
    "reduction": ["mean", "sum", "none"],
    "check_finite": [False, True],
    "backend": ["auto", "torch"],
    "sort": ["hard", "soft"],
    "soft_strength": [0.1, 1.0],
    "soft_backend": ["auto", "torch"],
    "group": [None],
}
BAD_OPTIONS = {
    "loss": ["cubic", 3, None],
    "beta": [0.0, -1.0, float("nan"), float("inf"), True, "1", 10**400],
    "label_smoothing": [0.5, -0.1, float("nan"), 0.1],  # 0.1 is fine with 'logistic' only
    "reduction": ["avg", None],
    "check_finite": [1, "yes"],
    "backend": ["native", "fast"],  # 'native' is fine where it is built and can serve the call
    "sort": ["quick"],
    "soft_strength": [0.0, -2.0, float("inf")],
    "soft_backend": ["native", "bogus"],
    "group": [3, "galaxy"],
}
BAD_TENSORS = [
    lambda x: x.tolist(),
    lambda x: None,
    lambda x: x.to(torch.int64),
    lambda x: x.to(torch.float8_e4m3fn),
    lambda x: x.to(torch.complex64),
    lambda x: x[..., :0] if x.dim() else x,  # empty
    lambda x: x.unsqueeze(0).unsqueeze(0),  # 3-D or more
    lambda x: x.sum(),  # 0-d
    lambda x: torch.cat([x, x], -1) if x.dim() else x,  # another size
    lambda x: x.to("meta"),
    lambda x: x.to_sparse(),
]
SPECIAL = [float("nan"), float("inf"), float("-inf"), 1e30, -1e30]


@st.composite
def calls(draw) -> tuple[bool, str, dict[str, object]]:
    """(valid, 'paired' or 'unpaired', keyword arguments)."""
    paired = draw(st.booleans())
    valid = draw(st.booleans())
    rows = draw(st.sampled_from([None, 1, 3]))
    n = draw(st.integers(1, 9))
    m = n if paired else draw(st.integers(1, 9))
    dtype = draw(st.sampled_from(FLOATS))
    scale = draw(st.sampled_from([1.0, 1e3]))

    def sample(size: int) -> torch.Tensor:
        shape = (size,) if rows is None else (rows, size)
        return (torch.randn(shape, dtype=torch.float64) * scale).to(dtype)

    def masses(size: int) -> torch.Tensor:
        shape = (size,) if rows is None else (rows, size)
        w = torch.rand(shape, dtype=torch.float64) * (torch.rand(shape) > 0.3)
        w[..., 0] += 0.5  # every row keeps mass
        return w.to(draw(st.sampled_from(FLOATS[2:])))

    names = PAIRED if paired else UNPAIRED
    kwargs: dict[str, object] = {
        name: sample(n if i % 2 == 0 or paired else m) for i, name in enumerate(names)
    }
    weight_names = ("weights",) if paired else UNPAIRED_WEIGHTS
    for i, name in enumerate(weight_names):
        if draw(st.booleans()):
            kwargs[name] = masses(n if i == 0 else m)
    options = draw(st.sets(st.sampled_from(list(VALID_OPTIONS)), max_size=4))
    kwargs |= {name: draw(st.sampled_from(VALID_OPTIONS[name])) for name in options}
    if kwargs.get("sort") == "soft":  # soft sorting takes no weights
        for name in weight_names:
            kwargs.pop(name, None)
    if valid:
        return True, ("paired" if paired else "unpaired"), kwargs
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["tensor", "value", "option"]))
        plain = [k for k, x in kwargs.items() if isinstance(x, torch.Tensor) and x.dtype in FLOATS]
        plain = [k for k in plain if kwargs[k].layout == torch.strided and kwargs[k].device.type == "cpu"]
        if what == "option" or not plain:
            option = draw(st.sampled_from(list(BAD_OPTIONS)))
            kwargs[option] = draw(st.sampled_from(BAD_OPTIONS[option]))
            continue
        name = draw(st.sampled_from(plain))
        x = kwargs[name]
        if what == "tensor" or x.numel() == 0:
            kwargs[name] = draw(st.sampled_from(BAD_TENSORS))(x)
        else:
            x = x.clone()
            x.view(-1)[draw(st.integers(0, x.numel() - 1))] = draw(st.sampled_from([*SPECIAL, -1.0]))
            kwargs[name] = x
    return False, ("paired" if paired else "unpaired"), kwargs


def _names_an_argument(message: str) -> bool:
    names = (*UNPAIRED, *UNPAIRED_WEIGHTS, *PAIRED, "weights", *VALID_OPTIONS)
    return any(re.search(rf"\b{re.escape(name)}\b", message) for name in names)


def _finite(tensors: list[torch.Tensor]) -> bool:
    return all(x.device.type != "meta" and bool(torch.isfinite(x.double()).all()) for x in tensors)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls())
def test_every_call_returns_or_raises_an_error_naming_an_argument(call):
    valid, kind, kwargs = call
    function, names = (aot_loss.paired, PAIRED) if kind == "paired" else (aot_loss.unpaired, UNPAIRED)
    positional = [kwargs.pop(name) for name in names]
    try:
        out = function(*positional, **kwargs)
    except (ValueError, TypeError) as error:
        assert not valid, f"a valid call raised {type(error).__name__}: {error}"
        assert _names_an_argument(str(error)), f"{type(error).__name__} names no argument: {error}"
        event(type(error).__name__)
        return
    except RuntimeError as error:  # backend='native' asked for where it cannot serve the call
        assert not valid and str(error).startswith("backend='native'"), f"unexpected RuntimeError: {error}"
        event("RuntimeError (native backend)")
        return
    event(f"returned ({'valid' if valid else 'perturbed'} call)")
    assert isinstance(out, torch.Tensor)
    if kwargs.get("reduction", "mean") != "none":
        assert out.dim() == 0
    tensors = [x for x in (*positional, *kwargs.values()) if isinstance(x, torch.Tensor)]
    if valid and _finite(tensors):
        assert not torch.isnan(out).any(), (kind, kwargs, out)
