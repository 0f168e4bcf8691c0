"""Shared benchmark plumbing: timing, run metadata, and appending results as JSON lines.

Every figure is compared with a baseline measured in the same run; results are appended to
``benchmarks/results/<bench>.jsonl`` with the torch version, thread count and git sha.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.benchmark import Timer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))  # baselines are imported from tests/oracles.py


def bench_parser(doc: str, quick_help: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick`` (a smoke run) and ``--out``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    return parser


def results_dir(args: argparse.Namespace) -> Path:
    """``--out``, else a scratch folder for a quick run, else ``benchmarks/results``."""
    return args.out or (Path("/tmp/aot_loss_bench") if args.quick else RESULTS)


def git_sha() -> str:
    """Short sha of HEAD (``-dirty`` if aot_loss/ has changes); ``AOT_LOSS_GIT_SHA`` names it
    where the tree is a copy without ``.git`` (a lent GPU machine)."""
    if os.environ.get("AOT_LOSS_GIT_SHA"):
        return os.environ["AOT_LOSS_GIT_SHA"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "aot_loss"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def metadata() -> dict[str, object]:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "git_sha": git_sha(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def time_calls(
    steps: dict[str, Callable[[], object]], min_run_time: float, rounds: int = 5
) -> dict[str, dict[str, float]]:
    """Median and interquartile range (seconds) of each step, via torch.utils.benchmark, on
    the process's intra-op threads (the count the results record)."""

    def measure(step: Callable[[], object]) -> list[float]:
        # Timer runs on one thread unless told otherwise; the results record get_num_threads().
        timer = Timer("step()", globals={"step": step}, num_threads=torch.get_num_threads())
        return timer.blocked_autorange(min_run_time=min_run_time / rounds).times

    return _interleaved(steps, rounds, measure)


def time_calls_cuda(steps: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, float]]:
    """Like :func:`time_calls` on a GPU: each call timed by CUDA events, synchronised."""

    def measure(step: Callable[[], object]) -> list[float]:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        return [start.elapsed_time(end) / 1e3]

    return _interleaved(steps, repeats, measure)


def _interleaved(
    steps: dict[str, Callable[[], object]],
    rounds: int,
    measure: Callable[[Callable[[], object]], list[float]],
) -> dict[str, dict[str, float]]:
    """Time the steps in interleaved rounds and pool each one's samples, so that drift of
    the machine (frequency, other load) hits every provider alike."""
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        step()  # warm-up (allocations, lazy init)
    for _ in range(rounds):
        for name, step in steps.items():
            samples[name] += measure(step)
    return {name: _summary(times) for name, times in samples.items()}


def _summary(times: list[float]) -> dict[str, float]:
    q1, median, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return {"median_s": median, "iqr_s": q3 - q1, "runs": len(times)}


def append_results(bench: str, rows: list[dict[str, object]], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{bench}.jsonl"
    meta = metadata()
    with path.open("a") as f:
        for row in rows:
            f.write(json.dumps({"bench": bench, **row, **meta}) + "\n")
    return path


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def step_growth(step: Callable[[], object], steps: int) -> dict[str, float]:
    """One warm-up call of ``step``, then the median time of ``steps`` calls and the peak
    resident set over the resident set before them (Linux): what a step adds at its peak.
    Meant for a fresh process (see :func:`in_fresh_process`): the peak is the process's."""
    step()  # warm-up; also allocates what persists (gradients)
    with open("/proc/self/statm") as f:
        before = int(f.read().split()[1]) * resource.getpagesize()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"step_s": statistics.median(times), "peak_bytes": peak - before}


def in_fresh_process(script: str, flag: str, value: str, quick: bool) -> dict[str, object]:
    """Run ``script flag value [--quick]`` in a new interpreter and parse the JSON it prints
    last. A fixed mmap threshold makes glibc return every large freed block to the OS, so the
    resident set follows the live tensors instead of the allocator's cached arenas."""
    command = [sys.executable, script, flag, value] + (["--quick"] if quick else [])
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    run = subprocess.run(command, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise SystemExit(f"{script} {flag} {value} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def small_llama(vocab: int, seq: int) -> torch.nn.Module:
    """The LLM benchmarks' random model: a Llama of 2 layers, hidden size 128."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=seq,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def preference_batch(pairs: int, seq: int, vocab: int) -> dict[str, torch.Tensor]:
    """Random pairs in TRL's collated layout (the chosen rows, then the rejected ones) of
    ``seq`` tokens each, the second half the completion."""
    ids = torch.randint(3, vocab, (2 * pairs, seq))
    completion = torch.zeros(2 * pairs, seq, dtype=torch.long)
    completion[:, seq // 2 :] = 1
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "completion_mask": completion}


def halves(
    batch: dict[str, torch.Tensor], pairs: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The chosen and the rejected rows of :func:`preference_batch`."""
    return {k: v[:pairs] for k, v in batch.items()}, {k: v[pairs:] for k, v in batch.items()}
