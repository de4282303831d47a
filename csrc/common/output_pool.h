// Large CPU outputs from a small cache of freed buffers. A fresh output of many megabytes is a
// new mapping: the OS zero-fills every page on first touch, and the op then writes it again
// (12% of a dense 64-channel block's time in `perf`, as `clear_page`). Keeping the last few freed
// output buffers mapped lets the next call of the same size skip that. New buffers are 2 MiB-aligned
// and advised as transparent huge pages before their first write, so the OS maps them 2 MiB at a
// time where THP is "madvise" or "always" (advice only: a no-op where it is "never" or off Linux).
//
// A request takes the smallest kept buffer of at least its size and at most twice it, so the last,
// smaller chunk of seeds of a call reuses the others' buffers. What is kept is bounded
// (kPoolMaxBytes, kPoolMaxBuffers; the oldest go first): the bound fits the outputs of one chunk of
// seeds at DeconvNet's largest default budget, and DeconvNet trims the pool back to kPoolKeepBytes
// when a deconvolution ends (`trim_output_pool`), so between calls no more than that stays
// mapped. `release_output_pool()` returns everything to the OS, and nothing is kept with
// CNNAURAL_OUTPUT_POOL=0 (read once; new buffers are still advised). Outputs below kPoolMinBytes
// come from at::empty as usual.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace cnnaural {

constexpr size_t kPoolMinBytes = size_t(8) << 20;
constexpr size_t kPoolMaxBytes = size_t(1) << 30;    // free buffers kept, in all, during a call
constexpr size_t kPoolKeepBytes = size_t(256) << 20;  // what DeconvNet leaves kept between calls
constexpr size_t kPoolMaxBuffers = 8;

// An uninitialised CPU tensor of `sizes` and `dtype`, contiguous in `format` (Contiguous, or
// ChannelsLast for 4-D). Its storage cannot be resized.
at::Tensor pooled_empty(at::IntArrayRef sizes, at::ScalarType dtype,
                        at::MemoryFormat format = at::MemoryFormat::Contiguous);

int64_t output_pool_bytes();  // bytes of freed buffers kept now
void release_output_pool();   // return them all to the OS
void trim_output_pool(int64_t max_bytes);  // return the oldest until at most max_bytes are kept

}  // namespace cnnaural
