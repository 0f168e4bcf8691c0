"""aot_loss.stats.almost_dominance against deepsig.aso (num_jobs=1), same run, same resamples.

Goals (issue #31): with 1000 resamples at n = m = 1000 and 10000, deepsig's time / ours >= 100;
at n = m = 1e6 with 200 resamples, ours within 60 s (2-core CPU, its default threads).

deepsig reads its quantile functions point by point (``np.vectorize``, a sort per point), so
1000 of its resamples at n = 10000 take most of an hour: it is timed on q = 2 and 4 resamples
and its time at 1000 is extrapolated as fixed + 1000 * per-resample (a line through both,
which is how its loop scales: one violation ratio per resample, plus one on the samples).

    python benchmarks/bench_stats.py            # full run, appends to benchmarks/results/
    python benchmarks/bench_stats.py --quick    # smoke run (CI), writes under /tmp
"""

from __future__ import annotations

import importlib
import time

import numpy as np
import torch
from _harness import append_results, bench_parser, fmt_time, results_dir

from aot_loss.stats import almost_dominance

GOAL_RATIO, GOAL_BIG_S = 100.0, 60.0


def _wall(call, repeats: int) -> float:
    """Median wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def main() -> None:
    parser = bench_parser(__doc__, "n = 1000 only, fewer resamples, no 1e6 run (smoke test)")
    args = parser.parse_args()
    aso = importlib.import_module("deepsig.aso").aso
    sizes = [1000] if args.quick else [1000, 10000]
    resamples = 100 if args.quick else 1000
    rows, lines = [], []
    for n in sizes:
        rng = np.random.default_rng(n)
        u, v = rng.normal(0.1, 1.0, n), rng.normal(0.0, 1.3, n)
        ours = _wall(
            lambda u=u, v=v: almost_dominance(u, v, num_bootstrap=resamples, seed=0), 1 if args.quick else 3
        )
        few, more = 2, 4
        t_few, t_more = (
            _wall(
                lambda q=q, u=u, v=v: aso(
                    u, v, num_bootstrap_iterations=q, num_jobs=1, show_progress=False, seed=0
                ),
                1,
            )
            for q in (few, more)
        )
        per = max((t_more - t_few) / (more - few), 0.0)
        deepsig = max(t_few - few * per, 0.0) + resamples * per
        ratio = deepsig / ours
        rows += [
            {"case": "almost_dominance", "provider": "aot_loss", "n": n, "m": n, "resamples": resamples,
             "median_s": ours},
            {"case": "almost_dominance", "provider": "deepsig_extrapolated", "n": n, "m": n,
             "resamples": resamples, "median_s": deepsig, "measured_resamples": [few, more],
             "measured_s": [t_few, t_more]},
        ]  # fmt: skip
        lines.append(
            f"n={n:>6d}  {resamples} resamples: aot_loss {fmt_time(ours):>9s}  deepsig.aso "
            f"~{fmt_time(deepsig):>9s} (from {few} and {more} resamples)  speed-up {ratio:7.0f}x  "
            f"[{'ok' if ratio >= GOAL_RATIO else 'MISS'} >= {GOAL_RATIO:.0f}]"
        )
    if not args.quick:
        n = 1_000_000
        g = torch.Generator().manual_seed(0)
        u, v = (
            torch.randn(n, generator=g, dtype=torch.float64) + 0.01,
            torch.randn(n, generator=g, dtype=torch.float64),
        )
        for order in (1, 2):
            big = _wall(lambda order=order: almost_dominance(u, v, order=order, num_bootstrap=200, seed=0), 1)
            rows.append(
                {"case": f"almost_dominance_order{order}", "provider": "aot_loss", "n": n, "m": n,
                 "resamples": 200, "median_s": big}
            )  # fmt: skip
            lines.append(
                f"n={n}  200 resamples, order {order}: aot_loss {big:6.1f} s  "
                f"[{'ok' if big <= GOAL_BIG_S else 'MISS'} <= {GOAL_BIG_S:.0f} s]"
            )
    print("\n".join(lines))
    print(f"appended {len(rows)} rows to {append_results('stats', rows, results_dir(args))}")


if __name__ == "__main__":
    main()
