// The _C Python module: build and runtime information. Each op's schema lives in its folder
// (TORCH_LIBRARY_FRAGMENT in csrc/<op>/<op>.cpp, compiled into _C as well), so importing _C
// registers torch.ops.cnnaural.*.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include "common/output_pool.h"
#include "istft/istft.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

pybind11::dict build_info() {
  pybind11::dict d;
  d["version"] = CNNAURAL_VERSION;
#ifdef CNNAURAL_WITH_CUDA
  d["cuda"] = true;
#else
  d["cuda"] = false;
#endif
#ifdef _OPENMP
  d["openmp"] = true;
  d["omp_max_threads"] = omp_get_max_threads();
#else
  d["openmp"] = false;
  d["omp_max_threads"] = 1;
#endif
  d["aten_threads"] = at::get_num_threads();
  d["parallel_info"] = at::get_parallel_info();
  return d;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "cnnaural_ext native kernels (ops are registered under torch.ops.cnnaural)";
  m.def("build_info", &build_info, "How this extension was built and how many threads it uses.");
  m.def("envelope_cache_size", &cnnaural::envelope_cache_size,
        "Window envelopes masked_istft holds (per window tensor, version and geometry).");
  m.def("output_pool_bytes", &cnnaural::output_pool_bytes,
        "Bytes of freed CPU output buffers the kernels keep for their next calls (at most 256 MiB).");
  m.def("release_output_pool", &cnnaural::release_output_pool,
        "Return the freed CPU output buffers the kernels keep to the OS.");
}
