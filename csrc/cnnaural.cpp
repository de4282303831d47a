// The _C Python module: build and runtime information. Each op's schema lives in its folder
// (TORCH_LIBRARY_FRAGMENT in csrc/<op>/<op>.cpp, compiled into _C as well), so importing _C
// registers torch.ops.cnnaural.*.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include "common/cpu_isa.h"
#include "common/output_pool.h"
#include "istft/istft.h"
#include "unpool_conv/unpool_conv.h"

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
  d["cpu_isa"] = cnnaural::cpu_isa_name();  // the CPU kernels' loops: "avx2+fma" or "default"
  d["aten_threads"] = at::get_num_threads();
  d["parallel_info"] = at::get_parallel_info();
  return d;
}

// The ops' shared validation alone, for the Python reference path: it raises the op's own error
// (RuntimeError "cnnaural.<op>: ...") where the op would, and reads no tensor data.
void check_masked_istft(const at::Tensor& stft, const at::Tensor& gain, int64_t n_fft, int64_t hop_length,
                        int64_t win_length, const at::Tensor& window, bool center, std::optional<int64_t> length,
                        const std::string& mode) {
  cnnaural::check_masked_istft("masked_istft", stft, gain, n_fft, hop_length, win_length, window, center, length,
                               mode);
}

void check_unpool_conv_transpose2d(const at::Tensor& input, const at::Tensor& indices, const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias, at::IntArrayRef unpool_size,
                                   at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
                                   at::IntArrayRef dilation, const std::optional<at::Tensor>& channels) {
  cnnaural::check_unpool_conv("unpool_conv_transpose2d", input, indices, weight, bias, unpool_size, stride, padding,
                              output_padding, dilation, channels);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "cnnaural_ext native kernels (ops are registered under torch.ops.cnnaural)";
  m.def("build_info", &build_info, "How this extension was built and how many threads it uses.");
  m.def("envelope_cache_size", &cnnaural::envelope_cache_size,
        "Window envelopes masked_istft holds (per window tensor, version and geometry).");
  m.def("output_pool_bytes", &cnnaural::output_pool_bytes,
        "Bytes of freed CPU output buffers the kernels keep for their next calls (see set_output_pool_limit).");
  m.def("release_output_pool", &cnnaural::release_output_pool,
        "Return the freed CPU output buffers the kernels keep to the OS.");
  m.def("set_output_pool_limit", &cnnaural::set_output_pool_limit,
        "Keep at most max_bytes of freed CPU output buffers from now on (256 MiB by default, at most 1 GiB), "
        "returning the oldest beyond it to the OS; returns the previous limit.",
        pybind11::arg("max_bytes"));
  m.attr("output_pool_keep_bytes") = static_cast<int64_t>(cnnaural::kPoolKeepBytes);
  m.attr("output_pool_max_bytes") = static_cast<int64_t>(cnnaural::kPoolMaxBytes);
  namespace py = pybind11;
  m.def("check_masked_istft", &check_masked_istft,
        "masked_istft's argument checks (those of every backend; no data read): None, or the op's RuntimeError.",
        py::arg("stft"), py::arg("gain"), py::arg("n_fft"), py::arg("hop_length"), py::arg("win_length"),
        py::arg("window"), py::arg("center"), py::arg("length"), py::arg("mode"));
  m.def("check_unpool_conv_transpose2d", &check_unpool_conv_transpose2d,
        "unpool_conv_transpose2d's argument checks (those of every backend; shapes, dtypes, devices, geometry, not "
        "the switch or channel values): None, or the op's RuntimeError.",
        py::arg("input"), py::arg("indices"), py::arg("weight"), py::arg("bias"), py::arg("unpool_size"),
        py::arg("stride"), py::arg("padding"), py::arg("output_padding"), py::arg("dilation"),
        py::arg("channels") = py::none());
}
