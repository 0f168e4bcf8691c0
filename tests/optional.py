"""What the optional parts of the suite need, and the skip that says how to install it.

The install commands are the library's own (``aot_loss._optional.install_command``), so a skip reason
reads like the ImportError a user would meet.
"""

from types import ModuleType

import pytest

import aot_loss
from aot_loss._optional import install_command


def import_or_skip(module: str) -> ModuleType:
    """``pytest.importorskip`` whose reason names the command that installs ``module``."""
    return pytest.importorskip(module, reason=f"needs {module}: {install_command(module)}")


def needs(*modules: str) -> pytest.MarkDecorator:
    """Skip unless every module imports (checked without importing it)."""
    import importlib.util

    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(
        bool(absent), reason="; ".join(f"needs {m}: {install_command(m)}" for m in absent)
    )


def native_reason() -> str:
    return f"needs the native library, which is {aot_loss.info().reason}"


needs_native = pytest.mark.skipif(not aot_loss.info().native, reason=native_reason())
