"""The exp and log1p that the CPU kernel's logistic cost uses (csrc/common/exp_log.h), against
libm in a wider precision over their whole input ranges, and through the op against NumPy's
float64 softplus and sigmoid.

The functions are branch-free polynomials so that the cost loop vectorises. The oracles:
double-precision libm for the float versions (``tests/csrc/exp_log_host.cpp`` walks the floats
of each range with a stride; stride 1, every float, gave 1.33 and 1.26 ulp: 40 s, too slow
here), long-double libm for the double versions (2e7 values spread over each range).
"""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest
import torch
from host_programs import COMPILER, build
from optional import needs_native

import aot_loss


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if COMPILER is None:
        pytest.skip("needs a C++ compiler")
    exe = tmp_path_factory.mktemp("exp_log") / "exp_log_host"
    build(exe, ["tests/csrc/exp_log_host.cpp"], ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror"])
    out = subprocess.run([str(exe), "97"], check=True, capture_output=True, text=True, timeout=120).stdout
    return {name: float(value) for name, value, *_ in (line.split() for line in out.splitlines())}


def test_exp_is_within_one_and_a_half_ulp(report):
    assert report["exp"] <= 1.35


def test_log1p_is_within_one_and_a_half_ulp(report):
    assert report["log1p"] <= 1.3


def test_double_exp_is_within_one_ulp(report):
    assert report["exp64"] <= 1.0


def test_double_log1p_is_within_one_and_a_quarter_ulp(report):
    assert report["log1p64"] <= 1.25


def test_special_values(report):
    assert report["exp(-0)"] == 1.0
    assert report["exp(-inf)"] == 0.0
    assert report["exp(-104)"] == 0.0
    assert math.isnan(report["exp(nan)"])
    assert report["log1p(0)"] == 0.0
    assert np.float32(report["log1p(1)"]) == np.float32(math.log(2.0))
    assert math.isnan(report["log1p(nan)"])
    assert report["exp64(-0)"] == 1.0
    assert report["exp64(-inf)"] == 0.0
    assert report["exp64(-746)"] == 0.0
    assert math.isnan(report["exp64(nan)"])
    assert report["log1p64(0)"] == 0.0
    assert report["log1p64(1)"] == math.log(2.0)
    assert math.isnan(report["log1p64(nan)"])


@needs_native
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logistic_terms_match_float64(label_smoothing, dtype):
    """Each term and slope against NumPy's float64 softplus and sigmoid, for margins from -1e4
    (cost 1e4) to 1e4 (cost rounds to 0): errors stay at the dtype's rounding."""
    margins = np.concatenate([np.linspace(-1e4, 1e4, 4001), np.geomspace(1e-6, 70, 500)])
    d = torch.tensor(np.concatenate([margins, -margins]), dtype=dtype)
    u = d.clone().requires_grad_()
    # Rows of one pair each (u_i, 0), so reduction="none" gives every term on its own.
    options = {"beta": 1.0, "label_smoothing": label_smoothing, "reduction": "none", "backend": "native"}
    loss = aot_loss.unpaired(u[:, None], torch.zeros(len(d), 1, dtype=dtype), **options)
    loss.sum().backward()
    z, ls = d.double().numpy(), label_smoothing  # beta = 1

    def sigmoid(x):
        return np.exp(-np.logaddexp(0.0, -x))

    exact = (1 - ls) * np.logaddexp(0.0, -z) + ls * np.logaddexp(0.0, z)
    slope = -(1 - ls) * sigmoid(-z) + ls * sigmoid(z)
    # float32: terms beyond margin ~103 round to its smallest subnormal or to 0; float64: the
    # oracle itself is float64, so a few ulps. With smoothing the slope is a difference of two
    # sigmoids, which cancel near z = 0.85: there an absolute error of about an ulp of the terms.
    tiny, rtol, eps = (1.4e-45, 3e-7, 6e-8) if dtype == torch.float32 else (1e-300, 2e-15, 2e-16)
    torch.testing.assert_close(loss.double(), torch.from_numpy(exact), rtol=rtol, atol=tiny)
    atol = 2 * eps if label_smoothing else tiny
    torch.testing.assert_close(u.grad.double(), torch.from_numpy(slope), rtol=rtol, atol=atol)
