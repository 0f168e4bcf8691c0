"""The tests' tolerances, in one table. Each comparison of two computations names why they may
differ; the figure lives here, once.

``tol(name)`` gives the ``rtol``/``atol`` keywords (``torch.testing.assert_close``,
``np.testing.assert_allclose``); ``approx(name)`` the ``rel``/``abs`` keywords of
``pytest.approx`` (``rel=0``: the absolute bound alone).
"""

from __future__ import annotations

# name: (relative, absolute)
TOLERANCES: dict[str, tuple[float, float]] = {
    # the same arithmetic in the same order: bit for bit
    "exact": (0.0, 0.0),
    # float64 against a float64 re-derivation (NumPy, SciPy, a loop): sums rounded in another order
    "float64": (1e-12, 1e-12),
    # one float64 function against another, element by element
    "float64_elementwise": (1e-12, 1e-15),
    # float64, relative only (values far from zero)
    "float64_relative": (1e-12, 0.0),
    # float64 values of order one (ratios, areas in [0, 1]): absolute
    "float64_unit": (0.0, 1e-12),
    # float64 over long sums or another grid (merged-grid cells, tiled kernels, per-row costs)
    "float64_sums": (1e-10, 1e-12),
    # float64 through a model's forward and backward (matmuls in another order)
    "float64_model": (1e-10, 1e-10),
    # float64 over long sums, relative only (values far from zero; sums gathered across processes)
    "float64_sums_relative": (1e-10, 0.0),
    # float64 computed in chunks against all at once, or from other processes
    "float64_chunked": (1e-9, 1e-12),
    "float64_processes": (1e-9, 0.0),
    # an exact measure against its evaluation on 1e6 grid levels (a crossing can fall between two)
    "dense_grid": (0.0, 1e-5),
    # a closed form or a fixed rule against SciPy's adaptive quad of the definition
    "adaptive_quadrature": (1e-10, 1e-14),
    # the logistic cost's order-2 rule, as issue #30 bounds it (|beta g| up to 1e3)
    "logistic_rule": (1e-7, 1e-15),
    # the exact violation ratio against deepsig's, summed on a grid of step dt = 0.0005
    "deepsig_grid": (0.0, 1e-2),
    # an upper confidence bound against deepsig.aso's: two bootstraps of 2000 resamples and its grid
    "deepsig_bootstrap": (0.0, 3e-2),
    # a linear program's solution (HiGHS' feasibility tolerance)
    "linprog": (0.0, 1e-9),
    # the soft sort against its float64 NumPy oracle (np.testing's default rtol)
    "pav_oracle": (1e-7, 1e-9),
    # float32 gradients against float64 ones, in relative terms
    "float32_vs_float64": (2e-6, 0.0),
    "float32_vs_float64_grad": (2e-6, 1e-13),
    # float32 against a float32 formula of another library (TRL) or its float64 copy
    "float32": (1e-6, 1e-6),
    "float32_relative": (1e-5, 1e-12),
    # float32 gradients gathered across processes
    "float32_gathered": (1e-6, 1e-12),
    "float32_processes": (1e-6, 1e-9),
    # two float32 computations in another order (GPU and CPU, chunked and whole, other threads)
    "float32_paths": (1e-5, 1e-6),
    "float32_threads": (1e-5, 1e-5),
    "float32_model": (1e-5, 1e-5),
    # float32 values of order one (ratios, areas in [0, 1]): absolute
    "float32_unit": (0.0, 1e-5),
    # float32 against torchsort, whose offsets of size n / strength round in float32
    "float32_absolute": (0.0, 1e-6),
    # float32 on the GPU against float64 on the CPU (CUB's scans and tiles sum in another order)
    "float32_cuda": (2e-5, 1e-6),
    # float32 sums over tiles of long rows
    "float32_long_sums": (1e-4, 1e-5),
    # percentiles read off a plot
    "percentiles": (0.05, 1e-12),
    # "clearly different": a value that must not be near another
    "coarse": (0.0, 1e-3),
}


def tol(name: str) -> dict[str, float]:
    """``rtol``/``atol`` keywords of the tolerance ``name``."""
    rtol, atol = TOLERANCES[name]
    return {"rtol": rtol, "atol": atol}


def approx(name: str) -> dict[str, float]:
    """``rel``/``abs`` keywords of ``pytest.approx`` for the tolerance ``name``."""
    rel, abs_ = TOLERANCES[name]
    return {"rel": rel, "abs": abs_}
