"""The native ops hold no memory across calls: benchmarks/bench_memory.py's goals, checked on
the ops called directly, each case in a fresh process."""

import bench_memory
import pytest
from optional import needs_native


@needs_native
@pytest.mark.parametrize(
    ("op", "n", "calls"),
    [
        ("dominance", 64, 200_000),
        ("soft_sort", 64, 200_000),
        ("dominance", 100_000, 2_000),
        ("soft_sort", 100_000, 2_000),
    ],
)
def test_the_native_ops_hold_no_memory_across_calls(op, n, calls):
    """Each call leaked the std::string of its `str` argument (torch's stable-ABI unboxing,
    pytorch/pytorch#191340): 50 bytes a call, and 120 MiB of RSS over 200k soft sorts."""
    got = bench_memory.run_case(op, n, calls, "raw")
    goal = bench_memory.GOALS[n]
    assert got["rss_growth"] <= goal["rss"], got
    assert got["in_use_growth"] <= goal["in_use"], got
