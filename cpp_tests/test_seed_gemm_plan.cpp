// C++ tests of csrc/unpool_conv/seed_gemm_plan.h, the planning math of the CUDA seed-batched
// GEMM, on the CPU against brute force:
//   1. halo_range, row_reaches, tap_between against every (output, tap) pair enumerated with
//      the transposed convolution's own formula (o = y * stride - padding + k * dilation), over
//      a grid of sizes, kernels, strides (also != kernel), paddings (also wider than the
//      kernel), dilations and output paddings, for every tile [o0, o1) of the output;
//   2. the whole pipeline the CUDA kernels run (item keys, a stable sort, item tables, position
//      index, item values, tiles of pixels x seed blocks x channel blocks staged in chunks),
//      emulated thread by thread with the header's functions: the (item, tap) pairs each output
//      pixel visits equal the brute-force list (every tap's source position and every channel
//      whose switch lands there, once), and the outputs equal a naive unpool + rectify +
//      transposed convolution exactly (small integers in double: every sum is exact). Switches
//      come from real max pools (non-overlapping, overlapping 3/2, 3/1 and 2/1, 1/1) and from
//      random positions (any number of repeats); odd sizes, N not a multiple of the seed block,
//      C_in not a multiple of the channel block, staging chunks of 1, 3 and many items.
// No test framework: EXPECT (expect.h) counts failures, main() returns non-zero if any (ctest reads that).
#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <map>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "unpool_conv/seed_gemm_plan.h"
#include "expect.h"

namespace {

using namespace cnnaural;

// ---------------------------------------------------------------------------------------------
// 1. halo, rows, taps
// ---------------------------------------------------------------------------------------------
void test_halo_one(int64_t in, int64_t kernel, int64_t stride, int64_t padding, int64_t opad, int64_t dilation) {
  const int64_t out = conv_transpose_out_size(in, kernel, stride, padding, opad, dilation);
  if (out <= 0) return;
  // reach[o * in + y]: the tap through which y reaches o, or -1, enumerated naively
  std::vector<int64_t> reach(out * in, -1);
  for (int64_t y = 0; y < in; ++y) {
    for (int64_t k = 0; k < kernel; ++k) {
      const int64_t o = y * stride - padding + k * dilation;
      if (o < 0 || o >= out) continue;
      EXPECT(reach[o * in + y] < 0, "two taps from %" PRId64 " to %" PRId64, y, o);
      reach[o * in + y] = k;
    }
  }
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t y = 0; y < in; ++y) {
      const int64_t k = tap_between(o, y, kernel, stride, padding, dilation);
      EXPECT(k == reach[o * in + y],
             "tap_between(o=%" PRId64 ", y=%" PRId64 "; k=%" PRId64 " s=%" PRId64 " p=%" PRId64 " d=%" PRId64
             ") = %" PRId64 ", brute force %" PRId64,
             o, y, kernel, stride, padding, dilation, k, reach[o * in + y]);
      // the gather form agrees: tap_source(o, k) == y
      if (reach[o * in + y] >= 0) EXPECT(tap_source(o, k, stride, padding, dilation, in) == y, "tap_source");
    }
  }
  for (int64_t o0 = 0; o0 < out; ++o0) {
    for (int64_t o1 = o0 + 1; o1 <= out && o1 <= o0 + 9; ++o1) {
      int64_t lo = in, hi = -1;
      std::vector<bool> reached(in, false);
      for (int64_t o = o0; o < o1; ++o) {
        for (int64_t y = 0; y < in; ++y) {
          if (reach[o * in + y] < 0) continue;
          reached[y] = true;
          lo = std::min(lo, y);
          hi = std::max(hi, y);
        }
      }
      int64_t glo = -7, ghi = -7;
      const bool any = halo_range(o0, o1, kernel, stride, padding, dilation, in, &glo, &ghi);
      EXPECT(any == (hi >= 0) && (!any || (glo == lo && ghi == hi)),
             "halo_range([%" PRId64 ", %" PRId64 "); in=%" PRId64 " k=%" PRId64 " s=%" PRId64 " p=%" PRId64
             " d=%" PRId64 ") = %d [%" PRId64 ", %" PRId64 "], brute force [%" PRId64 ", %" PRId64 "]",
             o0, o1, in, kernel, stride, padding, dilation, any, glo, ghi, lo, hi);
      for (int64_t y = 0; y < in; ++y) {
        EXPECT(row_reaches(y, o0, o1, kernel, stride, padding, dilation) == reached[y],
               "row_reaches(%" PRId64 ", [%" PRId64 ", %" PRId64 "))", y, o0, o1);
      }
    }
  }
}

void test_halo() {
  for (int64_t in = 1; in <= 9; ++in) {
    for (int64_t kernel = 1; kernel <= 5; ++kernel) {
      for (int64_t stride = 1; stride <= 3; ++stride) {
        for (int64_t padding = 0; padding <= 6; ++padding) {
          for (int64_t dilation = 1; dilation <= 3; ++dilation) {
            for (int64_t opad = 0; opad < std::max(stride, dilation); ++opad) {
              test_halo_one(in, kernel, stride, padding, opad, dilation);
            }
          }
        }
      }
    }
  }
  for (int64_t a = -20; a <= 20; ++a) {
    for (int64_t b = 1; b <= 5; ++b) {
      int64_t f = a / b;
      while (f * b > a) --f;
      while ((f + 1) * b <= a) ++f;
      EXPECT(floor_div(a, b) == f && ceil_div(a, b) == (f * b == a ? f : f + 1), "floor/ceil_div(%" PRId64
             ", %" PRId64 ")", a, b);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 2. the pipeline, emulated
// ---------------------------------------------------------------------------------------------
struct Case {
  int64_t n, c_out, c_in, h, w, uh, uw;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw, oph, opw;
  bool rectify;
  std::vector<int64_t> switches;  // (C_out, h, w)
  std::vector<double> input;      // (N, C_out, h, w)
  std::vector<double> weight;     // (C_out, C_in, kH, kW)
  std::vector<double> bias;       // (C_in)
};

// Switches of a max pool (kernel pk, stride ps) over a random (C_out, uh, uw) activation, or
// (pk == 0) random positions of the plane, repeats allowed.
void make_switches(Case& c, int64_t pk, int64_t ps, std::mt19937_64& rng) {
  if (pk == 0) {
    c.h = 1 + rng() % 6;
    c.w = 1 + rng() % 6;
    c.uh = 1 + rng() % 7;
    c.uw = 1 + rng() % 7;
    c.switches.resize(c.c_out * c.h * c.w);
    for (auto& s : c.switches) s = static_cast<int64_t>(rng() % (c.uh * c.uw));
    return;
  }
  c.uh = pk + rng() % 9;
  c.uw = pk + rng() % 9;
  c.h = (c.uh - pk) / ps + 1;
  c.w = (c.uw - pk) / ps + 1;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<double> act(c.uh * c.uw);
  c.switches.resize(c.c_out * c.h * c.w);
  for (int64_t ch = 0; ch < c.c_out; ++ch) {
    for (auto& a : act) a = unit(rng);
    for (int64_t i = 0; i < c.h; ++i) {
      for (int64_t j = 0; j < c.w; ++j) {
        int64_t best = -1;
        for (int64_t a = 0; a < pk; ++a) {
          for (int64_t b = 0; b < pk; ++b) {
            const int64_t p = (i * ps + a) * c.uw + j * ps + b;
            if (best < 0 || act[p] > act[best]) best = p;
          }
        }
        c.switches[(ch * c.h + i) * c.w + j] = best;
      }
    }
  }
}

// The naive oracle: unpool (repeated switches summed), rectify, transposed convolution by
// scatter. Output (N, C_in, oh, ow).
std::vector<double> naive(const Case& c, int64_t oh, int64_t ow) {
  const int64_t plane = c.uh * c.uw;
  std::vector<double> u(c.n * c.c_out * plane, 0.0), out(c.n * c.c_in * oh * ow);
  for (int64_t n = 0; n < c.n; ++n) {
    for (int64_t ch = 0; ch < c.c_out; ++ch) {
      for (int64_t q = 0; q < c.h * c.w; ++q) {
        u[(n * c.c_out + ch) * plane + c.switches[ch * c.h * c.w + q]] += c.input[(n * c.c_out + ch) * c.h * c.w + q];
      }
    }
  }
  if (c.rectify) {
    for (auto& v : u) v = std::max(v, 0.0);
  }
  for (int64_t n = 0; n < c.n; ++n) {
    for (int64_t ci = 0; ci < c.c_in; ++ci) {
      for (int64_t q = 0; q < oh * ow; ++q) out[(n * c.c_in + ci) * oh * ow + q] = c.bias[ci];
    }
    for (int64_t ch = 0; ch < c.c_out; ++ch) {
      for (int64_t y = 0; y < c.uh; ++y) {
        for (int64_t x = 0; x < c.uw; ++x) {
          const double v = u[(n * c.c_out + ch) * plane + y * c.uw + x];
          for (int64_t ky = 0; ky < c.kh; ++ky) {
            for (int64_t kx = 0; kx < c.kw; ++kx) {
              const int64_t oy = y * c.sh - c.ph + ky * c.dh, ox = x * c.sw - c.pw + kx * c.dw;
              if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) continue;
              for (int64_t ci = 0; ci < c.c_in; ++ci) {
                out[((n * c.c_in + ci) * oh + oy) * ow + ox] +=
                    v * c.weight[((ch * c.c_in + ci) * c.kh + ky) * c.kw + kx];
              }
            }
          }
        }
      }
    }
  }
  return out;
}

// The thread decomposition of the CUDA kernel's narrow and wide configurations, scaled down: a
// warp of SG x CG lanes, each RM seeds x RN output channels.
template <int RM, int RN, int SG, int CG>
void run_pipeline(const Case& c, int64_t tile_rows, int64_t tile_cols, int64_t capacity, const char* label) {
  constexpr int64_t BM = RM * SG, BN = RN * CG;
  const int64_t plane = c.uh * c.uw, hw = c.h * c.w, cells = c.c_out * hw;
  const int64_t oh = conv_transpose_out_size(c.uh, c.kh, c.sh, c.ph, c.oph, c.dh);
  const int64_t ow = conv_transpose_out_size(c.uw, c.kw, c.sw, c.pw, c.opw, c.dw);
  if (oh <= 0 || ow <= 0) return;

  // step 1: keys; a stable sort
  std::vector<std::pair<int64_t, int64_t>> kv(cells);
  bool bad = false;
  for (int64_t m = 0; m < cells; ++m) kv[m] = {cell_item_key(c.switches[m], m / hw, c.c_out, plane, &bad), m};
  EXPECT(!bad, "valid switches flagged");
  std::stable_sort(kv.begin(), kv.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<int64_t> sorted(cells), perm(cells);
  for (int64_t s = 0; s < cells; ++s) std::tie(sorted[s], perm[s]) = kv[s];
  // step 2: heads, their inclusive count
  std::vector<int32_t> incl(cells);
  int32_t heads = 0;
  for (int64_t s = 0; s < cells; ++s) incl[s] = heads += item_head(sorted.data(), s) ? 1 : 0;
  // step 3: tables, every s as its own thread
  std::vector<int32_t> item_first(cells + 1, -1), item_c(cells, -1), pos_start(plane + 1, 0);
  for (int64_t s = 0; s < cells; ++s) {
    item_tables_at(s, sorted.data(), cells, incl.data(), c.c_out, plane, item_first.data(), item_c.data(),
                   pos_start.data());
  }
  const int32_t n_items = pos_start[plane];

  // the tables against brute force: items = distinct (p, c) in (p, c) order, cells in raster order
  std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> want_items;
  for (int64_t m = 0; m < cells; ++m) want_items[{c.switches[m], m / hw}].push_back(m);
  EXPECT(n_items == static_cast<int32_t>(want_items.size()) && heads == n_items, "%s: %d items, want %zu", label,
         n_items, want_items.size());
  {
    int32_t k = 0;
    for (const auto& [pc, ms] : want_items) {
      if (k >= n_items) break;
      EXPECT(item_c[k] == pc.second && sorted[item_first[k]] / c.c_out == pc.first, "%s: item %d", label, k);
      EXPECT(item_first[k + 1] - item_first[k] == static_cast<int32_t>(ms.size()), "%s: item %d cells", label, k);
      for (size_t i = 0; i < ms.size() && item_first[k] + static_cast<int64_t>(i) < cells; ++i) {
        EXPECT(perm[item_first[k] + i] == ms[i], "%s: item %d cell %zu not in raster order", label, k, i);
      }
      ++k;
    }
    for (int64_t p = 0; p <= plane; ++p) {
      int32_t before = 0;
      for (const auto& [pc, ms] : want_items) before += pc.first < p ? 1 : 0;
      EXPECT(pos_start[p] == before, "%s: pos_start[%" PRId64 "] = %d, want %d", label, p, pos_start[p], before);
    }
  }

  // step 4: item values, U (seed blocks, items, BM), padding seeds zero
  const int64_t n_blocks = (c.n + BM - 1) / BM;
  std::vector<double> U(n_blocks * std::max<int64_t>(cells, 1) * BM, 0.0);
  for (int64_t b = 0; b < n_blocks; ++b) {
    for (int32_t k = 0; k < n_items; ++k) {
      for (int64_t r = 0; r < BM; ++r) {
        const int64_t n = b * BM + r;
        U[(b * cells + k) * BM + r] =
            n < c.n ? item_value(c.input.data() + n * cells, hw, c.w, 1, perm.data(), item_first[k],
                                 item_first[k + 1], static_cast<int32_t>(hw), static_cast<int32_t>(c.w), c.rectify)
                    : 0.0;
      }
    }
  }

  // step 5: the tile GEMM. Weights (kH * kW, C_out, cpad), zeros beyond C_in.
  SeedGemmGeometry g{c.uh, c.uw, oh, ow, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw, c.c_out, c.c_in, 0};
  g.cpad = (c.c_in + BN - 1) / BN * BN;
  std::vector<double> wt(c.kh * c.kw * c.c_out * g.cpad, 0.0);
  for (int64_t ch = 0; ch < c.c_out; ++ch) {
    for (int64_t ci = 0; ci < c.c_in; ++ci) {
      for (int64_t t = 0; t < c.kh * c.kw; ++t) {
        wt[(t * c.c_out + ch) * g.cpad + ci] = c.weight[(ch * c.c_in + ci) * c.kh * c.kw + t];
      }
    }
  }
  std::vector<double> out(c.n * c.c_in * oh * ow, -12345.0);
  // visits[(oy * ow + ox)]: the (channel, position, tap) triples the plan reaches
  std::vector<std::vector<std::tuple<int64_t, int64_t, int64_t>>> visits(oh * ow);
  const int64_t tiles = ((oh + tile_rows - 1) / tile_rows) * ((ow + tile_cols - 1) / tile_cols);
  std::vector<double> u_s(capacity * BM);
  std::vector<int32_t> c_s(capacity);
  const int64_t pixels = tile_rows * tile_cols;
  for (int64_t tile = 0; tile < tiles; ++tile) {
    const TilePlan t = plan_tile(g, tile, tile_rows, tile_cols);
    for (int64_t ci0 = 0; ci0 < c.c_in; ci0 += BN) {
      for (int64_t b = 0; b < n_blocks; ++b) {
        std::vector<double> acc(pixels * SG * CG * RM * RN, 0.0);  // [pixel][lane][rm][rn]
        for (int64_t y = t.ylo; t.any && y <= t.yhi; ++y) {
          if (!row_reaches(y, t.oy0, t.oy1, g.kh, g.sh, g.ph, g.dh)) continue;
          const int32_t a = pos_start[y * g.uw + t.xlo], e = pos_start[y * g.uw + t.xhi + 1];
          for (int32_t k0 = a; k0 < e; k0 += static_cast<int32_t>(capacity)) {
            const int32_t k1 = std::min<int32_t>(e, k0 + static_cast<int32_t>(capacity));
            std::fill(u_s.begin(), u_s.end(), 1e300);  // stale staging must never be read
            for (int32_t k = k0; k < k1; ++k) {
              c_s[k - k0] = item_c[k];
              for (int64_t r = 0; r < BM; ++r) u_s[(k - k0) * BM + r] = U[(b * cells + k) * BM + r];
            }
            for (int64_t pl = 0; pl < pixels; ++pl) {
              const int64_t oy = t.oy0 + pl / tile_cols, ox = t.ox0 + pl % tile_cols;
              if (oy >= t.oy1 || ox >= t.ox1) continue;
              if (ci0 == 0 && b == 0) {
                for_each_pixel_item(g, oy, ox, y, k0, k1, pos_start.data(), [&](int32_t k, int64_t tap) {
                  visits[oy * ow + ox].emplace_back(c_s[k - k0], sorted[item_first[k]] / c.c_out, tap);
                });
              }
              for (int sg = 0; sg < SG; ++sg) {
                for (int cg = 0; cg < CG; ++cg) {
                  double r[RM][RN];
                  double* lane_acc = acc.data() + ((pl * SG + sg) * CG + cg) * RM * RN;
                  for (int i = 0; i < RM * RN; ++i) r[i / RN][i % RN] = lane_acc[i];
                  seed_gemm_pixel<double, RM, RN>(g, oy, ox, y, k0, k1, pos_start.data(), c_s.data(),
                                                  u_s.data() + sg * RM, BM, wt.data() + ci0 + cg * RN, r);
                  for (int i = 0; i < RM * RN; ++i) lane_acc[i] = r[i / RN][i % RN];
                }
              }
            }
          }
        }
        // the write: seeds < N, channels < C_in
        for (int64_t pl = 0; pl < pixels; ++pl) {
          const int64_t oy = t.oy0 + pl / tile_cols, ox = t.ox0 + pl % tile_cols;
          if (oy >= t.oy1 || ox >= t.ox1) continue;
          for (int sg = 0; sg < SG; ++sg) {
            for (int cg = 0; cg < CG; ++cg) {
              for (int rm = 0; rm < RM; ++rm) {
                for (int rn = 0; rn < RN; ++rn) {
                  const int64_t n = b * BM + sg * RM + rm, ci = ci0 + cg * RN + rn;
                  if (n >= c.n || ci >= c.c_in) continue;
                  out[((n * c.c_in + ci) * oh + oy) * ow + ox] =
                      c.bias[ci] + acc[(((pl * SG + sg) * CG + cg) * RM + rm) * RN + rn];
                }
              }
            }
          }
        }
      }
    }
  }

  // every output pixel's (channel, position, tap) list against the naive enumeration
  int64_t bad_pixels = 0;
  for (int64_t oy = 0; oy < oh; ++oy) {
    for (int64_t ox = 0; ox < ow; ++ox) {
      std::vector<std::tuple<int64_t, int64_t, int64_t>> want;
      for (int64_t ky = 0; ky < c.kh; ++ky) {
        for (int64_t kx = 0; kx < c.kw; ++kx) {
          for (int64_t y = 0; y < c.uh; ++y) {
            for (int64_t x = 0; x < c.uw; ++x) {
              if (y * c.sh - c.ph + ky * c.dh != oy || x * c.sw - c.pw + kx * c.dw != ox) continue;
              for (int64_t ch = 0; ch < c.c_out; ++ch) {
                if (want_items.count({y * c.uw + x, ch})) want.emplace_back(ch, y * c.uw + x, ky * c.kw + kx);
              }
            }
          }
        }
      }
      auto got = visits[oy * ow + ox];
      std::sort(got.begin(), got.end());
      std::sort(want.begin(), want.end());
      if (got != want) ++bad_pixels;
    }
  }
  EXPECT(bad_pixels == 0, "%s: %" PRId64 " output pixels visit other (item, tap) pairs than brute force", label,
         bad_pixels);
  const std::vector<double> want = naive(c, oh, ow);
  int64_t mismatches = 0;
  for (size_t i = 0; i < want.size(); ++i) mismatches += out[i] != want[i] ? 1 : 0;
  EXPECT(mismatches == 0, "%s: %" PRId64 " of %zu outputs differ from the naive op", label, mismatches, want.size());
}

void test_pipeline() {
  std::mt19937_64 rng(20261202);
  const int64_t pools[][2] = {{2, 2}, {3, 2}, {3, 1}, {2, 1}, {1, 1}, {3, 3}, {0, 0}};
  int64_t cases = 0;
  for (int rep = 0; rep < 60; ++rep) {
    for (const auto& pool : pools) {
      Case c;
      c.n = 1 + rng() % 11;
      c.c_out = 1 + rng() % 6;
      c.c_in = 1 + rng() % 7;
      make_switches(c, pool[0], pool[1], rng);
      c.kh = 1 + rng() % 4;
      c.kw = 1 + rng() % 4;
      c.sh = 1 + rng() % 3;
      c.sw = 1 + rng() % 3;
      c.ph = rng() % 4;
      c.pw = rng() % 3;
      c.dh = 1 + rng() % 3;
      c.dw = 1 + rng() % 2;
      c.oph = rng() % std::max(c.sh, c.dh);
      c.opw = rng() % std::max(c.sw, c.dw);
      c.rectify = rng() % 4 != 0;
      auto small = [&](int64_t span) {
        return static_cast<double>(static_cast<int64_t>(rng() % (2 * span + 1)) - span);
      };
      c.input.resize(c.n * c.c_out * c.h * c.w);
      for (auto& v : c.input) v = small(4);
      c.weight.resize(c.c_out * c.c_in * c.kh * c.kw);
      for (auto& v : c.weight) v = small(3);
      c.bias.resize(c.c_in);
      for (auto& v : c.bias) v = small(2);
      char label[160];
      std::snprintf(label, sizeof(label),
                    "pool %" PRId64 "/%" PRId64 " N=%" PRId64 " C_out=%" PRId64 " C_in=%" PRId64 " %" PRId64
                    "x%" PRId64 " -> %" PRId64 "x%" PRId64 " k=%" PRId64 "x%" PRId64 " s=%" PRId64 ",%" PRId64
                    " p=%" PRId64 ",%" PRId64 " d=%" PRId64 ",%" PRId64,
                    pool[0], pool[1], c.n, c.c_out, c.c_in, c.h, c.w, c.uh, c.uw, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw,
                    c.dh, c.dw);
      const int64_t capacity = rep % 3 == 0 ? 1 : (rep % 3 == 1 ? 3 : 4096);
      run_pipeline<2, 2, 2, 2>(c, 2 + rep % 3, 3 + rep % 4, capacity, label);  // BM 4, BN 4
      run_pipeline<1, 1, 4, 1>(c, 3, 2, capacity, label);                      // BM 4, BN 1
      run_pipeline<4, 2, 1, 2>(c, 1, 5, capacity, label);                      // BM 4, BN 4, 1-row tiles
      ++cases;
    }
  }
  std::printf("pipeline: %" PRId64 " cases x 3 configurations\n", cases);
}

void test_bad_switch() {
  bool bad = false;
  EXPECT(cell_item_key(-1, 0, 3, 16, &bad) == kNoItemKey && bad, "negative switch");
  bad = false;
  EXPECT(cell_item_key(16, 2, 3, 16, &bad) == kNoItemKey && bad, "switch past the plane");
  bad = false;
  EXPECT(cell_item_key(15, 2, 3, 16, &bad) == 47 && !bad, "last position");
  // invalid keys sort last and head nothing; tables ignore them
  const int64_t sorted[] = {3, 3, 7, kNoItemKey, kNoItemKey};
  const int32_t incl[] = {1, 1, 2, 2, 2};
  EXPECT(item_head(sorted, 0) && !item_head(sorted, 1) && item_head(sorted, 2) && !item_head(sorted, 3),
         "item_head");
  std::vector<int32_t> first(6, -1), ch(5, -1), pos(5, 0);  // C_out 2, plane 4
  for (int64_t s = 0; s < 5; ++s) item_tables_at(s, sorted, 5, incl, 2, 4, first.data(), ch.data(), pos.data());
  // items: key 3 = (position 1, channel 1) with 2 cells, key 7 = (position 3, channel 1)
  EXPECT(first[0] == 0 && first[1] == 2 && first[2] == 3 && ch[0] == 1 && ch[1] == 1, "item tables");
  EXPECT(pos[0] == 0 && pos[1] == 0 && pos[2] == 1 && pos[3] == 1 && pos[4] == 2, "position index");
}

}  // namespace

int main() {
  test_halo();
  test_pipeline();
  test_bad_switch();
  return cnnaural_test::finish();
}
