// Named argument checks shared by every op: each failure names the op and says what to pass.
#pragma once

#include <ATen/ATen.h>

#define CNNAURAL_CHECK(cond, op, ...) TORCH_CHECK(cond, "cnnaural.", op, ": ", __VA_ARGS__)

namespace cnnaural {

inline void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name) {
  CNNAURAL_CHECK(t.dim() == dim, op, name, " must be ", dim, "-D, got ", t.dim(), "-D with shape ",
                 t.sizes());
}

inline void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* op,
                              const char* name_a, const char* name_b) {
  CNNAURAL_CHECK(a.device() == b.device(), op, name_a, " and ", name_b,
                 " must be on the same device, got ", a.device(), " and ", b.device());
}

}  // namespace cnnaural
