"""What this installation of aot-loss can do: ``python -m aot_loss.info``.

Prints the versions, whether the native library is built and loaded (and why not), the
``aot_loss::`` operators with the kernel serving each dispatch key, and which device and
dtype combinations each backend serves.
"""

from __future__ import annotations

import platform

import torch

from . import _dominance_op, _native, _soft_sort_op  # noqa: F401  (register the ops' kernels)
from ._library import OPS
from ._version import __version__

__all__ = ["report"]


def report() -> str:
    """The installation report as text.

    Shape:
        Not applicable: returns a multi-line string.

    Example:
        >>> from aot_loss.info import report
        >>> "native library" in report()
        True
    """
    status = _native.STATUS
    lines = [
        f"aot-loss {__version__}",
        f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})",
        f"Python {platform.python_version()}",
        f"threads: {torch.get_num_threads()}",
        "",
        "native library: " + (f"loaded from {status.path}" if status.loaded else status.reason),
    ]
    if status.build:
        facts = {key: value for key, value in status.build.items() if not key.endswith("_flags")}
        built = ", ".join(f"{key}={value}" for key, value in facts.items())
        lines.append(f"  built with: {built}")
    lines += ["", "operators, and the dispatch keys with a kernel:"]
    for name in OPS:
        has_kernel = torch._C._dispatch_has_kernel_for_dispatch_key
        keys = ["CompositeExplicitAutograd", "CPU", "CUDA", "Autograd"]
        served = [key for key in keys if has_kernel(f"aot_loss::{name}", key)]
        lines.append(f"  aot_loss::{name}: {', '.join(served)}")
    native_devices = ", ".join(status.devices) if status.loaded else "none"
    lines += [
        "",
        "backends:",
        "  torch: every device and floating dtype (float16/bfloat16 computed in float32)",
        f"  native: {native_devices}; float32 and float64 (half precision upcast first)",
        f"  native soft sort: {', '.join(_soft_sort_op.native_devices()) or 'none'}",
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


if __name__ == "__main__":
    main()
