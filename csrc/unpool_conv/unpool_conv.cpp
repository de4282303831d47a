// Backend-independent part of unpool_conv_transpose2d: the op's schema and argument validation.
#include "unpool_conv.h"

#include <torch/library.h>

#include "../common/checks.h"
#include "unpool_conv_math.h"

// The schema: the dispatcher sees the op, so torch.compile and torch.library.opcheck work. A
// fragment per op (every op's folder has one), so adding an op touches only its folder.
TORCH_LIBRARY_FRAGMENT(cnnaural, m) {
  m.def(
      "unpool_conv_transpose2d(Tensor input, Tensor indices, Tensor weight, Tensor? bias, int[2] unpool_size, "
      "int[2] stride, int[2] padding, int[2] output_padding, int[2] dilation, bool rectify, "
      "Tensor? channels=None) -> Tensor");
}

namespace cnnaural {

UnpoolConvGeometry check_unpool_conv(const char* op, const at::Tensor& input, const at::Tensor& indices,
                                     const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                     at::IntArrayRef unpool_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                     at::IntArrayRef output_padding, at::IntArrayRef dilation,
                                     const std::optional<at::Tensor>& channels) {
  check_dim(input, 4, op, "input");
  check_dim(indices, 4, op, "indices");
  check_dim(weight, 4, op, "weight");
  CNNAURAL_CHECK(input.is_floating_point(), op, "input must be floating point, got ", input.scalar_type());
  CNNAURAL_CHECK(weight.scalar_type() == input.scalar_type(), op, "weight must have input's dtype ",
                 input.scalar_type(), ", got ", weight.scalar_type());
  CNNAURAL_CHECK(indices.scalar_type() == at::kLong, op, "indices must be int64, got ", indices.scalar_type());
  check_same_device(input, indices, op, "input", "indices");
  check_same_device(input, weight, op, "input", "weight");
  for (auto* p : {&unpool_size, &stride, &padding, &output_padding, &dilation}) {
    CNNAURAL_CHECK(p->size() == 2, op, "unpool_size, stride, padding, output_padding and dilation take 2 values");
  }
  UnpoolConvGeometry g;
  g.n = input.size(0);
  g.c_out = indices.size(1);
  g.h = input.size(2);
  g.w = input.size(3);
  g.compact = channels.has_value();
  if (g.compact) {
    CNNAURAL_CHECK(input.size(1) == 1, op, "with channels, input must be (N, 1, h, w): one pooled map per seed, got ",
                   input.sizes());
    CNNAURAL_CHECK(channels->dim() == 1 && channels->size(0) == g.n && channels->scalar_type() == at::kLong, op,
                   "channels must be int64 (N=", g.n, "), got ", channels->scalar_type(), " ", channels->sizes());
    check_same_device(input, *channels, op, "input", "channels");
  } else {
    CNNAURAL_CHECK(input.size(1) == g.c_out, op, "indices ", indices.sizes(), " must be (N or 1, C, h, w) with the C=",
                   input.size(1), " channels of input ", input.sizes());
  }
  CNNAURAL_CHECK(indices.size(2) == g.h && indices.size(3) == g.w &&
                     (indices.size(0) == g.n || indices.size(0) == 1),
                 op, "indices ", indices.sizes(), " must be (N or 1, C, h, w) matching input ", input.sizes());
  g.broadcast_indices = indices.size(0) == 1 && g.n != 1;
  CNNAURAL_CHECK(weight.size(0) == g.c_out, op, "weight ", weight.sizes(), " must be (C_out=", g.c_out,
                 ", C_in, kH, kW): the forward Conv2d's weight");
  g.c_in = weight.size(1);
  g.kh = weight.size(2);
  g.kw = weight.size(3);
  if (bias.has_value()) {
    CNNAURAL_CHECK(bias->dim() == 1 && bias->size(0) == g.c_in, op, "bias must be (", g.c_in, "), got ",
                   bias->sizes());
    CNNAURAL_CHECK(bias->scalar_type() == input.scalar_type(), op, "bias must have input's dtype");
    check_same_device(input, *bias, op, "input", "bias");
  }
  g.uh = unpool_size[0];
  g.uw = unpool_size[1];
  CNNAURAL_CHECK(g.uh > 0 && g.uw > 0, op, "unpool_size must be positive, got ", unpool_size);
  g.sh = stride[0];
  g.sw = stride[1];
  g.ph = padding[0];
  g.pw = padding[1];
  g.dh = dilation[0];
  g.dw = dilation[1];
  CNNAURAL_CHECK(g.sh > 0 && g.sw > 0 && g.dh > 0 && g.dw > 0, op, "stride and dilation must be positive");
  CNNAURAL_CHECK(g.ph >= 0 && g.pw >= 0, op, "padding must be non-negative");
  CNNAURAL_CHECK(output_padding[0] >= 0 && output_padding[1] >= 0 &&
                     (output_padding[0] < g.sh || output_padding[0] < g.dh) &&
                     (output_padding[1] < g.sw || output_padding[1] < g.dw),
                 op, "output_padding must be smaller than stride or dilation, got ", output_padding);
  g.oh = conv_transpose_out_size(g.uh, g.kh, g.sh, g.ph, output_padding[0], g.dh);
  g.ow = conv_transpose_out_size(g.uw, g.kw, g.sw, g.pw, output_padding[1], g.dw);
  CNNAURAL_CHECK(g.oh > 0 && g.ow > 0, op, "the output would be empty (", g.oh, " x ", g.ow, ")");
  return g;
}

}  // namespace cnnaural
