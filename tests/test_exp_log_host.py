"""The float32 exp and log1p that the CPU kernel's logistic cost uses (csrc/kernels/exp_log.h),
against double-precision libm over their whole input ranges, and through the op against a
float64 re-derivation of the logistic cost.

The functions are branch-free polynomials so that the cost loop vectorises; libm's results,
rounded to float, are the oracle. ``tests/csrc/exp_log_host.cpp`` walks the floats of each
range with a stride (stride 1, every float, gave 1.33 and 1.26 ulp: 40 s, too slow here).
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import aot_loss
from aot_loss import _native

ROOT = Path(__file__).resolve().parents[1]
COMPILER = shutil.which("c++") or shutil.which("g++")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if COMPILER is None:
        pytest.skip("needs a C++ compiler")
    exe = tmp_path_factory.mktemp("exp_log") / "exp_log_host"
    subprocess.run(
        [COMPILER, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'csrc'}",
         str(ROOT / "tests/csrc/exp_log_host.cpp"), "-o", str(exe)],
        check=True, capture_output=True,
    )  # fmt: skip
    out = subprocess.run([str(exe), "97"], check=True, capture_output=True, text=True).stdout
    return {name: float(value) for name, value, *_ in (line.split() for line in out.splitlines())}


def test_exp_is_within_one_and_a_half_ulp(report):
    assert report["exp"] <= 1.35


def test_log1p_is_within_one_and_a_half_ulp(report):
    assert report["log1p"] <= 1.3


def test_special_values(report):
    assert report["exp(-0)"] == 1.0
    assert report["exp(-inf)"] == 0.0
    assert report["exp(-104)"] == 0.0
    assert math.isnan(report["exp(nan)"])
    assert report["log1p(0)"] == 0.0
    assert np.float32(report["log1p(1)"]) == np.float32(math.log(2.0))
    assert math.isnan(report["log1p(nan)"])


@pytest.mark.skipif(not _native.STATUS.loaded, reason=f"native library {_native.STATUS.reason}")
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_logistic_terms_match_float64(label_smoothing):
    """Each term and slope in float32 against NumPy's float64 softplus and sigmoid, for margins
    from -1e4 (cost 1e4) to 1e4 (cost rounds to 0): errors stay at float32 rounding."""
    margins = np.concatenate([np.linspace(-1e4, 1e4, 4001), np.geomspace(1e-6, 70, 500)])
    d = torch.tensor(np.concatenate([margins, -margins]), dtype=torch.float32)
    u = d.clone().requires_grad_()
    # Rows of one pair each (u_i, 0), so reduction="none" gives every term on its own.
    options = {"beta": 1.0, "label_smoothing": label_smoothing, "reduction": "none", "backend": "native"}
    loss = aot_loss.unpaired(u[:, None], torch.zeros(len(d), 1), **options)
    loss.sum().backward()
    z, ls = d.double().numpy(), label_smoothing  # beta = 1

    def sigmoid(x):
        return np.exp(-np.logaddexp(0.0, -x))

    exact = (1 - ls) * np.logaddexp(0.0, -z) + ls * np.logaddexp(0.0, z)
    slope = -(1 - ls) * sigmoid(-z) + ls * sigmoid(z)
    tiny = 1.4e-45  # float32's smallest subnormal: terms beyond margin ~103 round to it or to 0
    torch.testing.assert_close(loss.double(), torch.from_numpy(exact), rtol=3e-7, atol=tiny)
    # With smoothing the slope is a difference of two sigmoids, which cancel near z = 0.85:
    # there float32 keeps an absolute error of about one ulp of the terms (~6e-8).
    atol = 1.2e-7 if label_smoothing else tiny
    torch.testing.assert_close(u.grad.double(), torch.from_numpy(slope), rtol=3e-7, atol=atol)
