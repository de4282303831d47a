// cpu_isa(): the CPU kernels' instruction set, chosen once per process (see cpu_isa.h).
#include "cpu_isa.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <string>

namespace cnnaural {

CpuIsa cpu_isa() {
  static const CpuIsa isa = [] {
    const char* env = std::getenv("CNNAURAL_CPU_ISA");
    const std::string want = env ? env : "";
    if (!want.empty() && want != "auto" && want != "default") {
      TORCH_WARN("CNNAURAL_CPU_ISA must be 'auto' or 'default', got '", want, "': using 'auto'");
    }
#if CNNAURAL_AVX2_DISPATCH
    if (want == "default") return CpuIsa::kDefault;
    __builtin_cpu_init();
    // libgcc's (and compiler-rt's) feature bits include the OS's support: AVX2 counts only
    // where the OS saves the YMM registers (XGETBV)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::kAvx2Fma;
#endif
    return CpuIsa::kDefault;
  }();
  return isa;
}

const char* cpu_isa_name() {
  if (cpu_isa() == CpuIsa::kAvx2Fma) return "avx2+fma";
#if defined(__AVX2__) && defined(__FMA__)
  return "default (built with AVX2 and FMA)";
#else
  return "default";
#endif
}

}  // namespace cnnaural
