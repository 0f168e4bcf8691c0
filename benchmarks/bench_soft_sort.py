"""Soft sort forward+backward: aot_loss's native kernel and torch reference against torchsort
(same run). Two inputs: normal (scale 10, like summed log-ratios) and Cauchy (heavy tails,
long pooled blocks, the hard case of the reference's rounds). Strength 0.1, L2.

Goals (issue #3): native >= 1.5x faster than torchsort at every size; the reference within
3x of torchsort for n >= 1e4. Without torchsort installed only the two aot_loss paths are
timed (see docs/soft-sort.md for the install recipe).

    python benchmarks/bench_soft_sort.py            # full run, appends to benchmarks/results/
    python benchmarks/bench_soft_sort.py --quick    # smoke run (CI), writes under /tmp
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch
from _harness import append_results, bench_parser, fmt_time, results_dir, time_calls, time_calls_cuda

import aot_loss

NATIVE_GOAL, REFERENCE_GOAL, REFERENCE_MIN_N = 1.5, 3.0, 10_000
STRENGTH = 0.1
# rows (1024, 16): the many short rows of a grouped loss with sort="soft"
SHAPES = [(1, 64), (1, 1_000), (1, 10_000), (1, 100_000), (1, 1_000_000), (256, 1_000), (1024, 16)]


def _input(shape: tuple[int, int], kind: str, device: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(shape[0] * shape[1])
    if kind == "normal":
        x = torch.randn(shape, generator=g) * 10
    else:
        x = torch.tan(torch.pi * (torch.rand(shape, generator=g) - 0.5))
    return x.to(device)


def _steps(x: torch.Tensor) -> dict[str, Callable[[], object]]:
    upstream = torch.randn_like(x)
    one_d = x.shape[0] == 1  # aot_loss takes the row as it is; torchsort needs 2-D

    def step(
        fn: Callable[[torch.Tensor], torch.Tensor], arg: torch.Tensor, up: torch.Tensor
    ) -> Callable[[], object]:
        def run() -> None:
            t = arg.detach().requires_grad_()
            fn(t).backward(up)

        return run

    row, row_up = (x[0], upstream[0]) if one_d else (x, upstream)
    steps: dict[str, Callable[[], object]] = {}
    if importlib.util.find_spec("torchsort") is not None and x.device.type == "cpu":
        import torchsort

        steps["torchsort"] = step(
            lambda t: torchsort.soft_sort(t, regularization_strength=STRENGTH), x, upstream
        )
    if x.device.type in aot_loss.info().ops.get("soft_sort", ()):
        steps["native"] = step(
            lambda t: aot_loss.soft_sort(t, strength=STRENGTH, backend="native"), row, row_up
        )
    steps["torch"] = step(lambda t: aot_loss.soft_sort(t, strength=STRENGTH, backend="torch"), row, row_up)
    return steps


def main() -> None:
    parser = bench_parser(__doc__, "small sizes, short timings (smoke test)")
    args = parser.parse_args()
    shapes = [(1, 64), (1, 10_000)] if args.quick else SHAPES
    min_run_time = 0.05 if args.quick else 1.5
    out = results_dir(args)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    rows, lines = [], []
    for device in devices:
        for kind in ("normal", "cauchy"):
            lines.append(f"{device}, {kind} input, strength {STRENGTH}, forward+backward:")
            for shape in shapes:
                steps = _steps(_input(shape, kind, device))
                if device == "cuda":
                    times = time_calls_cuda(steps, repeats=10 if args.quick else 50)
                else:
                    times = time_calls(steps, min_run_time * (3 if shape[1] >= 100_000 else 1), rounds=3)
                lines.append(_line(shape, times))
                rows += [
                    {"device": device, "input": kind, "shape": list(shape), "provider": p, **t}
                    for p, t in times.items()
                ]
    path = append_results("soft_sort", rows, out)
    print(f"threads={torch.get_num_threads()}  torch={torch.__version__}")
    print("\n".join(lines))
    print(f"appended {len(rows)} rows to {path}")


def _line(shape: tuple[int, int], times: dict[str, dict[str, float]]) -> str:
    text = f"  {shape!s:14s}" + "".join(f"  {p} {fmt_time(t['median_s']):>9s}" for p, t in times.items())
    if "torchsort" not in times:
        return text
    base = times["torchsort"]["median_s"]
    if "native" in times:
        speedup = base / times["native"]["median_s"]
        verdict = "ok" if speedup >= NATIVE_GOAL else "MISS"
        text += f"  | native {speedup:.2f}x faster [{verdict} >= {NATIVE_GOAL:g}x]"
    slowdown = times["torch"]["median_s"] / base
    verdict = ""
    if shape[0] * shape[1] >= REFERENCE_MIN_N and shape[1] >= REFERENCE_MIN_N:
        verdict = f" [{'ok' if slowdown <= REFERENCE_GOAL else 'MISS'} <= {REFERENCE_GOAL:g}x]"
    return text + f"  | torch {slowdown:.2f}x torchsort's time{verdict}"


if __name__ == "__main__":
    main()
