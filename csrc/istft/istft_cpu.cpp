// masked_istft on the CPU: fused combine into the frame-major layout the FFT wants, the
// library's inverse real FFT, then one fused pass of window x overlap-add x envelope x trim.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/checks.h"
#include "../common/output_pool.h"
#include "istft.h"
#include "istft_math.h"

namespace cnnaural {

namespace {
constexpr const char* kOp = "masked_istft";
constexpr int64_t kGroupBytes = int64_t(32) << 20;  // spectra (or frames) of one group of rows
}  // namespace

at::Tensor masked_istft_cpu(const at::Tensor& stft, const at::Tensor& gain, int64_t n_fft,
                            int64_t hop_length, int64_t win_length, const at::Tensor& window,
                            bool center, std::optional<int64_t> length, c10::string_view mode) {
  const IstftGeometry g =
      check_masked_istft(kOp, stft, gain, n_fft, hop_length, win_length, window, center, length, mode);
  CNNAURAL_CHECK(gain.device().is_cpu(), kOp, "the CPU kernel got a tensor on ", gain.device());
  at::Tensor out = pooled_empty({g.n, g.out_len}, gain.scalar_type());
  if (g.n == 0 || g.out_len == 0) return out;

  const at::Tensor win = padded_window(window, n_fft, win_length);
  const at::Tensor x = (g.stft_batched ? stft : stft.unsqueeze(0)).resolve_conj();
  const int64_t x_sn = x.size(0) == 1 ? 0 : x.stride(0), x_sf = x.stride(1), x_st = x.stride(2);
  const int64_t g_sn = gain.stride(0), g_sf = gain.stride(1), g_st = gain.stride(2);
  const int64_t T = g.n_frames, F = g.n_freqs;
  // samples of the full signal that exist (beyond them the output is zero-padded, as torch.istft)
  const int64_t kept = std::min(g.out_len, std::max<int64_t>(g.full_len - g.start, 0));
  if (kept < g.out_len) out.narrow(1, kept, g.out_len - kept).zero_();  // past the signal: zero-padded

  // Rows go through in groups of `rows` whose spectra and frames take about kGroupBytes each:
  // every row of a 4-s clip at once, 12 rows of a 30-s track (the (N, T, F) spectra and
  // (N, T, n_fft) frames of 64 rows of it would be 340 MB). The spectra buffer is reused by each group.
  const int64_t row_bytes = T * std::max(F * 2, n_fft) * static_cast<int64_t>(gain.element_size());
  const int64_t rows = std::clamp<int64_t>(kGroupBytes / std::max<int64_t>(row_bytes, 1), 1, g.n);

  AT_DISPATCH_FLOATING_TYPES(gain.scalar_type(), "masked_istft_cpu", [&] {
    using cplx = c10::complex<scalar_t>;
    at::Tensor y_all = pooled_empty({rows, T, F}, stft.scalar_type());
    const cplx* xp = x.data_ptr<cplx>();
    const scalar_t* gp = gain.data_ptr<scalar_t>();
    cplx* yp = y_all.data_ptr<cplx>();
    const int mode_id = g.mode;
    // inverse window envelope of the kept samples, shared by every row (cached)
    const scalar_t* wp = win.data_ptr<scalar_t>();
    const at::Tensor inv_env = inverse_envelope(kOp, window, n_fft, hop_length, win_length, T, g.start, kept);
    const scalar_t* ep = inv_env.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t out_len = g.out_len, start = g.start;
    for (int64_t n0 = 0; n0 < g.n; n0 += rows) {
      const int64_t m = std::min(rows, g.n - n0);
      // 1. combine, written (m, T, F): each frame's spectrum contiguous for the FFT, in tiles of
      // kTile frames: the gain rows (F, T) are read along time, the spectra written along
      // frequency, and both stay in cache within a tile
      constexpr int64_t kTile = 16;
      const int64_t tiles = (T + kTile - 1) / kTile;
      at::parallel_for(0, m * tiles, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const int64_t r = i / tiles, n = n0 + r, t0 = (i % tiles) * kTile, t1 = std::min(T, t0 + kTile);
          for (int64_t f = 0; f < F; ++f) {
            const cplx* xr = xp + n * x_sn + f * x_sf;
            const scalar_t* gr = gp + n * g_sn + f * g_sf;
            for (int64_t t = t0; t < t1; ++t) {
              const cplx v = xr[t * x_st];
              scalar_t re, im;
              combine_bin<scalar_t>(v.real(), v.imag(), gr[t * g_st], mode_id, &re, &im);
              yp[(r * T + t) * F + f] = cplx(re, im);
            }
          }
        }
      });
      // 2. inverse real FFT of every frame: (m, T, n_fft)
      const at::Tensor frames = at::fft_irfft(y_all.narrow(0, 0, m), n_fft, -1).contiguous();
      const scalar_t* fp = frames.data_ptr<scalar_t>();
      // 3. fused window x overlap-add x envelope x trim
      constexpr int64_t kChunk = 4096;
      const int64_t chunks = (kept + kChunk - 1) / kChunk;
      at::parallel_for(0, m * chunks, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const int64_t r = i / chunks, j0 = (i % chunks) * kChunk, j1 = std::min(j0 + kChunk, kept);
          const scalar_t* fr = fp + r * T * n_fft;
          scalar_t* orow = op + (n0 + r) * out_len;
          // the frames overlapping this chunk, added in frame order (the order of the gather form,
          // so every sample sums the same terms in the same order), then the envelope
          scalar_t* seg = orow + j0;
          std::fill(seg, seg + (j1 - j0), scalar_t(0));
          int64_t f_first, f_last, unused;
          ola_frame_range(start + j0, n_fft, hop_length, T, &f_first, &unused);
          ola_frame_range(start + j1 - 1, n_fft, hop_length, T, &unused, &f_last);
          for (int64_t f = f_first; f < f_last; ++f) {
            const int64_t base = f * hop_length - start;  // output index of the frame's sample 0
            const int64_t k0 = std::max<int64_t>(0, j0 - base), k1 = std::min<int64_t>(n_fft, j1 - base);
            const scalar_t* fk = fr + f * n_fft;
            for (int64_t k = k0; k < k1; ++k) orow[base + k] += fk[k] * wp[k];
          }
          for (int64_t j = j0; j < j1; ++j) orow[j] *= ep[j];
        }
      });
    }
  });
  return out;
}

TORCH_LIBRARY_IMPL(cnnaural, CPU, m) { m.impl("masked_istft", &masked_istft_cpu); }

}  // namespace cnnaural
