"""The default build is a pure wheel, importing the package is silent and lean, and the opt-in
native build installs from the sdist with its build record."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import aot_loss
from aot_loss import _native

ROOT = Path(__file__).resolve().parents[1]


def test_import_prints_nothing_and_initialises_no_cuda():
    code = (
        "import torch\n"
        "torch.cuda.init = lambda: (_ for _ in ()).throw(RuntimeError('CUDA initialised at import'))\n"
        "import aot_loss, sys\n"
        "assert 'scipy' not in sys.modules, 'aot_loss must not import scipy'\n"
        "print(aot_loss.__version__, end='')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr == ""
    assert out.stdout == aot_loss.__version__


def test_default_wheel_is_pure_python(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("aot_loss-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "aot_loss/py.typed" in names
    assert not [n for n in names if n.endswith((".so", ".pyd", ".dll"))]


@pytest.mark.skipif(not _native.STATUS.loaded, reason="runs where the native build is part of the run")
def test_native_wheel_from_the_sdist_carries_its_build_record(tmp_path):
    """`AOT_LOSS_BUILD_EXT=1 pip install aot-loss` builds from the sdist, outside this tree: the
    build record must travel in the wheel next to the library, and the status must name the
    devices the library registered kernels for."""
    build_sdist = f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))"
    sdist = subprocess.run(
        [sys.executable, "-c", build_sdist], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()[-1]
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet"]
    subprocess.run(
        [*pip_wheel, "-w", str(tmp_path), str(tmp_path / sdist)],
        check=True,
        capture_output=True,
        # CPU kernels only, whatever this tree's build has: a CUDA build would take minutes
        env={**os.environ, "AOT_LOSS_BUILD_EXT": "1", "AOT_LOSS_BUILD_CUDA": "0"},
    )
    (wheel,) = tmp_path.glob("aot_loss-*.whl")
    assert "-cp310-abi3-" in wheel.name  # one build for every Python >= 3.10
    names = zipfile.ZipFile(wheel).namelist()
    assert "aot_loss/_C_build.json" in names
    assert [n for n in names if n.startswith("aot_loss/_C") and n.endswith(".so")]
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    code = (
        "import json, aot_loss\n"
        "from aot_loss import _native\n"
        "s = _native.STATUS\n"
        "print(json.dumps([aot_loss.__file__, s.loaded, list(s.devices), s.build.get('torch')]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=tmp_path
    )
    where, loaded, devices, built_for = json.loads(out.stdout)
    assert Path(where).is_relative_to(installed)
    assert loaded
    assert devices == ["cpu"]
    assert built_for == torch.__version__
