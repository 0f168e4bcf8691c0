"""Direct calls of the registered ops (public in ``torch.ops``, replayed by compiled graphs)
with operands that disagree: every kernel raises a RuntimeError naming the argument before
it reads memory. The native kernel is called in a child process, so that a kernel that
reads or writes out of bounds (an abort, a segfault, or a wrong but finite value) fails
its test instead of the run; the Python default kernel and the fake (meta) kernel are
called here."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from optional import needs_native

from aot_loss.ops import dominance as dominance_op
from aot_loss.ops import soft_sort as soft_sort_op

# (u, v, u_weights, v_weights) as expressions, and the message every kernel gives
DOMINANCE_CASES = {
    "fewer rows in v": (
        "torch.randn(3, 5), torch.randn(2, 5), None, None",
        r"v must have the rows of u \(all dims but the last\), got u of shape \(3, 5\) and v of shape \(2, 5",
    ),
    "one row of v against many": (
        "torch.randn(4096, 64), torch.randn(1, 64), None, None",
        r"v must have the rows of u .* \(4096, 64\) and v of shape \(1, 64\)",
    ),
    "short u_weights": (
        "torch.randn(50), torch.randn(40), torch.rand(5), None",
        r"u_weights must have the shape of u \(50,\), got \(5,\)",
    ),
    "long v_weights": (
        "torch.randn(2, 50), torch.randn(2, 40), None, torch.rand(2, 400)",
        r"v_weights must have the shape of v \(2, 40\), got \(2, 400\)",
    ),
    "weights of other rows": (
        "torch.randn(2, 50), torch.randn(2, 40), torch.rand(3, 50), None",
        r"u_weights must have the shape of u \(2, 50\), got \(3, 50\)",
    ),
    "weights of another rank": (
        "torch.randn(50), torch.randn(40), None, torch.rand(4, 10)",
        r"v_weights must have the number of dimensions of u",
    ),
}
NOT_ITS_STATE = "state is not the state of soft_sort's forward"
STATE_CASES = {
    "random state": ("torch.randint(-2**40, 2**40, (3, 8))", "state is not the state of soft_sort's forward"),
    "repeated positions": (
        "torch.zeros(3, 8, dtype=torch.long)",
        "state is not the state of soft_sort's forward",
    ),
    "positions past the row": (
        "torch.arange(8).repeat(3, 1) + 8",
        "state is not the state of soft_sort's forward",
    ),
    "blocks ahead of their start": (
        "(torch.full((3, 8), 5) << 32) | torch.arange(8)",
        "state is not the state of soft_sort's forward",
    ),
    "another shape": ("torch.zeros(3, 9, dtype=torch.long)", "grad, x and state must have one shape"),
}


def _native_messages(calls: dict[str, str]) -> dict[str, str]:
    """Each call's RuntimeError message (or what it returned) from a child process."""
    code = (
        "import json, torch, aot_loss\n"
        "import aot_loss\n"
        "assert aot_loss.info().native, aot_loss.info().reason\n"
        f"calls = {calls!r}\n"
        "out = {}\n"
        "for name, call in calls.items():\n"
        "    try:\n"
        "        out[name] = 'returned ' + repr(eval(call))[:200]\n"
        "    except RuntimeError as e:\n"
        "        out[name] = str(e)\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"the child died (exit {run.returncode}): {run.stderr[-2000:]}"
    return json.loads(run.stdout)


def _dominance_call(operands: str) -> str:
    return f"torch.ops.aot_loss.dominance({operands}, 'logistic', 0.1, 0.0, True)"


def _state_call(state: str) -> str:
    return f"torch.ops.aot_loss.soft_sort_backward(torch.randn(3, 8), torch.randn(3, 8), {state}, 'l2')"


@needs_native
def test_the_native_kernels_refuse_operands_that_disagree():
    calls = {name: _dominance_call(operands) for name, (operands, _) in DOMINANCE_CASES.items()}
    calls |= {name: _state_call(state) for name, (state, _) in STATE_CASES.items()}
    messages = _native_messages(calls)
    for name, (_, match) in {**DOMINANCE_CASES, **STATE_CASES}.items():
        assert re.search(match, messages[name]), (name, messages[name])


@pytest.mark.parametrize("case", DOMINANCE_CASES)
def test_the_default_kernel_refuses_operands_that_disagree(case):
    operands, match = DOMINANCE_CASES[case]
    with pytest.raises(RuntimeError, match=match):
        dominance_op._dominance_torch(*eval(operands), "logistic", 0.1, 0.0, True)


@pytest.mark.parametrize("case", DOMINANCE_CASES)
def test_the_fake_kernel_refuses_operands_that_disagree(case):
    operands, match = DOMINANCE_CASES[case]
    with torch.device("meta"), pytest.raises(RuntimeError, match=match):
        torch.ops.aot_loss.dominance(*eval(operands), "logistic", 0.1, 0.0, True)


@pytest.mark.parametrize("case", STATE_CASES)
def test_the_default_soft_sort_backward_refuses_a_state_it_did_not_make(case):
    state, match = STATE_CASES[case]
    with pytest.raises(RuntimeError, match=match):
        soft_sort_op._soft_sort_backward_checked(torch.randn(3, 8), torch.randn(3, 8), eval(state), "l2")


@pytest.mark.parametrize("regularization", ["l2", "kl"])
def test_the_forward_state_passes_the_checks(regularization):
    x = torch.randn(4, 33, dtype=torch.float64)
    x[:, ::3] = 0.5  # ties make blocks
    _, state = torch.ops.aot_loss.soft_sort(x, 2.0, regularization)
    soft_sort_op.check_backward_args(torch.ones_like(x), x, state, regularization)
    grad = torch.ops.aot_loss.soft_sort_backward(torch.ones_like(x), x, state, regularization)
    torch.testing.assert_close(grad.sum(-1), torch.full((4,), 33.0, dtype=torch.float64))


# A seeded fuzz of direct calls: operands whose shapes, dtypes and weights agree or not, known
# and unknown costs, and soft-sort states from the forward, perturbed or not. Every call must
# return or raise a RuntimeError; run in a child process, a kernel that reads or writes out of
# bounds fails the test (and CI runs it under AddressSanitizer, which reports the access).
FUZZ = """
import random, torch, aot_loss
import aot_loss
assert aot_loss.info().native, aot_loss.info().reason
rng = random.Random({seed})
torch.manual_seed({seed})
dtypes = [torch.float32, torch.float64]
def shape(rows, n):
    return (n,) if rows is None else (rows, n)
def maybe_other(s):
    if rng.random() < 0.8:
        return s
    return tuple(max(0, d + rng.choice([-2, -1, 1, 3])) for d in s) + ((2,) if rng.random() < 0.2 else ())
returned = refused = 0
for i in range({calls}):
    rows = rng.choice([None, 1, 3, 64])
    n, m = rng.choice([1, 2, 7, 64, 300, 5000]), rng.choice([1, 3, 64, 299, 4097])
    dtype = rng.choice(dtypes)
    u = torch.randn(maybe_other(shape(rows, n)), dtype=dtype)
    v = torch.randn(maybe_other(shape(rows, m)), dtype=rng.choice(dtypes) if rng.random() < 0.1 else dtype)
    wu = torch.rand(maybe_other(u.shape), dtype=dtype) if rng.random() < 0.4 else None
    wv = torch.rand(maybe_other(v.shape), dtype=dtype) if rng.random() < 0.4 else None
    cost = rng.choice(["logistic", "hinge", "squared_hinge", "least_squares", "cubic"])
    try:
        torch.ops.aot_loss.dominance(u, v, wu, wv, cost, 0.5, 0.0, rng.random() < 0.7)
        returned += 1
    except RuntimeError:
        refused += 1
    x = torch.randn(shape(rows, n), dtype=dtype)
    x[..., ::3] = 0.25  # ties make blocks
    reg = rng.choice(["l2", "kl"])
    _, state = torch.ops.aot_loss.soft_sort(x, rng.choice([0.1, 1.0, 10.0]), reg)
    if rng.random() < 0.5 and state.numel():
        flat = state.view(-1)
        flat[rng.randrange(flat.numel())] = rng.choice([-1, 2**40, n, n + 5, rng.randrange(n), 1 << 33])
    try:
        torch.ops.aot_loss.soft_sort_backward(torch.randn_like(x), x, state, reg)
        returned += 1
    except RuntimeError:
        refused += 1
print(returned, refused)
"""


@needs_native
@pytest.mark.parametrize("seed", [0, 1])
def test_a_seeded_fuzz_of_direct_calls_only_returns_or_raises(seed):
    code = FUZZ.format(seed=seed, calls=300)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"the child died (exit {run.returncode}): {run.stderr[-3000:]}"
    returned, refused = map(int, run.stdout.split())
    assert returned > 0 and refused > 0  # both kinds of call were made
