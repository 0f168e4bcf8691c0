"""What every test and doctest shares: a seeded generator, and the doctests of ``aot_loss/``
(pytest's ``--doctest-modules``) without the optional packages.

A module that imports a missing optional package at its top, or a docstring example that
imports one, skips with a reason naming what to install, instead of failing collection or
the example. The packages and their install commands come from ``aot_loss._optional``.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import torch
from _pytest.doctest import DoctestItem

from aot_loss._optional import OPTIONAL, install_command

PACKAGE = Path(__file__).parent / "aot_loss"


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Each test and each doctest starts from the same generator state, whatever ran before."""
    torch.manual_seed(0)


def _absent(names: Iterable[str]) -> list[str]:
    return sorted({n for n in names if n in OPTIONAL and importlib.util.find_spec(n) is None})


def _reason(absent: list[str]) -> str:
    return "; ".join(f"needs {name}: {install_command(name)}" for name in absent)


def _imported(statements: Iterable[ast.stmt]) -> Iterator[str]:
    """Top-level package names imported by the statements, looking into try blocks."""
    for node in statements:
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]
        elif isinstance(node, ast.Try):
            yield from _imported(node.body)


class _SkippedModule(pytest.File):
    """Stands for a module that cannot be imported here: one item that skips with the reason."""

    reason: str

    def collect(self) -> Iterator[pytest.Item]:
        item = _Skip.from_parent(self, name="doctests")
        item.add_marker(pytest.mark.skip(reason=self.reason))
        yield item


class _Skip(pytest.Item):
    def runtest(self) -> None:  # never runs: the item carries a skip marker
        raise AssertionError("unreachable")

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.path.name} doctests"


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Iterator[list]:
    collectors = yield
    if file_path.suffix != ".py" or PACKAGE not in file_path.parents:
        return collectors
    absent = _absent(_imported(ast.parse(file_path.read_text()).body))
    if not absent:
        return collectors
    module = _SkippedModule.from_parent(parent, path=file_path)
    module.reason = _reason(absent)
    return [module]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, DoctestItem) and item.dtest is not None:
            source = "\n".join(example.source for example in item.dtest.examples)
            absent = _absent(_imported(ast.parse(source).body))
            if absent:
                item.add_marker(pytest.mark.skip(reason=_reason(absent)))
