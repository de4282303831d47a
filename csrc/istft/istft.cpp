// Backend-independent part of masked_istft: the op's schema, argument validation and window
// padding.
#include "istft.h"

#include <ATen/Dispatch.h>
#include <c10/util/intrusive_ptr.h>
#include <torch/library.h>

#include <deque>
#include <mutex>

#include "../common/checks.h"
#include "istft_math.h"

// The schema: the dispatcher sees the op, so torch.compile and torch.library.opcheck work. A
// fragment per op (every op's folder has one), so adding an op touches only its folder.
TORCH_LIBRARY_FRAGMENT(cnnaural, m) {
  m.def(
      "masked_istft(Tensor stft, Tensor gain, int n_fft, int hop_length, int win_length, "
      "Tensor window, bool center, int? length, str mode) -> Tensor");
}

namespace cnnaural {

IstftGeometry check_masked_istft(const char* op, const at::Tensor& stft, const at::Tensor& gain,
                                 int64_t n_fft, int64_t hop_length, int64_t win_length,
                                 const at::Tensor& window, bool center,
                                 std::optional<int64_t> length, c10::string_view mode) {
  IstftGeometry g;
  CNNAURAL_CHECK(mode == "mask" || mode == "magnitude", op, "mode must be 'mask' or 'magnitude', got '",
                 std::string(mode), "'");
  g.mode = mode == "mask" ? 0 : 1;
  CNNAURAL_CHECK(stft.is_complex(), op, "stft must be a complex tensor (torch.stft(..., return_complex=True)), got ",
                 stft.scalar_type());
  CNNAURAL_CHECK(stft.dim() == 2 || stft.dim() == 3, op, "stft must be (F, T) or (N, F, T), got shape ",
                 stft.sizes());
  check_dim(gain, 3, op, "gain");
  CNNAURAL_CHECK(gain.is_floating_point(), op, "gain must be real floating point, got ", gain.scalar_type());
  CNNAURAL_CHECK(c10::toRealValueType(stft.scalar_type()) == gain.scalar_type(), op,
                 "gain must have the precision of stft: ", stft.scalar_type(), " needs ",
                 c10::toRealValueType(stft.scalar_type()), ", got ", gain.scalar_type());
  check_same_device(stft, gain, op, "stft", "gain");
  check_same_device(window, gain, op, "window", "gain");
  CNNAURAL_CHECK(n_fft > 0 && hop_length > 0, op, "n_fft and hop_length must be positive, got n_fft=",
                 n_fft, ", hop_length=", hop_length);
  CNNAURAL_CHECK(win_length > 0 && win_length <= n_fft, op, "expected 0 < win_length <= n_fft, got win_length=",
                 win_length, ", n_fft=", n_fft);
  CNNAURAL_CHECK(hop_length <= win_length, op, "expected 0 < hop_length <= win_length, got hop_length=",
                 hop_length, ", win_length=", win_length);
  CNNAURAL_CHECK(window.dim() == 1 && window.size(0) == win_length, op,
                 "window must be 1-D of size win_length=", win_length, ", got shape ", window.sizes());
  CNNAURAL_CHECK(window.scalar_type() == gain.scalar_type(), op, "window must have dtype ", gain.scalar_type(),
                 ", got ", window.scalar_type());
  g.stft_batched = stft.dim() == 3;
  g.n_freqs = stft.size(-2);
  g.n_frames = stft.size(-1);
  g.n = gain.size(0);
  CNNAURAL_CHECK(g.n_freqs == n_fft / 2 + 1, op, "stft has ", g.n_freqs, " frequency bins; a one-sided STFT with n_fft=",
                 n_fft, " has ", n_fft / 2 + 1);
  CNNAURAL_CHECK(gain.size(1) == g.n_freqs && gain.size(2) == g.n_frames, op, "gain (N, F, T) must match stft's (F, T) = (",
                 g.n_freqs, ", ", g.n_frames, "), got ", gain.sizes());
  if (g.stft_batched) {
    CNNAURAL_CHECK(stft.size(0) == 1 || stft.size(0) == g.n, op, "stft batch must be 1 or gain's N=", g.n,
                   ", got ", stft.size(0));
  }
  CNNAURAL_CHECK(g.n_frames > 0, op, "stft has no frames");
  g.full_len = n_fft + hop_length * (g.n_frames - 1);
  g.start = center ? n_fft / 2 : 0;
  if (length.has_value()) {
    CNNAURAL_CHECK(*length >= 0, op, "length must be non-negative, got ", *length);
    g.out_len = *length;
  } else {
    g.out_len = (center ? g.full_len - n_fft / 2 : g.full_len) - g.start;
  }
  CNNAURAL_CHECK(g.out_len >= 0, op, "the STFT is too short to trim: ", g.n_frames, " frames of hop ", hop_length);
  return g;
}

at::Tensor padded_window(const at::Tensor& window, int64_t n_fft, int64_t win_length) {
  if (win_length == n_fft) return window.contiguous();
  const int64_t left = (n_fft - win_length) / 2;
  return at::constant_pad_nd(window, {left, n_fft - win_length - left}, 0).contiguous();
}

namespace {
constexpr double kNolaTolerance = 1e-11;  // torch.istft's threshold on the window envelope
constexpr size_t kEnvelopeCacheEntries = 16;

struct EnvelopeEntry {
  // A weak reference keeps the window's TensorImpl from being reused at the same address while
  // the entry lives, so (impl, version) identifies the window's values.
  c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> window;
  uint32_t version;
  int64_t n_fft, hop, win_length, n_frames, start, kept;
  at::Tensor inv_env;
};

std::mutex envelope_mutex;
std::deque<EnvelopeEntry> envelope_cache;  // most recent first

at::Tensor compute_inverse_envelope(const char* op, const at::Tensor& window, int64_t n_fft, int64_t hop,
                                    int64_t win_length, int64_t n_frames, int64_t start, int64_t kept) {
  const at::Tensor win = padded_window(window.cpu(), n_fft, win_length);
  at::Tensor inv_env = at::empty({kept}, win.options());
  AT_DISPATCH_FLOATING_TYPES(win.scalar_type(), "inverse_envelope", [&] {
    const scalar_t* wp = win.data_ptr<scalar_t>();
    scalar_t* ep = inv_env.data_ptr<scalar_t>();
    double env_min = kept > 0 ? 1e300 : 1.0;
    for (int64_t j = 0; j < kept; ++j) {
      const scalar_t e = ola_envelope<scalar_t>(start + j, wp, n_fft, hop, n_frames);
      env_min = std::min(env_min, static_cast<double>(e < 0 ? -e : e));
      ep[j] = scalar_t(1) / e;
    }
    CNNAURAL_CHECK(env_min >= kNolaTolerance, op,
                   "the window does not satisfy the nonzero overlap-add constraint (NOLA): its envelope falls to ",
                   env_min, " inside the output; use a longer window or a smaller hop_length");
  });
  return inv_env.to(window.device());
}
}  // namespace

at::Tensor inverse_envelope(const char* op, const at::Tensor& window, int64_t n_fft, int64_t hop_length,
                            int64_t win_length, int64_t n_frames, int64_t start, int64_t kept) {
  if (window.is_inference()) {  // no version counter: cannot tell an in-place change, so no cache
    return compute_inverse_envelope(op, window, n_fft, hop_length, win_length, n_frames, start, kept);
  }
  const uint32_t version = window._version();
  const c10::TensorImpl* impl = window.unsafeGetTensorImpl();
  {
    std::lock_guard<std::mutex> lock(envelope_mutex);
    for (auto it = envelope_cache.begin(); it != envelope_cache.end(); ++it) {
      if (it->window._unsafe_get_target() == impl && !it->window.expired() && it->version == version &&
          it->n_fft == n_fft && it->hop == hop_length && it->win_length == win_length &&
          it->n_frames == n_frames && it->start == start && it->kept == kept) {
        at::Tensor hit = it->inv_env;
        if (it != envelope_cache.begin()) {
          EnvelopeEntry e = std::move(*it);
          envelope_cache.erase(it);
          envelope_cache.push_front(std::move(e));
        }
        return hit;
      }
    }
  }
  at::Tensor inv_env = compute_inverse_envelope(op, window, n_fft, hop_length, win_length, n_frames, start, kept);
  std::lock_guard<std::mutex> lock(envelope_mutex);
  envelope_cache.push_front(EnvelopeEntry{c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>(
                                              window.getIntrusivePtr()),
                                          version, n_fft, hop_length, win_length, n_frames, start, kept, inv_env});
  while (envelope_cache.size() > kEnvelopeCacheEntries) envelope_cache.pop_back();
  return inv_env;
}

int64_t envelope_cache_size() {
  std::lock_guard<std::mutex> lock(envelope_mutex);
  return static_cast<int64_t>(envelope_cache.size());
}

}  // namespace cnnaural
