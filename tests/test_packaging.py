"""The default build is a pure wheel and importing the package is silent and lean."""

import subprocess
import sys
import zipfile
from pathlib import Path

import aot_loss

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
