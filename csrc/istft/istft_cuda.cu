// masked_istft on CUDA: a tiled combine kernel writing the frame-major layout the FFT wants, the
// library's inverse real FFT (cuFFT), and one kernel for window x overlap-add (gather form, the
// shared ola_gather) x inverse envelope x trim. The envelope comes from a cache (istft.cpp), so
// a call with a window seen before neither computes it nor synchronises with the host.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/checks.h"
#include "istft.h"
#include "istft_math.h"

namespace cnnaural {

namespace {
constexpr const char* kOp = "masked_istft";
constexpr int kTile = 32;       // frames x bins per combine tile
constexpr int kTileRows = 8;    // threads along the tile's second axis
constexpr int kOlaThreads = 256;
constexpr int64_t kMaxGridY = 65535;

struct Strides3 {
  int64_t n, f, t;
};

// Y[n, t, f] = combine(X[n | 0, f, t], gain[n, f, t]): read along time, written along frequency,
// through a shared-memory tile so both sides are coalesced.
template <typename scalar_t>
__global__ void combine_kernel(const scalar_t* __restrict__ x, Strides3 xs, const scalar_t* __restrict__ gain,
                               Strides3 gs, int64_t n_rows, int64_t n_freqs, int64_t n_frames, int mode,
                               scalar_t* __restrict__ y) {
  __shared__ scalar_t re_s[kTile][kTile + 1];
  __shared__ scalar_t im_s[kTile][kTile + 1];
  const int64_t t0 = blockIdx.x * int64_t(kTile), f0 = blockIdx.y * int64_t(kTile);
  for (int64_t n = blockIdx.z; n < n_rows; n += gridDim.z) {
    for (int r = threadIdx.y; r < kTile; r += kTileRows) {  // load: threadIdx.x along time
      const int64_t f = f0 + r, t = t0 + threadIdx.x;
      if (f < n_freqs && t < n_frames) {
        const int64_t xo = 2 * (n * xs.n + f * xs.f + t * xs.t);  // complex -> (re, im) pairs
        scalar_t yr, yi;
        combine_bin<scalar_t>(x[xo], x[xo + 1], gain[n * gs.n + f * gs.f + t * gs.t], mode, &yr, &yi);
        re_s[r][threadIdx.x] = yr;
        im_s[r][threadIdx.x] = yi;
      }
    }
    __syncthreads();
    for (int r = threadIdx.y; r < kTile; r += kTileRows) {  // store: threadIdx.x along frequency
      const int64_t t = t0 + r, f = f0 + threadIdx.x;
      if (f < n_freqs && t < n_frames) {
        const int64_t yo = 2 * ((n * n_frames + t) * n_freqs + f);
        y[yo] = re_s[threadIdx.x][r];
        y[yo + 1] = im_s[threadIdx.x][r];
      }
    }
    __syncthreads();
  }
}

// out[n, j] = ola_gather(start + j) * inv_env[j] for j < kept, 0 beyond (torch.istft's zero
// padding when length exceeds the signal).
template <typename scalar_t>
__global__ void overlap_add_kernel(const scalar_t* __restrict__ frames, const scalar_t* __restrict__ window,
                                   const scalar_t* __restrict__ inv_env, int64_t n_rows, int64_t n_frames,
                                   int64_t n_fft, int64_t hop, int64_t start, int64_t kept, int64_t out_len,
                                   scalar_t* __restrict__ out) {
  const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (j >= out_len) return;
  for (int64_t n = blockIdx.y; n < n_rows; n += gridDim.y) {
    out[n * out_len + j] = j < kept ? ola_gather<scalar_t>(start + j, frames + n * n_frames * n_fft, n_fft, window,
                                                           n_fft, hop, n_frames) *
                                          inv_env[j]
                                    : scalar_t(0);
  }
}
}  // namespace

at::Tensor masked_istft_cuda(const at::Tensor& stft, const at::Tensor& gain, int64_t n_fft, int64_t hop_length,
                             int64_t win_length, const at::Tensor& window, bool center,
                             std::optional<int64_t> length, c10::string_view mode) {
  const IstftGeometry g =
      check_masked_istft(kOp, stft, gain, n_fft, hop_length, win_length, window, center, length, mode);
  CNNAURAL_CHECK(gain.is_cuda(), kOp, "the CUDA kernel got a tensor on ", gain.device());
  const c10::cuda::CUDAGuard guard(gain.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor out = at::empty({g.n, g.out_len}, gain.options());
  if (out.numel() == 0) return out;

  const int64_t T = g.n_frames, F = g.n_freqs;
  const int64_t kept = std::min(g.out_len, std::max<int64_t>(g.full_len - g.start, 0));
  const at::Tensor inv_env = inverse_envelope(kOp, window, n_fft, hop_length, win_length, T, g.start, kept);
  const at::Tensor win = padded_window(window, n_fft, win_length);
  const at::Tensor x = (g.stft_batched ? stft : stft.unsqueeze(0)).resolve_conj();
  const Strides3 xs{x.size(0) == 1 ? 0 : x.stride(0), x.stride(1), x.stride(2)};
  const Strides3 gs{gain.stride(0), gain.stride(1), gain.stride(2)};

  AT_DISPATCH_FLOATING_TYPES(gain.scalar_type(), "masked_istft_cuda", [&] {
    // 1. combine into (N, T, F)
    at::Tensor y = at::empty({g.n, T, F}, stft.options());
    const dim3 cgrid(static_cast<unsigned>((T + kTile - 1) / kTile), static_cast<unsigned>((F + kTile - 1) / kTile),
                     static_cast<unsigned>(std::min(g.n, kMaxGridY)));
    combine_kernel<scalar_t><<<cgrid, dim3(kTile, kTileRows), 0, stream>>>(
        reinterpret_cast<const scalar_t*>(x.data_ptr()), xs, gain.data_ptr<scalar_t>(), gs, g.n, F, T, g.mode,
        reinterpret_cast<scalar_t*>(y.data_ptr()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    // 2. inverse real FFT of every frame (cuFFT): (N, T, n_fft)
    const at::Tensor frames = at::fft_irfft(y, n_fft, -1).contiguous();
    // 3. window x overlap-add x envelope x trim
    const dim3 ogrid(static_cast<unsigned>((g.out_len + kOlaThreads - 1) / kOlaThreads),
                     static_cast<unsigned>(std::min(g.n, kMaxGridY)));
    overlap_add_kernel<scalar_t><<<ogrid, kOlaThreads, 0, stream>>>(
        frames.data_ptr<scalar_t>(), win.data_ptr<scalar_t>(), inv_env.data_ptr<scalar_t>(), g.n, T, n_fft,
        hop_length, g.start, kept, g.out_len, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

TORCH_LIBRARY_IMPL(cnnaural, CUDA, m) { m.impl("masked_istft", &masked_istft_cuda); }

}  // namespace cnnaural
