// masked_istft on meta tensors (shapes only, no data), for torch.compile, FakeTensor and
// torch.library.opcheck: the shared validation, then an empty output of the shape, dtype and
// layout the CPU and CUDA kernels return ((N, L) contiguous, gain's dtype). The output length L
// is check_masked_istft's: the only place the rule is written.
#include <torch/library.h>

#include "istft.h"

namespace cnnaural {

namespace {
constexpr const char* kOp = "masked_istft";

at::Tensor masked_istft_meta(const at::Tensor& stft, const at::Tensor& gain, int64_t n_fft, int64_t hop_length,
                             int64_t win_length, const at::Tensor& window, bool center,
                             std::optional<int64_t> length, c10::string_view mode) {
  const IstftGeometry g =
      check_masked_istft(kOp, stft, gain, n_fft, hop_length, win_length, window, center, length, mode);
  return at::empty({g.n, g.out_len}, gain.options());
}
}  // namespace

TORCH_LIBRARY_IMPL(cnnaural, Meta, m) { m.impl("masked_istft", &masked_istft_meta); }

}  // namespace cnnaural
