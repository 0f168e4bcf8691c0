"""The benchmarks' shared harness (benchmarks/_harness.py): what it times is what it records."""

import _harness
import torch


def test_steps_are_timed_on_the_thread_count_the_results_record(threads):
    """torch.utils.benchmark.Timer defaults to one thread; the harness must not."""
    threads(2)
    seen = set()
    times = _harness.time_calls({"step": lambda: seen.add(torch.get_num_threads())}, 0.01, rounds=2)
    assert seen == {2} == {_harness.metadata()["threads"]}
    assert times["step"]["runs"] >= 2 and times["step"]["median_s"] > 0
