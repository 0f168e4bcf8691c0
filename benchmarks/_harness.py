"""Shared benchmark plumbing: timing, run metadata, and appending results as JSON lines.

Every figure is compared with a baseline measured in the same run; results are appended to
``benchmarks/results/<bench>.jsonl`` with the torch version, thread count and git sha.
"""

from __future__ import annotations

import datetime
import json
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.benchmark import Timer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))  # baselines are imported from tests/oracles.py


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "aot_loss"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def metadata() -> dict[str, object]:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "git_sha": git_sha(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def time_call(step: Callable[[], object], min_run_time: float) -> dict[str, float]:
    """Median and interquartile range (seconds) of ``step()`` via torch.utils.benchmark."""
    step()  # warm-up (allocations, lazy init)
    measurement = Timer("step()", globals={"step": step}).blocked_autorange(min_run_time=min_run_time)
    return {"median_s": measurement.median, "iqr_s": measurement.iqr, "runs": len(measurement.times)}


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
