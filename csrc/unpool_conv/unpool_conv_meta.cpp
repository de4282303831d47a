// unpool_conv_transpose2d on meta tensors (shapes only, no data), for torch.compile, FakeTensor
// and torch.library.opcheck: the shared validation, then an empty output of the shape, dtype and
// memory format the CPU and CUDA kernels return ((N, C_in, H_out, W_out), input's dtype,
// channels-last). The output size is check_unpool_conv's: the only place the rule is written.
// The switch and channel values are not checked here (that needs data): the kernels check them.
#include <torch/library.h>

#include "unpool_conv.h"

namespace cnnaural {

namespace {
constexpr const char* kOp = "unpool_conv_transpose2d";

at::Tensor unpool_conv_transpose2d_meta(const at::Tensor& input, const at::Tensor& indices, const at::Tensor& weight,
                                        const std::optional<at::Tensor>& bias, at::IntArrayRef unpool_size,
                                        at::IntArrayRef stride, at::IntArrayRef padding,
                                        at::IntArrayRef output_padding, at::IntArrayRef dilation, bool /*rectify*/,
                                        const std::optional<at::Tensor>& channels) {
  const UnpoolConvGeometry g = check_unpool_conv(kOp, input, indices, weight, bias, unpool_size,
                                                 stride, padding, output_padding, dilation, channels);
  return at::empty({g.n, g.c_in, g.oh, g.ow}, input.options().memory_format(at::MemoryFormat::ChannelsLast));
}
}  // namespace

TORCH_LIBRARY_IMPL(cnnaural, Meta, m) { m.impl("unpool_conv_transpose2d", &unpool_conv_transpose2d_meta); }

}  // namespace cnnaural
