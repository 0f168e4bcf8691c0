"""The default build is a pure wheel, importing the package is silent and lean, and the opt-in
native build installs from the sdist with its build record."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from bench_import import HEAVY  # the modules `import aot_loss` must not load
from optional import native_reason

import aot_loss
from aot_loss.ops import native as _native

ROOT = Path(__file__).resolve().parents[1]


def test_import_prints_nothing_loads_nothing_heavy_and_initialises_no_cuda():
    code = (
        "import torch, sys\n"
        "torch.cuda.init = lambda: (_ for _ in ()).throw(RuntimeError('CUDA initialised at import'))\n"
        "before = set(sys.modules)\n"
        "import aot_loss\n"
        "print(aot_loss.__version__)\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr == ""
    version, loaded = out.stdout.splitlines()
    assert version == aot_loss.__version__
    heavy = [m for m in loaded.split() if m.startswith(HEAVY)]
    assert not heavy, f"import aot_loss loaded {heavy}"
    assert "aot_loss" in loaded.split()


@pytest.fixture(scope="module")
def pure_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default wheel, built as `pip wheel .` builds it (isolated, no native code)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("aot_loss-*.whl")
    return wheel


@pytest.mark.install_independent
def test_default_wheel_is_pure_python_and_carries_its_license(pure_wheel):
    assert pure_wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(pure_wheel).namelist()
    assert "aot_loss/py.typed" in names
    assert f"aot_loss-{aot_loss.__version__}.dist-info/licenses/LICENSE" in names
    assert not [n for n in names if n.endswith((".so", ".pyd", ".dll"))]
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "csrc/"))]


def _quick_start() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Quick start\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.install_independent
def test_the_wheel_installs_in_a_fresh_venv_and_runs_the_quick_start(pure_wheel, tmp_path):
    """What a user of the wheel meets: a new virtual environment with this torch and the wheel,
    run from a folder that is not this clone, so nothing here can stand in for the install."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = [python, "-m", "pip", "install", "--quiet"]
    torch_pin = f"torch=={torch.__version__.split('+')[0]}"  # first, as the README says
    subprocess.run([*pip, torch_pin], check=True, capture_output=True, env=env)
    subprocess.run([*pip, str(pure_wheel)], check=True, capture_output=True, env=env)

    def run(*args: str) -> str:
        out = subprocess.run([python, *args], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    where = run("-c", _quick_start() + "\nprint(aot_loss.__file__)").strip()
    assert Path(where).is_relative_to(venv)
    assert run("-m", "aot_loss", "--version").strip() == f"aot-loss {aot_loss.__version__}"
    # a wheel carries no C++ sources: the build hint names the sdist, not `-e .`
    info = run("-m", "aot_loss", "info")
    assert f"--force-reinstall --no-deps aot_loss-{aot_loss.__version__}.tar.gz" in info
    assert info.count("build it with") == 1


# these build the native library again, so they run where its build is part of the run
needs_toolchain = pytest.mark.skipif(not aot_loss.info().native, reason=native_reason())


def _native_wheel(tmp_path: Path, **env: str) -> Path:
    """Builds the CPU kernels' wheel from the sdist, outside this tree, as
    `AOT_LOSS_BUILD_EXT=1 pip install aot-loss` does, and returns the wheel."""
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
        env={**os.environ, "AOT_LOSS_BUILD_EXT": "1", "AOT_LOSS_BUILD_CUDA": "0", **env},
    )
    (wheel,) = tmp_path.glob("aot_loss-*.whl")
    return wheel


def _run_from(installed: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    command = [sys.executable, "-c", code]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=installed)


@needs_toolchain
def test_native_wheel_from_the_sdist_carries_its_build_record(tmp_path):
    """The build record must travel in the wheel next to the library, and the status must name
    the devices the library registered kernels for."""
    wheel = _native_wheel(tmp_path)
    assert "-cp310-abi3-" in wheel.name  # one build for every Python >= 3.10
    names = zipfile.ZipFile(wheel).namelist()
    assert "aot_loss/_C_build.json" in names
    assert [n for n in names if n.startswith("aot_loss/_C") and n.endswith(".so")]
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    code = (
        "import json, aot_loss\n"
        "s = aot_loss.info()\n"
        "print(json.dumps([aot_loss.__file__, s.native, list(s.ops['dominance']), s.build.get('torch')]))\n"
    )
    out = _run_from(installed, code)
    assert out.returncode == 0, out.stderr
    where, loaded, devices, built_for = json.loads(out.stdout)
    assert Path(where).is_relative_to(installed)
    assert loaded
    assert devices == ["cpu"]
    assert built_for == torch.__version__


@needs_toolchain
def test_native_errors_come_whole_when_libstdcxx_is_linked_statically(tmp_path):
    """A compiler that links libstdc++ statically (the GPU machine's does) put a second copy
    of it in the library, whose locale was half bound to torch's: formatting a kernel's error
    message failed at its first number (a truncated message here, a segmentation fault there).
    The build hides the copy's symbols; this builds that way and reads a kernel's error."""
    try:
        wheel = _native_wheel(tmp_path, LDFLAGS="-static-libstdc++")
    except subprocess.CalledProcessError as exc:
        if b"lstdc++" in exc.stderr:  # no libstdc++.a with this compiler
            pytest.skip("this toolchain cannot link libstdc++ statically")
        raise
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    code = (
        "import torch, aot_loss\n"
        "assert aot_loss.info().native, aot_loss.info().reason\n"
        "torch.ops.aot_loss.dominance(torch.ones(3), torch.ones(3, dtype=torch.float64), None, None,"
        " 'logistic', 0.1, 0.0, False)\n"
    )
    out = _run_from(installed, code)
    assert out.returncode == 1, out.stderr[-800:]
    assert re.search(r"dominance_binding\.h:\d+, aot_loss::dominance: v must have the dtype of u", out.stderr)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (None, "--force-reinstall --no-deps --no-binary aot-loss aot-loss=={version}"),  # from an index
        (
            {"url": "file:///dl/aot_loss-{version}.tar.gz", "archive_info": {}},
            "--no-deps /dl/aot_loss-{version}.tar.gz",
        ),
        (
            {"url": "file:///dl/aot_loss-{version}-py3-none-any.whl", "archive_info": {}},
            "--no-deps aot_loss-{version}.tar.gz  (the sdist of this version, or a clone)",
        ),
    ],
)
def test_the_build_command_fits_an_installed_package(tmp_path, monkeypatch, record, expected):
    """Installed in site-packages (no setup.py beside the package): the command rebuilds from
    what pip recorded (PEP 610's direct_url.json), never `-e .`, which needs a clone."""
    version = aot_loss.__version__
    site = tmp_path / "site-packages"
    (site / "aot_loss").mkdir(parents=True)
    info = site / f"aot_loss-{version}.dist-info"
    info.mkdir()
    if record is not None:
        record = {**record, "url": record["url"].format(version=version)}
        (info / "direct_url.json").write_text(json.dumps(record))
    monkeypatch.setattr(_native, "_PACKAGE", site / "aot_loss")
    _native.build_command.cache_clear()
    try:
        command = _native.build_command()
    finally:
        _native.build_command.cache_clear()
    assert command.startswith("AOT_LOSS_BUILD_EXT=1 pip install --no-build-isolation ")
    assert command.endswith(expected.format(version=version))


def test_the_build_command_of_a_clone_builds_in_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _native.build_command.cache_clear()
    try:
        command = _native.build_command()
    finally:
        _native.build_command.cache_clear()
    assert command == f"AOT_LOSS_BUILD_EXT=1 pip install --no-build-isolation -e {ROOT}"


def test_info_prints_the_build_command_once():
    out = subprocess.run(
        [sys.executable, "-m", "aot_loss", "info"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    if aot_loss.info().native:
        assert "build it with" not in out
    else:
        assert out.count("AOT_LOSS_BUILD_EXT=1 pip install") == 1
        assert "native library: not built (build it with: AOT_LOSS_BUILD_EXT=1 pip install" in out
