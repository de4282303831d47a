#!/usr/bin/env bash
# Configure, build (one job by default) and run the C++ tests of csrc/ with CMake, in build/cmake.
# Usage: scripts/cmake_test.sh [extra cmake configure args, e.g. -DWITH_CUDA=ON]
# Env: PYTHON (default: the repo's .venv python, else python3), JOBS (default 1), BUILD_DIR.
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

cmake -S . -B "$build" "${generator[@]}" -DCMAKE_PREFIX_PATH="$prefix" "$@"
cmake --build "$build" -j "$jobs"
# clangd and other tools look for compile_commands.json at the root (git-ignored)
ln -sf "$build/compile_commands.json" compile_commands.json
ctest --test-dir "$build" --output-on-failure
