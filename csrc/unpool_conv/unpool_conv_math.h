// Index math of the fused max-unpool + rectify + transposed convolution, shared by the CPU and
// CUDA kernels.
#pragma once

#include <cstdint>

#include "../common/host_device.h"

namespace cnnaural {

// Size of a transposed convolution's output along one dimension (PyTorch's formula).
HOST_DEVICE_INLINE int64_t conv_transpose_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding,
                                                   int64_t output_padding, int64_t dilation) {
  return (in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1;
}

// Scatter form: the output coordinate that input coordinate `y` reaches through tap `k`.
HOST_DEVICE_INLINE int64_t tap_target(int64_t y, int64_t k, int64_t stride, int64_t padding, int64_t dilation) {
  return y * stride - padding + k * dilation;
}

// Gather form: the input coordinate that reaches output coordinate `o` through tap `k`, or -1
// when none does (not on the stride grid, or outside [0, in)).
HOST_DEVICE_INLINE int64_t tap_source(int64_t o, int64_t k, int64_t stride, int64_t padding, int64_t dilation,
                                      int64_t in) {
  const int64_t t = o + padding - k * dilation;
  if (t < 0) return -1;
  if (stride == 1) return t < in ? t : -1;  // the common case, without a division
  if (t % stride != 0) return -1;
  const int64_t y = t / stride;
  return y < in ? y : -1;
}

// Range of taps k in [0, kernel) whose target tap_target(y, k) lies in [0, out): k0 <= k < k1.
HOST_DEVICE_INLINE void tap_range(int64_t y, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation,
                                  int64_t out, int64_t* k0, int64_t* k1) {
  const int64_t base = y * stride - padding;  // target of tap 0
  if (base >= 0 && base + (kernel - 1) * dilation < out) {  // the interior: no division
    *k0 = 0;
    *k1 = kernel;
    return;
  }
  int64_t lo = 0, hi = kernel;
  if (base < 0) lo = (-base + dilation - 1) / dilation;
  const int64_t last = out - 1 - base;  // largest allowed k * dilation
  if (last < 0) {
    hi = 0;
  } else if (last / dilation + 1 < hi) {
    hi = last / dilation + 1;
  }
  *k0 = lo;
  *k1 = hi > lo ? hi : lo;
}

// Row and column of flat position p in a plane of width w, without an integer division
// (inv_w = 1.0 / w; the estimate is corrected, so it is exact for any p < 2^52).
HOST_DEVICE_INLINE void row_col(int64_t p, int64_t w, double inv_w, int64_t* row, int64_t* col) {
  int64_t r = static_cast<int64_t>(static_cast<double>(p) * inv_w);
  if (r * w > p) --r;
  if ((r + 1) * w <= p) ++r;
  *row = r;
  *col = p - r * w;
}

// A switch is a flat position in the (H, W) unpooled plane.
HOST_DEVICE_INLINE bool switch_valid(int64_t p, int64_t plane) { return p >= 0 && p < plane; }

}  // namespace cnnaural
