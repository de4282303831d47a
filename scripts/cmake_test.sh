#!/usr/bin/env bash
# Configure, build (one job by default) and run the C++ tests of csrc/ with CMake, in build/cmake.
# Usage: scripts/cmake_test.sh [extra cmake configure args]
# Env: PYTHON (default: the repo's .venv python, else python3), JOBS (default 1), BUILD_DIR,
#      CUDA_HOME (default /usr/local/cuda), CNNAURAL_CMAKE_CUDA (default 1).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
build="${BUILD_DIR:-build/cmake}"
jobs="${JOBS:-1}"

prefix="$("$PYTHON" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
generator=()
if command -v ninja >/dev/null 2>&1 || [[ -x "$(dirname "$PYTHON")/ninja" ]]; then
  generator=(-G Ninja)
  if ! command -v ninja >/dev/null 2>&1; then
    generator+=(-DCMAKE_MAKE_PROGRAM="$(cd "$(dirname "$PYTHON")" && pwd)/ninja")
  fi
fi
# an existing build dir keeps its generator (CMake refuses to switch)
if [[ -f "$build/CMakeCache.txt" ]]; then generator=(); fi

# The compile-only CUDA target (every csrc/**/*.cu for sm_80 and sm_90) whenever nvcc is there, so
# a CUDA compile error fails the tests without a GPU; CI insists on it (CI=true).
# CNNAURAL_CMAKE_CUDA=0 turns it off.
cuda=()
nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
if [[ "${CNNAURAL_CMAKE_CUDA:-1}" != 0 ]]; then
  if [[ -x "$nvcc" ]]; then
    cuda=(-DWITH_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc")
  elif [[ "${CI:-}" == true ]]; then
    echo "cmake_test.sh: no nvcc at $nvcc: CI compiles the CUDA kernels; set CUDA_HOME" >&2
    exit 1
  else
    echo "cmake_test.sh: no nvcc at $nvcc: the CUDA kernels are not compiled (set CUDA_HOME)" >&2
  fi
fi

cmake -S . -B "$build" "${generator[@]}" -DCMAKE_PREFIX_PATH="$prefix" "${cuda[@]}" "$@"
cmake --build "$build" -j "$jobs"
# clangd and other tools look for compile_commands.json at the root (git-ignored)
ln -sf "$build/compile_commands.json" compile_commands.json
ctest --test-dir "$build" --output-on-failure
