"""Without each optional package: an ImportError that says what to install, the rest working,
and a test suite that still collects. Each case runs in a fresh interpreter in which the
package is hidden (tests/absent.py), as for a user who never installed it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aot_loss._optional import OPTIONAL

ROOT = Path(__file__).resolve().parents[1]
ABSENT = Path(__file__).parent / "absent.py"
EVERY_OPTIONAL = ",".join(OPTIONAL)


def run_without(packages: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ABSENT), packages, *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def raises_import_error(packages: str, code: str) -> str:
    """Run ``code`` without ``packages``; it must raise ImportError, whose message is returned."""
    wrapped = f"try:\n    {code}\nexcept ImportError as e:\n    print(e)\nelse:\n    raise SystemExit('none')"
    out = run_without(packages, "-c", wrapped)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.parametrize(
    ("packages", "code", "install"),
    [
        ("matplotlib", "import aot_loss.plot", '"matplotlib>=3.7" (the "plot" extra of aot-loss)'),
        ("trl", "import aot_loss.llm.trl", '"trl<2,>=1.16" (the "trl" extra of aot-loss)'),
        # trl's own imports: installing trl brings them
        ("transformers", "import aot_loss.llm.trl", '"trl<2,>=1.16" (the "trl" extra of aot-loss)'),
        ("accelerate", "import aot_loss.llm.trl", '"trl<2,>=1.16" (the "trl" extra of aot-loss)'),
        (
            "torchsort",
            "import aot_loss, torch; aot_loss.soft_sort(torch.randn(4), backend='torchsort')",
            "docs/soft-sort.md",
        ),
    ],
)
def test_a_missing_package_says_what_to_install(packages, code, install):
    message = raises_import_error(packages, code)
    assert install in message and packages in message, message


def test_peft_is_named_when_the_policy_has_no_adapters():
    """aot-loss never imports peft: it calls a PEFT model's own disable_adapter(). Without
    peft, reference='adapters' can only be given a model without adapters, and says what to
    install."""
    code = (
        "from aot_loss.llm import PolicyWithReference; import torch; "
        "PolicyWithReference(torch.nn.Linear(2, 2), reference='adapters')"
    )
    message = raises_import_error("peft", code)
    assert "needs a PEFT model" in message
    assert 'peft is not installed: pip install "transformers>=4.46" "peft>=0.13" (the "llm" extra' in message


def test_the_core_and_the_llm_layer_need_none_of_them():
    code = (
        "import torch, aot_loss, aot_loss.llm\n"
        "from aot_loss import metrics\n"
        "u, v = torch.randn(8), torch.randn(6)\n"
        "print(float(aot_loss.unpaired(u, v)), float(metrics.fsd_violation(u, v)))\n"
    )
    out = run_without(EVERY_OPTIONAL, "-c", code)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == 2


@pytest.mark.install_independent
def test_the_demo_runs_without_matplotlib_and_says_how_to_get_the_plots(tmp_path):
    out = run_without(
        "matplotlib", "-m", "aot_loss", "demo", "--quick", "--no-progress", "--out", str(tmp_path)
    )
    assert out.returncode == 0, out.stderr
    assert 'no plots (pip install "matplotlib>=3.7" (the "plot" extra of aot-loss))' in out.stdout
    assert (tmp_path / "metrics.json").exists() and not list(tmp_path.glob("*.png"))


@pytest.mark.install_independent
def test_the_suite_collects_without_any_optional_package():
    """No file under tests/ (nor a doctest module) fails to import: what needs a missing
    package skips, naming it."""
    out = run_without(EVERY_OPTIONAL, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "error" not in out.stdout.splitlines()[-1], out.stdout[-3000:]
