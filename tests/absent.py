"""Runs Python as if some packages were not installed, to test what a user without them meets.

    python tests/absent.py trl,matplotlib -m pytest --collect-only
    python tests/absent.py torchsort -c "import aot_loss; ..."

A ``None`` entry in ``sys.modules`` is the interpreter's own way to make an import fail:
``import name`` raises ModuleNotFoundError and ``importlib.util.find_spec(name)`` returns
None, exactly as for a package that is not installed.
"""

import runpy
import sys
from collections.abc import Iterable


def hide(names: Iterable[str]) -> None:
    """Make ``import name`` fail for each top-level package name from now on."""
    for name in names:
        sys.modules[name] = None  # type: ignore[assignment]


def main(argv: list[str]) -> None:
    names, mode, target, *rest = argv
    hide(n for n in names.split(",") if n)
    if mode == "-m":
        sys.argv = [target, *rest]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    elif mode == "-c":
        sys.argv = ["-c", *rest]
        exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
    else:
        raise SystemExit(f"usage: python tests/absent.py NAMES (-m MODULE | -c CODE) [ARGS...], got {argv}")


if __name__ == "__main__":
    main(sys.argv[1:])
