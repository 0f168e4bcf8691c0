"""The cost of global coupling (``group="world"``) against per-rank batch size, same run.

Two (``--ranks``) gloo processes on localhost, one thread each. Per call (forward and
backward of ``aot_loss.unpaired`` with n chosen and n rejected rewards per rank):

- ``local``: each rank couples its own batch (``group=None``; what TRL and the paper do);
- ``global``: the batch of all ranks coupled as one (``group="world"``);
- ``gather``: the gather alone (header exchange, padded all-gather, unpadding);
- ``one_process``: one process computing the loss of the whole global batch (k n samples),
  i.e. global coupling's compute without communication.

Reported: ``global / local`` (the price of global coupling) and the gather's share of
``global``. There is no goal; NCCL on a multi-GPU machine is not measured here.

    python benchmarks/bench_distributed.py            # full run, appends to benchmarks/results/
    python benchmarks/bench_distributed.py --quick    # smoke run (CI), writes under /tmp
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _harness import append_results, bench_parser, fmt_time, results_dir

import aot_loss
from aot_loss import _distributed
from aot_loss._options import check_options


def _steps(n: int, rank: int, k: int) -> dict[str, Callable[[], object]]:
    g = torch.Generator().manual_seed(n * 10 + rank)
    r_pos = torch.randn(n, generator=g).requires_grad_()
    r_neg = torch.randn(n, generator=g).requires_grad_()
    whole_pos = torch.randn(k * n, generator=g).requires_grad_()
    whole_neg = torch.randn(k * n, generator=g).requires_grad_()
    options = check_options({})  # the defaults
    world = dist.group.WORLD
    names = ("r_pos", "r_neg", "pos_weights", "neg_weights")
    return {
        "local": lambda: aot_loss.unpaired(r_pos, r_neg).backward(),
        "global": lambda: aot_loss.unpaired(r_pos, r_neg, group="world").backward(),
        "gather": lambda: _distributed.gather(world, r_pos, r_neg, None, None, options, names),
        "one_process": lambda: aot_loss.unpaired(whole_pos, whole_neg).backward(),
    }


def _time_in_step(step: Callable[[], object], repeats: int) -> float:
    """Seconds per call, every rank calling the same number of times from a barrier."""
    dist.barrier()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def _rank(rank: int, k: int, init: str, sizes: list[int], rounds: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=k)
    rows = []
    for n in sizes:
        steps = _steps(n, rank, k)
        repeats = max(3, min(200, 200_000 // n))
        samples: dict[str, list[float]] = {name: [] for name in steps}
        for step in steps.values():
            _time_in_step(step, 2)  # warm-up
        for _ in range(rounds):  # interleaved, so that drift hits every step alike
            for name, step in steps.items():
                samples[name].append(_time_in_step(step, repeats))
        for name, times in samples.items():
            q1, median, q3 = statistics.quantiles(times, n=4)
            rows.append({"case": name, "n_per_rank": n, "ranks": k, "median_s": median, "iqr_s": q3 - q1})
    if rank == 0:
        torch.save(rows, Path(out) / "rows.pt")
    dist.destroy_process_group()


def main() -> None:
    parser = bench_parser(__doc__, "two small sizes, few rounds (smoke test)")
    parser.add_argument("--ranks", type=int, default=2)
    args = parser.parse_args()
    sizes = [64, 4096] if args.quick else [16, 256, 4096, 65_536, 1_048_576]
    rounds = 4 if args.quick else 9
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank, args=(args.ranks, f"{tmp}/init", sizes, rounds, tmp), nprocs=args.ranks, join=True)
        rows = torch.load(Path(tmp) / "rows.pt")
    path = append_results("distributed", rows, results_dir(args))

    times = {(r["case"], r["n_per_rank"]): r["median_s"] for r in rows}
    print(f"{args.ranks} gloo ranks on localhost, 1 thread each, torch={torch.__version__}")
    columns = ("n per rank", "local", "global", "gather", "one proc")
    print(f"{columns[0]:>10s} " + " ".join(f"{c:>9s}" for c in columns[1:]) + "  global/local  gather share")
    for n in sizes:
        t = {case: times[(case, n)] for case in ("local", "global", "gather", "one_process")}
        cells = " ".join(f"{fmt_time(t[c]):>9s}" for c in t)
        print(f"{n:>10d} {cells}  {t['global'] / t['local']:11.2f}x  {t['gather'] / t['global']:11.0%}")
    print(f"appended {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
