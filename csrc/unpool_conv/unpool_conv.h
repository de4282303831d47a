// unpool_conv_transpose2d: max-unpool with recorded switches -> ReLU -> transposed convolution,
// fused. Declarations and the validation shared by every backend.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace cnnaural {

struct UnpoolConvGeometry {
  int64_t n = 0, c_out = 0, h = 0, w = 0;  // pooled input (N, C_out, h, w)
  int64_t c_in = 0, kh = 0, kw = 0;        // weight (C_out, C_in, kH, kW)
  int64_t uh = 0, uw = 0;                  // unpooled plane (H, W)
  int64_t oh = 0, ow = 0;                  // output (N, C_in, H_out, W_out)
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  bool broadcast_indices = false;          // indices batch 1 shared by all N rows
  bool compact = false;                    // input (N, 1, h, w) holds channel channels[n] only
};

// Validates shapes, dtypes, devices and geometry (not the switch values: the kernels check
// those where they read them) and returns the geometry.
UnpoolConvGeometry check_unpool_conv(const char* op, const at::Tensor& input, const at::Tensor& indices,
                                     const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                     at::IntArrayRef unpool_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                     at::IntArrayRef output_padding, at::IntArrayRef dilation,
                                     const std::optional<at::Tensor>& channels);

// Args:
//   input (N, C_out, h, w) float; indices (N | 1, C_out, h, w) int64 flat positions in the
//   unpool_size = (H, W) plane; weight (C_out, C_in, kH, kW), the forward Conv2d's; bias (C_in).
//   channels (N) int64, optional: one-feature seeds stored compactly — input is then (N, 1, h, w)
//   and row n is the pooled map of channel channels[n], every other channel being zero.
// Returns (N, C_in, H_out, W_out) in channels-last memory format, equal to
//   conv_transpose2d(relu(max_unpool2d(input, indices)), weight, bias, stride, padding,
//                    output_padding, 1, dilation)
// with repeated switches summed (before the rectifier), as autograd sums them.
at::Tensor unpool_conv_transpose2d_cpu(const at::Tensor& input, const at::Tensor& indices, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, at::IntArrayRef unpool_size,
                                       at::IntArrayRef stride, at::IntArrayRef padding,
                                       at::IntArrayRef output_padding, at::IntArrayRef dilation, bool rectify,
                                       const std::optional<at::Tensor>& channels);

}  // namespace cnnaural
