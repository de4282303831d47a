#!/usr/bin/env bash
# One command on a machine with an NVIDIA GPU: build the extension from source with its CUDA
# kernels, run every test that has a CUDA case, then the CUDA benchmarks (JSON + markdown).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (default: benchmarks/results)
#
# Env:
#   PYTHON                a Python whose torch is a CUDA build (default: python3), with pytest,
#                         hypothesis, numpy and scipy; nothing is installed into it
#   TORCH_CUDA_ARCH_LIST  GPU architectures to build (default: the visible GPU's)
#   QUICK=1               tiny benchmark sizes, to check the script itself
#   SANITIZE=1            also run the CUDA kernel tests under compute-sanitizer (memcheck)
# Writes OUT_DIR/gpu_build.log, gpu_tests.log, kernels_cuda.json and kernels_cuda.md, and
# kernels_cuda_paths.json/.md: the fused op's cases (dense seeds, and one-feature seeds stored
# densely) on both CUDA paths for dense seeds, CNNAURAL_UNPOOL_CONV_CUDA=gemm (the seed-batched
# GEMM, opt-in until measured) and =cudnn (unpool + cuDNN's transposed convolution, the default).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PY="${PYTHON:-python3}"
out="${1:-benchmarks/results}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1

"$PY" - <<'EOF'
import sys
try:
    import torch
except ImportError:
    sys.exit(f"gpu_check.sh: {sys.executable} has no torch; set PYTHON to a Python with a CUDA build of torch")
if torch.version.cuda is None or not torch.cuda.is_available():
    sys.exit(f"gpu_check.sh: needs a CUDA build of torch and a visible GPU "
             f"(torch {torch.__version__}, CUDA {torch.version.cuda}, GPU visible: {torch.cuda.is_available()})")
p = torch.cuda.get_device_properties(0)
print(f"gpu_check.sh: {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB; "
      f"torch {torch.__version__} (CUDA {torch.version.cuda})")
EOF

# 1. build in place (the environment is left as it was: no pip install)
echo "== build (log: $out/gpu_build.log)"
rm -rf build/temp.* cnnaural_ext/_C*.so
if ! CNNAURAL_CPU_ARCH="${CNNAURAL_CPU_ARCH:-native}" "$PY" setup.py build_ext --inplace >"$out/gpu_build.log" 2>&1; then
  tail -n 40 "$out/gpu_build.log"
  echo "gpu_check.sh: the build failed (full log: $out/gpu_build.log)" >&2
  exit 1
fi
grep -m1 "CUDA build:" "$out/gpu_build.log" || true
"$PY" - <<'EOF'
import sys
from cnnaural_ext import ops
info = ops.build_info()
routes = {op: ops.active_backend(op, "cuda") for op in ("unpool_conv_transpose2d", "masked_istft")}
print("build:", info, "| on cuda:", routes)
if not info.get("cuda") or set(routes.values()) != {"native"}:
    sys.exit("gpu_check.sh: the extension was built without its CUDA kernels (is nvcc on PATH or CUDA_HOME set?)")
EOF

# 2. tests: every op on every device against the reference, gradcheck, opcheck, bad indices
echo "== tests (log: $out/gpu_tests.log)"
tests=(tests/test_istft.py tests/test_unpool_conv.py tests/test_unpool_conv_native.py tests/test_deconvnet.py)
status=0
"$PY" -m pytest -q -p no:cacheprovider -rs "${tests[@]}" 2>&1 | tee "$out/gpu_tests.log" || status=$?
if [[ "${SANITIZE:-0}" == 1 ]]; then
  echo "== compute-sanitizer memcheck on the CUDA kernel tests"
  compute-sanitizer --tool memcheck --error-exitcode 9 "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_unpool_conv_native.py tests/test_istft.py -k cuda 2>&1 | tail -n 30 || status=$?
fi

# 3. benchmarks, even when a test failed (the log says which)
echo "== benchmarks"
quick=()
if [[ "${QUICK:-0}" == 1 ]]; then quick=(--quick); fi
"$PY" benchmarks/bench_kernels.py --device cuda --out "$out" "${quick[@]}"
echo "== the fused op on both CUDA paths for dense seeds (gemm | cudnn)"
QUICK="${QUICK:-0}" OUT_DIR="$out" "$PY" - <<'EOF' || status=$?
import os
import sys

import torch

sys.path.insert(0, "benchmarks")
from bench_kernels import fused_rows  # noqa: E402
from common import machine, write  # noqa: E402

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
quick = os.environ["QUICK"] == "1"
rows = []
for path in ("gemm", "cudnn"):
    os.environ["CNNAURAL_UNPOOL_CONV_CUDA"] = path
    got = fused_rows(4, 2, "cuda") if quick else fused_rows(64, 20, "cuda", long_frames=1292, long_n=64,
                                                             long_repeats=10)
    for row in got:
        if row["backend"] == "native":  # the compact rows and the reference do not depend on the path
            rows.append({**row, "backend": f"native, {path}"})
    del os.environ["CNNAURAL_UNPOOL_CONV_CUDA"]
meta = {**machine(), "device": "cuda"}
write(os.environ["OUT_DIR"], "kernels_cuda_paths", rows,
      ["case", "backend", "median_ms", "min_ms", "max_ms", "useful_gflops", "out_gbps", "speedup"], meta)
EOF
if [[ "$status" != 0 ]]; then
  echo "gpu_check.sh: tests failed (status $status; see $out/gpu_tests.log)" >&2
fi
exit "$status"
