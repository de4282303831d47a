// Large CPU outputs backed by transparent huge pages. A fresh multi-megabyte buffer is a new
// mapping that the kernel zero-fills one 4 KiB page at a time on first touch: for the 180 MB
// output of 64 seeds through a 64-channel block that is ~45k page faults, most of the op's time.
// Advising the buffer's 2 MiB-aligned interior before the first write lets the kernel fault it
// in 2 MiB at a time where THP is set to "madvise" or "always" (a no-op where it is "never" or
// off Linux). Only the flag of the mapping changes: the allocation, its size and its owner stay
// PyTorch's.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace cnnaural {

constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kHugePageMinBytes = size_t(8) << 20;  // smaller buffers usually come from the heap

// Call on a CPU tensor that nothing has written yet; errors are ignored (it is advice).
inline void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (!t.device().is_cpu() || !t.is_contiguous(t.suggest_memory_format())) return;
  const size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
  if (bytes < kHugePageMinBytes) return;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t first = (begin + kHugePage - 1) & ~(uintptr_t(kHugePage) - 1);
  const uintptr_t last = (begin + bytes) & ~(uintptr_t(kHugePage) - 1);
  if (last > first) (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

}  // namespace cnnaural
