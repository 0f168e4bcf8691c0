"""aot_loss.metrics against the time NumPy takes to sort both inputs (same run).

Goal (issue #7): each metric at n = m = 1e7 within 3x of ``np.sort(u); np.sort(v)``.
Weighted inputs (which need the permutation, hence the stable torch sort) are timed for
information, without a goal.

    python benchmarks/bench_metrics.py            # full run, appends to benchmarks/results/
    python benchmarks/bench_metrics.py --quick    # smoke run (CI), writes under /tmp
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from _harness import append_results, bench_parser, fmt_time, results_dir, time_calls

from aot_loss import metrics

GOAL, GOAL_N = 3.0, 10_000_000
GOAL_CASES = ("fsd_violation", "fsd_violation_ratio", "ot_violation", "quantile_curves")


def _steps(n: int) -> dict[str, Callable[[], object]]:
    g = torch.Generator().manual_seed(n)
    u, v = torch.randn(n, generator=g) + 0.1, torch.randn(n, generator=g)
    u_np, v_np, w = u.numpy(), v.numpy(), torch.rand(n, generator=g)
    return {
        "numpy_sort_both": lambda: (np.sort(u_np), np.sort(v_np)),
        "fsd_violation": lambda: metrics.fsd_violation(u, v),
        "fsd_violation_ratio": lambda: metrics.fsd_violation_ratio(u, v),
        "ot_violation": lambda: metrics.ot_violation(u, v),
        "quantile_curves": lambda: metrics.quantile_curves(u, v, 101),
        "fsd_violation_unequal": lambda: metrics.fsd_violation(u, v[: n // 2]),
        "fsd_violation_weighted": lambda: metrics.fsd_violation(u, v, u_weights=w),
    }


def main() -> None:
    parser = bench_parser(__doc__, "small sizes, short timings (smoke test)")
    args = parser.parse_args()
    sizes = [10_000] if args.quick else [10_000, 1_000_000, 10_000_000]
    min_run_time = 0.05 if args.quick else 2.0
    out = results_dir(args)

    rows, lines = [], []
    for n in sizes:
        times = time_calls(_steps(n), min_run_time, rounds=3)
        base = times["numpy_sort_both"]["median_s"]
        lines.append(f"n=m={n:>9d}  numpy sort of both: {fmt_time(base)}")
        for name, t in times.items():
            rows.append({"case": name, "n": n, "m": n // 2 if "unequal" in name else n, **t})
            if name == "numpy_sort_both":
                continue
            ratio = t["median_s"] / base
            verdict = ""
            if n == GOAL_N and name in GOAL_CASES:
                verdict = f"  [{'ok' if ratio <= GOAL else 'MISS'} <= {GOAL:g}x]"
            lines.append(f"    {name:24s} {fmt_time(t['median_s']):>9s}  {ratio:5.2f}x numpy{verdict}")
    path = append_results("metrics", rows, out)
    print(f"threads={torch.get_num_threads()}  torch={torch.__version__}  numpy={np.__version__}")
    print("\n".join(lines))
    print(f"appended {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
