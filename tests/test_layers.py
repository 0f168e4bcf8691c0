"""The layers of the package (docs/architecture.md): every module imports only modules of its
own layer or below, and a private name (``_name``) only from its own layer. A module added
to the package must be given a layer here."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "aot_loss"
LAYERS = [  # lowest first
    {"_version", "_dtypes", "_optional"},
    {"_validation", "_sort", "_costs"},
    {"_options", "_coupling", "_reduction", "_orders", "_violation"},
    {"ops", "ops.library", "ops.native", "ops.pav"},
    {"ops.dominance", "ops.soft_sort", "ops.dispatch"},
    {"ops.autograd"},
    {"_distributed"},
    {"_dominance"},
    {"functional", "modules", "metrics", "sorting", "_info", "stats"},
    {"__init__", "__main__", "plot", "demo", "compare"},
    {"llm", "llm.data", "llm.logps", "llm.reference", "llm.losses", "llm.trl"},
]
LAYER = {module: i for i, layer in enumerate(LAYERS) for module in layer}


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        names.append(".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts))
    return names


def _imports(module: str) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) for every import of the package inside ``module``."""
    path = PACKAGE / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE / module.replace(".", "/") / "__init__.py"
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    if module in ("__init__", "__main__"):
        package = []
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package[: len(package) - (node.level - 1)]
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                if sub in LAYER:  # `from . import x` imports the module x
                    found.append((sub, []))
                else:
                    found.append((target or "__init__", [alias.name]))
    return found


def test_every_module_has_a_layer():
    assert set(_modules()) == set(LAYER), "give each new module a layer in LAYERS"


@pytest.mark.parametrize("module", sorted(LAYER))
def test_imports_go_down_and_private_names_stay_in_their_layer(module):
    for target, names in _imports(module):
        assert LAYER[target] <= LAYER[module], f"{module} imports {target}, a layer above it"
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private:
            assert LAYER[target] == LAYER[module], f"{module} imports private {private} of {target}"
