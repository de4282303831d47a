#include "output_pool.h"

#include <cstdlib>
#include <cstring>
#include <iterator>
#include <mutex>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace cnnaural {

namespace {

constexpr size_t kHugePage = size_t(2) << 20;

struct Pool {
  std::mutex mu;
  std::vector<std::pair<size_t, void*>> free;  // (bytes, buffer), most recently returned last
  size_t cached = 0;
};

// Never destroyed: outputs still alive at exit come back after static destructors have run.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

bool pool_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("CNNAURAL_OUTPUT_POOL");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}

void give_back(void* ptr, size_t bytes) {
  Pool& p = pool();
  if (pool_enabled() && bytes <= kPoolMaxBytes) {
    std::lock_guard<std::mutex> lock(p.mu);
    while (!p.free.empty() && (p.cached + bytes > kPoolMaxBytes || p.free.size() >= kPoolMaxBuffers)) {
      p.cached -= p.free.front().first;
      std::free(p.free.front().second);
      p.free.erase(p.free.begin());
    }
    p.free.emplace_back(bytes, ptr);
    p.cached += bytes;
    return;
  }
  std::free(ptr);
}

void* take(size_t bytes) {
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mu);
    for (auto it = p.free.rbegin(); it != p.free.rend(); ++it) {
      if (it->first == bytes) {
        void* ptr = it->second;
        p.cached -= bytes;
        p.free.erase(std::next(it).base());
        return ptr;
      }
    }
  }
  void* ptr = nullptr;
  TORCH_CHECK(posix_memalign(&ptr, kHugePage, bytes) == 0 && ptr != nullptr,
              "cnnaural: out of memory allocating an output of ", bytes >> 20, " MiB");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  (void)madvise(ptr, bytes, MADV_HUGEPAGE);  // advice only: ignored where THP is off
#endif
  return ptr;
}

}  // namespace

at::Tensor pooled_empty(at::IntArrayRef sizes, at::ScalarType dtype, at::MemoryFormat format) {
  const auto options = at::TensorOptions().dtype(dtype).device(at::kCPU);
  const bool channels_last = format == at::MemoryFormat::ChannelsLast && sizes.size() == 4;
  const size_t bytes = static_cast<size_t>(c10::multiply_integers(sizes)) * at::elementSize(dtype);
  if (bytes < kPoolMinBytes) {
    return at::empty(sizes, options.memory_format(channels_last ? format : at::MemoryFormat::Contiguous));
  }
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* ptr = take(rounded);
  auto deleter = [rounded](void* q) { give_back(q, rounded); };
  if (channels_last) {
    const int64_t c = sizes[1], h = sizes[2], w = sizes[3];
    return at::from_blob(ptr, sizes, {h * w * c, 1, w * c, c}, deleter, options);
  }
  return at::from_blob(ptr, sizes, deleter, options);
}

int64_t output_pool_bytes() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  return static_cast<int64_t>(p.cached);
}

void release_output_pool() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  for (auto& [bytes, ptr] : p.free) std::free(ptr);
  p.free.clear();
  p.cached = 0;
}

}  // namespace cnnaural
