"""The CPU cost loop gives the same bits whichever x86-64 level runs it.

``csrc/cpu/cost_block.cpp`` is compiled for AVX-512, AVX2 and the baseline, and the loader
picks the widest the CPU has (``cpu_clones.h``). With ``-ffp-contract=off`` every variant must
perform the same IEEE operations in the same order: here each is built on its own (the clones
switched off, ``-march`` set) and run on the same differences, and their outputs must match
bit for bit. Levels this CPU cannot run are skipped.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest
from host_programs import build

GXX = shutil.which("g++")  # the -march names and target_clones are GCC's
# The build's flags (setup.py) that decide floating-point behaviour, and the levels of the clones.
FLAGS = ["-std=c++17", "-O3", "-fno-trapping-math", "-ffp-contract=off", "-DAOT_CPU_CLONES="]
LEVELS = {
    "x86-64": set(),
    "x86-64-v3": {"avx2", "fma", "bmi2"},
    "x86-64-v4": {"avx512f", "avx512bw", "avx512vl"},
}
SOURCES = ["tests/csrc/cost_block_host.cpp", "csrc/cpu/cost_block.cpp"]

pytestmark = pytest.mark.skipif(GXX is None or platform.machine() != "x86_64", reason="needs g++ on x86-64")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    lines = [line for line in text.splitlines() if line.startswith("flags")]
    return set(lines[0].split(":", 1)[1].split()) if lines else set()


def _bits(tmp_path: Path, name: str, flags: list[str]) -> str:
    """Output of cost_block_host.cpp built with `flags`."""
    exe = build(tmp_path / name, SOURCES, flags, compiler=GXX)
    return subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout


def test_every_level_gives_the_same_bits(tmp_path):
    flags = _cpu_flags()
    runnable = [level for level, needs in LEVELS.items() if needs <= flags]
    if len(runnable) < 2:
        pytest.skip(f"this CPU runs only {runnable}: nothing to compare")
    outputs = {level: _bits(tmp_path, level, [*FLAGS, f"-march={level}"]) for level in runnable}
    baseline = outputs["x86-64"]
    assert len(baseline.splitlines()) > 40_000
    for level, out in outputs.items():
        assert out == baseline, f"{level} differs from the baseline"


def test_contraction_would_change_the_bits(tmp_path):
    """The check above can fail: with FMA contraction allowed, AVX2 code differs."""
    if not LEVELS["x86-64-v3"] <= _cpu_flags():
        pytest.skip("needs AVX2 and FMA")
    contracting = [f for f in FLAGS if f != "-ffp-contract=off"] + ["-ffp-contract=fast", "-march=x86-64-v3"]
    assert _bits(tmp_path, "fused", contracting) != _bits(tmp_path, "baseline", [*FLAGS, "-march=x86-64"])
