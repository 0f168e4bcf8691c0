"""Forward+backward of the second-order and range-restricted losses (issue #30) against TRL's
first-order formula and aot_loss's own first order, in the same run, on the torch path.

Goal (issue #30): ratio TRL formula time / aot_loss time >= 1.0 for order 2, as for order 1.
Not met yet: the torch path of order 2 integrates each cell by closed forms and, for the
logistic cost, a quadrature rule of a few hundred nodes, in a few dozen small ops.

    python benchmarks/bench_orders.py            # full run, appends to benchmarks/results/
    python benchmarks/bench_orders.py --quick    # smoke run (CI), writes under /tmp
"""

from __future__ import annotations

import torch
from _harness import append_results, bench_parser, fmt_time, results_dir, time_calls
from oracles import trl_aot_unpaired

import aot_loss

BETA = 0.1
PROVIDERS = {  # name: the loss's options
    "order1": {},
    "order1_range": {"quantile_range": (0.0, 0.2)},
    "order2_hinge": {"loss": "hinge", "order": 2},
    "order2_logistic": {"order": 2},
}


def _step(loss, tensors):
    """One forward and backward of ``loss(pc, pr, rc, rr)``, gradients cleared."""

    def step():
        loss(*tensors).backward()
        tensors[0].grad = tensors[1].grad = None

    return step


def _unpaired(options):
    return lambda pc, pr, rc, rr: aot_loss.unpaired(pc - rc, pr - rr, beta=BETA, backend="torch", **options)


def main() -> None:
    parser = bench_parser(__doc__, "tiny sizes, short timings (smoke test)")
    args = parser.parse_args()
    sizes = [32, 256] if args.quick else [32, 256, 4096]
    min_run_time = 0.05 if args.quick else 1.0
    rows, lines = [], []
    for n in sizes:
        tensors = [torch.randn(n) * 30 - 200 for _ in range(4)]
        tensors[0].requires_grad_()
        tensors[1].requires_grad_()
        steps = {"trl": _step(lambda pc, pr, rc, rr: trl_aot_unpaired(pc, pr, rc, rr, BETA).mean(), tensors)}
        steps |= {name: _step(_unpaired(options), tensors) for name, options in PROVIDERS.items()}
        times = time_calls(steps, min_run_time)
        for name, t in times.items():
            rows.append({"case": "unpaired", "provider": name, "n": n, "m": n, "mode": "fwd+bwd", **t})
        for name in PROVIDERS:
            ratio = times["trl"]["median_s"] / times[name]["median_s"]
            lines.append(
                f"n={n:>6d}  trl {fmt_time(times['trl']['median_s']):>9s}  {name:16s} "
                f"{fmt_time(times[name]['median_s']):>9s}  speed-up {ratio:5.2f}x  "
                f"[{'ok' if ratio >= 1.0 else 'MISS'} >= 1.0]"
            )
    print("\n".join(lines))
    print(f"appended {len(rows)} rows to {append_results('orders', rows, results_dir(args))}")


if __name__ == "__main__":
    main()
