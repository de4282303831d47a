// Operator schemas of the cnnaural library: the dispatcher sees every op, so torch.compile and
// torch.library.opcheck work. Kept apart from the pybind module (cnnaural.cpp) so the CMake
// build can register the ops in a plain C++ library without Python.
#include <torch/library.h>

TORCH_LIBRARY(cnnaural, m) {
  m.def(
      "masked_istft(Tensor stft, Tensor gain, int n_fft, int hop_length, int win_length, "
      "Tensor window, bool center, int? length, str mode) -> Tensor");
  m.def(
      "unpool_conv_transpose2d(Tensor input, Tensor indices, Tensor weight, Tensor? bias, int[2] unpool_size, "
      "int[2] stride, int[2] padding, int[2] output_padding, int[2] dilation, bool rectify, "
      "Tensor? channels=None) -> Tensor");
}
