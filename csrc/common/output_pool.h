// Large CPU outputs from a small cache of freed buffers. A fresh output of many megabytes is a
// new mapping: the OS zero-fills every page on first touch, and the op then writes it again
// (12% of a dense 64-channel block's time in `perf`, as `clear_page`). Keeping the last few freed
// output buffers mapped lets the next call of the same size skip that. New buffers are 2 MiB-aligned
// and advised as transparent huge pages before their first write, so the OS maps them 2 MiB at a
// time where THP is "madvise" or "always" (advice only: a no-op where it is "never" or off Linux).
//
// A request takes the smallest kept buffer of at least its size and at most twice it, so the last,
// smaller chunk of seeds of a call reuses the others' buffers. What is kept is bounded (the
// limit, kPoolKeepBytes unless raised, and kPoolMaxBuffers; the oldest go first). DeconvNet
// raises the limit to kPoolMaxBytes for the length of one deconvolution
// (`set_output_pool_limit`), so its chunks of seeds reuse block outputs of up to 1 GiB, and sets
// it back after, which trims what is kept. `release_output_pool()` returns everything to the OS,
// and nothing is kept with CNNAURAL_OUTPUT_POOL=0 (read once; new buffers are still advised).
// Outputs below kPoolMinBytes come from at::empty as usual.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace cnnaural {

constexpr size_t kPoolMinBytes = size_t(8) << 20;
constexpr size_t kPoolKeepBytes = size_t(256) << 20;  // free buffers kept, in all, by default
constexpr size_t kPoolMaxBytes = size_t(1) << 30;     // the highest limit a caller may set
constexpr size_t kPoolMaxBuffers = 8;

// An uninitialised CPU tensor of `sizes` and `dtype`, contiguous in `format` (Contiguous, or
// ChannelsLast for 4-D). Its storage cannot be resized.
at::Tensor pooled_empty(at::IntArrayRef sizes, at::ScalarType dtype,
                        at::MemoryFormat format = at::MemoryFormat::Contiguous);

int64_t output_pool_bytes();  // bytes of freed buffers kept now
void release_output_pool();   // return them all to the OS
// Keep at most max_bytes (clamped to [0, kPoolMaxBytes]) from now on, returning the oldest kept
// buffers beyond it; returns the previous limit.
int64_t set_output_pool_limit(int64_t max_bytes);

}  // namespace cnnaural
