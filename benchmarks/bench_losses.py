"""Forward+backward of aot_loss.unpaired / aot_loss.paired against TRL's formula (eager).

Goals (issue #2): ratio TRL time / aot_loss time >= 1.0 at every n; unequal sizes (n, n/2)
within 2x of equal sizes (n, n) at n = 1e6.

    python benchmarks/bench_losses.py            # full run, appends to benchmarks/results/
    python benchmarks/bench_losses.py --quick    # smoke run (CI), writes under /tmp
"""

from __future__ import annotations

import torch
from _harness import append_results, bench_parser, fmt_time, results_dir, time_calls
from oracles import trl_aot_paired, trl_aot_unpaired

import aot_loss

BETA = 0.1


def _logps(n: int) -> list[torch.Tensor]:
    """Policy log-probs (with grad) and reference log-probs (without), like a DPO batch."""
    pc, pr = (torch.randn(n) * 30 - 200 for _ in range(2))
    rc, rr = (torch.randn(n) * 30 - 200 for _ in range(2))
    return [pc.requires_grad_(), pr.requires_grad_(), rc, rr]


def _step(loss_fn, tensors):
    def step():
        loss_fn(*tensors).backward()
        tensors[0].grad = tensors[1].grad = None

    return step


PROVIDERS = {
    "unpaired": {
        "trl": lambda pc, pr, rc, rr: trl_aot_unpaired(pc, pr, rc, rr, BETA).mean(),
        "aot_loss": lambda pc, pr, rc, rr: aot_loss.unpaired(pc - rc, pr - rr, beta=BETA),
    },
    "paired": {
        "trl": lambda pc, pr, rc, rr: trl_aot_paired(pc, pr, rc, rr, BETA).mean(),
        "aot_loss": lambda pc, pr, rc, rr: aot_loss.paired(pc, pr, rc, rr, beta=BETA),
    },
}


def main() -> None:
    parser = bench_parser(__doc__, "tiny sizes, short timings (smoke test)")
    args = parser.parse_args()
    sizes = [32, 256] if args.quick else [32, 256, 4096, 100_000, 1_000_000]
    big = 4096 if args.quick else 1_000_000
    min_run_time = 0.05 if args.quick else 2.0
    out = results_dir(args)

    rows, lines = [], []
    for variant, providers in PROVIDERS.items():
        for n in sizes:
            tensors = _logps(n)
            times = time_calls({name: _step(fn, tensors) for name, fn in providers.items()}, min_run_time)
            ratio = times["trl"]["median_s"] / times["aot_loss"]["median_s"]
            for name, t in times.items():
                rows.append({"case": variant, "provider": name, "n": n, "m": n, "mode": "fwd+bwd", **t})
            verdict = "ok" if ratio >= 1.0 else "MISS"
            lines.append(
                f"{variant:9s} n={n:>8d}  trl {fmt_time(times['trl']['median_s']):>9s}  "
                f"aot_loss {fmt_time(times['aot_loss']['median_s']):>9s}  "
                f"speed-up {ratio:5.2f}x  [{verdict} >= 1.0]"
            )

    loss = lambda u, v: aot_loss.unpaired(u, v, beta=BETA)  # noqa: E731
    sizes_times = time_calls(
        {"equal": _step(loss, _rewards(big, big)), "unequal": _step(loss, _rewards(big, big // 2))},
        min_run_time,
    )
    equal, unequal = sizes_times["equal"], sizes_times["unequal"]
    rows.append(
        {"case": "unpaired_equal", "provider": "aot_loss", "n": big, "m": big, "mode": "fwd+bwd", **equal}
    )
    rows.append(
        {
            "case": "unpaired_unequal",
            "provider": "aot_loss",
            "n": big,
            "m": big // 2,
            "mode": "fwd+bwd",
            **unequal,
        }
    )
    slowdown = unequal["median_s"] / equal["median_s"]
    lines.append(
        f"unequal (n, n/2) vs equal (n, n) at n={big}: {fmt_time(unequal['median_s'])} vs "
        f"{fmt_time(equal['median_s'])} = {slowdown:.2f}x  [{'ok' if slowdown <= 2 else 'MISS'} <= 2]"
    )
    path = append_results("losses", rows, out)
    print(f"threads={torch.get_num_threads()}  torch={torch.__version__}")
    print("\n".join(lines))
    print(f"appended {len(rows)} rows to {path}")


def _rewards(n: int, m: int) -> list[torch.Tensor]:
    return [torch.randn(n).requires_grad_(), torch.randn(m).requires_grad_()]


if __name__ == "__main__":
    main()
