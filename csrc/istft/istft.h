// masked_istft: inverse STFT of (original STFT combined with real gains), argument validation
// shared by every backend.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>

namespace cnnaural {

// Args:
//   stft: complex (F, T) or (N | 1, F, T), F = n_fft / 2 + 1 — shared by every gain row.
//   gain: real (N, F, T), same precision as stft.
//   window: real (win_length) on the same device, zero-padded (centred) to n_fft.
//   mode: "mask" (Y = stft * gain) or "magnitude" (Y = gain * stft / |stft|).
// Returns: (N, L) real, L = length or the centred/uncentred torch.istft default.
at::Tensor masked_istft_cpu(const at::Tensor& stft, const at::Tensor& gain, int64_t n_fft,
                            int64_t hop_length, int64_t win_length, const at::Tensor& window,
                            bool center, std::optional<int64_t> length, c10::string_view mode);

struct IstftGeometry {
  int64_t n = 0;         // gain rows
  int64_t n_freqs = 0;   // F
  int64_t n_frames = 0;  // T
  int64_t full_len = 0;  // n_fft + hop * (T - 1), the uncropped overlap-add
  int64_t start = 0;     // first kept sample of the full signal
  int64_t out_len = 0;   // samples returned (may exceed full_len - start: zero tail)
  int mode = 0;          // 0 mask, 1 magnitude
  bool stft_batched = false;
};

// Validates every argument the way torch.istft does (plus the gain) and returns the geometry.
IstftGeometry check_masked_istft(const char* op, const at::Tensor& stft, const at::Tensor& gain,
                                 int64_t n_fft, int64_t hop_length, int64_t win_length,
                                 const at::Tensor& window, bool center,
                                 std::optional<int64_t> length, c10::string_view mode);

// The window zero-padded to n_fft, centred as torch.istft does.
at::Tensor padded_window(const at::Tensor& window, int64_t n_fft, int64_t win_length);

// 1 / (window envelope) for output samples start .. start + kept - 1 of a T-frame overlap-add,
// on the window's device, in its dtype; raises torch.istft's NOLA error where the envelope
// vanishes. Cached per (window tensor and its version, n_fft, hop, T, start, kept): a hit costs
// no computation and no host-device synchronisation (a miss reads the window on the host once).
at::Tensor inverse_envelope(const char* op, const at::Tensor& window, int64_t n_fft, int64_t hop_length,
                            int64_t win_length, int64_t n_frames, int64_t start, int64_t kept);

// Entries in the envelope cache (for tests).
int64_t envelope_cache_size();

}  // namespace cnnaural
