"""Builds cnnaural_ext._C from csrc/: C++ with OpenMP always; CUDA too when torch has CUDA and
nvcc is found (CUDA_HOME), unless CNNAURAL_SKIP_CUDA=1.

Install with `pip install -e . --no-build-isolation` so the build uses the torch already in the
environment (torch is not a build requirement: pip would otherwise fetch a multi-GB CUDA build).

Environment switches, read once and printed:
  CNNAURAL_SKIP_CUDA=1     build the CPU kernels only
  TORCH_CUDA_ARCH_LIST     CUDA architectures (default "8.0;9.0" when no GPU is visible)
  MAX_JOBS                 parallel compile jobs (default: the number of cores)
  CNNAURAL_CPU_ARCH        -march for the CPU kernels. Unset (or "none"): a portable build, the
                           compiler's baseline for the platform (x86-64: SSE2), which runs on any
                           CPU of the architecture: the default, right for wheels and shared
                           installs. On x86-64 its hot loops also come as AVX2 + FMA variants,
                           chosen at run time where the CPU has them (csrc/common/cpu_isa.h;
                           CNNAURAL_CPU_ISA=default at run time keeps the baseline loops).
                           "native": this machine's vector units (AVX2, AVX-512, ...);
                           the extension may then die with an illegal instruction on another
                           CPU, so use it only for a build that stays on the machine that made it.
                           Any other value is passed on (e.g. "x86-64-v3", "haswell"). With an
                           explicit arch, x86-64 loops may use 512-bit vectors where it has them
                           (-mprefer-vector-width=512; GCC otherwise stops at 256: the scatter of
                           dense seeds gains 10-15%).
"""
import glob
import os
import platform
import re

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def project_version() -> str:
    """[project] version of pyproject.toml: the one place the version is written (setuptools
    reads it there for the package, CMakeLists.txt for the C++ library)."""
    path = os.path.join(ROOT, "pyproject.toml")
    try:
        import tomllib  # Python 3.11
    except ModuleNotFoundError:  # Python 3.10: the [project] table's `version = "..."` line
        table, version = None, None
        with open(path, encoding="utf-8") as f:
            for line in f:
                if m := re.match(r"\s*\[([^\]]+)\]", line):
                    table = m.group(1).strip()
                elif table == "project" and (m := re.match(r'\s*version\s*=\s*"([^"]+)"', line)):
                    version = m.group(1)
        if version is None:
            raise RuntimeError(f"no [project] version in {path}")
        return version
    with open(path, "rb") as f:
        return tomllib.load(f)["project"]["version"]


VERSION = project_version()


def extensions():
    import torch
    from torch.utils import cpp_extension

    cpp = sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    cu = sorted(glob.glob(os.path.join("csrc", "**", "*.cu"), recursive=True))
    skip_cuda = os.environ.get("CNNAURAL_SKIP_CUDA", "0") == "1"
    with_cuda = (not skip_cuda and torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
                 and bool(cu))
    if with_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 1))
    arch = os.environ.get("CNNAURAL_CPU_ARCH", "").strip()
    arch = "" if arch == "none" else arch
    print(f"[cnnaural_ext] torch {torch.__version__}, CUDA build: {with_cuda} "
          f"(torch CUDA {torch.version.cuda}, CUDA_HOME {cpp_extension.CUDA_HOME}, "
          f"arch {os.environ.get('TORCH_CUDA_ARCH_LIST', '-')}), CPU arch {arch or 'portable'}, "
          f"MAX_JOBS {os.environ['MAX_JOBS']}")

    macros = [("CNNAURAL_VERSION", f'"{VERSION}"')]
    cxx = ["-O3", "-fopenmp", "-std=c++20"]
    if arch:
        cxx.append(f"-march={arch}")
        if platform.machine().lower() in ("x86_64", "amd64"):
            cxx.append("-mprefer-vector-width=512")  # used only where -march has AVX-512
    if with_cuda:
        macros.append(("CNNAURAL_WITH_CUDA", None))
        ext = cpp_extension.CUDAExtension(
            "cnnaural_ext._C", cpp + cu, define_macros=macros, include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
            extra_link_args=["-fopenmp"])
    else:
        ext = cpp_extension.CppExtension(
            "cnnaural_ext._C", cpp, define_macros=macros, include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])
    return [ext], {"build_ext": cpp_extension.BuildExtension}


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
