"""The cost of ``import aot_loss`` over ``import torch``, in fresh processes (same run).

Goal (issue #26): the median of ``import aot_loss`` at most 0.25 s above the median of
``import torch``, over 10 fresh interpreters each, alternated so that drift hits both.
It also lists any heavy module that ``import aot_loss`` loads (there should be none).

    python benchmarks/bench_import.py            # full run, appends to benchmarks/results/
    python benchmarks/bench_import.py --quick    # smoke run (CI), writes under /tmp
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

from _harness import append_results, bench_parser, results_dir

GOAL_S = 0.25
# Modules that `import aot_loss` must not load: each costs from 0.1 s to over a second, and
# none is needed until a feature that uses it runs (compile, plots, LLMs, the test oracles).
# tests/test_packaging.py holds the import to this list.
HEAVY = ("torch._dynamo", "torch._inductor", "sympy", "matplotlib", "transformers", "scipy", "trl", "peft")
# The import alone, timed inside the process: interpreter start-up is the same for both.
TIMED = (
    "import time, sys; t = time.perf_counter(); import {module}; "
    "print(time.perf_counter() - t); print(','.join(m for m in {heavy!r} if m in sys.modules))"
)


def time_import(module: str) -> tuple[float, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", TIMED.format(module=module, heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return float(out[0]), [m for m in (out[1] if len(out) > 1 else "").split(",") if m]


def main() -> None:
    parser = bench_parser(__doc__, "3 processes each instead of 10")
    args = parser.parse_args()
    repeats = 3 if args.quick else 10
    samples: dict[str, list[float]] = {"torch": [], "aot_loss": []}
    heavy: set[str] = set()
    for _ in range(repeats):
        for module in samples:
            seconds, loaded = time_import(module)
            samples[module].append(seconds)
            if module == "aot_loss":
                heavy.update(loaded)
    medians = {module: statistics.median(times) for module, times in samples.items()}
    extra = medians["aot_loss"] - medians["torch"]
    rows = [
        {"case": f"import {module}", "median_s": medians[module], "runs": repeats, "samples_s": times}
        for module, times in samples.items()
    ]
    rows.append({"case": "aot_loss over torch", "extra_s": extra, "goal_s": GOAL_S, "heavy": sorted(heavy)})
    path = append_results("import", rows, results_dir(args))
    print(f"import torch     {medians['torch']:.3f} s (median of {repeats} fresh processes)")
    print(f"import aot_loss  {medians['aot_loss']:.3f} s, including torch")
    print(f"aot_loss over torch: {extra:+.3f} s  [{'ok' if extra <= GOAL_S else 'MISS'} <= {GOAL_S} s]")
    print(f"heavy modules loaded by import aot_loss: {json.dumps(sorted(heavy)) if heavy else 'none'}")
    print(f"appended {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
