"""The tests' C++ host programs (tests/csrc/*.cpp), built against the torch-free kernels of
csrc/ with the machine's C++ compiler."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPILER = shutil.which("c++") or shutil.which("g++")


def build(exe: Path, sources: Sequence[str], flags: Sequence[str], compiler: str | None = COMPILER) -> Path:
    """Compile `sources` (paths relative to the repository) with `flags` and csrc/ on the include
    path into `exe`; a failed compile raises with the compiler's output."""
    if compiler is None:
        raise RuntimeError("no C++ compiler")
    command = [compiler, *flags, f"-I{ROOT / 'csrc'}", *(str(ROOT / s) for s in sources), "-o", str(exe)]
    subprocess.run(command, check=True, capture_output=True)
    return exe
