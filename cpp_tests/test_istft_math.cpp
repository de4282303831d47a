// C++ tests of csrc/istft: the HOST_DEVICE_INLINE overlap-add math of istft_math.h against brute
// force, and cnnaural::masked_istft_cpu (direct and through the dispatcher) against at::istft.
// No test framework: EXPECT (expect.h) counts failures, main() returns non-zero if any (ctest reads that).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "istft/istft.h"
#include "istft/istft_math.h"
#include "expect.h"

namespace {

using cnnaural::combine_bin;
using cnnaural::ola_envelope;
using cnnaural::ola_frame_range;

// Frames f in [0, n_frames) with f * hop <= p < f * hop + n_fft, by enumeration.
std::vector<int64_t> brute_frames(int64_t p, int64_t n_fft, int64_t hop, int64_t n_frames) {
  std::vector<int64_t> out;
  for (int64_t f = 0; f < n_frames; ++f) {
    if (f * hop <= p && p < f * hop + n_fft) out.push_back(f);
  }
  return out;
}

void test_ola_frame_range() {
  int64_t cases = 0;
  for (int64_t n_fft = 1; n_fft <= 20; ++n_fft) {
    // hop beyond n_fft too: the math must stay right where frames leave gaps
    for (int64_t hop = 1; hop <= 2 * n_fft + 1; ++hop) {
      for (int64_t n_frames = 1; n_frames <= 7; ++n_frames) {
        const int64_t full = n_fft + hop * (n_frames - 1);
        for (int64_t p = 0; p < full + n_fft + hop; ++p) {
          int64_t f0 = -1, f1 = -1;
          ola_frame_range(p, n_fft, hop, n_frames, &f0, &f1);
          const std::vector<int64_t> want = brute_frames(p, n_fft, hop, n_frames);
          std::vector<int64_t> got;
          for (int64_t f = f0; f < f1; ++f) got.push_back(f);
          ++cases;
          if (got != want) {
            EXPECT(got == want, "p=%lld n_fft=%lld hop=%lld n_frames=%lld: got [%lld, %lld), %zu frames expected",
                  (long long)p, (long long)n_fft, (long long)hop, (long long)n_frames, (long long)f0,
                  (long long)f1, want.size());
            return;
          }
          EXPECT(f0 >= 0, "f0=%lld must be non-negative", (long long)f0);
        }
      }
    }
  }
  std::printf("ola_frame_range: %lld positions match brute force\n", (long long)cases);
}

template <typename scalar_t>
void test_ola_envelope_hann(int64_t n_fft, double tol) {
  const int64_t hop = n_fft / 4, n_frames = 12;
  std::vector<scalar_t> w(n_fft);
  const double pi = std::acos(-1.0);
  for (int64_t k = 0; k < n_fft; ++k) {  // periodic Hann: torch.hann_window(n_fft, periodic=True)
    w[k] = static_cast<scalar_t>(0.5 - 0.5 * std::cos(2.0 * pi * k / n_fft));
  }
  // interior: every position covered by all n_fft / hop = 4 frames
  double worst = 0;
  for (int64_t p = n_fft - hop; p < n_frames * hop; ++p) {
    const double e = ola_envelope<scalar_t>(p, w.data(), n_fft, hop, n_frames);
    worst = std::max(worst, std::abs(e - 1.5));
  }
  EXPECT(worst < tol, "n_fft=%lld: Hann^2 envelope with hop n_fft/4 deviates from 1.5 by %g", (long long)n_fft, worst);
  // the edges: fewer frames, strictly smaller, and equal to the brute-force sum
  for (int64_t p = 0; p < n_fft + hop * (n_frames - 1); ++p) {
    double want = 0;
    for (int64_t f : brute_frames(p, n_fft, hop, n_frames)) want += double(w[p - f * hop]) * double(w[p - f * hop]);
    const double e = ola_envelope<scalar_t>(p, w.data(), n_fft, hop, n_frames);
    EXPECT(std::abs(e - want) <= tol, "envelope at p=%lld: %g, brute force %g", (long long)p, e, want);
  }
}

template <typename scalar_t>
void test_combine_bin(double tol) {
  const scalar_t xs[][2] = {{3, 4}, {-1, 0.5}, {0, -2}, {1e-3, 1e-3}, {0, 0}};
  const scalar_t gains[] = {0, 1, -0.5, 2.5};
  for (const auto& x : xs) {
    for (scalar_t g : gains) {
      scalar_t yr = -7, yi = -7;
      combine_bin<scalar_t>(x[0], x[1], g, /*mode=*/0, &yr, &yi);  // mask
      EXPECT(std::abs(double(yr) - double(x[0] * g)) <= tol && std::abs(double(yi) - double(x[1] * g)) <= tol,
            "mask (%g, %g) * %g gave (%g, %g)", double(x[0]), double(x[1]), double(g), double(yr), double(yi));
      combine_bin<scalar_t>(x[0], x[1], g, /*mode=*/1, &yr, &yi);  // magnitude
      const double mag = std::hypot(double(x[0]), double(x[1]));
      if (mag == 0) {
        EXPECT(yr == g && yi == 0, "magnitude at a zero bin must give (g, 0) = (%g, 0), got (%g, %g)", double(g),
              double(yr), double(yi));
      } else {
        const double er = double(g) * x[0] / mag, ei = double(g) * x[1] / mag;
        EXPECT(std::abs(yr - er) <= tol * (1 + std::abs(g)) && std::abs(yi - ei) <= tol * (1 + std::abs(g)),
              "magnitude g=%g on (%g, %g): got (%g, %g), expected (%g, %g)", double(g), double(x[0]), double(x[1]),
              double(yr), double(yi), er, ei);
        EXPECT(std::abs(std::hypot(double(yr), double(yi)) - std::abs(double(g))) <= tol * (1 + std::abs(g)),
              "magnitude mode must give |Y| = |g| = %g", std::abs(double(g)));
      }
    }
  }
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0) return 0;
  return (a - b).abs().max().item<double>();
}

// Y = stft * gain ("mask") or gain * stft / |stft| ("magnitude"), via ATen, for at::istft.
at::Tensor combine_aten(const at::Tensor& stft, const at::Tensor& gain, const std::string& mode) {
  if (mode == "mask") return stft * gain;
  const at::Tensor mag = stft.abs();
  const at::Tensor unit = at::where(mag > 0, stft / at::where(mag > 0, mag, at::ones_like(mag)), at::ones_like(stft));
  return unit * gain;
}

void test_masked_istft_vs_aten() {
  using Sig = at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, int64_t, int64_t, const at::Tensor&, bool,
                         std::optional<int64_t>, c10::string_view);
  const auto dispatched =
      c10::Dispatcher::singleton().findSchemaOrThrow("cnnaural::masked_istft", "").typed<Sig>();

  struct Case {
    int64_t n_fft, hop, win_length, n_samples, n;
    bool center;
    std::optional<int64_t> length;
    const char* mode;
    at::ScalarType dtype;
  };
  const Case cases[] = {
      {512, 256, 512, 4000, 3, true, std::nullopt, "mask", at::kDouble},
      {512, 128, 400, 3000, 2, true, 2500, "magnitude", at::kDouble},
      {64, 20, 64, 700, 4, true, 900, "mask", at::kDouble},      // hop not dividing n_fft; zero tail
      {17, 5, 17, 300, 2, false, std::nullopt, "mask", at::kDouble},
      {16, 4, 16, 200, 1, false, 150, "magnitude", at::kFloat},
      {512, 256, 512, 11025, 5, true, 11025, "mask", at::kFloat},
  };
  for (const Case& c : cases) {
    const double tol = c.dtype == at::kDouble ? 1e-10 : 1e-4;
    const auto opts = at::TensorOptions().dtype(c.dtype);
    const at::Tensor audio = at::randn({c.n_samples}, opts);
    // center=False keeps the first sample, so the window must not vanish at its edges (NOLA)
    const at::Tensor window = c.center ? at::hann_window(c.win_length, /*periodic=*/true, opts)
                                       : at::hann_window(c.win_length, /*periodic=*/true, opts) + 0.1;
    const at::Tensor stft = at::stft(audio, c.n_fft, c.hop, c.win_length, window, c.center, "reflect",
                                     /*normalized=*/false, /*onesided=*/true, /*return_complex=*/true);
    at::Tensor gain = at::rand({c.n, stft.size(0), stft.size(1)}, opts) * 2 - 0.5;
    at::Tensor stft_in = stft;
    if (std::string(c.mode) == "magnitude") {
      stft_in = stft.clone();
      stft_in.select(1, 0).zero_();  // a silent frame: magnitude mode must take gain as is there
    }
    const at::Tensor want = at::istft(combine_aten(stft_in, gain, c.mode), c.n_fft, c.hop, c.win_length, window,
                                      c.center, /*normalized=*/false, /*onesided=*/true, c.length,
                                      /*return_complex=*/false);
    const at::Tensor got = cnnaural::masked_istft_cpu(stft_in, gain, c.n_fft, c.hop, c.win_length, window, c.center,
                                                      c.length, c.mode);
    EXPECT(got.sizes() == want.sizes(), "n_fft=%lld: shape mismatch", (long long)c.n_fft);
    if (got.sizes() != want.sizes()) continue;
    const double scale = want.abs().max().item<double>() + 1;
    EXPECT(max_abs_diff(got, want) <= tol * scale, "n_fft=%lld hop=%lld win=%lld center=%d mode=%s: max diff %g",
          (long long)c.n_fft, (long long)c.hop, (long long)c.win_length, int(c.center), c.mode,
          max_abs_diff(got, want));
    // through the dispatcher (the TORCH_LIBRARY schema + CPU impl), with a batched, non-contiguous stft
    const at::Tensor stft_nc = stft_in.transpose(0, 1).contiguous().transpose(0, 1).unsqueeze(0);
    const at::Tensor via = dispatched.call(stft_nc, gain, c.n_fft, c.hop, c.win_length, window, c.center, c.length,
                                           c.mode);
    EXPECT(max_abs_diff(via, want) <= tol * scale, "dispatched call: max diff %g", max_abs_diff(via, want));
  }

  // arguments are validated with messages naming the op
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor stft = at::randn({9, 5}, opts.dtype(at::kComplexDouble));
  const at::Tensor gain = at::ones({1, 9, 5}, opts);
  const at::Tensor window = at::hann_window(16, true, opts);
  bool threw = false;
  try {
    cnnaural::masked_istft_cpu(stft, gain, 16, 4, 16, window, true, std::nullopt, "x");
  } catch (const c10::Error& e) {
    threw = std::string(e.what()).find("masked_istft") != std::string::npos;
  }
  EXPECT(threw, "mode 'x' must raise a c10::Error naming masked_istft");
  threw = false;
  try {
    cnnaural::masked_istft_cpu(stft, gain, 32, 8, 32, at::hann_window(32, true, opts), true, std::nullopt, "mask");
  } catch (const c10::Error& e) {
    threw = std::string(e.what()).find("frequency bins") != std::string::npos;
  }
  EXPECT(threw, "9 bins with n_fft=32 must raise a c10::Error about frequency bins");
}

}  // namespace

int main() {
  at::manual_seed(0);
  test_ola_frame_range();
  for (int64_t n_fft : {16, 64, 256, 512, 1024}) {
    test_ola_envelope_hann<double>(n_fft, 1e-12);
    test_ola_envelope_hann<float>(n_fft, 1e-5);
  }
  test_combine_bin<double>(1e-12);
  test_combine_bin<float>(1e-6);
  try {
    test_masked_istft_vs_aten();
  } catch (const std::exception& e) {
    ++cnnaural_test::g_failures;
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
  }
  return cnnaural_test::finish();
}
