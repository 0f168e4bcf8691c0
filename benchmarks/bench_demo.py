"""Wall time of the demo (``python -m aot_loss demo``), alone and while two busy processes
keep both cores loaded (same run).

Goal (issue #26): at most 30 s on a 2-core machine under that load. The run alone is the
baseline; the demo with torch's default thread count under load is timed for comparison
(a small model on two threads collapses when the cores are shared).

    python benchmarks/bench_demo.py            # full run, appends to benchmarks/results/
    python benchmarks/bench_demo.py --quick    # the demo's --quick run only, under load (CI)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from _harness import append_results, bench_parser, results_dir

GOAL_S = 30.0
BUSY = "while True: pass"


@contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """``count`` processes spinning on a core each, stopped on exit."""
    spinners = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(count)]
    try:
        time.sleep(0.5)  # let them reach the loop
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def time_demo(*options: str, timeout: float) -> float:
    """Seconds for one demo process, start-up included; ``inf`` past ``timeout``."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "aot_loss", "demo", "--no-progress", "--out", out, *options]
        began = time.perf_counter()
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return float("inf")
        return time.perf_counter() - began


def main() -> None:
    parser = bench_parser(__doc__, "the demo's --quick run under load only (smoke test)")
    args = parser.parse_args()
    quick = ["--quick"] if args.quick else []
    default_threads = str(torch.get_num_threads())
    cases: list[tuple[str, list[str], int, float]] = [("1 thread, under load", quick, 2, 300.0)]
    if not args.quick:
        cases = [
            ("1 thread, alone", [], 0, 300.0),
            *cases,
            (
                f"{default_threads} threads (torch's default), under load",
                ["--threads", default_threads],
                2,
                300.0,
            ),
        ]
    rows, lines = [], []
    for name, options, busy, timeout in cases:
        with busy_cores(busy):
            seconds = time_demo(*options, timeout=timeout)
        rows.append({"case": name, "options": options, "busy_processes": busy, "wall_s": seconds})
        shown = f"{seconds:6.1f} s" if seconds != float("inf") else f"> {timeout:.0f} s"
        verdict = (
            f"  [{'ok' if seconds <= GOAL_S else 'MISS'} <= {GOAL_S:g} s]"
            if "1 thread, under" in name
            else ""
        )
        lines.append(f"{name:44s} {shown}{verdict}")
    path = append_results("demo", rows, results_dir(args))
    print(f"cores: {os.cpu_count()}  torch={torch.__version__}  demo options: {quick or 'defaults'}")
    print("\n".join(lines))
    print(f"appended {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
