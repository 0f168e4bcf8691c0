"""What this installation of aot-loss can do: :func:`info`, and its report
``python -m aot_loss info``."""

from __future__ import annotations

import platform
from typing import NamedTuple

import torch

from ._version import __version__
from .ops import autograd as _autograd  # noqa: F401  (registers the ops' kernels)
from .ops import native
from .ops.library import OPS

__all__ = ["Info", "info", "report"]


class Info(NamedTuple):
    """The native library's status, as :func:`info` returns it."""

    version: str
    """The version of aot-loss."""
    native: bool
    """Whether the native library is loaded."""
    reason: str
    """Why it is not ("" when it is)."""
    path: str | None
    """Where the library is, when one was found."""
    ops: dict[str, tuple[str, ...]]
    """For each ``aot_loss::`` op, the device types with a native kernel (``"cpu"``, ``"cuda"``)."""
    costs: tuple[str, ...]
    """The built-in costs the native kernels compute; the others run on the torch path."""
    dtypes: tuple[torch.dtype, ...]
    """The dtypes the native kernels compute in (half precision is upcast first)."""
    build: dict[str, object]
    """What the build recorded: torch version, CUDA, compiler flags."""


def info() -> Info:
    r"""What the installed aot-loss can run natively, and why not.

    The native library (C++ kernels for CPU, and CUDA when built for it) is optional:
    without it every op runs its torch kernel, with the same values. This says whether it
    is loaded, which ops have native kernels on which devices, and which costs and dtypes
    they compute; `backend="auto"` uses a native kernel exactly where this lists one.
    $\mathcal{L}$ is unchanged by the choice: it only decides who computes it.

    Returns:
        An [`Info`][aot_loss._info.Info] named tuple.

    Shape:
        Not applicable: no tensors.

    Example:
        >>> import aot_loss
        >>> status = aot_loss.info()
        >>> status.native == bool(status.ops.get("dominance"))
        True
        >>> status.reason == "" if status.native else status.reason != ""
        True
    """
    status = native.STATUS
    return Info(
        __version__,
        status.loaded,
        status.reason,
        status.path,
        dict(status.ops) if status.loaded else {},
        status.costs,
        status.dtypes,
        dict(status.build),
    )


def report() -> str:
    """The installation report as text: versions, the native library, the kernel of each
    op on each dispatch key, and what each backend serves.

    Shape:
        Not applicable: returns a multi-line string.

    Example:
        >>> from aot_loss._info import report
        >>> "native library" in report()
        True
    """
    status = info()
    lines = [
        f"aot-loss {status.version}",
        f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})",
        f"Python {platform.python_version()}",
        f"threads: {torch.get_num_threads()}",
        "",
        "native library: " + (f"loaded from {status.path}" if status.native else status.reason),
    ]
    if status.build:
        facts = {key: value for key, value in status.build.items() if not key.endswith("_flags")}
        built = ", ".join(f"{key}={value}" for key, value in facts.items())
        lines.append(f"  built with: {built}")
    if status.native:
        lines.append(f"  costs: {', '.join(status.costs)}")
    lines += ["", "operators, and the dispatch keys with a kernel:"]
    for name in OPS:
        has_kernel = torch._C._dispatch_has_kernel_for_dispatch_key
        keys = ["CompositeExplicitAutograd", "CPU", "CUDA", "Autograd"]
        served = [key for key in keys if has_kernel(f"aot_loss::{name}", key)]
        lines.append(f"  aot_loss::{name}: {', '.join(served)}")
    dominance = ", ".join(status.ops.get("dominance", ())) or "none"
    lines += [
        "",
        "backends:",
        "  torch: every device and floating dtype (float16/bfloat16 computed in float32)",
        f"  native: {dominance}; float32 and float64 (half precision upcast first)",
        f"  native soft sort: {', '.join(status.ops.get('soft_sort', ())) or 'none'}",
        f"  torchsort (soft sort only): {_torchsort_version()}",
        '  "auto" uses native where it serves the call, torch elsewhere',
    ]
    return "\n".join(lines)


def _torchsort_version() -> str:
    try:
        from importlib.metadata import version

        return f"installed ({version('torchsort')})"
    except Exception:  # PackageNotFoundError, or broken metadata
        return "not installed"


def main() -> None:
    """Print :func:`report`."""
    print(report())
