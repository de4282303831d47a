// Planning and index math of the seed-batched indirect GEMM on CUDA (unpool_conv_cuda.cu), as
// HOST_DEVICE_INLINE functions: the kernels call them unchanged, and cpp_tests/
// test_seed_gemm_plan.cpp runs them on the CPU against brute force (plain C++, no torch).
//
// The formulation is the CPU's (seed_gemm_cpu.h). All N seeds share one track's switches
// (indices of batch 1). An *item* is a (channel c, switch position p) pair; the value of seed n
// there is u[n] = rectify(sum of the pooled values of channel c whose switch is p, in raster
// order). Output (oy, ox) of seed n is
//     bias + sum over the (item, tap) pairs that reach it of u_item[n] * W[c_item, :, tap].
// The item list does not depend on n, so a block computes a tile of output pixels for a block
// of seeds as a small GEMM with the seeds as M.
//
// Item order: by switch position, then channel (key p * C_out + c). The items of one position
// are therefore contiguous, and so are the items of a run of positions on one switch row: a tile
// reads, per switch row of its halo, one contiguous range of items (from the position table
// pos_start, a CSR index: the items at position p are [pos_start[p], pos_start[p + 1])).
//
// Summation order of one output (fixed, whatever the grid or the number of seeds): switch rows
// of the tile's halo ascending, then the chunks of that row's item range (each a contiguous run
// of at most the staging capacity), then taps kx ascending, then items ascending.
#pragma once

#include <cstdint>

#include "../common/host_device.h"
#include "unpool_conv_math.h"

// Loop unrolling hint for nvcc (the host compilers' own unrolling decides on the CPU).
#if defined(__CUDACC__)
#define CNNAURAL_UNROLL _Pragma("unroll")
#else
#define CNNAURAL_UNROLL
#endif

namespace cnnaural {

// floor(a / b) and ceil(a / b) for b > 0 and any sign of a.
HOST_DEVICE_INLINE int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}
HOST_DEVICE_INLINE int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// The halo of outputs [o0, o1) along one dimension: the input coordinates y in [0, in) that reach
// some output o0 <= o < o1 through some tap (o = tap_target(y, k) = y * stride - padding +
// k * dilation). Returns false when none does; otherwise [*lo, *hi] is the smallest interval
// holding them all (with dilation larger than the tile, a few inside it may reach none: see
// row_reaches).
HOST_DEVICE_INLINE bool halo_range(int64_t o0, int64_t o1, int64_t kernel, int64_t stride, int64_t padding,
                                   int64_t dilation, int64_t in, int64_t* lo, int64_t* hi) {
  int64_t l = in, h = -1;
  for (int64_t k = 0; k < kernel; ++k) {
    // y * stride in [o0 + padding - k * dilation, o1 - 1 + padding - k * dilation]
    int64_t a = ceil_div(o0 + padding - k * dilation, stride);
    int64_t b = floor_div(o1 - 1 + padding - k * dilation, stride);
    if (a < 0) a = 0;
    if (b > in - 1) b = in - 1;
    if (a > b) continue;
    if (a < l) l = a;
    if (b > h) h = b;
  }
  *lo = l;
  *hi = h;
  return l <= h;
}

// Whether input coordinate y reaches some output in [o0, o1) through some tap.
HOST_DEVICE_INLINE bool row_reaches(int64_t y, int64_t o0, int64_t o1, int64_t kernel, int64_t stride,
                                    int64_t padding, int64_t dilation) {
  for (int64_t k = 0; k < kernel; ++k) {
    const int64_t o = tap_target(y, k, stride, padding, dilation);
    if (o >= o0 && o < o1) return true;
  }
  return false;
}

// The tap k through which input coordinate y reaches output coordinate o, or -1 (there is at
// most one: distinct taps reach distinct outputs). y must lie in the input.
HOST_DEVICE_INLINE int64_t tap_between(int64_t o, int64_t y, int64_t kernel, int64_t stride, int64_t padding,
                                       int64_t dilation) {
  const int64_t t = o + padding - y * stride;  // = k * dilation
  if (t < 0 || t % dilation != 0) return -1;
  const int64_t k = t / dilation;
  return k < kernel ? k : -1;
}

// The sort key of an item: position-major, then channel. Keys of invalid cells sort after every
// valid one (kNoItemKey).
constexpr int64_t kNoItemKey = INT64_MAX;
HOST_DEVICE_INLINE int64_t item_key(int64_t p, int64_t c, int64_t c_out) { return p * c_out + c; }

// Geometry of the tile GEMM.
struct SeedGemmGeometry {
  int64_t uh, uw, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, c_out, c_in;
  int64_t cpad;  // weight row length: C_in rounded up to whole blocks of output channels
};

// One tile of output pixels: rows [oy0, oy1), columns [ox0, ox1), and its halo in the switch
// plane (rows [ylo, yhi], columns [xlo, xhi]; empty when `any` is false).
struct TilePlan {
  int64_t oy0, oy1, ox0, ox1, ylo, yhi, xlo, xhi;
  bool any;
};

HOST_DEVICE_INLINE TilePlan plan_tile(const SeedGemmGeometry& g, int64_t tile, int64_t tile_rows, int64_t tile_cols) {
  const int64_t tiles_x = (g.ow + tile_cols - 1) / tile_cols;
  const int64_t ty = tile / tiles_x, tx = tile - ty * tiles_x;
  TilePlan t;
  t.oy0 = ty * tile_rows;
  t.oy1 = t.oy0 + tile_rows < g.oh ? t.oy0 + tile_rows : g.oh;
  t.ox0 = tx * tile_cols;
  t.ox1 = t.ox0 + tile_cols < g.ow ? t.ox0 + tile_cols : g.ow;
  const bool rows = halo_range(t.oy0, t.oy1, g.kh, g.sh, g.ph, g.dh, g.uh, &t.ylo, &t.yhi);
  const bool cols = halo_range(t.ox0, t.ox1, g.kw, g.sw, g.pw, g.dw, g.uw, &t.xlo, &t.xhi);
  t.any = rows && cols;
  return t;
}

// Step 1 (per pooled cell m = c * h * w + i * w + j, indices of batch 1): its item key, or
// kNoItemKey for a switch outside the plane (*bad set).
HOST_DEVICE_INLINE int64_t cell_item_key(int64_t switch_pos, int64_t c, int64_t c_out, int64_t plane, bool* bad) {
  if (!switch_valid(switch_pos, plane)) {
    *bad = true;
    return kNoItemKey;
  }
  return item_key(switch_pos, c, c_out);
}

// Step 2, per index s of the stably sorted keys (`total` of them, valid ones first): whether it
// heads an item (the first cell of its key).
HOST_DEVICE_INLINE bool item_head(const int64_t* sorted, int64_t s) {
  return sorted[s] != kNoItemKey && (s == 0 || sorted[s - 1] != sorted[s]);
}

// Step 3, per index s of the sorted keys, given item_incl[s] = the number of heads in [0, s]:
// writes the tables of the items, which every s writes its own part of (no two write the same
// entry):
//   item_first[k]: the sorted index of item k's first cell; item_first[n_items] = the number of
//     valid cells (so item k's cells are perm[item_first[k] .. item_first[k + 1]), in raster
//     order: the sort is stable);
//   item_c[k]: item k's channel;
//   pos_start[p], p in [0, plane]: the first item at position p or later (pos_start[plane] =
//     n_items). Every entry is written when there is an item; with none, it stays as the caller
//     initialised it (zeros).
HOST_DEVICE_INLINE void item_tables_at(int64_t s, const int64_t* sorted, int64_t total, const int32_t* item_incl,
                                       int64_t c_out, int64_t plane, int32_t* item_first, int32_t* item_c,
                                       int32_t* pos_start) {
  const int64_t key = sorted[s];
  if (key == kNoItemKey) return;
  const int32_t k = item_incl[s] - 1;
  const int64_t p = key / c_out;
  if (s == 0 || sorted[s - 1] != key) {
    item_first[k] = static_cast<int32_t>(s);
    item_c[k] = static_cast<int32_t>(key - p * c_out);
    // positions after the previous item's, up to this one, start here
    const int64_t p_prev = s == 0 ? -1 : sorted[s - 1] / c_out;
    for (int64_t q = p_prev + 1; q <= p; ++q) pos_start[q] = k;
  }
  if (s + 1 == total || sorted[s + 1] == kNoItemKey) {  // the last valid cell
    item_first[k + 1] = static_cast<int32_t>(s + 1);
    for (int64_t q = p + 1; q <= plane; ++q) pos_start[q] = k + 1;
  }
}

// Step 4: the value of item k for one seed: rectify(sum of its cells in raster order).
// input_n: the seed's (C_out, h, w) input with strides sc, sh, sw; cells hold m = c * hw + i * w + j
// (hw < 2^31).
template <typename T>
HOST_DEVICE_INLINE T item_value(const T* input_n, int64_t sc, int64_t sh, int64_t sw, const int64_t* perm,
                                int32_t first, int32_t end, int32_t hw, int32_t w, bool rectify) {
  T v = T(0);
  for (int32_t s = first; s < end; ++s) {
    const int32_t m = static_cast<int32_t>(perm[s]), c = m / hw, q = m - c * hw, i = q / w, j = q - i * w;
    const T x = input_n[c * sc + i * sh + j * sw];
    v = s == first ? x : v + x;
  }
  if (rectify && v < T(0)) v = T(0);
  return v;
}

// Step 5, the inner loop: calls f(k, tap) for every item k in [k0, k1) (items of switch row y,
// all staged) that reaches output (oy, ox), with the tap (ky * kW + kx) it reaches it through,
// kx ascending, then k ascending.
template <typename F>
HOST_DEVICE_INLINE void for_each_pixel_item(const SeedGemmGeometry& g, int64_t oy, int64_t ox, int64_t y, int32_t k0,
                                            int32_t k1, const int32_t* pos_start, F&& f) {
  const int64_t ky = tap_between(oy, y, g.kh, g.sh, g.ph, g.dh);
  if (ky < 0) return;
  const int64_t row = y * g.uw;
  for (int64_t kx = 0; kx < g.kw; ++kx) {
    const int64_t x = tap_source(ox, kx, g.sw, g.pw, g.dw, g.uw);
    if (x < 0) continue;
    int32_t a = pos_start[row + x], b = pos_start[row + x + 1];
    if (a < k0) a = k0;
    if (b > k1) b = k1;
    const int64_t tap = ky * g.kw + kx;
    for (int32_t k = a; k < b; ++k) f(k, tap);
  }
}

// acc[rm][rn] += u[k][rm] * W[tap][c_k][rn] over the items of for_each_pixel_item.
// u_s: the staged items' values for this thread's seeds (row k - k0, rows u_ld apart); c_s: the
// staged items' channels; w: the weights (kH * kW, C_out, cpad) offset to this thread's first
// output channel.
template <typename T, int RM, int RN>
HOST_DEVICE_INLINE void seed_gemm_pixel(const SeedGemmGeometry& g, int64_t oy, int64_t ox, int64_t y, int32_t k0,
                                        int32_t k1, const int32_t* pos_start, const int32_t* c_s, const T* u_s,
                                        int64_t u_ld, const T* w, T (&acc)[RM][RN]) {
  for_each_pixel_item(g, oy, ox, y, k0, k1, pos_start, [&](int32_t k, int64_t tap) {
    const T* wr = w + (tap * g.c_out + c_s[k - k0]) * g.cpad;
    const T* ur = u_s + (k - k0) * u_ld;
    T wv[RN];
CNNAURAL_UNROLL
    for (int rn = 0; rn < RN; ++rn) wv[rn] = wr[rn];
CNNAURAL_UNROLL
    for (int rm = 0; rm < RM; ++rm) {
      const T uv = ur[rm];
CNNAURAL_UNROLL
      for (int rn = 0; rn < RN; ++rn) acc[rm][rn] += uv * wv[rn];
    }
  });
}

}  // namespace cnnaural
