"""Opt-in native build. A plain ``pip install`` gives the pure-Python wheel and never runs a
compiler; the C++ kernels are built only on request:

    AOT_LOSS_BUILD_EXT=1 pip install --no-build-isolation -e .

They use the LibTorch stable ABI and the CPython limited API, so one build serves
torch >= 2.10 on Python >= 3.10. Build facts go to ``_C_build.json`` next to the library, so
that ``python -m aot_loss.info`` can report them.

``AOT_LOSS_BUILD_CUDA=1`` (with ``AOT_LOSS_BUILD_EXT=1``, against a CUDA build of torch) adds
the CUDA kernels of ``csrc/cuda/*.cu`` and their bindings ``csrc/bindings/*_cuda.cpp``, for sm_80 and
sm_90 unless ``TORCH_CUDA_ARCH_LIST`` names others. It is never switched on by the mere
presence of nvcc.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent


def _native_extensions() -> tuple[list, dict, dict]:
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError as exc:
        raise SystemExit(
            "AOT_LOSS_BUILD_EXT=1 needs an installed torch and pip's --no-build-isolation "
            f"(import failed: {exc})"
        ) from exc
    if tuple(int(p) for p in torch.__version__.split(".")[:2]) < (2, 10):
        raise SystemExit(f"the native kernels need torch >= 2.10 (stable ABI); found {torch.__version__}")
    flags = [
        "-O3",
        "-g0",
        "-fno-trapping-math",  # lets loops with selects vectorise (csrc/cpu/cost_block.cpp)
        "-ffp-contract=off",  # no FMA in the AVX2/AVX-512 clones only: results independent of the CPU
        "-std=c++17",
        "-DPy_LIMITED_API=0x030a0000",
        "-DTORCH_TARGET_VERSION=0x020a000000000000",
    ]
    sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("bindings/*.cpp"))
    sources = [s for s in sources if not s.endswith("_cuda.cpp")]  # the CUDA bindings, below
    sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("cpu/*.cpp"))
    compile_args: dict[str, list[str]] = {"cxx": flags}
    extension = CppExtension
    cuda = os.environ.get("AOT_LOSS_BUILD_CUDA") == "1"
    if cuda:
        from torch.utils.cpp_extension import CUDAExtension

        if torch.version.cuda is None:
            raise SystemExit(f"AOT_LOSS_BUILD_CUDA=1 needs a CUDA build of torch; found {torch.__version__}")
        sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("bindings/*_cuda.cpp"))
        sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("cuda/*.cu"))
        archs = [] if os.environ.get("TORCH_CUDA_ARCH_LIST") else ["80", "90"]
        gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
        compile_args["nvcc"] = ["-O3", "-std=c++17", *gencode]
        extension = CUDAExtension
    # A compiler that links libstdc++ statically (the GPU machine's /opt/gcc does) puts a second
    # copy of it in the library, and some of the copy's symbols (the locale's) then resolved to
    # torch's shared libstdc++: writing a number into an error message (an ostringstream in
    # STD_TORCH_CHECK) crashed there and cut the message short here. Hiding the symbols of every
    # static archive keeps such a copy to itself; with a shared libstdc++ there is nothing to hide.
    link_args = ["-Wl,--exclude-libs,ALL"] if platform.system() == "Linux" else []
    ext = extension(
        "aot_loss._C",
        sources=sources,
        include_dirs=[str(ROOT / "csrc")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        py_limited_api=True,
    )
    info = {
        "torch": torch.__version__,
        "target": "2.10 stable ABI",
        "cuda": cuda,
        "python": platform.python_version(),
        "compiler_flags": flags,
        "linker_flags": link_args,
    }

    class BuildWithRecord(BuildExtension):
        """Writes the build facts next to the library, wherever this build puts it: the
        source tree for an editable install, the wheel's tree otherwise."""

        def run(self) -> None:
            super().run()
            library = Path(self.get_ext_fullpath(ext.name))
            (library.parent / "_C_build.json").write_text(json.dumps(info, indent=2) + "\n")

    return [ext], {"build_ext": BuildWithRecord}, {"bdist_wheel": {"py_limited_api": "cp310"}}


if os.environ.get("AOT_LOSS_BUILD_EXT") == "1":
    ext_modules, cmdclass, options = _native_extensions()
else:
    ext_modules, cmdclass, options = [], {}, {}

setup(ext_modules=ext_modules, cmdclass=cmdclass, options=options)
