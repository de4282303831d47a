// Index math of the inverse STFT's overlap-add, shared by the CPU and CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>

#include "../common/host_device.h"

namespace cnnaural {

// Frames f that cover position p of the full (uncropped) signal, frame f spanning
// [f * hop, f * hop + n_fft): f0 <= f < f1 (empty when f0 >= f1).
HOST_DEVICE_INLINE void ola_frame_range(int64_t p, int64_t n_fft, int64_t hop, int64_t n_frames,
                                        int64_t* f0, int64_t* f1) {
  const int64_t lo = p - n_fft + 1;
  int64_t first = lo <= 0 ? 0 : (lo + hop - 1) / hop;
  int64_t last = p / hop + 1;
  *f0 = first;
  *f1 = last < n_frames ? last : n_frames;
}

// Sum of window^2 over the frames covering p: the normaliser of a windowed overlap-add
// (torch.istft's window envelope).
template <typename scalar_t>
HOST_DEVICE_INLINE scalar_t ola_envelope(int64_t p, const scalar_t* window, int64_t n_fft,
                                         int64_t hop, int64_t n_frames) {
  int64_t f0, f1;
  ola_frame_range(p, n_fft, hop, n_frames, &f0, &f1);
  scalar_t env = 0;
  for (int64_t f = f0; f < f1; ++f) {
    const scalar_t w = window[p - f * hop];
    env += w * w;
  }
  return env;
}

// Windowed overlap-add of frames (n_frames, n_fft), row stride frame_stride, at position p.
template <typename scalar_t>
HOST_DEVICE_INLINE scalar_t ola_gather(int64_t p, const scalar_t* frames, int64_t frame_stride,
                                       const scalar_t* window, int64_t n_fft, int64_t hop,
                                       int64_t n_frames) {
  int64_t f0, f1;
  ola_frame_range(p, n_fft, hop, n_frames, &f0, &f1);
  scalar_t acc = 0;
  for (int64_t f = f0; f < f1; ++f) {
    const int64_t k = p - f * hop;
    acc += frames[f * frame_stride + k] * window[k];
  }
  return acc;
}

// Combine step of masked_istft for one bin: mode 0 "mask" Y = X * g; mode 1 "magnitude"
// Y = g * X / |X| (Y = g where X == 0).
template <typename scalar_t>
HOST_DEVICE_INLINE void combine_bin(scalar_t xr, scalar_t xi, scalar_t g, int mode, scalar_t* yr,
                                    scalar_t* yi) {
  if (mode == 0) {
    *yr = xr * g;
    *yi = xi * g;
    return;
  }
  using std::sqrt;
  const scalar_t mag2 = xr * xr + xi * xi;
  if (mag2 > scalar_t(0)) {
    const scalar_t s = g / sqrt(mag2);
    *yr = xr * s;
    *yi = xi * s;
  } else {
    *yr = g;
    *yi = 0;
  }
}

}  // namespace cnnaural
