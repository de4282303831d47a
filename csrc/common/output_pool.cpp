#include "output_pool.h"

#include <algorithm>
#include <atomic>
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

// Frees the oldest kept buffers until `bytes` more fit under `limit` (and a slot is free when
// `slot`). Holds p.mu.
void evict(Pool& p, size_t bytes, size_t limit, bool slot) {
  while (!p.free.empty() && (p.cached + bytes > limit || (slot && p.free.size() >= kPoolMaxBuffers))) {
    p.cached -= p.free.front().first;
    std::free(p.free.front().second);
    p.free.erase(p.free.begin());
  }
}

// What may be kept now: kPoolKeepBytes, or up to kPoolMaxBytes while a caller has raised it.
std::atomic<size_t> pool_limit{kPoolKeepBytes};

void give_back(void* ptr, size_t bytes) {
  Pool& p = pool();
  const size_t limit = pool_limit.load(std::memory_order_relaxed);
  if (pool_enabled() && bytes <= limit) {
    std::lock_guard<std::mutex> lock(p.mu);
    evict(p, bytes, limit, true);
    p.free.emplace_back(bytes, ptr);
    p.cached += bytes;
    return;
  }
  std::free(ptr);
}

// A kept buffer for `bytes`: the smallest of at least that size and at most twice it (the last
// chunk of seeds of a call is smaller than the others: it takes their buffer instead of a new
// one beside it). `*got` is the buffer's own size. Null when none fits.
void* take_kept(size_t bytes, size_t* got) {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  auto best = p.free.end();
  for (auto it = p.free.begin(); it != p.free.end(); ++it) {
    if (it->first >= bytes && it->first / 2 <= bytes && (best == p.free.end() || it->first < best->first)) best = it;
  }
  if (best == p.free.end()) return nullptr;
  void* ptr = best->second;
  *got = best->first;
  p.cached -= best->first;
  p.free.erase(best);
  return ptr;
}

void* take(size_t bytes, size_t* got) {
  if (void* kept = take_kept(bytes, got)) return kept;
  *got = bytes;
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
  size_t got = 0;
  void* ptr = take(rounded, &got);
  auto deleter = [got](void* q) { give_back(q, got); };
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
  evict(p, 0, 0, false);
}

int64_t set_output_pool_limit(int64_t max_bytes) {
  const size_t limit = std::min(kPoolMaxBytes, static_cast<size_t>(std::max<int64_t>(0, max_bytes)));
  const size_t before = pool_limit.exchange(limit);
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  evict(p, 0, limit, false);
  return static_cast<int64_t>(before);
}

}  // namespace cnnaural
