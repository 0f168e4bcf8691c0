"""The dtypes things are computed in (aot_loss/_dtypes.py)."""

import pytest
import torch

from aot_loss._dtypes import COMPUTE_DTYPES, FLOAT_DTYPES, accumulation_dtype, as_dtype, compute_dtype, upcast

f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64


@pytest.mark.parametrize(
    ("dtypes", "want"),
    [((f16,), f32), ((bf16,), f32), ((f16, bf16), f32), ((f32,), f32), ((f32, f64), f64), ((bf16, f64), f64)],
)
def test_half_precision_computes_in_float32_and_mixed_inputs_promote(dtypes, want):
    assert compute_dtype(*(torch.zeros(2, dtype=d) for d in dtypes)) is want
    assert want in COMPUTE_DTYPES and set(COMPUTE_DTYPES) <= set(FLOAT_DTYPES)


def test_upcast_keeps_shared_weights_one_tensor_and_skips_no_op_casts():
    u, v, w = torch.zeros(3, dtype=f16), torch.zeros(3, dtype=f16), torch.ones(3, dtype=f16)
    uu, vv, uw, vw = upcast(u, v, w, w)
    assert uu.dtype == vv.dtype == uw.dtype == f32 and uw is vw
    x = torch.zeros(2)
    assert as_dtype(x, f32) is x


def test_long_sums_are_float64_on_cpu():
    assert accumulation_dtype(torch.zeros(1, dtype=f32)) is f64
