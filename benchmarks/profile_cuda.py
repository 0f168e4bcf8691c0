"""Where a forward+backward goes on a GPU: for each provider of bench_fused.py, the time of
one call timed three ways, and the GPU kernels it runs.

  sync     CUDA events around one call, synchronised after it (bench_fused.py's figure)
  stream   CUDA events around 50 calls queued back to back, per call (host-bound when the
           host launches slower than the GPU runs)
  kernels  the sum of the call's kernel times from torch.profiler (the GPU's own work)

    python benchmarks/profile_cuda.py [--shape 64 --shape 1024,16 ...]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _harness import metadata
from bench_fused import _step, providers
from torch.profiler import ProfilerActivity, profile

DEFAULT_SHAPES = ["8", "4096", "1024,16", "1000000", "10000000"]


def timed(step, repeats: int, batch: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start.record()
        for _ in range(batch):
            step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / batch)
    return statistics.median(times)


def kernels(step, calls: int = 5) -> tuple[float, list[tuple[str, float, int]]]:
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            step()
        torch.cuda.synchronize()
    rows = [
        (e.key, e.device_time_total / calls / 1e6, e.count // calls)
        for e in prof.key_averages()
        if e.device_time_total > 0
    ]
    rows.sort(key=lambda r: -r[1])
    return sum(r[1] for r in rows), rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", action="append", help="comma-separated, e.g. 1024,16")
    parser.add_argument("--top", type=int, default=6, help="kernels listed per provider")
    args = parser.parse_args()
    meta = metadata()
    print(
        f"# python benchmarks/profile_cuda.py on an {meta['gpu']}, torch {meta['torch']}, "
        f"git {meta['git_sha']} ({str(meta['timestamp'])[:10]})"
    )
    for text in args.shape or DEFAULT_SHAPES:
        shape = tuple(int(s) for s in text.split(","))
        g = torch.Generator().manual_seed(0)
        u = torch.randn(shape, generator=g).cuda().requires_grad_()
        v = torch.randn(shape, generator=g).cuda().requires_grad_()
        for name, fn in providers(quick=False, device="cuda").items():
            step = _step(fn, u, v)
            for _ in range(3):
                step()
            big = u.numel() >= 1_000_000
            sync = timed(step, 20 if big else 100, 1)
            stream = timed(step, 5, 10 if big else 50)
            gpu, rows = kernels(step)
            print(
                f"{text:>9s} {name:8s} sync {sync * 1e6:8.1f} us  stream {stream * 1e6:8.1f} us  "
                f"kernels {gpu * 1e6:8.1f} us in {sum(r[2] for r in rows)} launches"
            )
            for key, t, count in rows[: args.top]:
                print(f"{'':19s}{t * 1e6:8.1f} us x{count}  {key[:90]}")


if __name__ == "__main__":
    main()
