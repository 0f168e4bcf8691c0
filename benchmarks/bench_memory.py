"""Memory held by the native ops over many calls: glibc's in-use heap bytes (mallinfo2) and
the resident set, after a warm-up, each case in a fresh process.

Goals (issue #27): 200k calls of each op at n = 64 grow the in-use heap by at most 256 KiB
and the RSS by at most 8 MiB; 2k calls at n = 1e5 grow the RSS by at most 32 MiB (and the heap
by at most 256 KiB, as the test has always held them). The torch
backend's loss, measured alike, is the baseline (it holds nothing across calls).

    python benchmarks/bench_memory.py            # full run, appends to benchmarks/results/
    python benchmarks/bench_memory.py --quick    # a tenth of the calls (CI smoke run)
    python benchmarks/bench_memory.py --child dominance 64 200000 public   # one case, as JSON
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys
import time

KIB, MIB = 1024, 1024 * 1024
# (op, n, calls, api): api "public" is the loss or soft sort with its backward, "raw" the op alone
CASES = [
    ("dominance", 64, 200_000, "public"),
    ("soft_sort", 64, 200_000, "public"),
    ("dominance", 100_000, 2_000, "public"),
    ("soft_sort", 100_000, 2_000, "public"),
    ("torch loss (baseline)", 64, 200_000, "public"),
]
GOALS = {64: {"in_use": 256 * KIB, "rss": 8 * MIB}, 100_000: {"in_use": 256 * KIB, "rss": 32 * MIB}}


_MALLINFO2 = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (*_MALLINFO2, "keepcost")]


def heap_in_use() -> int:
    """Bytes in use in glibc's heap: small blocks in arenas and mmapped large blocks."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(op: str, n: int, calls: int, api: str) -> dict[str, float]:
    """Run one case in this process and return the growth after the warm-up."""
    import torch

    import aot_loss

    g = torch.Generator().manual_seed(n)
    u, v = torch.randn(n, generator=g, requires_grad=True), torch.randn(n, generator=g, requires_grad=True)
    steps = {
        ("dominance", "public"): lambda: aot_loss.unpaired(u, v, backend="native").backward(),
        ("soft_sort", "public"): lambda: aot_loss.soft_sort(u, backend="native").sum().backward(),
        ("dominance", "raw"): lambda: torch.ops.aot_loss.dominance(
            u.detach(), v.detach(), None, None, "logistic", 0.1, 0.0, True
        ),
        ("soft_sort", "raw"): lambda: torch.ops.aot_loss.soft_sort(u.detach(), 1.0, "l2"),
        ("torch loss (baseline)", "public"): lambda: aot_loss.unpaired(u, v, backend="torch").backward(),
    }
    step = steps[(op, api)]
    for _ in range(max(calls // 100, 20)):  # warm-up: caches, thread pools, allocator pools
        step()
    gc.collect()
    heap, resident, began = heap_in_use(), rss(), time.perf_counter()
    for _ in range(calls):
        step()
    gc.collect()
    return {
        "in_use_growth": heap_in_use() - heap,
        "rss_growth": rss() - resident,
        "seconds": time.perf_counter() - began,
    }


def run_case(op: str, n: int, calls: int, api: str) -> dict[str, float]:
    """:func:`child` in a fresh interpreter."""
    command = [sys.executable, __file__, "--child", op, str(n), str(calls), api]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        op, n, calls, api = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
        print(json.dumps(child(op, n, calls, api)))
        return
    from _harness import append_results, bench_parser, results_dir

    args = bench_parser(__doc__, "a tenth of the calls (smoke test)").parse_args()
    rows, lines = [], []
    for op, n, calls, api in CASES:
        calls = calls // 10 if args.quick else calls
        got = run_case(op, n, calls, api)
        rows.append({"case": op, "n": n, "calls": calls, "api": api, **got})
        goal = GOALS[n] if not op.startswith("torch") else {}
        verdicts = [
            f"{what} {'ok' if got[f'{what}_growth'] <= limit else 'MISS'} <= "
            + (f"{limit / KIB:.0f} KiB" if limit < MIB else f"{limit / MIB:.0f} MiB")
            for what, limit in goal.items()
        ]
        lines.append(
            f"{op:22s} n={n:>6d} x {calls:>6d}: in-use {got['in_use_growth'] / KIB:+9.1f} KiB, "
            f"RSS {got['rss_growth'] / MIB:+7.2f} MiB ({got['seconds']:.1f} s)"
            + (f"  [{', '.join(verdicts)}]" if verdicts else "")
        )
    path = append_results("memory", rows, results_dir(args))
    print("\n".join(lines))
    print(f"appended {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
