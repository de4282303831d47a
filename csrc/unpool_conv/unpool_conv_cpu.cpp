// unpool_conv_transpose2d on the CPU: scatter form, work proportional to the positive unpooled
// values. Each task owns one seed (and a block of output channels when there are fewer seeds
// than threads), so no two threads write the same output: deterministic, no atomics. The output
// is channels-last, so every tap is one contiguous multiply-add over the output channels.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "../common/checks.h"
#include "../common/cpu_isa.h"
#include "../common/output_pool.h"
#include "seed_gemm_cpu.h"
#include "unpool_conv.h"
#include "unpool_conv_math.h"

namespace cnnaural {

namespace {
constexpr const char* kOp = "unpool_conv_transpose2d";
constexpr int64_t kBandRows = 4;  // pooled rows per band of pass 2

// dst[0:n] += a * src[0:n], one contiguous run of output channels (vectorised)
template <typename scalar_t>
CNNAURAL_ALWAYS_INLINE void axpy(scalar_t* __restrict__ dst, const scalar_t* __restrict__ src, scalar_t a, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] += a * src[i];
}

// Few output channels (taps x C_in <= kTapVector, e.g. the first block, C_in = 1): each positive
// unpooled value adds u * W[co] as ONE contiguous vector of taps x C_in to its position's slot of
// a plane Z, instead of taps separate short updates to the output; every output element then
// gathers its taps from Z. Z is all zeros between tasks (cleared after the gather: one memset,
// cheaper than tracking the slots written).
constexpr int64_t kTapVector = 32;
constexpr int64_t kTapVectorMinChannels = 4;  // below, the gather pass over the output costs more

template <typename scalar_t>
CNNAURAL_ALWAYS_INLINE void tap_vector_gather(const UnpoolConvGeometry& g, scalar_t* z, int64_t width,
                                              const scalar_t* bias, scalar_t* out) {
  const int64_t C = g.c_in;
  std::vector<int64_t> xsrc(g.ow * g.kw);
  for (int64_t ox = 0; ox < g.ow; ++ox) {
    for (int64_t kx = 0; kx < g.kw; ++kx) xsrc[ox * g.kw + kx] = tap_source(ox, kx, g.sw, g.pw, g.dw, g.uw);
  }
  std::vector<int64_t> ysrc(g.kh);
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    for (int64_t ky = 0; ky < g.kh; ++ky) ysrc[ky] = tap_source(oy, ky, g.sh, g.ph, g.dh, g.uh);
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      scalar_t* o = out + (oy * g.ow + ox) * C;
      for (int64_t ci = 0; ci < C; ++ci) o[ci] = bias ? bias[ci] : scalar_t(0);
      for (int64_t ky = 0; ky < g.kh; ++ky) {
        if (ysrc[ky] < 0) continue;
        const scalar_t* zrow = z + ysrc[ky] * g.uw * width;
        for (int64_t kx = 0; kx < g.kw; ++kx) {
          const int64_t x = xsrc[ox * g.kw + kx];
          if (x < 0) continue;
          const scalar_t* zt = zrow + x * width + (ky * g.kw + kx) * C;
          for (int64_t ci = 0; ci < C; ++ci) o[ci] += zt[ci];
        }
      }
    }
  }
  std::memset(z, 0, sizeof(scalar_t) * g.uh * g.uw * width);
}

// For indices of batch 1: per channel, 1 when no two pooled cells share a switch (0 when some do,
// or a switch is invalid: the kernel's checks then see it, or the channel is not used). Only the
// channels `used` names are scanned (the seeds' channels when compact; all when null). Empty for
// indices of batch N.
std::vector<uint8_t> distinct_switch_channels(const at::Tensor& indices, int64_t plane, const int64_t* used,
                                              int64_t n_used) {
  if (indices.size(0) != 1) return {};
  const int64_t C = indices.size(1), h = indices.size(2), w = indices.size(3);
  const int64_t sc = indices.stride(1), sh = indices.stride(2), sw = indices.stride(3);
  const int64_t* xp = indices.data_ptr<int64_t>();
  std::vector<uint8_t> wanted(C, used == nullptr ? 1 : 0);
  for (int64_t k = 0; used != nullptr && k < n_used; ++k) {
    if (used[k] >= 0 && used[k] < C) wanted[used[k]] = 1;
  }
  std::vector<uint8_t> distinct(C, 0);
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> stamp(plane, -1);  // last channel that used each position
    for (int64_t c = begin; c < end; ++c) {
      if (!wanted[c]) continue;
      distinct[c] = 1;
      for (int64_t i = 0; i < h && distinct[c]; ++i) {
        for (int64_t j = 0; j < w; ++j) {
          const int64_t p = xp[c * sc + i * sh + j * sw];
          if (!switch_valid(p, plane) || stamp[p] == c) {
            distinct[c] = 0;
            break;
          }
          stamp[p] = c;
        }
      }
    }
  });
  return distinct;
}

// Channel block per task: whole C_in when the seeds alone keep every thread busy.
int64_t channel_block(int64_t n, int64_t c_in) {
  const int64_t threads = at::get_num_threads();
  if (n >= 2 * threads || c_in < 16) return c_in;
  const int64_t blocks = std::min<int64_t>((c_in + 7) / 8, (2 * threads + n - 1) / n);
  const int64_t blk = (c_in + blocks - 1) / blocks;
  return (blk + 7) / 8 * 8;
}

// What every task of one call reads: the geometry, the data and the choices made for the call.
template <typename scalar_t>
struct Tasks {
  const UnpoolConvGeometry* geometry;
  const scalar_t* ip;                   // input
  const int64_t* xp;                    // indices
  const scalar_t* wp;                   // weight (C_out, kH, kW, C_in)
  const scalar_t* bp;                   // bias or null
  scalar_t* op;                         // output, channels-last
  const int64_t* chp;                   // channels or null
  const std::vector<uint8_t>* distinct;  // distinct_switch_channels
  std::atomic<bool>* bad_switch;       // set when a switch lies outside the plane
  std::atomic<bool>* bad_channel;      // set when a channel lies outside [0, C_out)
  int64_t cblk, n_cb, plane, opix;
  int64_t in_sn, in_sc, in_sh, in_sw, ix_sn, ix_sc, ix_sh, ix_sw;
  bool rectify, tap_vector, row_runs;
};

// Tasks [begin, end): task = seed n x block of output channels. Each instruction-set variant
// below compiles its own copy of this body (always inlined), with axpy and tap_vector_gather.
template <typename scalar_t>
CNNAURAL_ALWAYS_INLINE void run_tasks(const Tasks<scalar_t>& t, int64_t begin, int64_t end) {
  const UnpoolConvGeometry& g = *t.geometry;
  const scalar_t* ip = t.ip;
  const int64_t* xp = t.xp;
  const scalar_t* wp = t.wp;
  const scalar_t* bp = t.bp;
  scalar_t* op = t.op;
  const int64_t* chp = t.chp;
  const std::vector<uint8_t>& distinct = *t.distinct;
  const int64_t cblk = t.cblk, n_cb = t.n_cb, plane = t.plane, opix = t.opix;
  const int64_t in_sn = t.in_sn, in_sc = t.in_sc, in_sh = t.in_sh, in_sw = t.in_sw;
  const int64_t ix_sn = t.ix_sn, ix_sc = t.ix_sc, ix_sh = t.ix_sh, ix_sw = t.ix_sw;
  const bool rectify = t.rectify, tap_vector = t.tap_vector, row_runs = t.row_runs;
  const int64_t C = g.c_in, taps = g.kh * g.kw;
  const double inv_uw = 1.0 / static_cast<double>(g.uw);
  // Unpooled planes of this task's active channels with repeated switches, one slot each.
  // Kept per thread across calls: every entry pass 1 sets, pass 2 clears, so the buffer is
  // all zeros between tasks.
  static thread_local std::vector<scalar_t> scratch;
  std::vector<int64_t> active, slot;
  std::vector<int32_t> cols(g.w);  // the kept columns of one pooled row
  bool local_bad = false;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / n_cb, c0 = (task % n_cb) * cblk, cl = std::min(cblk, C - c0);
    scalar_t* o = op + n * opix * C;
    if (cl == C && bp == nullptr) {
      std::memset(o, 0, sizeof(scalar_t) * opix * C);
    } else {
      for (int64_t q = 0; q < opix; ++q) {
        for (int64_t ci = 0; ci < cl; ++ci) o[q * C + c0 + ci] = bp ? bp[c0 + ci] : scalar_t(0);
      }
    }
    // channels with something to contribute: the seed's one channel when compact; otherwise
    // every channel is read once (one-feature seeds stored densely: all but one are zero)
    active.clear();
    if (chp != nullptr) {
      if (chp[n] < 0 || chp[n] >= g.c_out) {
        t.bad_channel->store(true, std::memory_order_relaxed);
        continue;
      }
      active.push_back(chp[n]);
    }
    for (int64_t co = 0; co < g.c_out && chp == nullptr; ++co) {
      const scalar_t* in_c = ip + n * in_sn + co * in_sc;
      bool any = false;
      for (int64_t i = 0; i < g.h && !any; ++i) {
        for (int64_t j = 0; j < g.w; ++j) {
          const scalar_t v = in_c[i * in_sh + j * in_sw];
          if (rectify ? v > scalar_t(0) : v != scalar_t(0)) {
            any = true;
            break;
          }
        }
      }
      if (any) active.push_back(co);
    }
    if (active.empty()) continue;
    const int64_t n_act = static_cast<int64_t>(active.size());
    // a scratch plane only for the channels with repeated switches
    slot.assign(n_act, -1);
    int64_t n_slots = 0;
    for (int64_t a = 0; a < n_act; ++a) {
      if (distinct.empty() || !distinct[active[a]]) slot[a] = n_slots++;
    }
    if (scratch.size() < static_cast<size_t>(n_slots * plane)) scratch.resize(n_slots * plane, scalar_t(0));
    // the non-zero pooled values of rows [i0, i1) of active channel a (only the positive ones
    // when `positive`), with their switches, in raster order; a switch outside the plane is
    // flagged and skipped. Each row is first compacted to the columns it keeps, with no
    // branch per value: the signs of real activations defeat the branch predictor.
    auto each_pooled = [&](int64_t a, int64_t i0, int64_t i1, bool positive, auto&& fn) {
      const scalar_t* in_c = ip + n * in_sn + (chp ? 0 : active[a] * in_sc);
      const int64_t* ix_c = xp + n * ix_sn + active[a] * ix_sc;
      int32_t* kept = cols.data();
      for (int64_t i = i0; i < i1; ++i) {
        const scalar_t* vrow = in_c + i * in_sh;
        const int64_t* xrow = ix_c + i * ix_sh;
        int64_t n_kept = 0;
        if (positive) {
          for (int64_t j = 0; j < g.w; ++j) {
            kept[n_kept] = static_cast<int32_t>(j);
            n_kept += vrow[j * in_sw] > scalar_t(0);
          }
        } else {
          for (int64_t j = 0; j < g.w; ++j) {
            kept[n_kept] = static_cast<int32_t>(j);
            n_kept += vrow[j * in_sw] != scalar_t(0);
          }
        }
        for (int64_t k = 0; k < n_kept; ++k) {
          const int64_t j = kept[k];
          const int64_t p = xrow[j * ix_sw];
          if (!switch_valid(p, plane)) {
            local_bad = true;
            continue;
          }
          fn(vrow[j * in_sw], p);
        }
      }
    };
    // pass 1: unpool every channel with repeated switches into its own plane, summing them
    // (overlapping pools) before the rectifier, as autograd sums them
    for (int64_t a = 0; a < n_act; ++a) {
      if (slot[a] < 0) continue;  // distinct switches: no sums to form
      scalar_t* sc = scratch.data() + slot[a] * plane;
      each_pooled(a, 0, g.h, false, [&](scalar_t v, int64_t p) { sc[p] += v; });
    }
    // pass 2: each distinct switch once, rectified, handed to `use(p, u, w_c)` with its
    // channel's weights (kH, kW, C_in). In bands of pooled rows with every channel inside a
    // band, so what a band writes stays in cache; the order of contributions to an output
    // element does not depend on the task split.
    auto each_value = [&](auto&& use) {
      for (int64_t i0 = 0; i0 < g.h; i0 += kBandRows) {
        const int64_t i1 = std::min(g.h, i0 + kBandRows);
        for (int64_t a = 0; a < n_act; ++a) {
          scalar_t* sc = slot[a] >= 0 ? scratch.data() + slot[a] * plane : nullptr;
          const scalar_t* w_c = wp + active[a] * taps * C;
          // distinct switches: the value is the unpooled value, so the rectifier can skip it here
          each_pooled(a, i0, i1, rectify && sc == nullptr, [&](scalar_t v, int64_t p) {
            scalar_t u = v;
            if (sc != nullptr) {
              u = sc[p];
              sc[p] = scalar_t(0);
            }
            if (u == scalar_t(0) || (rectify && u < scalar_t(0))) return;
            use(p, u, w_c);
          });
        }
      }
    };
    if (tap_vector && n_act >= kTapVectorMinChannels) {
      // one contiguous vector per value into its position's slot, then the gather
      static thread_local std::vector<scalar_t> z_plane;  // plane x taps x C_in slots
      if (z_plane.size() < static_cast<size_t>(plane * taps * C)) z_plane.resize(plane * taps * C, scalar_t(0));
      scalar_t* z = z_plane.data();
      each_value([&](int64_t p, scalar_t u, const scalar_t* w_c) { axpy(z + p * taps * C, w_c, u, taps * C); });
      tap_vector_gather(g, z, taps * C, bp, o);
      continue;
    }
    each_value([&](int64_t p, scalar_t u, const scalar_t* w_c) {  // through the taps into the output
      int64_t y, x;
      row_col(p, g.uw, inv_uw, &y, &x);
      int64_t ky0, ky1, kx0, kx1;
      tap_range(y, g.kh, g.sh, g.ph, g.dh, g.oh, &ky0, &ky1);
      tap_range(x, g.kw, g.sw, g.pw, g.dw, g.ow, &kx0, &kx1);
      for (int64_t ky = ky0; ky < ky1; ++ky) {
        scalar_t* orow = o + tap_target(y, ky, g.sh, g.ph, g.dh) * g.ow * C + c0;
        if (row_runs) {  // the row's taps hit adjacent output pixels: one run of (kx1 - kx0) x C
          axpy(orow + tap_target(x, kx0, g.sw, g.pw, g.dw) * C, w_c + (ky * g.kw + kx0) * C, u, (kx1 - kx0) * C);
          continue;
        }
        for (int64_t kx = kx0; kx < kx1; ++kx) {
          axpy(orow + tap_target(x, kx, g.sw, g.pw, g.dw) * C, w_c + (ky * g.kw + kx) * C + c0, u, cl);
        }
      }
    });
  }
  if (local_bad) t.bad_switch->store(true, std::memory_order_relaxed);
}

// The variants: the same body, compiled for the build's instruction set and for AVX2 + FMA.
// Both are flattened (every call inlined): AVX2 stays inside run_tasks_avx2 and what it inlines
// (run_tasks, axpy, tap_vector_gather, the lambdas, the index math): internal linkage, and no
// translation unit is compiled with -mavx2, so no out-of-line function (ours, ATen's, c10's,
// std's) holds AVX2 code.
// How and why: csrc/common/cpu_isa.h.
template <typename scalar_t>
CNNAURAL_FLATTEN void run_tasks_default(const Tasks<scalar_t>& t, int64_t begin, int64_t end) {
  run_tasks(t, begin, end);
}

#if CNNAURAL_AVX2_DISPATCH
template <typename scalar_t>
CNNAURAL_TARGET_AVX2 CNNAURAL_FLATTEN void run_tasks_avx2(const Tasks<scalar_t>& t, int64_t begin, int64_t end) {
  run_tasks(t, begin, end);
}
#endif

// The variant for this CPU (cpu_isa() decides once per process).
template <typename scalar_t>
auto tasks_variant() -> void (*)(const Tasks<scalar_t>&, int64_t, int64_t) {
#if CNNAURAL_AVX2_DISPATCH
  if (cpu_isa() == CpuIsa::kAvx2Fma) return &run_tasks_avx2<scalar_t>;
#endif
  return &run_tasks_default<scalar_t>;
}

// The seed-batched GEMM's variants (seed_gemm_cpu.h), chosen the same way.
template <typename scalar_t>
CNNAURAL_FLATTEN void seed_gemm_default(const SeedGemm<scalar_t>& s) {
  seed_gemm_bands(s);
}

#if CNNAURAL_AVX2_DISPATCH
template <typename scalar_t>
CNNAURAL_TARGET_AVX2 CNNAURAL_FLATTEN void seed_gemm_avx2(const SeedGemm<scalar_t>& s) {
  seed_gemm_bands(s);
}
#endif

template <typename scalar_t>
auto seed_gemm_variant() -> void (*)(const SeedGemm<scalar_t>&) {
#if CNNAURAL_AVX2_DISPATCH
  if (cpu_isa() == CpuIsa::kAvx2Fma) return &seed_gemm_avx2<scalar_t>;
#endif
  return &seed_gemm_default<scalar_t>;
}

// Which CPU path takes dense seeds: CNNAURAL_UNPOOL_CONV_CPU=gemm | scatter forces one (tests and
// benchmarks compare them), anything else (or unset) lets the op choose. Read at every call.
enum class CpuPath { kAuto, kGemm, kScatter };
CpuPath cpu_path_override() {
  const char* env = std::getenv("CNNAURAL_UNPOOL_CONV_CPU");
  if (env == nullptr) return CpuPath::kAuto;
  if (std::strcmp(env, "gemm") == 0) return CpuPath::kGemm;
  if (std::strcmp(env, "scatter") == 0) return CpuPath::kScatter;
  return CpuPath::kAuto;
}

// Whether the seeds are dense enough for the GEMM, which multiplies every (seed, item) pair
// whether its value is zero or not, where the scatter path's work follows the non-zero values:
// from a sample of one pooled value per (seed, channel) pair (at most ~4096 of them), at least
// one in 16 positive (non-zero without the rectifier). One-feature seeds stored densely (one
// channel of C_out per seed) stay on the scatter path.
template <typename scalar_t>
bool dense_enough(const at::Tensor& input, bool rectify) {
  const int64_t N = input.size(0), C = input.size(1), h = input.size(2), w = input.size(3);
  const int64_t sn = input.stride(0), sc = input.stride(1), sh = input.stride(2), sw = input.stride(3);
  const scalar_t* ip = input.data_ptr<scalar_t>();
  const int64_t hw = h * w;
  if (N == 0 || C == 0 || hw == 0) return false;
  const int64_t step_n = std::max<int64_t>(1, N * C / 4096);
  int64_t samples = 0, hits = 0;
  for (int64_t n = 0; n < N; n += step_n) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t cell = (n * 7919 + c * 104729) % hw;
      const scalar_t v = ip[n * sn + c * sc + (cell / w) * sh + (cell % w) * sw];
      hits += rectify ? v > scalar_t(0) : v != scalar_t(0);
      ++samples;
    }
  }
  return hits * 16 >= samples;
}

// Per pooled row: the lowest and highest row of its switches in the unpooled plane (lo > hi
// when it has none), from one pass over the indices (batch 1). Returns false when a switch lies
// outside the plane.
bool switch_row_ranges(const at::Tensor& indices, const UnpoolConvGeometry& g, std::vector<int64_t>* lo,
                       std::vector<int64_t>* hi) {
  const int64_t sc = indices.stride(1), sh = indices.stride(2), sw = indices.stride(3);
  const int64_t* xp = indices.data_ptr<int64_t>();
  const int64_t plane = g.uh * g.uw;
  const double inv_uw = 1.0 / static_cast<double>(g.uw);
  lo->assign(g.h, g.uh);
  hi->assign(g.h, -1);
  std::atomic<bool> bad{false};
  at::parallel_for(0, g.h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      int64_t pmin = plane, pmax = -1;
      for (int64_t c = 0; c < g.c_out; ++c) {
        const int64_t* xr = xp + c * sc + i * sh;
        for (int64_t j = 0; j < g.w; ++j) {
          const int64_t p = xr[j * sw];
          pmin = std::min(pmin, p);
          pmax = std::max(pmax, p);
        }
      }
      if (g.c_out * g.w == 0) continue;
      if (!switch_valid(pmin, plane) || !switch_valid(pmax, plane)) {
        bad.store(true, std::memory_order_relaxed);
        continue;
      }
      int64_t y, x;
      row_col(pmin, g.uw, inv_uw, &y, &x);
      (*lo)[i] = y;
      row_col(pmax, g.uw, inv_uw, &y, &x);
      (*hi)[i] = y;
    }
  });
  return !bad.load();
}

// Below 8 seeds the scatter path is as fast (block 2) or faster (block 1: the GEMM's per-pixel
// lists cost the same for any N): measured on this project's 2-core benchmark machine.
constexpr int64_t kGemmMinSeeds = 8;
constexpr int64_t kBandBytes = int64_t(8) << 20;   // U of one band, about
constexpr int64_t kStripBytes = int64_t(256) << 10;  // U rows three output rows of a strip read, about

// The seed-batched GEMM over the whole output (see seed_gemm_cpu.h).
template <typename scalar_t>
void run_seed_gemm(const UnpoolConvGeometry& g, const at::Tensor& input, const at::Tensor& indices,
                   const at::Tensor& weight, const std::optional<at::Tensor>& bias, bool rectify, at::Tensor& out) {
  constexpr int64_t L = Simd<scalar_t>::kLanes;
  std::vector<int64_t> row_lo, row_hi;
  CNNAURAL_CHECK(switch_row_ranges(indices, g, &row_lo, &row_hi), kOp, "indices must lie in [0, H*W) = [0, ",
                 g.uh * g.uw, ") for unpool_size (", g.uh, ", ", g.uw,
                 "); pass the indices returned by F.max_pool2d(..., return_indices=True)");
  const int64_t C = g.c_in;
  const bool seeds_in_lanes = C < L;
  const int64_t cpad = (C + L - 1) / L * L;
  // weight (kH, kW, C_out, cpad), zeros beyond C_in; bias (cpad)
  at::Tensor wt = at::zeros({g.kh, g.kw, g.c_out, cpad}, weight.options());
  wt.narrow(3, 0, C).copy_(weight.permute({2, 3, 0, 1}));
  at::Tensor bpad = at::zeros({cpad}, weight.options());
  if (bias.has_value()) bpad.narrow(0, 0, C).copy_(*bias);
  const int64_t seed_rows = g.n <= 4 ? 4 : kSeedRows;
  const int64_t n_ld = seeds_in_lanes ? (g.n + L - 1) / L * L : (g.n + seed_rows - 1) / seed_rows * seed_rows;
  // bands: about kBandBytes of U each (items per switch row ~ C_out h w / H), and enough of them
  // to share between the threads
  const int64_t threads = at::get_num_threads();
  const double items_per_row = static_cast<double>(g.c_out * g.h * g.w) / static_cast<double>(g.uh);
  const double row_bytes = std::max(1.0, items_per_row * n_ld * sizeof(scalar_t) * g.sh);
  int64_t band_rows = std::max<int64_t>(8, static_cast<int64_t>(kBandBytes / row_bytes));
  band_rows = std::min(band_rows, std::max<int64_t>(1, (g.oh + 2 * threads - 1) / (2 * threads)));
  const int64_t n_bands = (g.oh + band_rows - 1) / band_rows;
  const double items_per_pos = static_cast<double>(g.c_out * g.h * g.w) / static_cast<double>(g.uh * g.uw);
  const double pos_bytes = std::max(1.0, items_per_pos * n_ld * sizeof(scalar_t) * g.kh);
  const int64_t strip_cols =
      std::clamp<int64_t>(static_cast<int64_t>(kStripBytes / pos_bytes) - (g.kw - 1) * g.dw, 4, std::max<int64_t>(g.ow, 4));
  std::atomic<int64_t> next_band{0};
  const SeedGemm<scalar_t> s{&g,
                             input.data_ptr<scalar_t>(),
                             indices.data_ptr<int64_t>(),
                             wt.data_ptr<scalar_t>(),
                             bpad.data_ptr<scalar_t>(),
                             out.data_ptr<scalar_t>(),
                             row_lo.data(),
                             row_hi.data(),
                             &next_band,
                             input.stride(0), input.stride(1), input.stride(2), input.stride(3),
                             indices.stride(1), indices.stride(2), indices.stride(3),
                             cpad, seed_rows, n_ld, band_rows, n_bands, strip_cols,
                             rectify, seeds_in_lanes};
  const auto run = seed_gemm_variant<scalar_t>();
  at::parallel_for(0, std::min(threads, n_bands), 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) run(s);
  });
}
}  // namespace

at::Tensor unpool_conv_transpose2d_cpu(const at::Tensor& input, const at::Tensor& indices, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, at::IntArrayRef unpool_size,
                                       at::IntArrayRef stride, at::IntArrayRef padding,
                                       at::IntArrayRef output_padding, at::IntArrayRef dilation, bool rectify,
                                       const std::optional<at::Tensor>& channels) {
  const UnpoolConvGeometry g = check_unpool_conv(kOp, input, indices, weight, bias, unpool_size, stride, padding,
                                                 output_padding, dilation, channels);
  CNNAURAL_CHECK(input.device().is_cpu(), kOp, "the CPU kernel got a tensor on ", input.device());
  at::Tensor out = pooled_empty({g.n, g.c_in, g.oh, g.ow}, input.scalar_type(), at::MemoryFormat::ChannelsLast);
  if (out.numel() == 0) return out;

  // Dense seeds sharing one track's switches: the seed-batched GEMM.
  const CpuPath path = cpu_path_override();
  // (its item numbers are 32-bit: a band holds at most C_out * h * w items)
  const bool gemm_fits = g.c_out * g.h * g.w < std::numeric_limits<int32_t>::max();
  if (indices.size(0) == 1 && !g.compact && path != CpuPath::kScatter && gemm_fits) {
    bool gemm = path == CpuPath::kGemm;
    if (!gemm && g.n >= kGemmMinSeeds) {
      AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "unpool_conv_transpose2d_cpu", [&] {
        gemm = dense_enough<scalar_t>(input, rectify);
      });
    }
    if (gemm) {
      AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "unpool_conv_transpose2d_cpu", [&] {
        run_seed_gemm<scalar_t>(g, input, indices, weight, bias, rectify, out);
      });
      return out;
    }
  }

  const at::Tensor wt = weight.permute({0, 2, 3, 1}).contiguous();  // (C_out, kH, kW, C_in)
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  const int64_t cblk = channel_block(g.n, g.c_in);
  const int64_t n_cb = (g.c_in + cblk - 1) / cblk;
  const int64_t plane = g.uh * g.uw, opix = g.oh * g.ow;
  const int64_t in_sn = input.stride(0), in_sc = input.stride(1), in_sh = input.stride(2), in_sw = input.stride(3);
  const int64_t ix_sn = g.broadcast_indices ? 0 : indices.stride(0), ix_sc = indices.stride(1),
                ix_sh = indices.stride(2), ix_sw = indices.stride(3);
  const at::Tensor chan = g.compact ? channels->contiguous() : at::Tensor();
  const int64_t* chp = g.compact ? chan.data_ptr<int64_t>() : nullptr;
  std::atomic<bool> bad_switch{false}, bad_channel{false};
  // Channels whose switches are all distinct (every non-overlapping pool): their pooled values
  // go straight through, without the unpooled scratch plane that sums repeated switches. Known
  // once per call when every seed shares one track's switches.
  const std::vector<uint8_t> distinct = distinct_switch_channels(indices, plane, chp, g.n);

  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "unpool_conv_transpose2d_cpu", [&] {
    const int64_t C = g.c_in, taps = g.kh * g.kw;
    const bool tap_vector = !g.compact && cblk == C && taps * C <= kTapVector;
    // stride 1 and dilation 1 along x with the whole channel range: a kernel row's taps land on
    // adjacent output pixels, channels-last, and its weights are adjacent too (kW, C_in)
    const bool row_runs = g.sw == 1 && g.dw == 1 && cblk == C;
    const Tasks<scalar_t> tasks{&g,
                                input.data_ptr<scalar_t>(),
                                indices.data_ptr<int64_t>(),
                                wt.data_ptr<scalar_t>(),
                                b.defined() ? b.data_ptr<scalar_t>() : nullptr,
                                out.data_ptr<scalar_t>(),
                                chp,
                                &distinct,
                                &bad_switch,
                                &bad_channel,
                                cblk, n_cb, plane, opix,
                                in_sn, in_sc, in_sh, in_sw, ix_sn, ix_sc, ix_sh, ix_sw,
                                rectify, tap_vector, row_runs};
    const auto run = tasks_variant<scalar_t>();
    at::parallel_for(0, g.n * n_cb, 1, [&](int64_t begin, int64_t end) { run(tasks, begin, end); });
  });
  CNNAURAL_CHECK(!bad_channel.load(), kOp, "channels must lie in [0, ", g.c_out, ")");
  CNNAURAL_CHECK(!bad_switch.load(), kOp, "indices must lie in [0, H*W) = [0, ", plane, ") for unpool_size (",
                 g.uh, ", ", g.uw, "); pass the indices returned by F.max_pool2d(..., return_indices=True)");
  return out;
}

TORCH_LIBRARY_IMPL(cnnaural, CPU, m) { m.impl("unpool_conv_transpose2d", &unpool_conv_transpose2d_cpu); }

}  // namespace cnnaural
