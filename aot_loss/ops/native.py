"""Finds and loads the optional native library ``aot_loss/_C*.so``, and reads what it serves.

The library only registers kernels for ops whose schemas ``library`` defines, so it is loaded
after them. It is optional by design: without it the status records why and every op runs
its pure-torch default kernel. Nothing is compiled or printed here; a library that exists
but fails to load is logged once as a warning. ``AOT_LOSS_DISABLE_NATIVE=1`` skips loading.

What the library serves is read from the library itself, never copied into Python: the
devices from the dispatcher (the keys its kernels registered), the costs, dtypes and size
limits from the table its C function ``aot_loss_native_facts`` returns
(``csrc/bindings/facts.cpp``).
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch

_PACKAGE = Path(__file__).parent.parent
_BUILD = "AOT_LOSS_BUILD_EXT=1 pip install --no-build-isolation"
_log = logging.getLogger("aot_loss")


@dataclass(frozen=True)
class NativeStatus:
    """What native code is loaded, for which devices, and why not."""

    loaded: bool
    reason: str  # why it is not loaded ("" when loaded)
    path: str | None = None
    ops: dict[str, tuple[str, ...]] = field(default_factory=dict)  # op -> device types with a kernel
    build: dict[str, object] = field(default_factory=dict)  # facts setup.py wrote next to the library
    facts: dict[str, object] = field(default_factory=dict)  # what the library says it serves

    # Read on every dispatch: computed once (a frozen dataclass keeps cached_property's value).
    @functools.cached_property
    def devices(self) -> tuple[str, ...]:
        """The device types with a native kernel of any op."""
        return tuple(d for d in DEVICE_TYPES if any(d in devices for devices in self.ops.values()))

    @functools.cached_property
    def costs(self) -> tuple[str, ...]:
        """The built-in costs the library's kernels compute."""
        return tuple(cast(list, self.facts.get("costs", [])))

    @functools.cached_property
    def dtypes(self) -> tuple[torch.dtype, ...]:
        """The dtypes the library's kernels compute in."""
        return tuple(getattr(torch, name) for name in cast(list, self.facts.get("dtypes", [])))

    @functools.cached_property
    def limits(self) -> dict[str, int]:
        """The kernels' size limits: ``max_row``, ``cuda_block_row``, ``cuda_max_long_rows``."""
        return {name: int(value) for name, value in cast(dict, self.facts.get("limits", {})).items()}


def _load(ops: tuple[str, ...]) -> NativeStatus:
    if os.environ.get("AOT_LOSS_DISABLE_NATIVE") == "1":
        return NativeStatus(False, "disabled by AOT_LOSS_DISABLE_NATIVE=1")
    libraries = sorted(_PACKAGE.glob("_C*.so")) + sorted(_PACKAGE.glob("_C*.pyd"))
    if not libraries:
        _log.debug("aot_loss: no native library; using the torch kernels")
        return NativeStatus(False, f"not built (build it with: {build_command()})")
    build = _build_info()
    path = str(libraries[0])
    try:
        torch.ops.load_library(path)
    except (OSError, RuntimeError) as exc:
        built_for = build.get("torch", "an unknown torch")
        reason = (
            f"{path} failed to load ({exc}); built for torch {built_for}, running {torch.__version__} "
            f"(rebuild it with: {build_command()})"
        )
        _log.warning("aot_loss: %s", reason)
        return NativeStatus(False, reason, path, build=build)
    facts = _facts(path)
    if not facts:
        reason = f"{path} has no table of what it serves (an older build); rebuild it with: {build_command()}"
        _log.warning("aot_loss: %s", reason)
        return NativeStatus(False, reason, path, build=build)
    # The dispatcher, not the build record, says which devices got kernels: the record can be
    # missing (an older build) or stale (a library copied from another build).
    return NativeStatus(True, "", path, {op: _kernel_devices(op) for op in ops}, build, facts)


def _kernel_devices(op: str) -> tuple[str, ...]:
    has_kernel = torch._C._dispatch_has_kernel_for_dispatch_key
    return tuple(d for d in DEVICE_TYPES if has_kernel(f"aot_loss::{op}", d.upper()))


def _facts(path: str) -> dict[str, object]:
    """The table the library exports: ``{"costs": [...], "dtypes": [...], "limits": {...}}``."""
    try:
        function = ctypes.CDLL(path).aot_loss_native_facts  # the handle torch.ops already opened
    except (OSError, AttributeError):
        return {}
    function.restype = ctypes.c_char_p
    try:
        facts = json.loads(function())
    except ValueError:
        return {}
    return facts if isinstance(facts, dict) else {}


def _build_info() -> dict[str, object]:
    try:
        info = json.loads((_PACKAGE / "_C_build.json").read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


DEVICE_TYPES = ("cpu", "cuda")  # the dispatch keys a native library may register kernels for
STATUS: NativeStatus = NativeStatus(False, "not loaded yet")


def load(ops: tuple[str, ...]) -> NativeStatus:
    """Load the library once (idempotent) and return the status; ``ops`` are the names of
    the ops whose kernels it may register."""
    global STATUS
    if STATUS.reason == "not loaded yet":
        STATUS = _load(ops)
    return STATUS


@functools.cache
def build_command() -> str:
    """The command that builds the native library for the way this aot-loss was installed.

    A source tree (a clone, installed editable or put on the path) rebuilds in place; an
    installed sdist rebuilds from that sdist; a wheel needs its sdist or a clone, since it
    carries no C++ sources; an install from an index rebuilds from the index's sdist.
    """
    root = _PACKAGE.parent
    if (root / "setup.py").is_file() and (root / "csrc").is_dir():
        where = "." if Path.cwd().resolve() == root.resolve() else str(root)
        return f"{_BUILD} -e {where}"
    from .._version import __version__

    reinstall = f"{_BUILD} --force-reinstall --no-deps"
    url = _direct_url(root)
    if url.endswith(".tar.gz"):
        return f"{reinstall} {url.removeprefix('file://')}"
    if url:  # a wheel file or a VCS/remote URL: the wheel has no C++ sources
        return f"{reinstall} aot_loss-{__version__}.tar.gz  (the sdist of this version, or a clone)"
    return f"{reinstall} --no-binary aot-loss aot-loss=={__version__}"


def _direct_url(site: Path) -> str:
    """The URL pip recorded for an install from a file or link (PEP 610), else ''."""
    for record in site.glob("aot_loss-*.dist-info/direct_url.json"):
        try:
            url = json.loads(record.read_text()).get("url", "")
        except (OSError, ValueError, AttributeError):
            continue
        return url if isinstance(url, str) else ""
    return ""
