// C++ tests of csrc/unpool_conv/unpool_conv_math.h: every HOST_DEVICE_INLINE function against a
// brute-force computation with plain loops, over a grid of kernel sizes, strides, paddings,
// dilations, output paddings and input sizes (taps at the borders, padding wider than the kernel,
// output_padding up to max(stride, dilation) - 1).
//
// The oracle for the tap functions is the forward convolution itself: a transposed convolution is
// its adjoint, so input position y of the transposed convolution reaches output position o
// through tap k exactly when the forward convolution's window j = y, sliding over the
// zero-padded signal, reads signal position o with tap k. The oracle for the output size is the
// smallest signal length the forward convolution maps to `in` outputs, plus output_padding.
// No test framework: EXPECT (expect.h) counts failures, main() returns non-zero if any (ctest reads that).
#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "unpool_conv/unpool_conv_math.h"
#include "expect.h"

namespace {

using cnnaural::conv_transpose_out_size;
using cnnaural::row_col;
using cnnaural::switch_valid;
using cnnaural::tap_range;
using cnnaural::tap_source;
using cnnaural::tap_target;

struct Geometry {
  int64_t in, kernel, stride, padding, output_padding, dilation;
};

// Outputs of a forward convolution over a signal of `length` zero-padded by `padding` on each
// side: the window positions j = 0, 1, ... whose taps j * stride + k * dilation all lie inside
// the padded signal.
int64_t forward_outputs(int64_t length, const Geometry& g) {
  const int64_t padded = length + 2 * g.padding;
  int64_t count = 0;
  while (count * g.stride + (g.kernel - 1) * g.dilation < padded) ++count;
  return count;
}

// The transposed convolution's output length: the smallest signal length the forward convolution
// maps to g.in outputs (signal lengths down to -2 * padding: an empty padded signal), plus
// output_padding. Returns INT64_MIN if none up to a generous bound.
int64_t brute_out_size(const Geometry& g) {
  const int64_t bound = g.in * g.stride + g.kernel * g.dilation + 2 * g.padding + 8;
  for (int64_t length = -2 * g.padding; length <= bound; ++length) {
    if (forward_outputs(length, g) == g.in) return length + g.output_padding;
  }
  return INT64_MIN;
}

// taps[y * out + o]: bit k set when the forward convolution's window j = y reads signal position
// o (0 <= o < out) through tap k, i.e. padded position y * stride + k * dilation = o + padding.
std::vector<uint32_t> brute_taps(const Geometry& g, int64_t out) {
  std::vector<uint32_t> taps(g.in * out, 0);
  for (int64_t j = 0; j < g.in; ++j) {
    for (int64_t k = 0; k < g.kernel; ++k) {
      const int64_t padded_pos = j * g.stride + k * g.dilation;
      for (int64_t o = 0; o < out; ++o) {
        if (o + g.padding == padded_pos) taps[j * out + o] |= 1u << k;
      }
    }
  }
  return taps;
}

void test_geometry(const Geometry& g, int64_t* n_valid) {
  const int64_t out = conv_transpose_out_size(g.in, g.kernel, g.stride, g.padding, g.output_padding, g.dilation);
  const int64_t want = brute_out_size(g);
  EXPECT(out == want,
         "conv_transpose_out_size(in=%" PRId64 ", k=%" PRId64 ", s=%" PRId64 ", p=%" PRId64 ", op=%" PRId64
         ", d=%" PRId64 ") = %" PRId64 ", brute force %" PRId64,
         g.in, g.kernel, g.stride, g.padding, g.output_padding, g.dilation, out, want);
  if (out <= 0 || out != want) return;  // the op rejects an empty output
  ++*n_valid;
  if (g.output_padding < g.stride) {
    // the output is a signal length the forward convolution maps back to `in`
    EXPECT(forward_outputs(out, g) == g.in, "forward convolution of %" PRId64 " samples gives %" PRId64 ", not %" PRId64,
           out, forward_outputs(out, g), g.in);
  }
  const std::vector<uint32_t> want_taps = brute_taps(g, out);

  // scatter form: tap_range + tap_target, as the CPU kernel walks the taps of each input
  std::vector<uint32_t> scatter(g.in * out, 0);
  for (int64_t y = 0; y < g.in; ++y) {
    int64_t k0 = -7, k1 = -7;
    tap_range(y, g.kernel, g.stride, g.padding, g.dilation, out, &k0, &k1);
    // the taps landing inside [0, out), by enumeration
    int64_t first = -1, last = -1, n = 0;
    for (int64_t k = 0; k < g.kernel; ++k) {
      const int64_t t = y * g.stride - g.padding + k * g.dilation;
      if (t >= 0 && t < out) {
        if (first < 0) first = k;
        last = k;
        ++n;
      }
    }
    // an empty range may start past `kernel` (k0 == k1 > kernel): the loops over it do nothing
    EXPECT(0 <= k0 && k0 <= k1 && (k0 == k1 || k1 <= g.kernel),
           "tap_range(y=%" PRId64 ") = [%" PRId64 ", %" PRId64 ") outside [0, %" PRId64 "]", y, k0, k1, g.kernel);
    EXPECT(k1 - k0 == n && (n == 0 || (k0 == first && k1 == last + 1)),
           "tap_range(y=%" PRId64 ", k=%" PRId64 ", s=%" PRId64 ", p=%" PRId64 ", d=%" PRId64 ", out=%" PRId64
           ") = [%" PRId64 ", %" PRId64 "), enumeration: %" PRId64 " taps from %" PRId64,
           y, g.kernel, g.stride, g.padding, g.dilation, out, k0, k1, n, first);
    if (k0 < 0 || (k0 < k1 && k1 > g.kernel)) continue;
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t o = tap_target(y, k, g.stride, g.padding, g.dilation);
      EXPECT(o >= 0 && o < out, "tap_target(y=%" PRId64 ", k=%" PRId64 ") = %" PRId64 " outside [0, %" PRId64 ")", y, k, o,
             out);
      if (o < 0 || o >= out) continue;
      EXPECT(!(scatter[y * out + o] & (1u << k)), "tap %" PRId64 " of y=%" PRId64 " visited twice", k, y);
      scatter[y * out + o] |= 1u << k;
    }
  }
  // gather form: tap_source, as the CUDA gather kernel and the CPU's tap-vector path read
  std::vector<uint32_t> gather(g.in * out, 0);
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t k = 0; k < g.kernel; ++k) {
      const int64_t y = tap_source(o, k, g.stride, g.padding, g.dilation, g.in);
      EXPECT(y >= -1 && y < g.in, "tap_source(o=%" PRId64 ", k=%" PRId64 ") = %" PRId64 " outside [-1, %" PRId64 ")", o, k,
             y, g.in);
      if (y >= 0 && y < g.in) gather[y * out + o] |= 1u << k;
    }
  }
  int64_t bad_scatter = 0, bad_gather = 0;
  for (size_t i = 0; i < want_taps.size(); ++i) {
    bad_scatter += scatter[i] != want_taps[i];
    bad_gather += gather[i] != want_taps[i];
  }
  EXPECT(bad_scatter == 0,
         "scatter (tap_range + tap_target) differs from the forward convolution's taps at %" PRId64
         " (y, o) pairs: in=%" PRId64 ", k=%" PRId64 ", s=%" PRId64 ", p=%" PRId64 ", op=%" PRId64 ", d=%" PRId64,
         bad_scatter, g.in, g.kernel, g.stride, g.padding, g.output_padding, g.dilation);
  EXPECT(bad_gather == 0,
         "gather (tap_source) differs from the forward convolution's taps at %" PRId64 " (y, o) pairs: in=%" PRId64
         ", k=%" PRId64 ", s=%" PRId64 ", p=%" PRId64 ", op=%" PRId64 ", d=%" PRId64,
         bad_gather, g.in, g.kernel, g.stride, g.padding, g.output_padding, g.dilation);
}

void test_taps_and_sizes() {
  int64_t n_geometries = 0, n_valid = 0;
  for (int64_t kernel = 1; kernel <= 5; ++kernel) {
    for (int64_t stride = 1; stride <= 4; ++stride) {
      for (int64_t dilation = 1; dilation <= 3; ++dilation) {
        // padding up to past the kernel's reach: whole outputs cropped away at the borders
        for (int64_t padding = 0; padding <= (kernel - 1) * dilation + 2; ++padding) {
          // the op's rule: output_padding < stride or output_padding < dilation
          for (int64_t op = 0; op < std::max(stride, dilation); ++op) {
            for (int64_t in = 1; in <= 9; ++in) {
              test_geometry(Geometry{in, kernel, stride, padding, op, dilation}, &n_valid);
              ++n_geometries;
            }
          }
        }
      }
    }
  }
  std::printf("conv_transpose_out_size, tap_range, tap_target, tap_source: %lld geometries (%lld with an output)\n",
              (long long)n_geometries, (long long)n_valid);
}

// tap_range and tap_source for any output / input length, not only the op's own: the kernels
// call them per axis with the validated sizes, but the functions promise more.
void test_taps_any_length() {
  int64_t cases = 0;
  for (int64_t kernel = 1; kernel <= 4; ++kernel) {
    for (int64_t stride = 1; stride <= 3; ++stride) {
      for (int64_t dilation = 1; dilation <= 3; ++dilation) {
        for (int64_t padding = 0; padding <= 4; ++padding) {
          for (int64_t len = 1; len <= 12; ++len) {
            for (int64_t y = 0; y < 10; ++y) {  // tap_range: out = len
              int64_t k0, k1, n = 0, first = -1;
              tap_range(y, kernel, stride, padding, dilation, len, &k0, &k1);
              for (int64_t k = 0; k < kernel; ++k) {
                const int64_t t = y * stride - padding + k * dilation;
                if (t >= 0 && t < len) {
                  if (first < 0) first = k;
                  ++n;
                }
              }
              EXPECT(k1 - k0 == n && (n == 0 || k0 == first) && k0 >= 0 && (n == 0 || k1 <= kernel),
                     "tap_range(y=%" PRId64 ", k=%" PRId64 ", s=%" PRId64 ", p=%" PRId64 ", d=%" PRId64 ", out=%" PRId64
                     ") = [%" PRId64 ", %" PRId64 "), enumeration: %" PRId64 " taps from %" PRId64,
                     y, kernel, stride, padding, dilation, len, k0, k1, n, first);
              ++cases;
            }
            for (int64_t o = 0; o < 3 * len; ++o) {  // tap_source: in = len
              for (int64_t k = 0; k < kernel; ++k) {
                int64_t want = -1;
                for (int64_t y = 0; y < len; ++y) {
                  if (y * stride - padding + k * dilation == o) want = y;
                }
                const int64_t got = tap_source(o, k, stride, padding, dilation, len);
                EXPECT(got == want,
                       "tap_source(o=%" PRId64 ", k=%" PRId64 ", s=%" PRId64 ", p=%" PRId64 ", d=%" PRId64
                       ", in=%" PRId64 ") = %" PRId64 ", enumeration %" PRId64,
                       o, k, stride, padding, dilation, len, got, want);
                ++cases;
              }
            }
          }
        }
      }
    }
  }
  std::printf("tap_range, tap_source for any length: %lld cases\n", (long long)cases);
}

void test_row_col() {
  int64_t cases = 0;
  // every position of small planes, by walking rows and columns
  for (int64_t w = 1; w <= 40; ++w) {
    const double inv_w = 1.0 / static_cast<double>(w);
    for (int64_t r = 0; r < 50; ++r) {
      for (int64_t c = 0; c < w; ++c) {
        int64_t row = -1, col = -1;
        row_col(r * w + c, w, inv_w, &row, &col);
        EXPECT(row == r && col == c, "row_col(%" PRId64 ", w=%" PRId64 ") = (%" PRId64 ", %" PRId64 "), want (%" PRId64
               ", %" PRId64 ")", r * w + c, w, row, col, r, c);
        ++cases;
      }
    }
  }
  // rows near powers of two: where 1.0 / w is rounded down, p = k * w with k = 2^m gives an
  // estimate just below k, which the ++r correction must catch
  for (int64_t w = 1; w <= 300; ++w) {
    const double inv_w = 1.0 / static_cast<double>(w);
    for (int m = 0; m < 52; ++m) {
      for (int64_t dk = -2; dk <= 2; ++dk) {
        for (int64_t dp = -1; dp <= 1; ++dp) {
          const int64_t p = ((int64_t(1) << m) + dk) * w + dp;
          if (p < 0 || p >= (int64_t(1) << 52)) continue;
          int64_t row = -1, col = -1;
          row_col(p, w, inv_w, &row, &col);
          EXPECT(row == p / w && col == p % w, "row_col(%" PRId64 ", w=%" PRId64 ") = (%" PRId64 ", %" PRId64 ")", p, w,
                 row, col);
          ++cases;
        }
      }
    }
  }
  // large planes and positions up to 2^52: around multiples of w, and just below 2^52
  std::mt19937_64 rng(0);
  const int64_t widths[] = {3, 7, 173, 257, 86, 1000003, (int64_t(1) << 20) + 1, (int64_t(1) << 31) - 1,
                            (int64_t(1) << 40) + 17};
  for (int64_t w : widths) {
    const double inv_w = 1.0 / static_cast<double>(w);
    for (int i = 0; i < 20000; ++i) {
      const int64_t base = static_cast<int64_t>(rng() % (uint64_t(1) << 52)) / w * w;
      for (int64_t delta : {int64_t(-1), int64_t(0), int64_t(1), w - 1}) {
        const int64_t p = i == 0 ? (int64_t(1) << 52) - 1 - (delta & 7) : base + delta;
        if (p < 0 || p >= (int64_t(1) << 52)) continue;
        int64_t row = -1, col = -1;
        row_col(p, w, inv_w, &row, &col);
        EXPECT(row == p / w && col == p % w, "row_col(%" PRId64 ", w=%" PRId64 ") = (%" PRId64 ", %" PRId64 ")", p, w, row,
               col);
        ++cases;
      }
    }
  }
  std::printf("row_col: %lld positions\n", (long long)cases);
}

void test_switch_valid() {
  int64_t cases = 0;
  for (int64_t h = 1; h <= 6; ++h) {
    for (int64_t w = 1; w <= 6; ++w) {
      const int64_t plane = h * w;
      std::vector<bool> inside(plane + 10, false);  // positions -5 .. plane + 4, shifted by 5
      for (int64_t r = 0; r < h; ++r) {
        for (int64_t c = 0; c < w; ++c) inside[r * w + c + 5] = true;
      }
      for (int64_t p = -5; p < plane + 5; ++p) {
        EXPECT(switch_valid(p, plane) == inside[p + 5], "switch_valid(%" PRId64 ", %" PRId64 ")", p, plane);
        ++cases;
      }
    }
  }
  EXPECT(!switch_valid(INT64_MIN, 4) && !switch_valid(INT64_MAX, 4), "extreme switches must be invalid");
  std::printf("switch_valid: %lld positions\n", (long long)cases);
}

}  // namespace

int main() {
  test_taps_and_sizes();
  test_taps_any_length();
  test_row_col();
  test_switch_valid();
  return cnnaural_test::finish();
}
