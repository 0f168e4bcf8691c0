"""Test inputs: hypothesis strategies of samples with planted structure (ties, shifts, unequal
sizes), and tie-free samples for gradcheck."""

import numpy as np
import torch
from hypothesis import strategies as st
from oracles import BUILTIN_COSTS

# Values on a coarse grid so ties are common, and bounded so float64 stays exact enough.
_values = st.integers(-40, 40).map(lambda k: k / 4)


@st.composite
def samples(draw, min_size=1, max_size=12):
    """A 1-D float64 array of grid values (ties likely)."""
    return np.array(draw(st.lists(_values, min_size=min_size, max_size=max_size)), dtype=np.float64)


@st.composite
def weights_for(draw, n):
    """Non-negative masses with at least one positive entry; zeros are likely."""
    w = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]), min_size=n, max_size=n))
    if not any(w):
        w[draw(st.integers(0, n - 1))] = 1.0
    return np.array(w, dtype=np.float64)


costs = st.sampled_from(BUILTIN_COSTS)
monotone_costs = st.sampled_from([c for c in BUILTIN_COSTS if c != "least_squares"])  # h non-increasing
betas = st.sampled_from([0.01, 0.3, 1.0, 2.5])


def spread(*shape, device="cpu"):
    """A float64 leaf whose rows hold distinct values with gaps > 1e-2, so that no finite
    difference step of gradcheck crosses a tie."""
    n = shape[-1]
    base = torch.randperm(n * 4)[:n].to(torch.float64) * 0.37 - n * 0.5
    return (base + 0.01 * torch.rand(*shape, dtype=torch.float64)).to(device).requires_grad_()
