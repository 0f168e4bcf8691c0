"""Forward+backward of the fused native op against TRL's formula, the torch path and
torch.compile of the torch path (issue #4), on CPU and, when present, CUDA.

Goals (ratio = TRL formula time / provider time, same run):
  CPU native: >= 5x at n <= 256, >= 2x at n >= 1e5.
  CUDA native (H100): >= 5x at n <= 4096 and on the row batches; >= 1.5x faster than
  torch.compile of the torch path; at n = 1e7 within 1.3x of a bare torch.sort of both inputs.

    python benchmarks/bench_fused.py                 # full run, appends to benchmarks/results/
    python benchmarks/bench_fused.py --quick         # smoke run (CI), writes under a temp folder
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from _harness import RESULTS, append_results, bench_parser, fmt_time, time_calls, time_calls_cuda
from oracles import trl_aot_logratios

import aot_loss

BETA = 0.1
SIZES = [8, 35, 64, 256, 1024, 4096, 100_000, 1_000_000, 10_000_000]
ROWS = [(1024, 16), (64, 1024)]


def trl(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """TRL's `aot_unpaired` on rewards, sorting along the sample (last) dimension."""
    return trl_aot_logratios(u, v, BETA, dim=-1).mean()


def providers(quick: bool, device: str) -> dict[str, Callable[..., torch.Tensor]]:
    def torch_path(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return aot_loss.unpaired(u, v, beta=BETA, backend="torch")

    def native(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return aot_loss.unpaired(u, v, beta=BETA, backend="native")

    def floor(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The cheapest differentiable call: no provider can beat sum().backward() here."""
        return u.sum() + v.sum()

    found: dict[str, Callable[..., torch.Tensor]] = {"floor": floor, "trl": trl, "torch": torch_path}
    # A fresh compiled function per shape (the caller rebuilds the dict), so no recompile
    # limit is hit; --quick uses aot_eager to keep the smoke run free of C++ compiles.
    found["compile"] = torch.compile(torch_path, backend="aot_eager" if quick else "inductor")
    if device in aot_loss.info().ops.get("dominance", ()):
        found["native"] = native
    return found


def _step(fn: Callable[..., torch.Tensor], u: torch.Tensor, v: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        fn(u, v).backward()
        u.grad = v.grad = None

    return step


def run_shape(shape: tuple[int, ...], device: str, quick: bool) -> dict[str, dict[str, float]]:
    g = torch.Generator(device="cpu").manual_seed(0)
    u = torch.randn(shape, generator=g).to(device).requires_grad_()
    v = torch.randn(shape, generator=g).to(device).requires_grad_()
    steps = {name: _step(fn, u, v) for name, fn in providers(quick, device).items()}
    numel = u.numel()
    if device == "cuda":
        steps["sort_both"] = lambda: (torch.sort(u.detach(), dim=-1), torch.sort(v.detach(), dim=-1))
        return time_calls_cuda(steps, repeats=5 if quick else (20 if numel >= 1_000_000 else 200))
    min_run_time = 0.02 if quick else (1.0 if numel < 1_000_000 else 4.0)
    return time_calls(steps, min_run_time, rounds=3 if numel >= 1_000_000 else 5)


def verdicts(device: str, shape: tuple[int, ...], times: dict[str, dict[str, float]]) -> list[str]:
    if "native" not in times:
        return []
    native = times["native"]["median_s"]
    speedup = times["trl"]["median_s"] / native
    n, rows = shape[-1], len(shape) == 2
    goals = []
    if device == "cpu" and not rows and n <= 256:
        goals.append(("vs trl", speedup, 5.0))
    if device == "cpu" and not rows and n >= 100_000:
        goals.append(("vs trl", speedup, 2.0))
    if device == "cuda":
        if rows or n <= 4096:
            goals.append(("vs trl", speedup, 5.0))
        goals.append(("vs compile", times["compile"]["median_s"] / native, 1.5))
        if n >= 10_000_000:
            goals.append(("sort/native", times["sort_both"]["median_s"] / native, 1 / 1.3))
    return [
        f"{label} {value:.2f}x [{'ok' if value >= goal else 'MISS'} >= {goal:.2f}]"
        for label, value, goal in goals
    ]


def plot(rows: list[dict[str, object]], device: str, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    one_row = [r for r in rows if r["rows"] == 1]
    for name in dict.fromkeys(str(r["provider"]) for r in one_row):
        points = [(r["n"], r["median_s"]) for r in one_row if r["provider"] == name]
        ax.plot(*zip(*points, strict=True), marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="n (one row)", ylabel="forward+backward (s)")
    ax.set_title(f"aot_loss.unpaired forward+backward on {device}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    print(f"wrote {path}")


def main() -> None:
    parser = bench_parser(__doc__, "tiny sizes, short timings (smoke test)")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], action="append", help="default: cpu, and cuda if present"
    )
    args = parser.parse_args()
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    shapes: list[tuple[int, ...]] = [(n,) for n in ([8, 256] if args.quick else SIZES)]
    shapes += [(4, 16)] if args.quick else ROWS
    out = args.out or RESULTS
    print(
        f"threads={torch.get_num_threads()}  torch={torch.__version__}  "
        f"native: {aot_loss.info().reason or 'loaded'}"
    )
    for device in devices:
        rows: list[dict[str, object]] = []
        for shape in shapes:
            torch.compiler.reset()
            times = run_shape(shape, device, args.quick)
            for name, t in times.items():
                rows.append(
                    {
                        "case": "unpaired",
                        "device": device,
                        "provider": name,
                        "rows": shape[0] if len(shape) == 2 else 1,
                        "n": shape[-1],
                        "mode": "fwd+bwd",
                        **t,
                    }
                )
            cells = "  ".join(f"{name} {fmt_time(t['median_s']):>9s}" for name, t in times.items())
            print(f"{device} {shape!s:>14s}  {cells}  " + "  ".join(verdicts(device, shape, times)))
        path = append_results("fused", rows, out)
        print(f"appended {len(rows)} rows to {path}")
        if not args.quick:
            plot(rows, device, out / f"fused_{device}.png")


if __name__ == "__main__":
    main()
