// The dense (multi-feature) CPU path of unpool_conv_transpose2d as a seed-batched indirect GEMM.
// Included by unpool_conv_cpu.cpp only: everything here is internal and always inlined, so each
// instruction-set variant there (csrc/common/cpu_isa.h) compiles its own copy.
//
// All N seeds share one track's switches (indices of batch 1). Call an *item* a (channel c,
// switch position p) pair: the unpooled value of seed n there is u[n] = relu(sum of the pooled
// values of channel c whose switch is p). For an output pixel q, the items whose switch reaches
// q through some tap t are the same for every seed, so
//     out[n, q, :] = sum over those (item, t) of u_item[n] * W[c_item, t, :]
// is a small GEMM (seeds x items) @ (items x C_in) whose item list is gathered once per pixel
// and used for every seed. With 2x2 pools and 3x3 taps a pixel has about 9/4 items per channel:
// K ~ 2.25 C_out, a quarter of a dense convolution's.
//
// Work is split in bands of output rows (threads take bands from a shared counter; a band's
// output is written by its thread alone, so results do not depend on the split). Per band:
//   1. the switch rows its taps read (the halo) and the pooled rows whose switches can land
//      there (a per-call table of each pooled row's switch-row range);
//   2. a counting sort of those pooled cells by switch position (restricted to the halo):
//      items at one position are contiguous; repeated switches of a channel (overlapping pools)
//      are found there and summed into the first;
//   3. the rectified values of the band's items, seeds innermost: U[item][n] (the internal
//      layout transform: one strided read of the input per band, written into a buffer of a
//      few MB that stays in cache);
//   4. per output pixel (in column strips, so the items of neighbouring pixels stay in L2): the
//      list of (U row, weight row) pairs, then the register-blocked micro-kernel over it.
//
// Micro-kernels (32-byte vectors written with GCC vector extensions: AVX2 + FMA in the AVX2
// variant, two SSE halves in the baseline one):
//   - C_in >= one vector: 6 seeds x 2 vectors of output channels (12 accumulators), per item a
//     broadcast of each seed's value (consecutive floats of U) times two weight vectors; the
//     output is channels-last, so each seed's accumulators store as contiguous vectors.
//   - C_in < one vector (block 1 of a spectrogram CNN, C_in = 1): seeds in the vector lanes
//     (U rows padded to whole vectors), up to 8 vectors of seeds x k-split partial sums, per item
//     one broadcast weight: a sequence of rank-1 updates that stay in registers.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../common/cpu_isa.h"
#include "seed_gemm_plan.h"
#include "unpool_conv.h"
#include "unpool_conv_math.h"

namespace cnnaural {
namespace {

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(32)));
  static constexpr int kLanes = 8;
};
template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(32)));
  static constexpr int kLanes = 4;
};

template <typename T>
CNNAURAL_ALWAYS_INLINE typename Simd<T>::V vload(const T* p) {
  typename Simd<T>::V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
CNNAURAL_ALWAYS_INLINE void vstore(T* p, typename Simd<T>::V v) {
  std::memcpy(p, &v, sizeof(v));
}

// A run of items the micro-kernels read in order: the items at one switch position, reached
// through one tap (contiguous in U).
struct Segment {
  int64_t first, count;
};

// out[n0 + r, q, c0 : c0 + n_ci] = bias + sum over the segments' items k of
//     U[k][r] * B[k][0 : n_ci],   r < n_valid <= NR,
// U: this seed block's panel (items x ld, seeds innermost; NR <= ld: the last block of a call
// takes only the seeds it has, not a whole panel's zeros); B: the packed weights of the pixel's
// items for this block of output channels (K x CV vectors, in segment order). `out` is the
// pixel's first element of seed 0, seeds `out_sn` apart.
template <typename T, int NR, int CV>
CNNAURAL_ALWAYS_INLINE void kernel_channels(const Segment* seg, int64_t n_seg, const T* U, int64_t ld, const T* B,
                                            int64_t n0, int64_t n_valid, int64_t c0, int64_t n_ci,
                                            const T* bias_pad, T* out, int64_t out_sn) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::kLanes;
  V acc[NR][CV];
  for (int v = 0; v < CV; ++v) {
    const V bv = vload(bias_pad + c0 + v * L);
    for (int r = 0; r < NR; ++r) acc[r][v] = bv;
  }
  const T* w = B;
  for (int64_t sgi = 0; sgi < n_seg; ++sgi) {
    const T* u = U + seg[sgi].first * ld;
    const T* const u_end = u + seg[sgi].count * ld;
#pragma GCC unroll 2
    for (; u < u_end; u += ld, w += CV * L) {
      V wv[CV];
      for (int v = 0; v < CV; ++v) wv[v] = vload(w + v * L);
      for (int r = 0; r < NR; ++r) {
        const T s = u[r];
        for (int v = 0; v < CV; ++v) acc[r][v] += wv[v] * s;
      }
    }
  }
  for (int r = 0; r < NR; ++r) {
    if (r >= n_valid) break;
    T* o = out + (n0 + r) * out_sn + c0;
    if (n_ci == CV * L) {
      for (int v = 0; v < CV; ++v) vstore(o + v * L, acc[r][v]);
    } else {
      T tmp[CV * L];
      for (int v = 0; v < CV; ++v) vstore(tmp + v * L, acc[r][v]);
      for (int64_t i = 0; i < n_ci; ++i) o[i] = tmp[i];
    }
  }
}

// out[n0 + i, q, ci] = bias + sum over the segments' items k of U[k][n0 + i] * w_k, i < n_valid:
// seeds in the lanes, MV vectors of them, KS partial sums over the items (enough independent
// accumulators to hide the FMA latency when there are few seeds). U rows (n_ld seeds) are padded
// with zeros to whole vectors. w_k = seg_w[segment][item_c[k] * cpad + ci]: the weight row of the
// item's channel for the segment's tap, read in place (a pixel's few items per channel are not
// worth packing when each costs MV multiply-adds).
template <typename T, int MV, int KS>
CNNAURAL_ALWAYS_INLINE void kernel_seeds(const Segment* seg, const T* const* seg_w, int64_t n_seg, const T* U,
                                         int64_t n_ld, const int32_t* item_c, int64_t cpad, int64_t n0,
                                         int64_t n_valid, int64_t ci, T bias, T* out, int64_t out_sn) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::kLanes;
  V acc[KS][MV];
  for (int s = 0; s < KS; ++s) {
    for (int m = 0; m < MV; ++m) acc[s][m] = V{};
  }
  for (int64_t sgi = 0; sgi < n_seg; ++sgi) {
    const T* u = U + seg[sgi].first * n_ld + n0;
    const int32_t* cs = item_c + seg[sgi].first;
    const T* wt = seg_w[sgi] + ci;
    const int64_t count = seg[sgi].count;
    int64_t k = 0;
    for (; k + KS <= count; k += KS) {
      for (int s = 0; s < KS; ++s) {
        const T ws = wt[cs[k + s] * cpad];
        const T* us = u + (k + s) * n_ld;
        for (int m = 0; m < MV; ++m) acc[s][m] += vload(us + m * L) * ws;
      }
    }
    for (; k < count; ++k) {
      const T ws = wt[cs[k] * cpad];
      const T* us = u + k * n_ld;
      for (int m = 0; m < MV; ++m) acc[0][m] += vload(us + m * L) * ws;
    }
  }
  T tmp[MV * L];
  for (int m = 0; m < MV; ++m) {
    for (int s = 1; s < KS; ++s) acc[0][m] += acc[s][m];
    vstore(tmp + m * L, acc[0][m]);
  }
  for (int64_t i = 0; i < n_valid; ++i) out[(n0 + i) * out_sn + ci] = bias + tmp[i];
}

constexpr int kSeedVectors = 8;  // vectors of seeds per pass of kernel_seeds

#define CNNAURAL_KERNEL_SEEDS_ARGS seg, seg_w, n_seg, U, n_ld, item_c, cpad, n0, n_valid, ci, bias, out, out_sn
template <typename T>
CNNAURAL_ALWAYS_INLINE void kernel_seeds_vectors(int64_t mv, const Segment* seg, const T* const* seg_w, int64_t n_seg,
                                                 const T* U, int64_t n_ld, const int32_t* item_c, int64_t cpad,
                                                 int64_t n0, int64_t n_valid, int64_t ci, T bias, T* out,
                                                 int64_t out_sn) {
  switch (mv) {
    case 8: kernel_seeds<T, 8, 1>(CNNAURAL_KERNEL_SEEDS_ARGS); break;
    case 7: kernel_seeds<T, 7, 2>(CNNAURAL_KERNEL_SEEDS_ARGS); break;
    case 6: kernel_seeds<T, 6, 2>(CNNAURAL_KERNEL_SEEDS_ARGS); break;
    case 5: kernel_seeds<T, 5, 2>(CNNAURAL_KERNEL_SEEDS_ARGS); break;
    case 4: kernel_seeds<T, 4, 2>(CNNAURAL_KERNEL_SEEDS_ARGS); break;
    case 3: kernel_seeds<T, 3, 4>(CNNAURAL_KERNEL_SEEDS_ARGS); break;
    case 2: kernel_seeds<T, 2, 4>(CNNAURAL_KERNEL_SEEDS_ARGS); break;
    default: kernel_seeds<T, 1, 8>(CNNAURAL_KERNEL_SEEDS_ARGS); break;
  }
}
#undef CNNAURAL_KERNEL_SEEDS_ARGS

// Rows r[0..7] (8 floats each) -> columns: r[c] becomes (r0[c], ..., r7[c]), in registers.
CNNAURAL_ALWAYS_INLINE void transpose8x8(Simd<float>::V* r) {
  typedef int32_t M __attribute__((vector_size(32)));
  using V = Simd<float>::V;
  const M lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
  const M q0 = {0, 1, 8, 9, 4, 5, 12, 13}, q1 = {2, 3, 10, 11, 6, 7, 14, 15};
  const M h0 = {0, 1, 2, 3, 8, 9, 10, 11}, h1 = {4, 5, 6, 7, 12, 13, 14, 15};
  V t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = __builtin_shuffle(r[2 * i], r[2 * i + 1], lo);
    t[2 * i + 1] = __builtin_shuffle(r[2 * i], r[2 * i + 1], hi);
  }
  for (int i = 0; i < 2; ++i) {  // i = 0: rows 0-3, i = 1: rows 4-7
    u[4 * i + 0] = __builtin_shuffle(t[4 * i + 0], t[4 * i + 2], q0);  // columns 0 | 4
    u[4 * i + 1] = __builtin_shuffle(t[4 * i + 0], t[4 * i + 2], q1);  // 1 | 5
    u[4 * i + 2] = __builtin_shuffle(t[4 * i + 1], t[4 * i + 3], q0);  // 2 | 6
    u[4 * i + 3] = __builtin_shuffle(t[4 * i + 1], t[4 * i + 3], q1);  // 3 | 7
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = __builtin_shuffle(u[c], u[4 + c], h0);
    r[c + 4] = __builtin_shuffle(u[c], u[4 + c], h1);
  }
}

constexpr int64_t kSeedRows = 6;  // seeds per kernel_channels tile (4 when N <= 4)

// What every band of one call reads.
template <typename T>
struct SeedGemm {
  const UnpoolConvGeometry* geometry;
  const T* ip;          // input (N, C_out, h, w), any strides
  const int64_t* xp;    // indices (1, C_out, h, w), any strides
  const T* wp;          // weight (kH, kW, C_out, cpad), zeros beyond C_in
  const T* bias_pad;    // (cpad), zeros when there is no bias
  T* op;                // output, channels-last
  const int64_t* row_lo;  // per pooled row: lowest and highest switch row (lo > hi: none)
  const int64_t* row_hi;
  std::atomic<int64_t>* next_band;
  int64_t in_sn, in_sc, in_sh, in_sw, ix_sc, ix_sh, ix_sw;
  int64_t cpad;        // C_in rounded up to whole vectors
  int64_t seed_rows;   // seeds per micro-tile (kernel_channels: 6, or 4 for N <= 4)
  int64_t n_ld;        // kernel_seeds: U row length, N rounded up to whole vectors
  int64_t band_rows, n_bands, strip_cols;
  bool rectify, seeds_in_lanes;
};

// A block of n_valid seeds (at most ld, the panel's width): the micro-kernel of that many rows.
template <typename T, int CV>
CNNAURAL_ALWAYS_INLINE void kernel_channels_tile(int64_t ld, const Segment* seg, int64_t n_seg, const T* U,
                                                 const T* B, int64_t n0, int64_t n_valid, int64_t c0, int64_t n_ci,
                                                 const T* bias_pad, T* out, int64_t out_sn) {
#define CNNAURAL_KERNEL_CHANNELS_ARGS seg, n_seg, U, ld, B, n0, n_valid, c0, n_ci, bias_pad, out, out_sn
  switch (n_valid) {
    case 1: kernel_channels<T, 1, CV>(CNNAURAL_KERNEL_CHANNELS_ARGS); break;
    case 2: kernel_channels<T, 2, CV>(CNNAURAL_KERNEL_CHANNELS_ARGS); break;
    case 3: kernel_channels<T, 3, CV>(CNNAURAL_KERNEL_CHANNELS_ARGS); break;
    case 4: kernel_channels<T, 4, CV>(CNNAURAL_KERNEL_CHANNELS_ARGS); break;
    case 5: kernel_channels<T, 5, CV>(CNNAURAL_KERNEL_CHANNELS_ARGS); break;
    default: kernel_channels<T, 6, CV>(CNNAURAL_KERNEL_CHANNELS_ARGS); break;
  }
#undef CNNAURAL_KERNEL_CHANNELS_ARGS
}

// Bands taken from s.next_band until none is left.
template <typename T>
CNNAURAL_ALWAYS_INLINE void seed_gemm_bands(const SeedGemm<T>& s) {
  const UnpoolConvGeometry& g = *s.geometry;
  constexpr int L = Simd<T>::kLanes;
  const int64_t N = g.n, C = g.c_in, cpad = s.cpad, NR = s.seed_rows;
  const int64_t out_sn = g.oh * g.ow * C;
  // kernel_channels: seed blocks of NR (the last padded with zeros), U as one panel per block;
  // kernel_seeds: U rows of n_ld seeds
  const int64_t n_blocks = s.seeds_in_lanes ? 1 : (N + NR - 1) / NR;
  const int64_t row_len = s.seeds_in_lanes ? s.n_ld : NR;
  std::vector<int64_t> xsrc(g.ow * g.kw), ysrc(g.kh), rows;
  std::vector<int64_t> last(g.c_out);
  std::vector<Segment> seg(g.kh * g.kw);
  std::vector<const T*> seg_w(g.kh * g.kw);
  // per thread, kept across calls (a band's U is a few MB: new pages every call would cost
  // their first-touch zeroing); every entry a band reads is written for that band first
  static thread_local std::vector<int64_t> start, cursor;
  static thread_local std::vector<int32_t> item_c, item_rep, cell_item;
  static thread_local std::vector<T> U, B;
  for (int64_t ox = 0; ox < g.ow; ++ox) {
    for (int64_t kx = 0; kx < g.kw; ++kx) xsrc[ox * g.kw + kx] = tap_source(ox, kx, g.sw, g.pw, g.dw, g.uw);
  }
  for (;;) {
    const int64_t band = s.next_band->fetch_add(1, std::memory_order_relaxed);
    if (band >= s.n_bands) break;
    const int64_t oy0 = band * s.band_rows, oy1 = std::min(g.oh, oy0 + s.band_rows);
    // 1. the switch rows the band's taps read (seed_gemm_plan.h; yhi < 0 when none)
    int64_t ylo = g.uh, yhi = -1;
    halo_range(oy0, oy1, g.kh, g.sh, g.ph, g.dh, g.uh, &ylo, &yhi);
    int64_t n_items = 0, npos = 0;
    if (yhi >= 0) {
      const int64_t pos0 = ylo * g.uw;
      npos = (yhi - ylo + 1) * g.uw;
      rows.clear();
      for (int64_t i = 0; i < g.h; ++i) {
        if (s.row_lo[i] <= yhi && s.row_hi[i] >= ylo) rows.push_back(i);
      }
      // 2. counting sort of the cells whose switch lies in the halo, by position
      start.assign(npos + 1, 0);
      for (const int64_t i : rows) {
        for (int64_t c = 0; c < g.c_out; ++c) {
          const int64_t* xr = s.xp + c * s.ix_sc + i * s.ix_sh;
          for (int64_t j = 0; j < g.w; ++j) {
            const int64_t p = xr[j * s.ix_sw] - pos0;
            if (static_cast<uint64_t>(p) < static_cast<uint64_t>(npos)) ++start[p + 1];
          }
        }
      }
      for (int64_t p = 0; p < npos; ++p) start[p + 1] += start[p];
      n_items = start[npos];
      cursor.assign(start.begin(), start.end() - 1);
      item_c.resize(n_items);
      item_rep.resize(n_items);
      // cell_item[(row, j, c)]: the item of each cell of the rows, or n_items (a spare U row that
      // nothing reads) when its switch lies outside the halo
      cell_item.resize(rows.size() * g.w * g.c_out);
      for (size_t ri = 0; ri < rows.size(); ++ri) {
        const int64_t i = rows[ri];
        for (int64_t c = 0; c < g.c_out; ++c) {
          const int64_t* xr = s.xp + c * s.ix_sc + i * s.ix_sh;
          int32_t* ci_row = cell_item.data() + ri * g.w * g.c_out + c;
          for (int64_t j = 0; j < g.w; ++j) {
            const int64_t p = xr[j * s.ix_sw] - pos0;
            if (static_cast<uint64_t>(p) >= static_cast<uint64_t>(npos)) {
              ci_row[j * g.c_out] = static_cast<int32_t>(n_items);
              continue;
            }
            const int64_t k = cursor[p]++;
            ci_row[j * g.c_out] = static_cast<int32_t>(k);
            item_c[k] = static_cast<int32_t>(c);
          }
        }
      }
      // repeated switches of one channel: the later cells are summed into the first (and then
      // read as zeros)
      bool any_repeat = false;
      std::fill(last.begin(), last.end(), int64_t(-1));
      for (int64_t p = 0; p < npos; ++p) {
        for (int64_t k = start[p]; k < start[p + 1]; ++k) {
          const int64_t first = last[item_c[k]];
          if (first >= start[p]) {
            item_rep[k] = static_cast<int32_t>(first);
            any_repeat = true;
          } else {
            item_rep[k] = -1;
            last[item_c[k]] = k;
          }
        }
      }
      // 3. the items' values, seeds innermost, rectified: U[block][item][seed of the block],
      // each block with a spare row at the end. The input is read in its own order (a pooled
      // row's cells in runs of a few cells, every seed), so the reads are contiguous runs
      // in channels-last or NCHW and the writes stay within the few rows of a run's items.
      const int64_t items_ld = n_items + 1;
      U.resize(n_blocks * items_ld * row_len);
      const bool relu_now = s.rectify && !any_repeat;
      auto value = [&](int64_t k, int64_t n) -> T& {
        return U[((n / row_len) * items_ld + k) * row_len + n % row_len];
      };
      const int64_t n_padded = n_blocks * row_len;
      if (N < n_padded) {  // the padding seeds are zeros
        for (int64_t k = 0; k < n_items; ++k) {
          for (int64_t n = N; n < n_padded; ++n) value(k, n) = T(0);
        }
      }
      const bool c_inner = std::abs(s.in_sc) <= std::abs(s.in_sw);
      // float, seeds in the lanes, channels-last input: 8 seeds x 8 channels at a time,
      // transposed in registers and stored as 8 consecutive seeds of each item's row
      constexpr bool kFloat = sizeof(T) == 4;
      const bool by_8x8 = kFloat && s.seeds_in_lanes && s.in_sc == 1 && g.c_out % 8 == 0;
      const int64_t jb = std::max<int64_t>(1, 256 / std::max<int64_t>(1, g.c_out));  // cells per run
      for (size_t ri = 0; ri < rows.size(); ++ri) {
        const int32_t* cell_row = cell_item.data() + ri * g.w * g.c_out;
        for (int64_t j0 = 0; j0 < g.w; j0 += jb) {
          const int64_t j1 = std::min(g.w, j0 + jb);
          int64_t n = 0;
          if constexpr (kFloat) {
            for (; by_8x8 && n + 8 <= N; n += 8) {
              using VF = Simd<float>::V;
              for (int64_t j = j0; j < j1; ++j) {
                const float* src = reinterpret_cast<const float*>(s.ip) + n * s.in_sn + rows[ri] * s.in_sh + j * s.in_sw;
                const int32_t* cells = cell_row + j * g.c_out;
                for (int64_t c0 = 0; c0 < g.c_out; c0 += 8) {
                  VF r[8];
                  for (int q = 0; q < 8; ++q) {
                    r[q] = vload(src + q * s.in_sn + c0);
                    if (relu_now) r[q] = r[q] < VF{} ? VF{} : r[q];
                  }
                  transpose8x8(r);
                  for (int q = 0; q < 8; ++q) vstore(reinterpret_cast<float*>(U.data()) + cells[c0 + q] * row_len + n, r[q]);
                }
              }
            }
          }
          for (; n < N; ++n) {
            const T* src = s.ip + n * s.in_sn + rows[ri] * s.in_sh;
            T* ub = U.data() + (n / row_len) * items_ld * row_len + n % row_len;
            auto put = [&](int64_t j, int64_t c) {
              const T v = src[j * s.in_sw + c * s.in_sc];
              ub[cell_row[j * g.c_out + c] * row_len] = relu_now ? std::max(v, T(0)) : v;
            };
            if (c_inner) {
              for (int64_t j = j0; j < j1; ++j) {
                for (int64_t c = 0; c < g.c_out; ++c) put(j, c);
              }
            } else {
              for (int64_t c = 0; c < g.c_out; ++c) {
                for (int64_t j = j0; j < j1; ++j) put(j, c);
              }
            }
          }
        }
      }
      if (any_repeat) {
        for (int64_t k = 0; k < n_items; ++k) {
          if (item_rep[k] < 0) continue;
          for (int64_t n = 0; n < N; ++n) {
            value(item_rep[k], n) += value(k, n);
            value(k, n) = T(0);
          }
        }
        if (s.rectify) {
          for (int64_t k = 0; k < n_items; ++k) {
            for (int64_t n = 0; n < N; ++n) value(k, n) = std::max(value(k, n), T(0));
          }
        }
      }
      int64_t widest = 0;
      for (int64_t p = 0; p < npos; ++p) widest = std::max(widest, start[p + 1] - start[p]);
      B.resize(std::max<int64_t>(1, widest * g.kh * g.kw * cpad));
    }
    // 4. per pixel: the segments of items its taps reach, their weights packed, then the
    // micro-kernels over them
    for (int64_t ox0 = 0; ox0 < g.ow; ox0 += s.strip_cols) {
      const int64_t ox1 = std::min(g.ow, ox0 + s.strip_cols);
      for (int64_t oy = oy0; oy < oy1; ++oy) {
        for (int64_t ky = 0; ky < g.kh; ++ky) {
          const int64_t y = tap_source(oy, ky, g.sh, g.ph, g.dh, g.uh);
          ysrc[ky] = y < 0 || n_items == 0 ? -1 : y - ylo;
        }
        for (int64_t ox = ox0; ox < ox1; ++ox) {
          int64_t n_seg = 0, K = 0;
          for (int64_t ky = 0; ky < g.kh; ++ky) {
            if (ysrc[ky] < 0) continue;
            const int64_t rowbase = ysrc[ky] * g.uw;
            for (int64_t kx = 0; kx < g.kw; ++kx) {
              const int64_t x = xsrc[ox * g.kw + kx];
              if (x < 0) continue;
              const int64_t p = rowbase + x;
              const int64_t count = start[p + 1] - start[p];
              if (count == 0) continue;
              const T* wtap = s.wp + (ky * g.kw + kx) * g.c_out * cpad;
              seg_w[n_seg] = wtap;
              seg[n_seg++] = Segment{start[p], count};
              if (s.seeds_in_lanes) continue;
              // the items' weight rows for this tap, W[ky, kx, c_k, :], packed in blocks of
              // 2 vectors of output channels (the last block may be 1 vector): B[block][k][:]
              for (int64_t k = start[p]; k < start[p + 1]; ++k, ++K) {
                const T* wr = wtap + item_c[k] * cpad;
                for (int64_t c0 = 0; c0 < cpad; c0 += 2 * L) {
                  const int64_t width = std::min<int64_t>(2 * L, cpad - c0);
                  T* bd = B.data() + c0 * (B.size() / cpad) + K * width;
                  vstore(bd, vload(wr + c0));
                  if (width > L) vstore(bd + L, vload(wr + c0 + L));
                }
              }
            }
          }
          T* o = s.op + (oy * g.ow + ox) * C;
          const int64_t kmax = static_cast<int64_t>(B.size() / cpad);
          if (s.seeds_in_lanes) {
            for (int64_t ci = 0; ci < C; ++ci) {
              for (int64_t n0 = 0; n0 < N; n0 += kSeedVectors * L) {
                const int64_t nv = std::min<int64_t>(kSeedVectors * L, N - n0);
                kernel_seeds_vectors<T>((nv + L - 1) / L, seg.data(), seg_w.data(), n_seg, U.data(), s.n_ld,
                                        item_c.data(), cpad, n0, nv, ci, s.bias_pad[ci], o, out_sn);
              }
            }
            continue;
          }
          for (int64_t c0 = 0; c0 < C; c0 += 2 * L) {
            const int64_t n_ci = std::min<int64_t>(2 * L, C - c0);
            const T* Bc = B.data() + c0 * kmax;
            for (int64_t b = 0; b < n_blocks; ++b) {
              const int64_t n0 = b * NR, n_valid = std::min(NR, N - n0);
              const T* Ub = U.data() + b * (n_items + 1) * NR;
              if (cpad - c0 > L) {
                kernel_channels_tile<T, 2>(NR, seg.data(), n_seg, Ub, Bc, n0, n_valid, c0, n_ci, s.bias_pad, o,
                                           out_sn);
              } else {
                kernel_channels_tile<T, 1>(NR, seg.data(), n_seg, Ub, Bc, n0, n_valid, c0, n_ci, s.bias_pad, o,
                                           out_sn);
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace cnnaural
