// unpool_conv_transpose2d on CUDA. Two paths, neither with a floating-point atomic.
//
// Dense seeds sharing one track's switches (indices of batch 1, no channels=): the seed-batched
// indirect GEMM, the CPU's formulation (seed_gemm_cpu.h) with its planning math in
// seed_gemm_plan.h (tested on the CPU in cpp_tests/test_seed_gemm_plan.cpp). An item is a
// (channel, switch position) pair; the items that reach an output pixel are the same for every
// seed, so out[n, tile, c_in] = sum over items k of relu(u[n, k]) * W_k[c_in] is a GEMM with the
// seeds as M. Once per call, from the indices alone:
//   G1-G3. the pooled cells' item keys (position-major, then channel), a stable sort, and from it
//      the items (position-major, channels ascending at one position), each item's cells in
//      raster order, and a position index (the items at position p are a contiguous range);
// then per chunk of seed blocks:
//   G4. the item values, rectified, seeds innermost (U[block][item][seed]): each summed by one
//      thread over its cells in raster order, so repeated switches (overlapping pools) are summed
//      before the rectifier, in the order autograd and the CPU use;
//   G5. the tile GEMM: a block = a tile of output pixels x a block of seeds x a block of C_in.
//      Per switch row of the tile's halo, the row's contiguous range of items (values and
//      channels) is staged in shared memory in chunks; each warp takes one pixel at a time (its
//      lanes share the pixel's item list, so they never diverge), each lane holding a few seeds x
//      a few output channels in registers, weights read from a (taps, C_out, C_in) copy.
//      Three block shapes: 32 seeds x 16 channels, 8 x 16 (N <= 8), 32 x 1 (C_in <= 2).
//   Every output is summed by one thread in a fixed order (seed_gemm_plan.h), so results are the
//   same run to run and do not depend on N or the chunking.
//
// Everything else (indices of batch N, compact one-feature seeds, C_in beyond the grid's limit,
// and, until the GEMM has been measured on a GPU, dense seeds unless CNNAURAL_UNPOOL_CONV_CUDA=gemm)
// takes the unpool + convolution path:
//   1. a switch table, built once per call from the indices alone (shared by every seed when
//      indices have batch 1): the pooled cells that point at the same unpooled position are
//      chained in raster order (a stable sort of (plane, position) keys), the first one heading
//      the chain;
//   2. unpool + rectify: each chain head sums its chain in raster order (the order autograd and
//      the CPU kernel use), rectifies, and writes the unpooled map U of a chunk of seeds;
//   3. the transposed convolution over U. One-feature seeds (channels=) go through an
//      output-stationary gather kernel: a block owns a tile of output pixels x a block of output
//      channels, gathers for each tap the unpooled value that lands there (tap_source) and
//      multiplies it by the weights of the seed's one channel, so the other C_out - 1 channels
//      cost nothing. Dense seeds go to the library's transposed convolution (cuDNN) on U (its
//      bitwise reproducibility is cuDNN's algorithm choice: torch.backends.cudnn.deterministic).
// CNNAURAL_UNPOOL_CONV_CUDA=gemm | cudnn forces either path for dense seeds with shared switches
// (tests and benchmarks compare them); unset, the unpool + cuDNN path takes them: the GEMM has not
// yet run on a GPU (the repository's checks compile it for sm_80 and sm_90 and test its planning
// math and block logic on the CPU), so it is opt-in until benchmarks/gpu_check.sh, which tests and
// times both paths, has run on one.
// A switch outside the plane or a channel outside [0, C_out) is never read through: the kernels
// raise a flag instead, and the op turns the flag into an error naming it.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "../common/checks.h"
#include "unpool_conv.h"
#include "seed_gemm_plan.h"
#include "unpool_conv_math.h"

namespace cnnaural {

namespace {
constexpr const char* kOp = "unpool_conv_transpose2d";
constexpr int kThreads = 256;
constexpr int kTapChunk = 8;        // taps staged in shared memory at a time
constexpr int kMaxTilePixels = 256;  // output pixels per block, at most
constexpr int64_t kNoKey = std::numeric_limits<int64_t>::max();
constexpr int kBadSwitch = 1, kBadChannel = 2;  // bits of the error flag
constexpr int64_t kChunkElems = int64_t(1) << 26;  // unpooled values per chunk of seeds (256 MB in fp32)

// Which switch-table row holds the indices of seed n, channel c (see TableRows).
struct TableRows {
  int64_t c_out;
  bool broadcast;  // indices batch 1
  bool compact;    // one table row per seed (compact seeds with indices batch N)
  __device__ __forceinline__ int64_t row(int64_t n, int64_t c) const {
    if (compact) return broadcast ? c : n;
    return (broadcast ? 0 : n) * c_out + c;
  }
};

struct IndexStrides {
  int64_t sb, sc, sh, sw;
};

int blocks_for(int64_t work) {
  return static_cast<int>(std::min<int64_t>((work + kThreads - 1) / kThreads, int64_t(1) << 20));
}

// Step 1a: key of every pooled cell of every table row: row * plane + switch (kNoKey if invalid).
__global__ void switch_keys_kernel(const int64_t* __restrict__ idx, IndexStrides s, const int64_t* __restrict__ chan,
                                   int64_t rows, int64_t c_out, bool per_seed_rows, int64_t h, int64_t w,
                                   int64_t plane, int64_t* __restrict__ keys, int* __restrict__ err) {
  const int64_t hw = h * w, total = rows * hw;  // < 2^31 (checked by the op): 32-bit divisions
  const int hw32 = static_cast<int>(hw), w32 = static_cast<int>(w);
  for (int64_t m = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; m < total; m += int64_t(gridDim.x) * blockDim.x) {
    const int m32 = static_cast<int>(m), r32 = m32 / hw32, q = m32 - r32 * hw32, i = q / w32, j = q - i * w32;
    const int64_t r = r32;
    int64_t b, c;
    if (per_seed_rows) {  // compact seeds with their own indices: row r = seed r, its one channel
      b = r;
      c = chan[r];
      if (c < 0 || c >= c_out) {
        atomicOr(err, kBadChannel);
        keys[m] = kNoKey;
        continue;
      }
    } else {
      b = r / c_out;
      c = r - b * c_out;
    }
    const int64_t p = idx[b * s.sb + c * s.sc + i * s.sh + j * s.sw];
    if (switch_valid(p, plane)) {
      keys[m] = r * plane + p;
    } else {
      atomicOr(err, kBadSwitch);
      keys[m] = kNoKey;
    }
  }
}

// Step 1b: from the stably sorted keys, the chain of every unpooled position in raster order.
__global__ void switch_chain_kernel(const int64_t* __restrict__ sorted, const int64_t* __restrict__ perm,
                                    int64_t total, int32_t* __restrict__ next, uint8_t* __restrict__ head) {
  for (int64_t s = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; s < total; s += int64_t(gridDim.x) * blockDim.x) {
    const int64_t key = sorted[s], cell = perm[s];
    if (key == kNoKey) {
      head[cell] = 0;
      next[cell] = -1;
      continue;
    }
    head[cell] = (s == 0 || sorted[s - 1] != key) ? 1 : 0;
    next[cell] = (s + 1 < total && sorted[s + 1] == key) ? static_cast<int32_t>(perm[s + 1]) : -1;
  }
}

// Step 2: U[n - n0, cu, p] = rectify(sum of the chain headed by each pooled cell), U being
// (nc, Cu, H, W) in NCHW (compact: Cu = 1) or NHWC (dense, for the library convolution).
template <typename scalar_t>
__global__ void unpool_rectify_kernel(const scalar_t* __restrict__ input, int64_t in_sn, int64_t in_sc, int64_t in_sh,
                                      int64_t in_sw, const int64_t* __restrict__ idx, IndexStrides s,
                                      const int64_t* __restrict__ chan, TableRows rows,
                                      const int32_t* __restrict__ next, const uint8_t* __restrict__ head,
                                      int64_t n0, int64_t nc, int64_t cu_count, int64_t h, int64_t w, int64_t plane,
                                      bool channels_last, bool rectify, scalar_t* __restrict__ u, int* __restrict__ err) {
  // total <= kChunkElems < 2^31 (the op chunks the seeds): 32-bit divisions
  const int hw = static_cast<int>(h * w), w32 = static_cast<int>(w), cuc = static_cast<int>(cu_count);
  const int64_t total = nc * cu_count * hw;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int e32 = static_cast<int>(e), q = e32 % hw, plane_idx = e32 / hw;
    const int64_t cu = plane_idx % cuc, nl = plane_idx / cuc, n = n0 + nl;
    const int64_t c = chan != nullptr ? chan[n] : cu;
    if (c < 0 || c >= rows.c_out) {
      atomicOr(err, kBadChannel);
      continue;
    }
    const int64_t row = rows.row(n, c), cell = row * hw + q;
    if (!head[cell]) continue;
    const scalar_t* in_c = input + n * in_sn + (chan != nullptr ? 0 : c * in_sc);
    const int64_t i = q / w32, j = q - i * w32;
    scalar_t v = in_c[i * in_sh + j * in_sw];
    for (int32_t m = next[cell]; m >= 0; m = next[m]) {  // repeated switches, in raster order
      const int qm = static_cast<int>(m - row * hw), im = qm / w32;
      v += in_c[int64_t(im) * in_sh + int64_t(qm - im * w32) * in_sw];
    }
    if (rectify && v < scalar_t(0)) v = scalar_t(0);
    if (v == scalar_t(0)) continue;
    const int64_t b = rows.broadcast ? 0 : n;
    const int64_t p = idx[b * s.sb + c * s.sc + i * s.sh + j * s.sw];
    u[channels_last ? (nl * plane + p) * cu_count + cu : (nl * cu_count + cu) * plane + p] = v;
  }
}

struct ConvGeometry {
  int64_t uh, uw, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, c_in, c_out;
};

// Step 3 (one-feature seeds): out[n, oy, ox, ci] = bias[ci] + sum over taps of
// U[n - n0, source(oy, ox, tap)] * W[channels[n], ci, tap]. Block: kThreads threads as
// blockDim.x = output channels (fastest: coalesced channels-last writes) x blockDim.y pixel
// lanes, each lane accumulating PPT pixels spaced blockDim.y apart.
template <typename scalar_t, int PPT>
__global__ void gather_conv_kernel(const scalar_t* __restrict__ u, const scalar_t* __restrict__ wt,
                                   const scalar_t* __restrict__ bias, const int64_t* __restrict__ chan,
                                   ConvGeometry g, int64_t n0, scalar_t* __restrict__ out) {
  __shared__ scalar_t u_s[kTapChunk][kMaxTilePixels];
  __shared__ scalar_t w_s[kTapChunk][32];
  const int cib = blockDim.x, lanes = blockDim.y, tile = lanes * PPT;
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * cib + tx;
  const int64_t opix = g.oh * g.ow, pix0 = blockIdx.x * int64_t(tile);
  const int64_t ci = blockIdx.y * int64_t(cib) + tx;
  const int64_t nl = blockIdx.z, n = n0 + nl, c = chan[n];
  if (c < 0 || c >= g.c_out) return;  // flagged by the unpool step
  const int64_t taps = g.kh * g.kw, plane = g.uh * g.uw;
  const scalar_t* un = u + nl * plane;
  const scalar_t* wc = wt + c * taps * g.c_in;  // (C_out, kH, kW, C_in)
  scalar_t acc[PPT];
#pragma unroll
  for (int k = 0; k < PPT; ++k) acc[k] = scalar_t(0);

  for (int64_t t0 = 0; t0 < taps; t0 += kTapChunk) {
    const int tc = static_cast<int>(std::min<int64_t>(kTapChunk, taps - t0));
    for (int e = tid; e < tc * tile; e += cib * lanes) {  // where each (tap, pixel) reads U
      const int tt = e / tile, pl = e - tt * tile;
      const int64_t pix = pix0 + pl, t = t0 + tt;
      int32_t src = -1;
      if (pix < opix) {  // opix, taps < 2^31: 32-bit divisions
        const int p32 = static_cast<int>(pix), ow32 = static_cast<int>(g.ow), t32 = static_cast<int>(t),
                  kw32 = static_cast<int>(g.kw);
        const int64_t oy = p32 / ow32, ox = p32 - oy * ow32, ky = t32 / kw32, kx = t32 - ky * kw32;
        const int64_t y = tap_source(oy, ky, g.sh, g.ph, g.dh, g.uh);
        const int64_t x = tap_source(ox, kx, g.sw, g.pw, g.dw, g.uw);
        if (y >= 0 && x >= 0) src = static_cast<int32_t>(y * g.uw + x);
      }
      u_s[tt][pl] = src >= 0 ? un[src] : scalar_t(0);
    }
    for (int e = tid; e < tc * cib; e += cib * lanes) {
      const int tt = e / cib, cl = e - tt * cib;
      const int64_t cw = blockIdx.y * int64_t(cib) + cl;
      w_s[tt][cl] = cw < g.c_in ? wc[(t0 + tt) * g.c_in + cw] : scalar_t(0);
    }
    __syncthreads();
    for (int tt = 0; tt < tc; ++tt) {
      const scalar_t wv = w_s[tt][tx];
#pragma unroll
      for (int k = 0; k < PPT; ++k) acc[k] += u_s[tt][ty + k * lanes] * wv;
    }
    __syncthreads();
  }
  if (ci >= g.c_in) return;
  const scalar_t b = bias != nullptr ? bias[ci] : scalar_t(0);
#pragma unroll
  for (int k = 0; k < PPT; ++k) {
    const int64_t pix = pix0 + ty + k * lanes;
    if (pix < opix) out[(n * opix + pix) * g.c_in + ci] = acc[k] + b;
  }
}

// Threads along output channels: the smallest power of two >= C_in, at most 32.
int channel_lanes(int64_t c_in) {
  int cib = 1;
  while (cib < 32 && cib < c_in) cib *= 2;
  return cib;
}

// ---------------------------------------------------------------------------------------------
// Dense seeds sharing one track's switches (indices of batch 1): the seed-batched indirect GEMM
// (seed_gemm_plan.h holds its planning math, tested on the CPU in cpp_tests/).
// ---------------------------------------------------------------------------------------------
constexpr int kGemmWarps = 8;               // warps per block: kGemmWarps * 32 threads
constexpr int kStageBytes = 32 << 10;       // shared memory of a block's staged item values
constexpr int64_t kMaxGridYZ = 65535;

// G1: the item key of every pooled cell m = c * hw + i * w + j (kNoItemKey and the flag for a
// switch outside the plane).
__global__ void item_keys_kernel(const int64_t* __restrict__ idx, IndexStrides s, int64_t c_out, int64_t h, int64_t w,
                                 int64_t plane, int64_t* __restrict__ keys, int* __restrict__ err) {
  const int64_t total = c_out * h * w;  // < 2^31 (checked by the op): 32-bit divisions
  const int hw32 = static_cast<int>(h * w), w32 = static_cast<int>(w);
  for (int64_t m = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; m < total; m += int64_t(gridDim.x) * blockDim.x) {
    const int m32 = static_cast<int>(m), c = m32 / hw32, q = m32 - c * hw32, i = q / w32, j = q - i * w32;
    bool bad = false;
    keys[m] = cell_item_key(idx[c * s.sc + int64_t(i) * s.sh + int64_t(j) * s.sw], c, c_out, plane, &bad);
    if (bad) atomicOr(err, kBadSwitch);
  }
}

// G2: 1 where a sorted key heads an item (its inclusive sum numbers the items).
__global__ void item_heads_kernel(const int64_t* __restrict__ sorted, int64_t total, int32_t* __restrict__ head) {
  for (int64_t s = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; s < total; s += int64_t(gridDim.x) * blockDim.x) {
    head[s] = item_head(sorted, s) ? 1 : 0;
  }
}

// G3: the item tables and the position index (item_tables_at).
__global__ void item_tables_kernel(const int64_t* __restrict__ sorted, int64_t total, const int32_t* __restrict__ incl,
                                   int64_t c_out, int64_t plane, int32_t* __restrict__ item_first,
                                   int32_t* __restrict__ item_c, int32_t* __restrict__ pos_start) {
  for (int64_t s = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; s < total; s += int64_t(gridDim.x) * blockDim.x) {
    item_tables_at(s, sorted, total, incl, c_out, plane, item_first, item_c, pos_start);
  }
}

// G4: the rectified item values of a chunk of seed blocks, seeds innermost:
// U[b][k][r] = value of item k for seed n0 + b * bm + r (zero past the last seed). Each entry is
// summed by one thread, its cells in raster order.
template <typename scalar_t>
__global__ void item_values_kernel(const scalar_t* __restrict__ input, int64_t in_sn, int64_t in_sc, int64_t in_sh,
                                   int64_t in_sw, const int64_t* __restrict__ perm,
                                   const int32_t* __restrict__ item_first, const int32_t* __restrict__ pos_start,
                                   int64_t plane, int64_t n, int64_t n0, int64_t blocks, int64_t cap, int64_t bm,
                                   int64_t h, int64_t w, bool rectify, scalar_t* __restrict__ u) {
  const int32_t n_items = pos_start[plane];
  const int64_t total = blocks * cap * bm;
  const int hw32 = static_cast<int>(h * w), w32 = static_cast<int>(w);
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e % bm, kb = e / bm, k = kb % cap, b = kb / cap;
    if (k >= n_items) continue;  // never read
    const int64_t seed = n0 + b * bm + r;
    u[e] = seed < n ? item_value(input + seed * in_sn, in_sc, in_sh, in_sw, perm, item_first[k], item_first[k + 1],
                                 hw32, w32, rectify)
                    : scalar_t(0);
  }
}

// G5: out[n, oy, ox, ci] (channels-last) for a tile of output pixels x a block of BM = RM * SG
// seeds x a block of BN = RN * CG output channels. Warp w owns pixels w, w + kGemmWarps, ...
// (PPT of them, the tile being TILE_COLS wide); its lane (sg, cg) owns RM seeds x RN channels of
// each, in registers. Per switch row of the tile's halo that a pixel of the tile reads, the
// row's contiguous range of items is staged in shared memory (values and channels) in chunks of
// at most CAP items, then every pixel adds the items its taps reach (seed_gemm_pixel): a warp
// shares one pixel's item list, so its lanes never diverge. No atomics: each output is summed by
// one thread, in the order seed_gemm_plan.h states.
template <typename scalar_t, int RM, int RN, int SG, int CG, int PPT, int TILE_COLS>
__global__ void __launch_bounds__(kGemmWarps * 32, 1)
    seed_gemm_kernel(const scalar_t* __restrict__ u, const int32_t* __restrict__ item_c,
                     const int32_t* __restrict__ pos_start, const scalar_t* __restrict__ wt,
                     const scalar_t* __restrict__ bias, SeedGemmGeometry g, int64_t n, int64_t n0, int64_t cap,
                     scalar_t* __restrict__ out) {
  static_assert(SG * CG == 32, "a warp is SG x CG lanes");
  constexpr int BM = RM * SG, BN = RN * CG;
  constexpr int kTilePixels = kGemmWarps * PPT;
  static_assert(kTilePixels % TILE_COLS == 0, "whole tile rows");
  constexpr int kTileRows = kTilePixels / TILE_COLS;
  constexpr int CAP = kStageBytes / static_cast<int>(BM * sizeof(scalar_t));
  __shared__ scalar_t u_s[CAP * BM];
  __shared__ int32_t c_s[CAP];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, sg = lane / CG, cg = lane % CG;
  const TilePlan t = plan_tile(g, blockIdx.x, kTileRows, TILE_COLS);
  const int64_t ci0 = blockIdx.y * int64_t(BN) + cg * RN;
  const int64_t b = blockIdx.z;  // seed block within the chunk
  const scalar_t* ub = u + b * cap * BM;
  const scalar_t* w = wt + ci0;
  scalar_t acc[PPT][RM][RN];
  CNNAURAL_UNROLL
  for (int j = 0; j < PPT; ++j) {
    CNNAURAL_UNROLL
    for (int rm = 0; rm < RM; ++rm) {
      CNNAURAL_UNROLL
      for (int rn = 0; rn < RN; ++rn) acc[j][rm][rn] = scalar_t(0);
    }
  }
  if (t.any) {  // block-uniform: every thread reaches the same barriers
    for (int64_t y = t.ylo; y <= t.yhi; ++y) {
      if (!row_reaches(y, t.oy0, t.oy1, g.kh, g.sh, g.ph, g.dh)) continue;
      const int32_t a = pos_start[y * g.uw + t.xlo], e = pos_start[y * g.uw + t.xhi + 1];
      for (int64_t c0 = a; c0 < e; c0 += CAP) {  // 64-bit: no overflow near 2^31 items
        const int32_t k0 = static_cast<int32_t>(c0), k1 = static_cast<int32_t>(c0 + CAP < e ? c0 + CAP : e);
        __syncthreads();  // the previous chunk is read
        const scalar_t* src = ub + c0 * BM;
        for (int i = tid; i < (k1 - k0) * BM; i += kGemmWarps * 32) u_s[i] = src[i];
        for (int i = tid; i < k1 - k0; i += kGemmWarps * 32) c_s[i] = item_c[k0 + i];
        __syncthreads();
        CNNAURAL_UNROLL
        for (int j = 0; j < PPT; ++j) {
          const int pl = warp + j * kGemmWarps;
          const int64_t oy = t.oy0 + pl / TILE_COLS, ox = t.ox0 + pl % TILE_COLS;
          if (oy < t.oy1 && ox < t.ox1) {
            seed_gemm_pixel<scalar_t, RM, RN>(g, oy, ox, y, k0, k1, pos_start, c_s, u_s + sg * RM, BM, w, acc[j]);
          }
        }
      }
    }
  }
  CNNAURAL_UNROLL
  for (int j = 0; j < PPT; ++j) {
    const int pl = warp + j * kGemmWarps;
    const int64_t oy = t.oy0 + pl / TILE_COLS, ox = t.ox0 + pl % TILE_COLS;
    if (oy >= t.oy1 || ox >= t.ox1) continue;
    CNNAURAL_UNROLL
    for (int rm = 0; rm < RM; ++rm) {
      const int64_t seed = n0 + b * BM + sg * RM + rm;
      if (seed >= n) continue;
      scalar_t* o = out + ((seed * g.oh + oy) * g.ow + ox) * g.c_in;
      CNNAURAL_UNROLL
      for (int rn = 0; rn < RN; ++rn) {
        const int64_t ci = ci0 + rn;
        if (ci < g.c_in) o[ci] = (bias != nullptr ? bias[ci] : scalar_t(0)) + acc[j][rm][rn];
      }
    }
  }
}

// The block shapes of seed_gemm_kernel. kSeeds = BM, kChannels = BN.
template <int RM_, int RN_, int SG_, int CG_, int PPT_, int TILE_COLS_>
struct GemmShape {
  static constexpr int RM = RM_, RN = RN_, SG = SG_, CG = CG_, PPT = PPT_, TILE_COLS = TILE_COLS_;
  static constexpr int kSeeds = RM * SG, kChannels = RN * CG;
};
using GemmWide = GemmShape<4, 4, 8, 4, 4, 8>;     // 32 seeds x 16 channels, tiles of 4 x 8 pixels
using GemmFewSeeds = GemmShape<1, 4, 8, 4, 4, 8>;  // 8 seeds x 16 channels (N <= 8)
using GemmNarrow = GemmShape<1, 1, 32, 1, 8, 16>;  // 32 seeds x 1 channel (C_in <= 2), tiles of 4 x 16

// Which CUDA path takes dense seeds: CNNAURAL_UNPOOL_CONV_CUDA=gemm | cudnn forces one (tests
// and benchmarks compare them), anything else (or unset) lets the op choose: the unpool + cuDNN
// path until the GEMM has been measured on a GPU. Read at every call.
enum class CudaPath { kAuto, kGemm, kCudnn };
CudaPath cuda_path_override() {
  const char* env = std::getenv("CNNAURAL_UNPOOL_CONV_CUDA");
  if (env == nullptr) return CudaPath::kAuto;
  if (std::strcmp(env, "gemm") == 0) return CudaPath::kGemm;
  if (std::strcmp(env, "cudnn") == 0) return CudaPath::kCudnn;
  return CudaPath::kAuto;
}

// The seed-batched GEMM over the whole output: the item tables once per call (from the indices
// alone), then per chunk of seed blocks their values and the tile GEMM.
template <typename scalar_t, typename Shape>
void run_seed_gemm_cuda(const UnpoolConvGeometry& g, const at::Tensor& input, const at::Tensor& indices,
                        const at::Tensor& weight, const std::optional<at::Tensor>& bias, bool rectify,
                        const at::Tensor& out, const at::Tensor& err, cudaStream_t stream) {
  constexpr int64_t BM = Shape::kSeeds, BN = Shape::kChannels;
  const int64_t plane = g.uh * g.uw, hw = g.h * g.w, cells = g.c_out * hw;
  const IndexStrides is{0, indices.stride(1), indices.stride(2), indices.stride(3)};
  const at::TensorOptions i32 = input.options().dtype(at::kInt);

  // G1-G3: items (position-major, then channel), their cells (stable sort: raster order), the
  // position index
  at::Tensor keys = at::empty({cells}, indices.options());
  item_keys_kernel<<<blocks_for(cells), kThreads, 0, stream>>>(indices.data_ptr<int64_t>(), is, g.c_out, g.h, g.w,
                                                               plane, keys.data_ptr<int64_t>(), err.data_ptr<int>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const auto sorted = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor& skeys = std::get<0>(sorted);
  const at::Tensor& perm = std::get<1>(sorted);
  at::Tensor head = at::empty({cells}, i32);
  item_heads_kernel<<<blocks_for(cells), kThreads, 0, stream>>>(skeys.data_ptr<int64_t>(), cells,
                                                                head.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor incl = at::cumsum(head, 0, at::kInt);
  at::Tensor item_first = at::empty({cells + 1}, i32);
  at::Tensor item_c = at::empty({cells}, i32);
  at::Tensor pos_start = at::zeros({plane + 1}, i32);
  item_tables_kernel<<<blocks_for(cells), kThreads, 0, stream>>>(
      skeys.data_ptr<int64_t>(), cells, incl.data_ptr<int32_t>(), g.c_out, plane, item_first.data_ptr<int32_t>(),
      item_c.data_ptr<int32_t>(), pos_start.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  // weights (kH * kW, C_out, cpad), zeros beyond C_in; bias
  const int64_t cpad = (g.c_in + BN - 1) / BN * BN;
  at::Tensor wt = at::zeros({g.kh, g.kw, g.c_out, cpad}, weight.options());
  wt.narrow(3, 0, g.c_in).copy_(weight.permute({2, 3, 0, 1}));
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  const SeedGemmGeometry sg{g.uh, g.uw, g.oh, g.ow, g.kh, g.kw, g.sh, g.sw, g.ph,
                            g.pw, g.dh, g.dw, g.c_out, g.c_in, cpad};
  constexpr int64_t kTileRows = Shape::PPT * kGemmWarps / Shape::TILE_COLS;
  const int64_t tiles = ((g.oh + kTileRows - 1) / kTileRows) * ((g.ow + Shape::TILE_COLS - 1) / Shape::TILE_COLS);

  // G4 + G5 per chunk of seed blocks (U of a chunk: about kChunkElems values)
  const int64_t n_blocks = (g.n + BM - 1) / BM;
  const int64_t cap = std::max<int64_t>(cells, 1);
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>({n_blocks, kChunkElems / (cap * BM), kMaxGridYZ}));
  for (int64_t b0 = 0; b0 < n_blocks; b0 += chunk) {
    const int64_t nb = std::min(chunk, n_blocks - b0);
    at::Tensor u = at::empty({nb, cap, BM}, input.options());
    item_values_kernel<scalar_t><<<blocks_for(nb * cap * BM), kThreads, 0, stream>>>(
        input.data_ptr<scalar_t>(), input.stride(0), input.stride(1), input.stride(2), input.stride(3),
        perm.data_ptr<int64_t>(), item_first.data_ptr<int32_t>(), pos_start.data_ptr<int32_t>(), plane, g.n, b0 * BM,
        nb, cap, BM, g.h, g.w, rectify, u.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(cpad / BN), static_cast<unsigned>(nb));
    seed_gemm_kernel<scalar_t, Shape::RM, Shape::RN, Shape::SG, Shape::CG, Shape::PPT, Shape::TILE_COLS>
        <<<grid, kGemmWarps * 32, 0, stream>>>(u.data_ptr<scalar_t>(), item_c.data_ptr<int32_t>(),
                                               pos_start.data_ptr<int32_t>(), wt.data_ptr<scalar_t>(),
                                               b.defined() ? b.data_ptr<scalar_t>() : nullptr, sg, g.n, b0 * BM, cap,
                                               out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}
}  // namespace

at::Tensor unpool_conv_transpose2d_cuda(const at::Tensor& input, const at::Tensor& indices, const at::Tensor& weight,
                                        const std::optional<at::Tensor>& bias, at::IntArrayRef unpool_size,
                                        at::IntArrayRef stride, at::IntArrayRef padding,
                                        at::IntArrayRef output_padding, at::IntArrayRef dilation, bool rectify,
                                        const std::optional<at::Tensor>& channels) {
  const UnpoolConvGeometry g = check_unpool_conv(kOp, input, indices, weight, bias, unpool_size, stride, padding,
                                                 output_padding, dilation, channels);
  CNNAURAL_CHECK(input.is_cuda(), kOp, "the CUDA kernel got a tensor on ", input.device());
  const c10::cuda::CUDAGuard guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor out = at::empty({g.n, g.c_in, g.oh, g.ow}, input.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (out.numel() == 0) return out;
  if (input.numel() == 0) {  // no pooled cells: the transposed convolution of zeros
    return bias.has_value() ? out.copy_(bias->view({1, g.c_in, 1, 1}).expand_as(out)) : out.zero_();
  }

  const int64_t plane = g.uh * g.uw, hw = g.h * g.w;
  const bool bcast = indices.size(0) == 1;  // one track's switches for every seed
  const IndexStrides is{bcast ? 0 : indices.stride(0), indices.stride(1), indices.stride(2), indices.stride(3)};
  const at::Tensor chan = g.compact ? channels->contiguous() : at::Tensor();
  const int64_t* chp = g.compact ? chan.data_ptr<int64_t>() : nullptr;
  const bool per_seed_rows = g.compact && !bcast;
  const TableRows rows{g.c_out, bcast, per_seed_rows};
  const int64_t n_rows = per_seed_rows ? g.n : (bcast ? 1 : g.n) * g.c_out;
  const int64_t cells = n_rows * hw;
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  CNNAURAL_CHECK(cells < kInt32Max, kOp, "too many pooled cells (", cells, ") for one call; pass fewer seeds at a time");
  CNNAURAL_CHECK((g.compact ? 1 : g.c_out) * plane < kInt32Max && g.oh * g.ow < kInt32Max, kOp,
                 "the unpooled maps (", g.c_out, " x ", g.uh, " x ", g.uw, ") or the output plane (", g.oh, " x ", g.ow,
                 ") are too large for the CUDA kernel");
  at::Tensor err = at::zeros({1}, input.options().dtype(at::kInt));
  // One small device-to-host read: a bad switch or channel is an error, never a device assert.
  const auto raise_flags = [&] {
    const int flags = err.item<int>();
    CNNAURAL_CHECK(!(flags & kBadChannel), kOp, "channels must lie in [0, ", g.c_out, ")");
    CNNAURAL_CHECK(!(flags & kBadSwitch), kOp, "indices must lie in [0, H*W) = [0, ", plane, ") for unpool_size (",
                   g.uh, ", ", g.uw, "); pass the indices returned by F.max_pool2d(..., return_indices=True)");
  };

  // Dense seeds sharing one track's switches: the seed-batched GEMM when
  // CNNAURAL_UNPOOL_CONV_CUDA=gemm (opt-in until measured on a GPU); every other case below.
  if (bcast && !g.compact && cuda_path_override() == CudaPath::kGemm &&
      (g.c_in + GemmWide::kChannels - 1) / GemmWide::kChannels <= kMaxGridYZ) {
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "unpool_conv_transpose2d_cuda_gemm", [&] {
      if (g.c_in <= 2) {
        run_seed_gemm_cuda<scalar_t, GemmNarrow>(g, input, indices, weight, bias, rectify, out, err, stream);
      } else if (g.n <= GemmFewSeeds::kSeeds) {
        run_seed_gemm_cuda<scalar_t, GemmFewSeeds>(g, input, indices, weight, bias, rectify, out, err, stream);
      } else {
        run_seed_gemm_cuda<scalar_t, GemmWide>(g, input, indices, weight, bias, rectify, out, err, stream);
      }
    });
    raise_flags();
    return out;
  }

  // 1. switch table
  at::Tensor keys = at::empty({cells}, indices.options());
  switch_keys_kernel<<<blocks_for(cells), kThreads, 0, stream>>>(indices.data_ptr<int64_t>(), is, chp, n_rows,
                                                                   g.c_out, per_seed_rows, g.h, g.w, plane,
                                                                   keys.data_ptr<int64_t>(), err.data_ptr<int>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const auto sorted = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  at::Tensor next = at::empty({cells}, input.options().dtype(at::kInt));
  at::Tensor head = at::empty({cells}, input.options().dtype(at::kByte));
  switch_chain_kernel<<<blocks_for(cells), kThreads, 0, stream>>>(std::get<0>(sorted).data_ptr<int64_t>(),
                                                                    std::get<1>(sorted).data_ptr<int64_t>(), cells,
                                                                    next.data_ptr<int32_t>(), head.data_ptr<uint8_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  // 2 + 3, in chunks of seeds so the unpooled maps stay bounded
  const int64_t cu_count = g.compact ? 1 : g.c_out;
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>({g.n, kChunkElems / (cu_count * plane), 65535}));
  const at::Tensor wt = weight.permute({0, 2, 3, 1}).contiguous();  // (C_out, kH, kW, C_in)
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  const ConvGeometry cg{g.uh, g.uw, g.oh, g.ow, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.c_in, g.c_out};
  const int cib = channel_lanes(g.c_in);
  const int lanes = kThreads / cib;
  const bool wide = cib >= 8;  // 4 pixels per lane when the block is mostly channels
  const int tile = lanes * (wide ? 4 : 1);

  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "unpool_conv_transpose2d_cuda", [&] {
    for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
      const int64_t nc = std::min(chunk, g.n - n0);
      at::Tensor u = g.compact ? at::zeros({nc, 1, g.uh, g.uw}, input.options())
                               : at::empty({nc, g.c_out, g.uh, g.uw},
                                           input.options().memory_format(at::MemoryFormat::ChannelsLast)).zero_();
      const int64_t work = nc * cu_count * hw;
      unpool_rectify_kernel<scalar_t><<<blocks_for(work), kThreads, 0, stream>>>(
          input.data_ptr<scalar_t>(), input.stride(0), input.stride(1), input.stride(2), input.stride(3),
          indices.data_ptr<int64_t>(), is, chp, rows, next.data_ptr<int32_t>(), head.data_ptr<uint8_t>(), n0, nc,
          cu_count, g.h, g.w, plane, /*channels_last=*/!g.compact, rectify, u.data_ptr<scalar_t>(),
          err.data_ptr<int>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (g.compact) {
        const dim3 grid(static_cast<unsigned>((g.oh * g.ow + tile - 1) / tile),
                        static_cast<unsigned>((g.c_in + cib - 1) / cib), static_cast<unsigned>(nc));
        const dim3 block(cib, lanes);
        const scalar_t* bp = b.defined() ? b.data_ptr<scalar_t>() : nullptr;
        if (wide) {
          gather_conv_kernel<scalar_t, 4><<<grid, block, 0, stream>>>(u.data_ptr<scalar_t>(), wt.data_ptr<scalar_t>(),
                                                                      bp, chp, cg, n0, out.data_ptr<scalar_t>());
        } else {
          gather_conv_kernel<scalar_t, 1><<<grid, block, 0, stream>>>(u.data_ptr<scalar_t>(), wt.data_ptr<scalar_t>(),
                                                                      bp, chp, cg, n0, out.data_ptr<scalar_t>());
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      } else {
        const at::Tensor r = at::conv_transpose2d(u, weight.contiguous(at::MemoryFormat::ChannelsLast), bias,
                                                  {g.sh, g.sw}, {g.ph, g.pw}, output_padding, 1, {g.dh, g.dw});
        out.narrow(0, n0, nc).copy_(r);
      }
    }
  });
  raise_flags();
  return out;
}

TORCH_LIBRARY_IMPL(cnnaural, CUDA, m) { m.impl("unpool_conv_transpose2d", &unpool_conv_transpose2d_cuda); }

}  // namespace cnnaural
